"""Where a dataset's images come from (`--data.dataset`): Imagenette and Imagewoof (`imagenette.py`: fast.ai's
checksummed archives) or a user's own folder (`folder.py`).

A source is a folder holding `train/<class>/` and `val/<class>/`; it knows how to make that folder exist (download,
or say what is missing), which class folders it has and what to call them, and what the fast pipeline and the
normalisation need to know about its images. The data module asks it for each split's scan (an ImageFolder) and
hands the scans to either pipeline; no pipeline asks where the images came from.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

from convmixer_lit.errors import DataError
from convmixer_lit.fastdata import source_key
from convmixer_lit.images import channel_stats, find_unreadable, load_rgb, val_transform

STATS_IMAGES = 2000  # training images whose pixels give a measured mean and std (per-channel: plenty)
Stats = tuple[tuple[float, float, float], tuple[float, float, float]]


def visible_folders(directory: Path) -> list[str]:
    """Sub-folder names, sorted (ImageFolder's label order), hidden ones (`.ipynb_checkpoints`, `.git`) left out."""
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))


def is_image_file(path: str) -> bool:
    """ImageFolder's extensions (JPEG, PNG, WebP, BMP, TIFF, ...; any case), hidden files left out: macOS leaves
    `._name.jpg` resource forks beside copied images, which carry an image extension but no image. A link whose
    target is gone is named (it would fail later, deep in a hash or a decode)."""
    if not has_file_allowed_extension(path, IMG_EXTENSIONS) or os.path.basename(path).startswith("."):
        return False
    if not os.path.exists(path):
        raise DataError(f"{path} is a link to a file that does not exist; delete the link or restore its target")
    return True


def read_note(path: Path) -> dict:
    """A small JSON result kept in the cache folder (measured statistics, unreadable files); empty where none."""
    try:
        note = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def write_note(path: Path, note: dict) -> None:
    """Keep a small JSON result in the cache folder, atomically (a reader never sees half of it); where the folder
    cannot be written the result is simply made again next time (the same numbers: it is deterministic)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(note) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass


class ClassFolders(ImageFolder):
    """torchvision's ImageFolder whose classes are the visible sub-folders (see `visible_folders`), and whose images
    leave out anything inside a hidden or system folder within a class (`cat/.ipynb_checkpoints/`, Synology's
    `cat/@eaDir/` thumbnails), which ImageFolder's recursive walk would take as images."""

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        classes = visible_folders(Path(directory))
        return classes, {c: i for i, c in enumerate(classes)}

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
        samples = ImageFolder.make_dataset(directory, class_to_idx, extensions, is_valid_file, allow_empty)
        keep = []
        for path, label in samples:
            parts = Path(os.path.relpath(path, directory)).parts[1:-1]  # the folders between class and file
            if not any(p.startswith(".") or p in SYSTEM_FOLDERS for p in parts):
                keep.append((path, label))
        return keep


SYSTEM_FOLDERS = {"@eaDir", "__MACOSX"}  # NAS thumbnails, macOS archive metadata: never a user's images


