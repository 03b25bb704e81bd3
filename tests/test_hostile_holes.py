"""Small holes, each answered cleanly: exit 2 (or the documented code), one ``error:`` line, no traceback,
nothing left behind; and a Triton rollback that records the bytes on disk, not the build's record.

- a path option with a 300-character component (ENAMETOOLONG, raised while argparse checks it);
- a holiday calendar that is not one (``/etc/shadow``-like, not UTF-8, a FIFO, a folder, huge): its
  lines are never echoed;
- models that are bad input: an unknown op domain, an int64 input, ``ir_version 99``, no outputs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from costeff.artifacts import sha256_file
from costeff.cli import main
from workspace_support import flag_store

LONG = "n" * 300
SECRET = "root:$6$SECRET-HASH-DO-NOT-PRINT:19000:0:99999:7:::"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_policy):
    root = tmp_path_factory.mktemp("holes")
    files = {"root": root, "model": tiny_policy.onnx_path, "long": root / LONG, "long_mid": root / LONG / "sub"}
    np.save(root / "obs.npy", np.random.default_rng(0).standard_normal((64, 8, 8)).astype(np.float32))
    files["obs"] = root / "obs.npy"
    from costeff.ledger import Ledger, import_sample

    files["ledger"] = root / "ledger.sqlite"
    import_sample(Ledger(files["ledger"]))
    _models(root, files)
    _calendars(root, files)
    return {k: str(v) for k, v in files.items()}


def _models(root: Path, files: dict) -> None:
    from onnx import TensorProto, helper

    def model(name, in_type=TensorProto.FLOAT, domain="", ir=None, outputs=True):
        x = helper.make_tensor_value_info("obs", in_type, [None, 8, 8])
        y = helper.make_tensor_value_info("logits", in_type, [None, 8, 8])
        node = helper.make_node("Mystery" if domain else "Identity", ["obs"], ["logits"], domain=domain)
        opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
        m = helper.make_model(helper.make_graph([node], "g", [x], [y] if outputs else []), opset_imports=opsets)
        if ir is not None:
            m.ir_version = ir
        files[name] = root / f"{name}.onnx"
        files[name].write_bytes(m.SerializeToString())

    model("bad_domain", domain="com.example.custom")
    model("int64_input", in_type=TensorProto.INT64)
    model("ir_version_99", ir=99)
    model("no_outputs", outputs=False)


def _calendars(root: Path, files: dict) -> None:
    cals = root / "calendars"
    cals.mkdir()
    (cals / "shadow").write_text(SECRET + "\nbin:*:19000:0:99999:7:::\n")
    (cals / "later_line").write_text("2025-04-18 Good Friday\n" + SECRET + "\n")
    (cals / "non_utf8").write_bytes(b"2025-04-18\n\xff\xfe" + SECRET.encode() + b"\n")
    (cals / "huge").write_bytes(b"# padding\n" * 200_000)
    (cals / "a_folder").mkdir()
    for name in ("shadow", "later_line", "non_utf8", "huge", "a_folder", "missing"):
        config = root / f"reaper_{name}.toml"
        config.write_text(f'[schedule]\nholidays = "{cals / name}"\n')
        files[f"cal_{name}"] = config


def _outs(prefix: list[str]) -> list[tuple[str, list[str], str]]:
    return [(f"{' '.join(prefix)} --out <{kind}>", [*prefix, "--out", "{" + kind + "}"], "File name too long")
            for kind in ("long", "long_mid")]


CASES: list[tuple[str, list[str], str]] = [
    *_outs(["reap", "--sample"]),
    *_outs(["pack"]),
    *_outs(["ramp", "decide", "--ledger", "{ledger}"]),
    *_outs(["profile", "{model}"]),
    *_outs(["quantize", "--preset", "tiny"]),
    *_outs(["run", "--preset", "tiny"]),
    ("export --out <long>/x.onnx", ["export", "--preset", "tiny", "--out", "{long_mid}.onnx"], "File name too long"),
    ("profile <long>.onnx", ["profile", "{long}.onnx"], "File name too long"),
    ("pack --verify <long>", ["pack", "--verify", "{long}"], "File name too long"),
    ("ramp decide --ledger <long>", ["ramp", "decide", "--ledger", "{long_mid}"], "File name too long"),
    ("reap --config <long>", ["reap", "--sample", "--config", "{long}"], "File name too long"),
    ("holidays = a secret file", ["reap", "--sample", "--config", "{cal_shadow}"], "line 1 does not start"),
    ("holidays = a secret on line 2", ["reap", "--sample", "--config", "{cal_later_line}"], "line 2 does not start"),
    ("holidays = not UTF-8", ["reap", "--sample", "--config", "{cal_non_utf8}"], "not UTF-8"),
    ("holidays = 2 MB", ["reap", "--sample", "--config", "{cal_huge}"], "larger than"),
    ("holidays = a folder", ["reap", "--sample", "--config", "{cal_a_folder}"], "calendar"),
    ("holidays = missing", ["reap", "--sample", "--config", "{cal_missing}"], "cannot read holiday calendar"),
]
for _name, _expect in (("bad_domain", "op domain 'com.example.custom'"), ("int64_input", "is int64"),
                       ("ir_version_99", "ir_version 99"), ("no_outputs", "no outputs")):
    CASES += [(f"profile <{_name}>", ["profile", "{" + _name + "}"], _expect),
              (f"quantize <{_name}>", ["quantize", "{" + _name + "}", "--observations", "{obs}"], _expect)]


def _snapshot(*roots: Path) -> set[str]:
    return {str(p) for root in roots if root.exists() for p in root.rglob("*")
            if not p.name.startswith(".") and not p.name.endswith(".lock")}


def test_the_holes_are_many():
    assert len(CASES) >= 30


@pytest.mark.parametrize("label, argv, expect", CASES, ids=[c[0] for c in CASES])
def test_a_hole_is_answered_cleanly(inputs, tmp_path, capsys, label, argv, expect):
    args = [a.format(**inputs) for a in argv]
    watched = (tmp_path / "artifacts", tmp_path / "model_repository", Path(inputs["root"]))
    before = _snapshot(*watched)
    try:
        code = main(args)
    except SystemExit as exc:  # argparse refused before any command ran
        code = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"{label}: exit {code}; stderr {err[-600:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{label}: {err[-600:]!r}"
    assert expect in lines[0], lines[0]
    assert "Traceback" not in out + err and "SECRET" not in out + err
    assert _snapshot(*watched) == before, f"{label}: left {sorted(_snapshot(*watched) - before)}"


def test_a_calendar_error_names_the_file_and_line_only(inputs, capsys):
    assert main(["reap", "--sample", "--config", inputs["cal_shadow"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {Path(inputs['root']) / 'calendars' / 'shadow'}: line 1 does not start with a date; "
                   f"expected a holiday calendar, one YYYY-MM-DD per line")


def test_a_fifo_calendar_is_refused_without_blocking(inputs, tmp_path):
    fifo = tmp_path / "holidays.fifo"
    os.mkfifo(fifo)
    config = tmp_path / "reaper.toml"
    config.write_text(f'[schedule]\nholidays = "{fifo}"\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", "from costeff.cli import entrypoint; entrypoint()", "reap",
                           "--sample", "--config", str(config)], capture_output=True, text=True, timeout=30, env=env)
    assert done.returncode == 2 and done.stderr.strip() == f"error: {fifo}: not a regular file; expected a holiday " \
                                                           f"calendar"


def test_rollback_to_a_replaced_model_records_the_bytes_on_disk(tmp_path, capsys):
    from test_serving_versions import _build

    _build(tmp_path, 1)
    _build(tmp_path, 2)
    entry = tmp_path / "repo" / "policy"
    built = sha256_file(entry / "1" / "model.onnx")
    replaced = entry / "1" / "model.onnx"
    replaced.write_bytes(replaced.read_bytes() + b"\0")  # not the bytes the build recorded
    on_disk = sha256_file(replaced)
    repo = ["--repository", str(tmp_path / "repo"), "--name", "policy"]
    capsys.readouterr()
    assert main(["triton", "rollback", *repo, "--json"]) == 0
    change = json.loads(capsys.readouterr().out)
    assert change["to_version"] == 1 and change["model_sha256"] == on_disk
    assert on_disk in change["warning"] and built in change["warning"]
    assert flag_store().get("deployed_model_sha256") == on_disk  # not the build's record
    assert main(["triton", "versions", *repo, "--json"]) == 0
    listed = {v["version"]: v for v in json.loads(capsys.readouterr().out)["versions"]}
    assert (listed[1]["model_sha256"], listed[1]["disk_sha256"], listed[1]["bytes_match"]) == (built, on_disk, False)
    assert listed[2]["bytes_match"] is True
    assert main(["triton", "versions", *repo]) == 0
    text = capsys.readouterr().out
    assert f"*   1  sha256 {on_disk[:12]}" in text and "MISMATCH" in text and built[:12] in text
    assert text.count("MISMATCH") == 1
