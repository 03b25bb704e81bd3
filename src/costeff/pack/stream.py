"""Read a pack byte for byte, the way ``tar -xzf`` (and ``tar -xzif``) would, in bounded memory.

A pack is exactly one gzip member holding a POSIX ustar/pax archive: 512-byte headers
with valid checksums, pax records only for ``path``, ``size`` and times, the data padded
with zeros, two zero blocks at the end and nothing after them but zero padding. Anything
else (a second gzip member, bytes after the end-of-archive blocks, a global or GNU
header, a pax record larger than any name needs) is a :class:`PackFormatError`, raised
before anything it announces is read into memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import BinaryIO, Iterator

BLOCK = 1 << 20
TAR_BLOCK = 512
ZERO_BLOCK = bytes(TAR_BLOCK)
MAX_PAX_BYTES = 8 << 10  # a pax header holding a path of MAX_NAME_BYTES fits many times over
MAX_NAME_BYTES = 1024
MAX_TAIL_BYTES = 20 * TAR_BLOCK  # tar pads the archive to its 10240-byte record; nothing more
PAX_KEYS = {"path", "size", "mtime", "atime", "ctime"}
REGULAR = (b"0", b"\x00")
KINDS = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device", b"4": "a block device",
         b"5": "a directory", b"6": "a FIFO", b"7": "a contiguous file"}


class PackFormatError(Exception):
    """The archive is not one a pack writer makes; reading stops here.

    ``before_any`` is true when the file is not a gzip file at all (empty, or without the gzip magic number)."""

    def __init__(self, message: str, before_any: bool = False) -> None:
        super().__init__(message)
        self.before_any = before_any


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    mode: int
    kind: bytes
    linkname: str
    owner: tuple[int, int, str, str]  # uid, gid, uname, gname


class Inflater:
    """Exactly one gzip member, decompressed at most BLOCK bytes at a time."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh, self.z, self.buf, self.produced = fh, zlib.decompressobj(wbits=31), bytearray(), 0
        self.started = False  # the file begins with the gzip magic number: a gzip file, if perhaps a hostile one

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes (n ≤ BLOCK), or PackFormatError when the stream ends first."""
        while len(self.buf) < n:
            if not self._more():
                raise PackFormatError(f"the archive ends in the middle (after {self.produced - len(self.buf)} "
                                      f"bytes of tar data): cut short", before_any=not self.started)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _more(self) -> bool:
        if self.z.eof:
            return False
        data = self.z.unconsumed_tail or self.fh.read(BLOCK)
        self.started = self.started or data[:2] == b"\x1f\x8b"
        try:
            out = self.z.decompress(data, BLOCK)
        except zlib.error as exc:
            raise PackFormatError(f"not a valid gzip stream ({exc})", before_any=not self.started) from None
        if not out and not data and not self.z.eof:
            raise PackFormatError("the gzip stream is cut short", before_any=not self.started)
        self.produced += len(out)
        self.buf += out
        return True

    def finish(self) -> None:
        """After the end-of-archive blocks: only zero padding, then the end of the one gzip member and of the file."""
        tail = len(self.buf)
        while True:
            if any(self.buf):
                raise PackFormatError("data after the end-of-archive blocks (`tar -i` would extract it); "
                                      "a pack ends with zero padding only")
            self.buf.clear()
            if tail > MAX_TAIL_BYTES:
                raise PackFormatError(f"more than {MAX_TAIL_BYTES} bytes after the end-of-archive blocks")
            if not self._more():
                break
            tail += len(self.buf)
        if self.z.unused_data or self.fh.read(1):
            raise PackFormatError("bytes after the gzip stream (a second gzip member or appended data, which "
                                  "`tar -xzi` would extract over the checked files); a pack is one gzip member")


class TarReader:
    """Members one at a time; the caller reads each member's data with :meth:`data` before the next."""

    def __init__(self, fh: BinaryIO) -> None:
        self.inflater = Inflater(fh)
        self.pending = 0  # data bytes (with padding) of the last member not read yet

    def next(self) -> Member | None:
        self._skip_pending()
        pax: dict[str, str] | None = None
        while True:
            block = self.inflater.read(TAR_BLOCK)
            if block == ZERO_BLOCK:
                if pax is not None:
                    raise PackFormatError("a pax header with no member after it")
                if self.inflater.read(TAR_BLOCK) != ZERO_BLOCK:
                    raise PackFormatError("a zero block followed by more headers (members after the "
                                          "end-of-archive marker, which `tar -i` would extract)")
                self.inflater.finish()
                return None
            fields = parse_header(block)
            kind, size = fields["kind"], fields["size"]
            if kind == b"x":
                if pax is not None:
                    raise PackFormatError("two pax headers in a row")
                pax = parse_pax(self._exactly(size, MAX_PAX_BYTES, "pax header"))
                continue
            return self._member(fields, pax)

    def _member(self, fields: dict, pax: dict[str, str] | None) -> Member:
        kind, pax = fields["kind"], pax or {}
        if kind not in REGULAR and kind not in KINDS:
            what = {b"g": "a pax global header", b"L": "a GNU long name", b"K": "a GNU long link name"}.get(
                kind, f"header type {kind!r}")
            raise PackFormatError(f"{what} ({fields['size']} bytes, not read): a pack uses POSIX ustar/pax "
                                  f"headers only")
        name = pax.get("path") or fields["name"]
        if len(name.encode("utf-8")) > MAX_NAME_BYTES or "\x00" in name:
            raise PackFormatError(f"a member name of {len(name.encode('utf-8'))} bytes or with a NUL byte")
        size = int(pax["size"]) if "size" in pax else fields["size"]
        if kind not in REGULAR and size:
            raise PackFormatError(f"{name!r}: {KINDS[kind]} that claims {size} bytes of data (tar readers "
                                  f"disagree on whether to read them)")
        self.pending = size + (-size % TAR_BLOCK)
        return Member(name, size, fields["mode"], kind, fields["linkname"], fields["owner"])

    def data(self, member: Member) -> Iterator[bytes]:
        """The member's bytes in blocks of at most BLOCK; its padding must be zeros."""
        left = member.size
        while left:
            block = self.inflater.read(min(left, BLOCK))
            left -= len(block)
            self.pending -= len(block)
            yield block
        padding = self.inflater.read(self.pending) if self.pending else b""
        self.pending = 0
        if any(padding):
            raise PackFormatError(f"{member.name!r}: non-zero bytes in the padding after its data")

    def _skip_pending(self) -> None:
        while self.pending:
            n = min(self.pending, BLOCK)
            self.inflater.read(n)
            self.pending -= n

    def _exactly(self, size: int, limit: int, what: str) -> bytes:
        if size > limit:
            raise PackFormatError(f"a {what} of {size} bytes (at most {limit}): refused before reading it")
        raw = self.inflater.read(size + (-size % TAR_BLOCK)) if size else b""
        if any(raw[size:]):
            raise PackFormatError(f"non-zero bytes in the padding after a {what}")
        return raw[:size]