class Source:
    """Base class: a folder of `train/<class>/` and `val/<class>/` that already exists.

    Subclasses set `folder` (holding train/ and val/), `cache_name` (starts the fast pipeline's cache file names),
    `short_side` (the images' shorter side where the source publishes one, else None), `stats` (fixed normalisation
    statistics, else None: measured on train) and `key_ctime` (whether caches are also keyed by each file's
    status-change time; see `fastdata.source_key`).
    """

    folder: Path
    cache_name: str
    short_side: int | None = None
    stats: Stats | None = None
    key_ctime: bool = False

    def fetch(self) -> None:
        """Make the folder exist (download it), or raise a DataError saying what to do."""

    def train_short_side(self, samples: Sequence[tuple[str, int]], cache_dir: Path) -> int | None:
        """The training images' shorter side, which caps the fast pipeline's train cache (caching an image larger
        than it is only costs memory): the published one by default (None: unknown, no cap)."""
        return self.short_side

    def missing_split(self, path: Path) -> DataError:
        """The error for a missing `train/` or `val/`."""
        return DataError(f"{path} is missing: {self.folder} must hold train/ and val/, each with one folder of "
                         f"images per class")

    def class_names(self, classes: Sequence[str]) -> list[str]:
        """Display names of the class folders (the folder names themselves by default)."""
        return list(classes)

    def classes(self, splits: Sequence[str]) -> list[str]:
        """The class folders of `train/`, checked against those of every other split in `splits`."""
        self.fetch()
        found = {}
        for split in splits:
            d = self.folder / split
            if not d.is_dir():
                raise self.missing_split(d)
            try:
                found[split] = visible_folders(d)
            except OSError as e:
                raise DataError(f"cannot list {d} ({e.strerror or e}); make it readable") from None
        train = found["train"]
        train_dir = self.folder / "train"
        if not train:
            raise DataError(f"{train_dir} has no class folders; expected train/<class>/<image files>, one folder "
                            f"of images per class")
        if "val" in found and found["val"] != train:
            val = found["val"]
            only = [f"only in {s}/: {', '.join(sorted(set(a) - set(b))[:5])}"
                    for s, a, b in (("train", train, val), ("val", val, train)) if set(a) - set(b)]
            raise DataError(f"train/ and val/ in {self.folder} have different class folders ({len(train)} vs "
                            f"{len(val)}; {'; '.join(only)}); give every class a folder in both")
        if len(train) < 2:
            raise DataError(f"{train_dir} holds one class folder ({train[0]}); a classifier needs at least two: "
                            f"add a folder of images for each class")
        return train

    def scan(self, split: str, loader: Callable) -> ImageFolder:
        """The split's images and labels as an ImageFolder (no transform), every class folder holding an image."""
        d = self.folder / split
        try:
            ds = ClassFolders(str(d), loader=loader, is_valid_file=is_image_file, allow_empty=True)
        except OSError as e:
            raise DataError(f"{d}: {e}") from None
        counts = Counter(ds.targets)
        empty = [c for i, c in enumerate(ds.classes) if not counts[i]]
        if empty:
            more = f" (and {len(empty) - 1} more class folders)" if len(empty) > 1 else ""
            raise DataError(f"class folder {d / empty[0]} has no images{more} (.jpg, .jpeg, .png, .webp, .bmp, "
                            f".tif, ...); add its images, or delete the class from train/ and val/")
        return ds

    def measured_stats(self, samples: Sequence[tuple[str, int]], image_size: int, cache_dir: Path,
                       workers: int, loader: Callable = load_rgb) -> Stats:
        """Per-channel mean and std of the training pixels, measured once and kept in a small file.

        Measured on up to `STATS_IMAGES` training images spread evenly over the sorted list (every class in its
        share), each as the validation transform shows it at `image_size` (the pixels the model sees); on all of
        `train/`, held-out part included, so a study's tuning trials and its finals normalise alike. The result
        goes to `cache_dir/stats-...json`, named by the same hash of the files as the fast pipeline's caches, so
        a changed folder is measured again; where `cache_dir` cannot be written it is measured each time.
        """
        n = len(samples)
        picked = [samples[i * n // STATS_IMAGES] for i in range(STATS_IMAGES)] if n > STATS_IMAGES else samples
        key = source_key(self.folder / "train", picked, {"size": image_size, "images": len(picked)},
                         ctime=self.key_ctime)
        path = cache_dir / f"stats-{self.cache_name}-size{image_size}-{key}.json"
        saved = read_note(path)
        if "mean" in saved and "std" in saved:
            return tuple(saved["mean"]), tuple(saved["std"])  # type: ignore[return-value]
        mean, std = channel_stats([p for p, _ in picked], val_transform(image_size), loader, workers)
        print(f"measured the per-channel mean {list(mean)} and std {list(std)} of {len(picked):,} of the "
              f"{n:,} training images in {self.folder / 'train'} (kept in {path}; recorded in every checkpoint)",
              file=sys.stderr, flush=True)
        write_note(path, {"mean": mean, "std": std, "images": len(picked), "train_images": n})
        return mean, std

    def unreadable(self, samples: Sequence[tuple[str, int]], source: Path, cache_dir: Path, workers: int
                   ) -> list[str]:
        """The images of one split that cannot be decoded (`--data.skip_corrupt`), found by decoding every one once;
        the answer is kept in `cache_dir` under a hash of the files, so it is found again only when they change."""
        key = source_key(source, samples, {"check": "decode"}, ctime=self.key_ctime)
        path = cache_dir / f"unreadable-{self.cache_name}-{source.name}-{key}.json"
        saved = read_note(path)  # paths relative to the split's folder: the same answer after the data moved
        if "unreadable" in saved:
            return [os.path.join(source, p) for p in saved["unreadable"]]
        print(f"--data.skip_corrupt: decoding the {len(samples):,} images of {source} once to find unreadable "
              f"ones", file=sys.stderr, flush=True)
        bad = find_unreadable([p for p, _ in samples], load_rgb, workers)
        write_note(path, {"unreadable": [os.path.relpath(p, source) for p in bad], "images": len(samples)})
        return bad
