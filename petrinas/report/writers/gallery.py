"""gallery/<trial>/: a copy of each ε-band member's model files, and nothing else.

Each folder is copied from the trial's folder (trials/<trial>/) only when it joins or its
files change, and swapped in whole, so a reader sees a complete model or none."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from petrinas.fileio import replace_durably
from petrinas.report.state import ReportState
from petrinas.report.writers.frontier import FrontierWriter

MODEL_FILES = ("desc.yaml", "weights.pt")  # copied from the trial folder
METRICS = "metrics.json"


class GalleryFolders(FrontierWriter):
    """gallery/ = the band. In full at the start (a resumed run's gallery may be stale)
    and at the end; in between only the members that joined or left, since a trial's
    files never change once written."""

    def __init__(self, stage_dir: Path):
        self.root = Path(stage_dir) / "gallery"
        self.trials = Path(stage_dir) / "trials"
        self._members: set[str] | None = None   # the folders in gallery/ (None: unknown)

    def write(self, state: ReportState, full: bool) -> None:
        band = {t: self.trials / t for t in state.band}
        if full or self._members is None:
            self._members = set(sync_folders(self.root, band, prune=True))
            return
        joined = {t: src for t, src in band.items() if t not in self._members}
        self._members |= set(sync_folders(self.root, joined, prune=False))
        for gone in self._members - band.keys():
            shutil.rmtree(self.root / gone, ignore_errors=True)
            self._members.discard(gone)


def _same_file(a: Path, b: Path) -> bool:
    """Cheap identity: copy2 keeps mtime, so equal size and mtime mean an unchanged copy."""
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return sa.st_size == sb.st_size and sa.st_mtime_ns == sb.st_mtime_ns


def _complete(src: Path) -> bool:
    return all((src / name).is_file() for name in (*MODEL_FILES, METRICS))


def install_folder(root: Path, name: str, src: Path) -> None:
    """Copy the model files of trial folder `src` to `root/name`: built beside its place,
    then swapped in, so a reader sees either the old complete folder or the new one."""
    tmp, old, dest = root / f".{name}.tmp", root / f".{name}.old", root / name
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file in (*MODEL_FILES, METRICS):
        shutil.copy2(src / file, tmp / file)
    if dest.exists():
        os.replace(dest, old)  # a directory cannot be renamed over a non-empty one
    replace_durably(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def sync_folders(root: Path, members: dict[str, Path], *, prune: bool) -> list[str]:
    """Make `root/<name>` a copy of each member's trial folder; returns the names there.

    A folder identical to its trial's files is not touched, so an unchanged set costs a
    few stat calls. A member whose trial folder is incomplete keeps an existing copy and
    is otherwise left out. With `prune`, folders of non-members are removed (and always
    the hidden leftovers of an interrupted install)."""
    root.mkdir(parents=True, exist_ok=True)
    kept = []
    for name, src in members.items():
        dest = root / name
        if _complete(src):
            if not all(_same_file(src / f, dest / f) for f in (*MODEL_FILES, METRICS)):
                install_folder(root, name, src)
            kept.append(name)
        elif dest.is_dir():
            kept.append(name)
    if prune:
        for child in root.iterdir():
            if child.name.startswith(".") or child.name not in kept:
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    return kept
