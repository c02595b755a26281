"""Imagenette and Imagewoof (fast.ai), any of the three published sizes: downloaded, checked against the published
md5 and extracted into `root/<dataset>2-<size>/` on first use."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock
from torchvision.datasets.utils import check_integrity, download_url, extract_archive

from convmixer_lit.errors import DataError
from convmixer_lit.images import IMAGENET_MEAN, IMAGENET_STD
from convmixer_lit.sources import Source

_BASE_URL = "https://s3.amazonaws.com/fast-ai-imageclas/"
# (dataset, size) -> (archive name, md5), as published by fast.ai (Imagenette's match torchvision's).
ARCHIVES = {
    ("imagenette", "160px"): ("imagenette2-160.tgz", "e793b78cc4c9e9a4ccc0c1155377a412"),
    ("imagenette", "320px"): ("imagenette2-320.tgz", "3df6f0d01a2c9592104656642f5e78a3"),
    ("imagenette", "full"): ("imagenette2.tgz", "fe2fc210e6bb7c5664d602c3cd71e612"),
    ("imagewoof", "160px"): ("imagewoof2-160.tgz", "fcd23cc7dfce8837c95a8f9d63a128b7"),
    ("imagewoof", "320px"): ("imagewoof2-320.tgz", "af65be7963816efa949fa3c3b4947740"),
    ("imagewoof", "full"): ("imagewoof2.tgz", "5eaf5bbf4bf16a77c616dc6e8dd5f8e9"),
}
SOURCE_SHORT_SIDE = {"160px": 160, "320px": 320, "full": None}  # the published copies' shorter side

WNID_NAMES = {  # human-readable names; any other class folder is shown by its folder name
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn", "n03417042": "garbage truck",
    "n03425413": "gas pump", "n03445777": "golf ball", "n03888257": "parachute",
    "n02086240": "Shih-Tzu", "n02087394": "Rhodesian ridgeback", "n02088364": "beagle",
    "n02089973": "English foxhound", "n02093754": "Border terrier", "n02096294": "Australian terrier",
    "n02099601": "golden retriever", "n02105641": "Old English sheepdog", "n02111889": "Samoyed",
    "n02115641": "dingo",
}


class ImagenetteSource(Source):
    """`root/imagenette2-160/` etc.: `root` holds the extracted folder (or will, after the download).

    Normalised with ImageNet's statistics (the kit's results were made with them), and its caches keep the names
    they always had, so existing fast-pipeline caches stay valid.
    """

    stats = (IMAGENET_MEAN, IMAGENET_STD)

    def __init__(self, root: str | Path, dataset: str, size: str, url: str | None, md5: str | None,
                 download: bool) -> None:
        archive, published_md5 = ARCHIVES[(dataset, size)]
        self.url = url or _BASE_URL + archive
        self.md5 = md5 or (published_md5 if url is None else None)
        self.download = download
        self.folder = Path(root).expanduser() / archive.removesuffix(".tgz")
        self.cache_name = self.folder.name
        self.short_side = SOURCE_SHORT_SIDE[size]

    def missing_split(self, path: Path) -> DataError:
        return DataError(f"{path} is missing: {self.folder} must hold train/ and val/, each with one folder of "
                         f"images per class; delete it and rerun to download again")

    def class_names(self, classes: Sequence[str]) -> list[str]:
        return [WNID_NAMES.get(c, c) for c in classes]

    def fetch(self) -> None:
        """Download and extract once (one process at a time; extraction is atomic, so no half-made folder)."""
        if self.folder.is_dir():
            return
        if not self.download:
            raise DataError(f"dataset folder {self.folder} not found; put the extracted "
                            f"{self.folder.name}/ under --data.root, or pass --data.download true")
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder) + ".lock"):
            if not self.folder.is_dir():
                self._download()

    def _download(self) -> None:
        archive = self.folder.parent / Path(self.url).name
        if not check_integrity(str(archive), self.md5):  # also False when the file is absent
            try:
                download_url(self.url, str(archive.parent), filename=archive.name)
            except (urllib.error.URLError, OSError, RuntimeError) as e:
                raise DataError(f"could not download {self.url} ({e}); download it yourself and put the archive "
                                f"at {archive}, or its extracted folder at {self.folder}") from None
            if not check_integrity(str(archive), self.md5):
                archive.unlink(missing_ok=True)
                raise DataError(f"downloaded {archive.name} fails its md5 check (expected {self.md5}); "
                                f"it was deleted: rerun to download again")
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=self.folder.parent))
        try:
            extract_archive(str(archive), str(tmp))
            extracted = tmp / self.folder.name
            if not extracted.is_dir():
                raise DataError(f"{archive} does not contain a {self.folder.name}/ folder")
            os.replace(extracted, self.folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
