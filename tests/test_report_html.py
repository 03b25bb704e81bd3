"""costeff report: one self-contained report.html, loaded in Debian's real headless Chromium."""

import json
import os
import re
import shutil
import subprocess
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from costeff.cli import main
from workspace_support import env_workspace

AS_OF = date(2026, 3, 1)
REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0"]


def _profile(sha, per_s, p99):
    points = [{"batch_size": b, "throughput_per_s": per_s * b / 128, "stable": True,
               "latency_ms": {"p99": p99 * b / 128}, "windows": [{"throughput_per_s": per_s * b / 128}]}
              for b in (1, 8, 32, 128)]
    return {"model_sha256": sha, "provider": "CPUExecutionProvider", "points": points,
            "hardware": {"cpu_model": "Test CPU", "cpu_count": 2, "gpus": []},
            "optimal": {"batch_size": 128, "throughput_per_s": per_s, "latency_p99_ms": p99},
            "cost": {"instance": "aws-c6i.large", "target_rate_per_s": 500.0, "max_utilisation": 0.8,
                     "usd_per_million": 0.000328, "usd_per_day": 2.04, "instances_needed": 1}}


def _write(path: Path, body: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 8, 32, 128], [1, 2, 3, 4])
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture
def artifacts(tmp_path, monkeypatch):
    """An artifacts tree: hand-written profile, quantization and batching reports, a real reaper replay of the
    shipped sample day and a real ramp decision (with its projection) on the SYNTHETIC sample ledger."""
    from costeff.ledger import Ledger, import_sample
    from costeff.ramp import DecideConfig, decide, write
    from costeff.reaper.run import reap_trace
    from costeff.reaper.sample import sample_path

    root = tmp_path / "artifacts"
    monkeypatch.setenv("COSTEFF_ARTIFACTS", str(root))
    layout = env_workspace()
    fp32 = _write(layout.cost / "20260301_000001Z" / "gpu_profile.json", _profile("f" * 64, 24_636.0, 7.09))
    served = _write(layout.cost / "20260301_000002Z" / "gpu_profile.json", _profile("a" * 64, 72_050.0, 1.97))
    _png(served.parent / "throughput_vs_batch.png")
    variants = [{"name": n, "sha256": s, "passed": ok, "speedup": sp, "fidelity": {"action_drift_pct": d},
                 "throughput_per_s": {"128": t}, "throughput_range_per_s": {"128": [t * 0.95, t * 1.05]},
                 "gates": [{"name": "action_drift_pct", "verdict": "PASS" if ok else "FAIL"}]}
                for n, s, ok, sp, d, t in (("fp32", "f" * 64, True, 1.0, 0.0, 25_000.0),
                                          ("int8-mixed", "a" * 64, True, 2.84, 0.14, 71_000.0))]
    variants.append({"name": "ov-bf16", "sha256": None, "built": False, "passed": False, "gates": [],
                     "not_tried": "variant ov-bf16: this CPU has no bf16 instructions"})
    _write(layout.quant / "20260301_000003Z" / "quantization_report.json",
           {"created_at": "2026-03-01T00:00:03Z", "model_sha256": "f" * 64, "variants": variants,
            "config": {"tolerances": {"action_drift_pct": 0.5}},
            "selected": {"name": "int8-mixed", "sha256": "a" * 64, "reason": "fastest variant passing every gate"}})
    batching = _write(layout.batching / "20260301_000004Z" / "batching_report.json", {"chosen": {
        "max_batch_size": 8, "preferred_batch_size": [], "max_queue_delay_us": 100.0, "instances": 1,
        "predicted": {"p99_ms": 0.6}}})
    _write(layout.cost / "verify" / "20260301_000006Z" / "verify_report.json", {
        "server": {"triton": "2.51.0"}, "rate_per_s": 500.0, "load_average": [0.5, 0.4, 0.3],
        "predicted": {"p50_ms": 0.31, "p99_ms": 0.6, "mean_batch_size": 1.2},
        "measured": {"p50_ms": 0.93, "p99_ms": 2.71, "mean_batch_size": 1.1},
        "ratios": {"p50": 3.0, "p99": 4.5, "mean_batch": 0.92}})
    _, reaper_dir = reap_trace(sample_path(), out=layout.run_dir("reaper"), workspace=layout)
    ledger = Ledger(layout.ramp / "20260301_000005Z" / "sample_ledger.sqlite")
    import_sample(ledger, end=AS_OF - timedelta(days=1))
    from costeff.ramp.projection import ProjectionInputs

    decision = decide(DecideConfig(ledger=ledger.path, as_of=AS_OF, projection=ProjectionInputs(
        served, fp32, batching, Path(reaper_dir) / "reaper_report.json")), workspace=layout)
    write(decision, ledger.path.parent)
    repo = tmp_path / "model_repository" / "policy"
    repo.mkdir(parents=True)
    (repo / "config.pbtxt").write_text('name: "policy"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 8\n')
    return root


