"""A user's own dataset (`--data.dataset folder --data.root DIR`): `DIR/train/<class>/*` and `DIR/val/<class>/*`,
the layout torchvision's ImageFolder, timm's `--data-dir` and most exported datasets use."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from convmixer_lit.errors import DataError
from convmixer_lit.sources import Source

LAYOUT = "train/<class>/<images> and val/<class>/<images>"


class FolderSource(Source):
    """`root` itself holds `train/` and `val/`; the class names are the folder names, sorted.

    Nothing is known about the images beforehand: no published size (the fast pipeline sizes its cache from the
    crop settings alone) and no statistics (the mean and std are measured on train, `Source.measured_stats`). Its
    caches are also keyed by each file's status-change time (`key_ctime`), so a file replaced by a copy with the
    same size and modification time (`cp -p`, `rsync -a`) is never read stale from a cache.
    """

    key_ctime = True

    def __init__(self, root: str | Path) -> None:
        self.folder = Path(root).expanduser()
        name = self.folder.resolve().name or "root"
        self.cache_name = "folder-" + re.sub(r"[^A-Za-z0-9._-]+", "_", name)  # a file-name-safe stem

    def fetch(self) -> None:
        if not self.folder.is_dir():
            raise DataError(f"--data.root {self.folder} not found: with --data.dataset folder it is the folder that "
                            f"holds {LAYOUT}")

    def missing_split(self, path: Path) -> DataError:
        return DataError(f"{path} is missing: with --data.dataset folder, --data.root ({self.folder}) must hold "
                         f"{LAYOUT}")


def folder_fingerprint(root: str | Path) -> str | None:
    """A short hash of what a folder dataset holds: every file's path under `train/` and `val/` and its size (no
    times: a copy of the same images elsewhere is the same data). A study records it, so images added, removed or
    replaced between its runs are refused rather than mixed in. None where the folder cannot be read (`fit` then
    names the problem)."""
    root = Path(root).expanduser()
    h = hashlib.sha256()
    try:
        for split in ("train", "val"):
            for folder, dirs, files in sorted(os.walk(root / split)):
                dirs.sort()
                for name in sorted(files):
                    path = Path(folder) / name
                    h.update(f"{path.relative_to(root)}\0{path.stat().st_size}\n".encode())
    except OSError:
        return None
    return h.hexdigest()[:16]
