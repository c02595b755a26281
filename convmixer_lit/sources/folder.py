"""A user's own dataset (`--data.dataset folder --data.root DIR`): `DIR/train/<class>/*` and `DIR/val/<class>/*`,
the layout torchvision's ImageFolder, timm's `--data-dir` and most exported datasets use."""

from __future__ import annotations

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