def parse_header(block: bytes) -> dict:
    """The fields of one ustar header block; PackFormatError for anything a POSIX writer would not write."""
    stored = _octal(block[148:156], "checksum")
    if stored != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        raise PackFormatError("a header whose checksum does not match (corrupt or forged)")
    if block[257:265] != b"ustar\x0000":
        raise PackFormatError(f"a header with magic {block[257:265]!r}: a pack uses POSIX ustar/pax headers only "
                              f"(no GNU or v7 headers)")
    name, prefix = _text(block[0:100], "name"), _text(block[345:500], "prefix")
    if any(block[500:]):
        raise PackFormatError("non-zero bytes in a header's unused tail")
    return {"name": f"{prefix}/{name}" if prefix else name, "mode": _octal(block[100:108], "mode"),
            "size": _octal(block[124:136], "size"), "kind": block[156:157],
            "linkname": _text(block[157:257], "linkname"),
            "owner": (_octal(block[108:116], "uid"), _octal(block[116:124], "gid"),
                      _text(block[265:297], "uname"), _text(block[297:329], "gname"))}


def parse_pax(raw: bytes) -> dict[str, str]:
    """Pax records ``"<len> <key>=<value>\\n"``, strictly: known keys once each, lengths exact, UTF-8."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        space = raw.find(b" ", pos, pos + 12)
        digits = raw[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise PackFormatError("a malformed pax record (no length)")
        end = pos + int(digits)
        record = raw[space + 1:end]
        key, eq, value = record[:-1].partition(b"=")
        if end > len(raw) or not record.endswith(b"\n") or not eq:
            raise PackFormatError("a malformed pax record (its length or its key=value is wrong)")
        try:
            key_text, value_text = key.decode("ascii"), value.decode("utf-8")
        except UnicodeDecodeError:
            raise PackFormatError("a pax record that is not UTF-8") from None
        if key_text not in PAX_KEYS:
            raise PackFormatError(f"a pax record {key_text!r}: a pack's pax headers hold only "
                                  f"{', '.join(sorted(PAX_KEYS))}")
        if key_text in records:
            raise PackFormatError(f"a pax record {key_text!r} given twice (readers disagree on which wins)")
        if key_text == "size" and not value_text.isdigit():
            raise PackFormatError(f"a pax size {value_text!r} that is not a whole number")
        records[key_text] = value_text
        pos = end
    return records


def _octal(field: bytes, what: str) -> int:
    digits = field.rstrip(b"\x00 ")
    if field[:1] in (b"\x80", b"\xff") or not digits or digits.strip(b"01234567"):
        raise PackFormatError(f"a header {what} field {field!r} that is not an octal number")
    return int(digits, 8)


def _text(field: bytes, what: str) -> str:
    text, _, rest = field.partition(b"\x00")
    if any(rest):
        raise PackFormatError(f"a header {what} field with bytes after its end (hidden data)")
    try:
        return text.decode("utf-8")
    except UnicodeDecodeError:
        raise PackFormatError(f"a header {what} field that is not UTF-8") from None