class _Resources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.resources, self.scripts = [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        for key in ("src", "srcset", "data"):
            if a.get(key):
                self.resources.append(a[key])
        if tag == "link" and a.get("href"):
            self.resources.append(a["href"])


def _report(artifacts, capsys) -> Path:
    capsys.readouterr()
    assert main(["report", str(artifacts), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["missing"] == [] and record["criteria_total"] == 6
    return Path(record["path"])


def test_the_report_is_self_contained_and_every_number_links_to_its_file(artifacts, capsys):
    page = _report(artifacts, capsys)
    assert page.parent == artifacts and re.fullmatch(r"report_\d{8}_\d{6}Z_*\.html", page.name)
    text = page.read_text()
    parsed = _Resources()
    parsed.feed(text)
    assert parsed.scripts == 0
    assert all(r.startswith("data:image/") for r in parsed.resources), parsed.resources  # nothing fetched to view
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    local = [h for h in parsed.links if not h.startswith("#")]
    assert local and all((page.parent / h).is_file() for h in local), "a number links to a missing file"
    assert "quant/20260301_000003Z/quantization_report.json" in text and "PROJECTED, not from a bill" in text
    assert "SYNTHETIC sample ledger" in text and "max_batch_size: 8" in text and "<svg" in text
    assert "not tried" in text and "this CPU has no bf16 instructions" in text
    assert "Served on the real Triton 2.51.0" in text and "2.71 ms" in text
    # money cards say it is money; with no interleaved $/day in the quantization report, the profiles' own
    assert re.search(r'id="k-serving---day-at-target"><a class="n" href="cost/20260301_000002Z/gpu_profile.json"'
                     r'[^>]*>\$2\.04</a>', text)


def test_the_cost_card_and_the_summary_take_one_measurement_the_interleaved_rounds(artifacts, capsys):
    """Where the quantization report priced both models at the target rate (the rounds its speedup comes from),
    the page's cost card shows that figure, as the completion summary does, not the dedicated profile's."""
    from costeff.pack.summary import render_summary
    from costeff.report import build_report

    data = json.loads(next(artifacts.glob("cost/quant/*/quantization_report.json")).read_text())
    for v, usd in zip(data["variants"][:2], (1.37, 0.69), strict=True):
        v["at_target"] = {"instances": 1, "usd_per_day": usd}
    data["variants"][0]["baseline"] = True
    data["cost"] = {"instance": "aws-c7i.large", "target_rate_per_s": 500.0}
    quant = _write(artifacts / "cost" / "quant" / "20260301_000009Z" / "quantization_report.json", data)
    profiles = sorted(artifacts.glob("cost/2026*/gpu_profile.json"))
    folders = {"fp32": profiles[0].parent, "profile": profiles[1].parent, "quant": quant.parent}
    text = Path(build_report(env_workspace(), folders).path).read_text()  # the fixture's workspace is artifacts
    card = re.search(r'id="k-serving---day-at-target"><a class="n" href="([^"]+)"[^>]*>\$([0-9.]+)</a>', text)
    assert card and card.groups() == ("cost/quant/20260301_000009Z/quantization_report.json", "0.69")
    summary = render_summary({"quant/quantization_report.json": quant.read_bytes(),
                              "profile_fp32/gpu_profile.json": profiles[0].read_bytes(),
                              "profile/gpu_profile.json": profiles[1].read_bytes()})
    assert "| serving cost per day $ at 500/s | projected | 1.37 (1 x aws-c7i.large) | 0.69 (1 x aws-c7i.large)" \
        in summary


def test_report_refuses_a_folder_without_reports(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no costeff report" in err
    assert not list((tmp_path / "empty").glob("report*.html"))


def _chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url], capture_output=True,
                          text=True, timeout=120)


def _console(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln]


def _screenshot_dir() -> Path:
    out = Path(os.environ.get("COSTEFF_TEST_ARTIFACTS", REPO / ".test-artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/install-chromium.sh)")
def test_chromium_renders_the_report_without_console_errors(artifacts, capsys, tmp_path):
    page = _report(artifacts, capsys)
    dom = _chromium(page.as_uri(), tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == [], _console(dom.stderr)
    rendered = dom.stdout
    assert re.search(r'id="k-acceptance">\d of 6<', rendered)
    assert 'id="k-decision">HOLD<' in rendered and 'id="k-selected">int8-mixed<' in rendered
    assert re.search(r'id="k-projected-serving"><a class="n"[^>]*>0\.86</a>', rendered)  # $2.04 x (1 - 57.9 %)
    assert "72,050" in rendered and "57.9" in rendered
    shot = _screenshot_dir() / "report_screenshot.png"
    shot.unlink(missing_ok=True)
    done = _chromium(page.as_uri(), tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2400")
    assert done.returncode == 0 and shot.is_file()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/install-chromium.sh)")
def test_the_console_check_catches_a_page_that_errs(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('boom'); missing();</script></body></html>")
    done = _chromium(bad.as_uri(), tmp_path / "profile", "--dump-dom")
    found = _console(done.stderr)
    assert any("boom" in ln for ln in found) and any("ReferenceError" in ln for ln in found)
