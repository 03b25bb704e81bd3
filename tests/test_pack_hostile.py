"""`pack --verify` reads a pack byte for byte: every hostile archive below is caught, in bounded memory.

Each case starts from a genuine, signed pack and changes what `tar -xzf` (or `tar -xzif`)
would extract without changing what a lenient reader would check: a second gzip member,
members after the end-of-archive blocks, setuid modes, pax and GNU headers, and so on.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zlib

import pytest

from costeff.artifacts import atomic_write_json
from costeff.cli import main
from costeff.pack import pack, verify_pack
from costeff.pack.bundle import read_pack, sign_manifest
from costeff.audit.keys import home_signer
from workspace_support import env_workspace, env_home

MODEL = "model_repository/policy/1/model.onnx"
EOF = bytes(1024)


def header(name: str, size: int = 0, mode: int = 0o644, kind: bytes = b"0", *, uid: int = 0, uname: str = "",
           linkname: str = "", magic: bytes = b"ustar\x0000", prefix: str = "", size_field: bytes | None = None,
           name_field: bytes | None = None, tail: bytes = b"", checksum_delta: int = 0) -> bytes:
    """One ustar header block, as Python's tarfile (and so `costeff pack`) writes it, with overrides."""
    b = bytearray(512)
    b[0:100] = (name_field or name.encode()).ljust(100, b"\0")[:100]
    b[100:108] = b"%07o\0" % mode
    b[108:116] = b"%07o\0" % uid
    b[116:124] = b"%07o\0" % 0
    b[124:136] = size_field or b"%011o\0" % size
    b[136:148] = b"%011o\0" % 0
    b[156:157] = kind
    b[157:257] = linkname.encode().ljust(100, b"\0")
    b[257:265] = magic
    b[265:297] = uname.encode().ljust(32, b"\0")
    b[297:329] = bytes(32)
    b[329:345] = bytes(16)  # no device numbers
    b[345:500] = prefix.encode().ljust(155, b"\0")
    b[500:512] = tail.ljust(12, b"\0")
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % (sum(b) + checksum_delta)
    return bytes(b)


def member(name: str, data: bytes = b"x", **kw) -> bytes:
    return header(name, len(data), **kw) + data + bytes(-len(data) % 512)


def pax(records: bytes, kind: bytes = b"x") -> bytes:
    return header("././@PaxHeader", len(records), 0, kind) + records + bytes(-len(records) % 512)


def record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


class Genuine:
    """A real pack, its tar bytes up to the end-of-archive blocks, and where each member's header sits."""

    def __init__(self, path):
        self.path, self.gz = path, path.read_bytes()
        raw = gzip.decompress(self.gz)
        self.offsets, pos = {}, 0
        while raw[pos:pos + 512] != bytes(512):
            size = int(raw[pos + 124:pos + 136].rstrip(b"\0"), 8)
            self.offsets[raw[pos:pos + 100].rstrip(b"\0").decode()] = (pos, size)
            pos += 512 + size + (-size % 512)
        self.body, self.tail = raw[:pos], raw[pos:]

    def appended(self, extra: bytes, end: bytes = EOF) -> bytes:
        return gzip.compress(self.body + extra + end)

    def rehead(self, name: str, **kw) -> bytes:
        pos, size = self.offsets[name]
        return gzip.compress(self.body[:pos] + header(name, size, **kw) + self.body[pos + 512:] + self.tail)

    def padded(self, name: str) -> bytes:
        pos, size = self.offsets[name]
        end = pos + 512 + size
        return gzip.compress(self.body[:end] + b"!" + self.body[end + 1:] + self.tail)


@pytest.fixture
def genuine(tmp_path):
    layout = env_workspace()
    report = {"variants": []}
    atomic_write_json(layout.quant / "20260101_000001Z" / "quantization_report.json", report)
    atomic_write_json(layout.cost / "20260101_000000Z" / "gpu_profile.json", {"points": [], "optimal": {}})
    model = tmp_path / "model_repository" / "policy" / "1" / "model.onnx"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"genuine model bytes " * 5)
    g = Genuine(pack(layout).path)
    assert MODEL in g.offsets and verify_pack(g.path, env_home().pubkey).ok
    return g


