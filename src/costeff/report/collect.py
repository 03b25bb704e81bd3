"""Read the reports one HTML page is made of, from the folders of one run (or one chain of records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from costeff.pack.measured import PACKED, Reports


@dataclass
class Sources:
    """Each stage's typed record and the file it came from; ``folders`` hold the plots beside them."""

    root: Path
    reports: Reports = field(default_factory=Reports)
    files: dict[str, Path] = field(default_factory=dict)  # a Reports field -> the record's file
    repository: Path | None = None

    def folder(self, key: str) -> Path | None:
        return self.files[key].parent if key in self.files else None

    def beside(self, key: str, name: str) -> Path | None:
        """The file ``name`` next to stage ``key``'s report (a plot); None without that report."""
        folder = self.folder(key)
        return None if folder is None else folder / name


def collect(root: Path, folders: dict[str, Path], repository: Path, with_repository: bool = True) -> Sources:
    """``folders`` (a Reports field -> folder): the run's own, or one chain's (``costeff.pack.chain.select``);
    ``with_repository`` False when the Triton repository was built from another chain. A folder without its
    record means that stage wrote none; a record that is there but corrupt is an InputError naming it."""
    files = {k: Path(v) / PACKED[k][0].filename for k, v in folders.items() if k in PACKED}
    files = {k: path for k, path in files.items() if path.is_file()}
    reports = Reports.read(files)
    repo = repository if with_repository else None
    return Sources(root, reports, files, repo)
