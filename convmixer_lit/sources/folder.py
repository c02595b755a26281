"""A user's own dataset (`--data.dataset folder --data.root DIR`): `DIR/train/<class>/*` and `DIR/val/<class>/*`,
the layout torchvision's ImageFolder, timm's `--data-dir` and most exported datasets use."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from convmixer_lit.errors import DataError
from convmixer_lit.fastdata import source_key
from convmixer_lit.sources import Source, read_note, write_note

LAYOUT = "train/<class>/<images> and val/<class>/<images>"


class FolderSource(Source):
    """`root` itself holds `train/` and `val/`; the class names are the folder names, sorted.

    Nothing is known about the images beforehand: their size is read from the files' headers (it caps the fast
    pipeline's train cache, `train_short_side`) and their statistics are measured on train (`Source.measured_stats`).
    Its
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

    def train_short_side(self, samples: Sequence[tuple[str, int]], cache_dir: Path) -> int | None:
        """The largest shorter side among the training images, read from each file's header once and kept in
        `cache_dir` under a hash of the files: a folder of small images (32 px icons, 64 px crops) is cached at its
        own size, not upsampled to the side the crop settings call for, so its cache holds no more pixels than the
        images do. Unreadable files are left out here (the data module names or skips them)."""
        key = source_key(self.folder / "train", samples, {"measure": "largest short side"}, ctime=self.key_ctime)
        path = cache_dir / f"sizes-{self.cache_name}-{key}.json"
        saved = read_note(path).get("largest_short_side")
        if isinstance(saved, int):
            return saved
        largest = None
        for file, _ in samples:
            try:
                with Image.open(file) as img:  # the header only: no pixels are decoded
                    largest = max(largest or 0, min(img.size))
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                continue
        write_note(path, {"largest_short_side": largest, "images": len(samples)})
        return largest

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