def test_the_header_helper_writes_what_pack_writes(genuine):
    raw = gzip.decompress(genuine.gz)
    pos, size = genuine.offsets[MODEL]
    assert header(MODEL, size) == raw[pos:pos + 512]


def rebuilt(g: Genuine, change: str, data: bytes, resign: bool = False) -> bytes:
    """The genuine pack's files with one replaced; with ``resign``, its manifest updated and re-signed by the
    key holder (so that only the check under test can object)."""
    files = read_pack(g.path)
    files[change] = data
    if resign:
        manifest = json.loads(files["manifest.json"])
        for entry in manifest["files"]:
            if entry["path"] == change:
                entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
        files["manifest.sig"] = sign_manifest(files["manifest.json"], home_signer(env_home()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


QUANT = "quant/quantization_report.json"
DEEP = b"[" * 100_000
EVIL = member(MODEL, b"evil model") + EOF
CASES = {
    # the gzip layer
    "second gzip member (tar -xzif overwrites model.onnx)": (lambda g: g.gz + gzip.compress(EVIL + bytes(9216)),
                                                             "second gzip member"),
    "empty second gzip member": (lambda g: g.gz + gzip.compress(b""), "second gzip member"),
    "trailing garbage after the gzip stream": (lambda g: g.gz + b"garbage", "bytes after the gzip stream"),
    "trailing zeros after the gzip stream": (lambda g: g.gz + bytes(1024), "bytes after the gzip stream"),
    "gzip cut short": (lambda g: g.gz[:-6], "cut short"),
    "gzip CRC wrong": (lambda g: g.gz[:-8] + bytes(b ^ 0xFF for b in g.gz[-8:-4]) + g.gz[-4:], "gzip"),
    # the end of the archive
    "member after the end-of-archive blocks": (lambda g: g.appended(EOF + EVIL), "after the end-of-archive"),
    "garbage after the end-of-archive blocks": (lambda g: g.appended(b"", EOF + b"tail"), "after the end-of-archive"),
    "megabyte of zeros after the end": (lambda g: g.appended(b"", bytes(1 << 20)), "bytes after the end-of-archive"),
    "one zero block, then a member": (lambda g: g.appended(bytes(512) + EVIL), "zero block followed by more"),
    "no end-of-archive blocks": (lambda g: gzip.compress(g.body), "cut short"),
    # modes and owners of a genuine member, rewritten in place
    "setuid model.onnx": (lambda g: g.rehead(MODEL, mode=0o4755), "setuid"),
    "setgid model.onnx": (lambda g: g.rehead(MODEL, mode=0o2755), "setgid"),
    "sticky model.onnx": (lambda g: g.rehead(MODEL, mode=0o1644), "sticky"),
    "world-writable model.onnx": (lambda g: g.rehead(MODEL, mode=0o777), "mode 0777"),
    "mode 0600": (lambda g: g.rehead(MODEL, mode=0o600), "mode 0600"),
    "mode 0755 where the manifest says 0644": (lambda g: g.rehead(MODEL, mode=0o755), "mode 0755 != manifest 0644"),
    "owned by uid 1000": (lambda g: g.rehead(MODEL, uid=1000), "owner"),
    "owned by user root by name": (lambda g: g.rehead(MODEL, uname="root"), "owner"),
    "non-zero padding after model.onnx": (lambda g: g.padded(MODEL), "padding after its data"),
    "duplicate model.onnx later in the archive": (lambda g: g.appended(member(MODEL, b"evil")), "appears twice"),
    # header blocks
    "bad header checksum": (lambda g: g.appended(header("x", 0, checksum_delta=1)), "checksum"),
    "GNU magic": (lambda g: g.appended(header("x", 0, magic=b"ustar  \0")), "magic"),
    "v7 header (no magic)": (lambda g: g.appended(header("x", 0, magic=bytes(8))), "magic"),
    "base-256 size": (lambda g: g.appended(header("x", size_field=b"\x80" + bytes(10) + b"\x01")), "octal"),
    "size that is not octal": (lambda g: g.appended(header("x", size_field=b"0000000009x\0")), "octal"),
    "hidden bytes after the name's NUL": (lambda g: g.appended(header("x", name_field=b"x\0hidden")),
                                         "bytes after its end"),
    "non-zero header tail": (lambda g: g.appended(header("x", tail=b"junk")), "unused tail"),
    "name that is not UTF-8": (lambda g: g.appended(header("x", name_field=b"\xff\xfe")), "not UTF-8"),
    "control character in a name": (lambda g: g.appended(member("quant/a\nb")), "canonical"),
    "ustar prefix climbing out": (lambda g: g.appended(member("escape.txt", prefix="..")), "climbs out"),
    # pax and GNU extension headers
    "512 MiB pax header": (lambda g: g.appended(header("././@PaxHeader", 512 << 20, 0, b"x") + bytes(4096)),
                           "refused before reading"),
    "9 KiB pax header": (lambda g: g.appended(pax(record("path", "a" * 9000)) + member("x")), "refused before"),
    "pax global header": (lambda g: g.appended(pax(record("path", "x"), b"g") + member("x")), "global header"),
    "GNU long name of 512 MiB": (lambda g: g.appended(header("././@LongLink", 512 << 20, 0, b"L")), "GNU long name"),
    "GNU long link name": (lambda g: g.appended(header("././@LongLink", 10, 0, b"K")), "GNU long link"),
    "pax linkpath": (lambda g: g.appended(pax(record("linkpath", "/etc/passwd")) + member("x")), "'linkpath'"),
    "pax uid": (lambda g: g.appended(pax(record("uid", "0")) + member("x")), "'uid'"),
    "pax GNU sparse map": (lambda g: g.appended(pax(record("GNU.sparse.size", "9")) + member("x")), "GNU.sparse"),
    "pax path climbing out": (lambda g: g.appended(pax(record("path", "../../escape")) + member("x")), "climbs out"),
    "pax absolute path": (lambda g: g.appended(pax(record("path", "/etc/cron.d/x")) + member("x")), "absolute"),
    "pax path given twice": (lambda g: g.appended(pax(record("path", "a") + record("path", "b")) + member("x")),
                             "given twice"),
    "pax record with a wrong length": (lambda g: g.appended(pax(b"99 path=x\n") + member("x")), "malformed pax"),
    "pax size not a number": (lambda g: g.appended(pax(record("size", "12x")) + member("x")), "not a whole number"),
    "two pax headers in a row": (lambda g: g.appended(pax(record("path", "a")) * 2 + member("x")), "two pax"),
    "pax header and then the end": (lambda g: g.appended(pax(record("path", "a"))), "no member after it"),
    "a 2000-byte name": (lambda g: g.appended(pax(record("path", "q/" + "a" * 1998)) + member("x")),
                         "member name of 2000 bytes"),
    # member types
    "symlink to /etc/passwd": (lambda g: g.appended(header("quant/l", 0, kind=b"2", linkname="/etc/passwd")),
                               "symbolic link"),
    "hard link to model.onnx": (lambda g: g.appended(header("quant/h", 0, kind=b"1", linkname=MODEL)), "hard link"),
    "symlink claiming data": (lambda g: g.appended(header("quant/l", 100, kind=b"2") + bytes(512)), "claims 100"),
    "block device": (lambda g: g.appended(header("quant/sda", 0, kind=b"4")), "block device"),
    "contiguous file": (lambda g: g.appended(member("quant/c", kind=b"7")), "contiguous file"),
    "directory": (lambda g: g.appended(header("quant/d/", 0, 0o755, b"5")), "a directory"),
    "header type Z": (lambda g: g.appended(header("x", 0, kind=b"Z")), "header type"),
    # contents that parsers choke on
    "manifest nested 100,000 deep": (lambda g: rebuilt(g, "manifest.json", DEEP), "manifest.json is not valid"),
    "signature nested 100,000 deep": (lambda g: rebuilt(g, "manifest.sig", DEEP), "not a signature document"),
    "signed report nested 100,000 deep": (lambda g: rebuilt(g, QUANT, DEEP, resign=True),
                                          "cannot be regenerated"),
    "manifest listing non-objects": (lambda g: rebuilt(g, "manifest.json", b'{"files": [1, [2]]}'),
                                     "manifest.json is not valid"),
}


def test_there_are_many_hostile_packs():
    assert len(CASES) >= 37


@pytest.mark.parametrize("label", sorted(CASES))
def test_a_hostile_pack_is_caught(genuine, tmp_path, label):
    build, expect = CASES[label]
    bad = tmp_path / "hostile.tar.gz"
    bad.write_bytes(build(genuine))
    report = verify_pack(bad, env_home().pubkey)
    assert not report.ok and any(expect in p for p in report.problems), report.problems


def test_the_cli_exits_1_for_a_second_gzip_member(genuine, tmp_path, capsys):
    bad = tmp_path / "appended.tar.gz"
    bad.write_bytes(genuine.gz + gzip.compress(EVIL))
    assert main(["pack", "--verify", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "pack FAILED" in out and "second gzip member" in out
    assert main(["pack", "--verify", str(genuine.path)]) == 0


def _zeros_gz(path, prefix: bytes, zeros: int, suffix: bytes) -> None:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as fh:
        fh.write(z.compress(prefix))
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            fh.write(z.compress(block))
        fh.write(z.compress(suffix) + z.flush())


MEASURE = ("import re, sys\n"
           "from costeff.pack import verify_pack\n"
           "def hwm(): return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024\n"
           "before = hwm(); r = verify_pack(sys.argv[1], sys.argv[2]); print(hwm() - before, r.ok, r.problems)\n")


@pytest.mark.parametrize("kind", ["x", "L", "0"])
def test_a_512_mib_header_or_member_is_verified_in_bounded_memory(genuine, tmp_path, kind):
    """A ~0.5 MB pack announcing a 512 MiB pax record, GNU long name or member. VmHWM (the child's own peak;
    ru_maxrss would carry the forking parent's peak across exec) grows by well under 200 MB."""
    bad = tmp_path / "bomb.tar.gz"
    name = {"x": "././@PaxHeader", "L": "././@LongLink", "0": "extra/huge.bin"}[kind]
    _zeros_gz(bad, genuine.body + header(name, 512 << 20, 0o644, kind.encode()), 512 << 20,
              header("x", 0) + EOF)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(bad), str(env_home().pubkey)], capture_output=True,
                         text=True, check=True, timeout=120, env=env).stdout
    grew, ok = int(out.split()[0]), out.split()[1]
    print(f"verify of a {bad.stat().st_size} byte pack announcing a 512 MiB {kind!r}: peak grew {grew} MB")
    assert ok == "False" and grew < 200, out


def test_pack_refuses_a_fifo_instead_of_hanging(genuine, tmp_path):
    fifo = env_workspace().quant / "20260101_000001Z" / "pipe"
    os.mkfifo(fifo)
    before = set(env_workspace().cost.glob("pack_*"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", "from costeff.cli import entrypoint; entrypoint()", "pack"],
                          capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {fifo}: a FIFO") and "Traceback" not in done.stderr
    assert set(env_workspace().cost.glob("pack_*")) == before


def test_long_and_non_ascii_names_still_verify(genuine, tmp_path):
    """Names past the ustar header's 100 bytes, or not ASCII, travel in pax records: a genuine pack with them
    verifies, and GNU tar would extract the same names."""
    folder = env_workspace().quant / "20260101_000001Z"
    long_name = "n" * 90 + "/" + "m" * 120 + ".json"
    (folder / long_name).parent.mkdir(parents=True)
    (folder / long_name).write_text("{}")
    (folder / "résumé-ñ.txt").write_text("accents")
    path = pack(env_workspace()).path
    raw = gzip.decompress(path.read_bytes())
    assert b"path=quant/" + long_name.encode() in raw and "résumé-ñ".encode() in raw  # pax records
    report = verify_pack(path, env_home().pubkey)
    assert report.ok, report.problems
    assert report.files_checked == len(json.loads(read_pack(path)["manifest.json"])["files"])
