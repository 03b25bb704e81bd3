"""Hostile inputs across every command: each is answered cleanly.

Generated cases (files that are missing, folders, empty, binary, of the wrong format,
non-UTF-8; numbers that are zero, negative, NaN, infinite, not numbers or out of
range; outputs that are existing files or unwritable). For each: the documented exit
code, exactly one ``error:`` line on stderr, no traceback, and nothing left behind
in the artifacts, the Triton repository or the inputs. Run in-process through
``costeff.cli.main``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from costeff.cli import main
from workspace_support import env_home

HOSTILE_FILES = ("missing", "dir", "empty", "garbage", "text", "json_list", "non_utf8")
BAD_POSITIVE = ("0", "-1", "nan", "inf", "abc")
BAD_NONNEG = ("-1", "nan", "abc")
BAD_INT_POSITIVE = ("0", "-1", "abc", "1.5")
BAD_LISTS = ("0", "-1", "abc", "", "1.5", "1,,x")
BAD_OUTS = ("{file}", "{file}/sub", "/proc/self/costeff_out")


@pytest.fixture(scope="session")
def hostile(tmp_path_factory, tiny_policy):
    root = tmp_path_factory.mktemp("hostile")
    files = {"missing": root / "missing.onnx", "dir": root / "a_folder", "empty": root / "empty.onnx",
             "garbage": root / "garbage.onnx", "text": root / "text.onnx", "json_list": root / "list.json",
             "non_utf8": root / "non_utf8.toml", "file": root / "a_file.txt"}
    files["dir"].mkdir()
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(os.urandom(2048))
    files["text"].write_text("hello, not a model\n")
    files["json_list"].write_text("[1, 2, 3]\n")
    files["non_utf8"].write_bytes(b"\xff\xfe\x00garbage = \x80\n")
    files["file"].write_text("I am a file\n")
    _observations(root, files)
    _tables(root, files)
    files["model"] = tiny_policy.onnx_path
    files["profile_json"] = _profile(root, tiny_policy.onnx_path)
    _valid_inputs(root, files)
    return {k: str(v) for k, v in files.items()}


def _valid_inputs(root: Path, files: dict) -> None:
    """Valid companions, so that each case reaches the one hostile input it is about."""
    from costeff.audit import AuditLog
    from costeff.flags import FlagStore
    from costeff.ledger import Ledger, import_sample

    files["ledger"] = root / "ledger.sqlite"
    import_sample(Ledger(files["ledger"]))
    files["trail"] = root / "trail"
    trail = AuditLog(files["trail"], home=env_home())
    trail.append("test.event", {})
    files["trail_pub"] = trail.signer.path + ".pub"
    files["flag_store"] = root / "flags.json"
    FlagStore(files["flag_store"], AuditLog(root / "flag_trail", home=env_home())).set("reaper_enabled", False)
    files["triton_config"] = root / "config.pbtxt"
    files["triton_config"].write_text('name: "p"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n')
    files["reaper_targets"] = root / "targets.toml"
    files["reaper_targets"].write_text('[[targets]]\nresource = "policy"\n')


def _observations(root: Path, files: dict) -> None:
    for name, array in {"obs_empty": np.zeros((0, 8, 8), np.float32), "obs_nan": np.full((4, 8, 8), np.nan, np.float32),
                        "obs_1d": np.zeros(8, np.float32), "obs_shape": np.zeros((4, 3, 5), np.float32),
                        "obs_str": np.array([["a"] * 8] * 4)}.items():
        files[name] = root / f"{name}.npy"
        np.save(files[name], array)
    files["obs_pickle"] = root / "obs_pickle.npy"
    np.save(files["obs_pickle"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    files["obs_txt"] = root / "obs.txt"
    files["obs_txt"].write_text("1,2,3\n")


def _tables(root: Path, files: dict) -> None:
    header = "date,gross_pnl_usd,signals,trades,influence_pct,source\n"
    for name, row in {"csv_huge": "2025-05-02,10.0,1000000000000000000000000000000,5,5,x\n",
                      "csv_nan": "2025-05-02,nan,10,5,5,x\n", "csv_inf": "2025-05-02,inf,10,5,5,x\n",
                      "csv_neg": "2025-05-02,10.0,-10,5,5,x\n", "csv_date": "2025-13-45,10.0,10,5,5,x\n",
                      "csv_influence": "2025-05-02,10.0,10,5,500,x\n", "csv_float_count": "2025-05-02,10.0,1.5,5,5,x\n",
                      "csv_dup": "2025-05-02,10.0,10,5,5,x\n2025-05-02,11.0,10,5,5,x\n", "csv_header_only": ""}.items():
        files[name] = root / f"{name}.csv"
        files[name].write_text(header + row)
    files["csv_columns"] = root / "csv_columns.csv"
    files["csv_columns"].write_text("date,pnl\n2025-05-02,1\n")
    files["csv_non_utf8"] = root / "csv_non_utf8.csv"
    files["csv_non_utf8"].write_bytes(header.encode() + b"2025-05-02,\xff\xfe,10,5,5,x\n")
    trace_header = "timestamp,resource,gpu_util_pct,requests_per_s,influence_pct\n"
    for name, row in {"trace_negative": "2025-03-03T00:00:00Z,p,-5,0,-1\n",
                      "trace_nan": "2025-03-03T00:00:00Z,p,nan,0,0\n",
                      "trace_columns": None, "trace_header_only": ""}.items():
        files[name] = root / f"{name}.csv"
        files[name].write_text("time,foo\n1,2\n" if row is None else trace_header + row)
    files["toml_bad"] = root / "bad.toml"
    files["toml_bad"].write_text("[section\nkey = \n")
    files["toml_types"] = root / "types.toml"
    files["toml_types"].write_text('[exclude]\nnames = "policy-a"\n[schedule]\nprewarm_s = "900"\n')
    files["plan_types"] = root / "plan_types.toml"
    files["plan_types"].write_text("[[steps]]\ninfluence_pct = '0'\n[[steps]]\ninfluence_pct = 5\n")
    files["json_nan"] = root / "nan.json"
    files["json_nan"].write_text('{"points": NaN}\n')
    files["json_object"] = root / "object.json"
    files["json_object"].write_text('{"schema_version": 1}\n')


def _profile(root: Path, model: Path) -> Path:
    out = root / "profile"
    code = main(["profile", str(model), "--batch-sizes", "1,8", "--window-ms", "30", "--warmup-ms", "5",
                 "--out", str(out), "--json"])
    assert code == 0
    return out / "gpu_profile.json"


def _files(slot_args, prefix=(), kinds=HOSTILE_FILES, code=2):
    return [(f"{' '.join(prefix)} {slot_args} <{k}>", [*prefix, *slot_args.split(), "{" + k + "}"], code)
            for k in kinds]


def _numbers(prefix, option, values, code=2):
    return [(f"{' '.join(prefix)} {option} {v!r}", [*prefix, option, v], code) for v in values]


def _outs(prefix):
    return [(f"{' '.join(prefix)} --out {o}", [*prefix, "--out", o], 2) for o in BAD_OUTS]


def _cases() -> list[tuple[str, list[str], int]]:
    cases: list[tuple[str, list[str], int]] = []
    prof = ["profile", "{model}"]
    cases += _files("", ["profile"])
    cases += _files("--observations", prof, HOSTILE_FILES + ("obs_empty", "obs_nan", "obs_1d", "obs_shape",
                                                            "obs_str", "obs_pickle", "obs_txt"))
    cases += _numbers(prof, "--batch-sizes", BAD_LISTS) + _numbers(prof, "--concurrency", ("0", "-3", "x"))
    for option in ("--latency-budget-ms", "--target-rate", "--window-ms"):
        cases += _numbers(prof, option, BAD_POSITIVE)
    for option in ("--warmup-ms", "--stability-pct"):
        cases += _numbers(prof, option, BAD_NONNEG)
    cases += _numbers(prof, "--max-trials", BAD_INT_POSITIVE) + _numbers(prof, "--threads", ("0", "-1", "abc"))
    cases += _numbers(prof, "--provider", ("bogus",)) + _numbers(["profile"], "--preset", ("bogus",))
    cases += _files("--catalog", prof, ("missing", "dir", "toml_bad"))
    cases += _numbers(prof, "--instance", ("no-such-instance",)) + _files("--compare", prof, HOSTILE_FILES)
    cases += _outs(prof)

    quant = ["quantize", "--preset", "tiny"]  # a model of one's own would need --observations first
    cases += _files("", ["quantize"])
    cases += _files("--observations", ["quantize", "{model}"], HOSTILE_FILES + (
        "obs_empty", "obs_nan", "obs_1d", "obs_shape", "obs_str", "obs_pickle"))
    cases += _numbers(quant, "--rows", BAD_INT_POSITIVE) + _numbers(quant, "--variants", ("", "bogus", "fp16,,x"))
    cases += _numbers(quant, "--calibration-method", ("bogus",)) + _numbers(quant, "--provider", ("bogus",))
    for option in ("--max-action-drift-pct", "--max-entropy-drift-pct", "--max-kl-p99", "--max-value-abs-err"):
        cases += _numbers(quant, option, BAD_NONNEG)
    cases += _numbers(quant, "--min-action-correlation", ("2", "-2", "nan", "abc"))
    cases += _numbers(quant, "--batch-sizes", BAD_LISTS)
    for option in ("--target-rate", "--window-s", "--latency-budget-ms", "--min-speedup"):
        cases += _numbers(quant, option, BAD_POSITIVE)
    cases += _numbers(quant, "--trials", ("-1", "abc")) + _numbers(quant, "--rounds", ("0", "-1", "abc"))
    cases += _numbers(quant, "--outputs", ("bogus", "logits=nope", "=x")) + _outs(quant)
    cases += _numbers(quant, "--name", ("../../../escaped", "a/b", "..", ".hidden", ""))

    cases += _files("", ["export", "--out", "{dir}/x.onnx"], ("missing", "dir", "garbage", "text"))
    cases += _numbers(["export", "--out", "{dir}/x.onnx"], "--preset", ("bogus",))
    cases += _numbers(["export", "--preset", "tiny", "--out", "{dir}/x.onnx"], "--observation-shape",
                      ("0", "-1,3", "a", ""))
    cases += [("export --out <dir>", ["export", "--preset", "tiny", "--out", "{dir}"], 2),
              ("export --out <file>/x", ["export", "--preset", "tiny", "--out", "{file}/x.onnx"], 2)]

    for verb in ("optimize", "simulate"):
        extra = ["--p99-ms", "50"] if verb == "optimize" else ["--max-batch-size", "8"]
        cases += _files("--profile", ["batching", verb, *extra, "--rate", "100"],
                        HOSTILE_FILES + ("json_nan", "json_object"))
        base = ["batching", verb, "--profile", "{profile_json}", *extra]
        cases += _numbers(base, "--rate", BAD_POSITIVE) + _files("--trace", base, HOSTILE_FILES)
        cases += _numbers([*base, "--rate", "100"], "--requests", ("0", "-1", "abc"))
        cases += _numbers([*base, "--rate", "100"], "--rows", ("0", "-1", "abc"))
        cases += _outs([*base, "--rate", "100"])
    opt = ["batching", "optimize", "--profile", "{profile_json}", "--rate", "100"]
    cases += _numbers(opt, "--p99-ms", BAD_POSITIVE)
    cases += _numbers([*opt, "--p99-ms", "50"], "--max-instances", ("0", "-1", "abc"))
    cases += _numbers([*opt, "--p99-ms", "50"], "--max-batch-sizes", ("0", "abc", "-4"))
    cases += _numbers([*opt, "--p99-ms", "50"], "--queue-delays-us", ("-1", "abc"))
    cases += _numbers([*opt, "--p99-ms", "50"], "--top", ("0", "-1"))
    sim = ["batching", "simulate", "--profile", "{profile_json}", "--rate", "100"]
    cases += _numbers(sim, "--max-batch-size", ("0", "-1", "abc"))
    cases += _numbers([*sim, "--max-batch-size", "8"], "--preferred", ("0", "x", "-8"))
    cases += _numbers([*sim, "--max-batch-size", "8"], "--max-queue-delay-us", ("-1", "nan", "abc"))
    cases += _numbers([*sim, "--max-batch-size", "8"], "--instances", ("0", "-1"))
    cases += _numbers([*sim, "--max-batch-size", "8"], "--max-queue-size", ("-1", "abc"))

    build = ["triton", "build", "{model}", "--profile", "{profile_json}"]
    cases += _files("", ["triton", "build", "--profile", "{profile_json}"])
    cases += _files("--profile", ["triton", "build", "{model}"], HOSTILE_FILES + ("json_nan", "json_object"))
    cases += _files("--batching", build, HOSTILE_FILES + ("json_nan",))
    cases += _files("--quantization-report", build, HOSTILE_FILES)
    cases += _numbers(build, "--name", ("../escape", "", "a/b", ".."))
    cases += _numbers(build, "--repository", ("{file}",))
    cases += _files("", ["triton", "validate"], ("missing", "dir", "garbage", "text", "json_list", "non_utf8"))
    cases += _files("--model", ["triton", "validate", "{triton_config}"], ("missing", "dir", "garbage"))

    cases += _files("--trace", ["reap"], HOSTILE_FILES + ("trace_negative", "trace_nan", "trace_columns",
                                                        "trace_header_only"))
    # An empty reaper config is valid (every default), as is an empty config.pbtxt (Triton completes it)
    # and an empty SQLite ledger (no data: the ramp holds, exit 1).
    cases += _files("--config", ["reap", "--sample"], ("missing", "dir", "garbage", "text", "json_list", "non_utf8",
                                                      "toml_bad", "toml_types"))
    cases += _numbers(["reap", "--prometheus", "http://127.0.0.1:9"], "--interval", BAD_POSITIVE)
    cases += _numbers(["reap", "--prometheus", "http://127.0.0.1:9", "--watch"], "--stale-after", BAD_POSITIVE)
    cases += _numbers(["ramp", "watch", "--max-rounds", "1"], "--stale-after", BAD_POSITIVE)
    cases += _files("--config", ["reap", "rbac"], ("missing", "dir", "garbage", "text", "json_list", "non_utf8",
                                                   "toml_bad", "toml_types", "empty"))
    cases += _numbers(["reap", "--prometheus", "http://127.0.0.1:9", "--watch"], "--metrics-port",
                      ("99999", "-1", "abc", "65536"))
    cases += [("reap --apply without a live source", ["reap", "--sample", "--apply"], 2),
              ("reap --watch without a live source", ["reap", "--trace", "{trace_nan}", "--watch"], 2),
              ("reap nothing to read", ["reap"], 2),
              ("reap --prometheus not a url", ["reap", "--config", "{reaper_targets}", "--prometheus", "not a url"], 2),
              ("reap --prometheus ftp", ["reap", "--config", "{reaper_targets}", "--prometheus", "ftp://h:9090"], 2)]
    cases += _outs(["reap", "--sample"])

    cases += _files("--ledger", ["ramp", "decide"], ("dir", "garbage", "text", "non_utf8"))
    ramp = ["ramp", "decide", "--ledger", "{ledger}"]
    cases += _files("--plan", ramp, HOSTILE_FILES + ("toml_bad", "plan_types", "non_utf8"))
    cases += _files("--quant-report", ramp, HOSTILE_FILES + ("json_nan", "json_object"))
    cases += _numbers(ramp, "--as-of", ("x", "2026-13-01", "", "1999-01-01T00:00"))
    cases += _numbers(ramp, "--triton-repository", ("{file}",))

    cases += _files("", ["ledger", "import"], HOSTILE_FILES + (
        "csv_huge", "csv_nan", "csv_inf", "csv_neg", "csv_date", "csv_influence", "csv_float_count", "csv_dup",
        "csv_header_only", "csv_columns", "csv_non_utf8"))
    cases += _numbers(["ledger", "import", "{csv_huge}"], "--kind", ("bogus",))
    cases += _files("--catalog", ["ledger", "import", "--sample"], ("missing", "dir", "garbage", "toml_bad"))
    cases += _files("--ledger", ["ledger", "import", "--sample"], ("dir", "garbage", "text"))
    cases += _numbers(["ledger", "show"], "--days", ("0", "-1", "abc"))
    cases += _files("--ledger", ["ledger", "show"], ("dir", "garbage", "text", "non_utf8"))

    for name, value in (("reaper_enabled", "maybe"), ("reaper_enabled", "2"), ("served_version.policy", "-1"),
                        ("served_version.policy", "1.5"), ("deployed_model_sha256", "xyz"), ("nope", "true"),
                        ("pipeline_paused.a b", "true"), ("pipeline_paused.", "true"), ("cost_gates_enabled", "nan")):
        cases.append((f"flags set {name} {value!r}", ["flags", "set", name, value], 2))
    cases += [(f"flags get {n!r}", ["flags", "get", n], 2) for n in ("nope", "", "pipeline_paused.../x")]
    cases += _numbers(["flags", "rollback", "reaper_enabled", "--store", "{flag_store}"], "--to-version",
                      ("-1", "abc", "99"))
    cases += _files("--store", ["flags", "get"], ("dir", "garbage", "text", "json_list", "json_nan", "non_utf8"))

    cases += _files("", ["audit", "verify"], ("missing", "file", "empty"))
    cases += _files("--pubkey", ["audit", "verify", "{trail}"], ("missing", "dir", "garbage", "text"))
    cases += _numbers(["audit", "verify", "{trail}", "--pubkey", "{trail_pub}"], "--anchor",
                      ("ftp://x/y", "s3://", "s3://b/p?retain_days=0"))
    cases += _numbers(["audit", "keygen"], "--key", ("{dir}", "{file}/sub/key"))

    cases += _files("--verify", ["pack"], HOSTILE_FILES)
    cases += _numbers(["pack"], "--out", ("{file}",))

    run = ["run", "--preset", "tiny"]
    cases += _numbers(run, "--batch-sizes", BAD_LISTS)
    for option in ("--latency-budget-ms", "--target-rate", "--window-s"):
        cases += _numbers(run, option, BAD_POSITIVE)
    cases += _numbers(run, "--out", ("{file}", "{file}/sub", "/proc/self/costeff_out"))
    cases += _numbers(["run"], "--preset", ("bogus",)) + _numbers(run, "--provider", ("bogus",))
    return [c for c in cases if c[1][-1] != "" or c[1][-2] != ""]


CASES = _cases()


def test_the_suite_is_large():
    assert len(CASES) >= 300


def _snapshot(*roots: Path) -> set[str]:
    found = set()
    for root in roots:
        if root.exists():
            found |= {str(p) for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")
                      and not p.name.endswith(".lock")}
    return found


def _names_the_input(line: str, argv: list[str], args: list[str]) -> bool:
    """The line names the hostile value (or the file or folder in its path that is wrong), or the option
    or field it was given for, or the option that was missing."""
    value, option = args[-1], argv[-2] if len(argv) > 1 else ""
    names = {value, Path(value).name, option, option.lstrip("-").replace("-", "_"), "''" if not value else ""}
    names |= {str(p) for p in Path(value).parents if len(str(p)) > 1} if "/" in value else set()
    names |= {a for a in argv if a.startswith("--")}
    if not any(a.startswith(("-", "{")) for a in argv):
        return True  # nothing given at all: the line says what to give (checked by the case's own test)
    return any(n in line for n in names - {""})


@pytest.mark.parametrize("label, argv, code", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_answered_cleanly(hostile, tmp_path, capsys, label, argv, code):
    args = [a.format(**hostile) for a in argv]
    watched = (tmp_path / "artifacts", tmp_path / "model_repository", Path(hostile["dir"]).parent)
    before = _snapshot(*watched)
    try:
        got = main(args)
    except SystemExit as exc:  # argparse refuses before any command runs
        got = exc.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, f"{label}: exit {got}, expected {code}; stderr: {err[-800:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{label}: stderr was {err[-800:]!r}"
    assert _names_the_input(lines[0], argv, args), f"{label}: the error does not say which input: {lines[0]}"
    assert "Traceback" not in out + err
    assert _snapshot(*watched) == before, f"{label}: left {sorted(_snapshot(*watched) - before)}"


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "replay"
    assert main(["reap", "--sample", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    # the Markdown is written first, the record last: the first write fails and names its file
    assert err.strip() == f"error: {out / 'reaper_report.md'}: No space left on device"
    assert not any(out.iterdir()) and not (tmp_path / "artifacts" / "audit").exists()


@pytest.mark.parametrize("command", ["profile", "quantize"])
def test_a_batch_size_beyond_memory_is_refused_before_allocating(hostile, command, capsys, monkeypatch):
    import costeff.profiling
    import costeff.quantization

    def allocate(*args, **kwargs):  # where a batch of 2**31 rows would be built: never reached
        raise AssertionError("the sweep started before the memory check")

    monkeypatch.setattr(costeff.profiling, "profile", allocate)
    monkeypatch.setattr(costeff.quantization, "quantize", allocate)
    model = [hostile["model"]] if command == "profile" else ["--preset", "tiny"]  # quantize wants observations
    assert main([command, *model, "--batch-sizes", "1,2147483648"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --batch-sizes: batch size 2147483648 needs at least") and "up to" in err


def test_the_memory_bound_names_the_largest_batch_that_fits(hostile):
    from costeff.errors import InputError
    from costeff.membound import check_batch_sizes, row_bytes

    per_row = row_bytes(hostile["model"])
    check_batch_sizes(hostile["model"], [1, 8], available=per_row * 4 * 8 * 2)
    with pytest.raises(InputError, match="expected batch sizes up to 8$"):
        check_batch_sizes(hostile["model"], [1, 9], available=per_row * 4 * 8 * 2)
