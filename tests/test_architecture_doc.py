"""docs/architecture.md is the contract the code cites: it exists, every cited section exists,
and nothing cites the design file that the repository does not hold."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
CITATION = re.compile(r"docs/architecture\.md#([A-Za-z0-9_-]+)")


def _texts():
    files = [ROOT / "README.md", *(ROOT / "src").rglob("*"), *(ROOT / "tests").rglob("*"), *(ROOT / "docs").rglob("*")]
    for path in files:
        if path.is_file() and path.suffix in (".py", ".md", ".toml", ".txt", ".pbtxt", ".yaml", ".yml"):
            yield path, path.read_text(errors="replace")


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors() -> set[str]:
    return {_anchor(m) for m in re.findall(r"^#{1,6} (.+)$", DOC.read_text(), flags=re.M)}


def test_anchor_follows_github():
    assert _anchor("Stages of costeff run") == "stages-of-costeff-run"
    assert _anchor("What runs for real and what stands in") == "what-runs-for-real-and-what-stands-in"


def test_nothing_cites_a_design_file_that_is_not_here():
    design = "DESIGN" + ".md"  # spelled apart so this file does not cite it either
    assert not (ROOT / design).exists()
    citing = [str(p.relative_to(ROOT)) for p, text in _texts() if design in text]
    assert citing == []


def test_every_cited_section_exists():
    known = anchors()
    cited = {(str(p.relative_to(ROOT)), a) for p, text in _texts() for a in CITATION.findall(text)}
    assert cited, "the code cites docs/architecture.md sections"
    assert [c for c in cited if c[1] not in known] == []


def test_the_contract_covers_what_the_code_runs():
    from costeff.cli import COMMAND_MODULES
    from costeff.stages import STAGES

    text = DOC.read_text()
    for section in ("vocabulary", "capabilities-and-data-flow", "stages-of-costeff-run", "records", "flags",
                    "exit-codes", "fidelity-metrics", "what-runs-for-real-and-what-stands-in"):
        assert section in anchors(), section
    stages = re.search(r"^## Stages of costeff run$(.*?)^## ", text, flags=re.M | re.S).group(1)
    assert [stage.name for stage in STAGES] == re.findall(r"^\| ([a-z][a-z-]*) \| ", stages, flags=re.M)[1:]
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^\| {code} \| ", text, flags=re.M), code
    assert all(f"costeff {c}" in text or f"`{c}" in text for c in COMMAND_MODULES)
