"""`--data.pipeline fast`: each split decoded once into a uint8 cache (`fastdata`: its format, building and batched
augmentation), read back a whole batch at a time; the data module draws and applies the crops on the device."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from torchvision.datasets import ImageFolder

from convmixer_lit.fastdata import (
    MAX_ASPECT,
    CacheDataset,
    CachePaths,
    cache_side_for,
    ensure_cache,
    train_cache_fn,
    val_cache_fn,
)
from convmixer_lit.images import load_rgb, val_transform


class FastPipeline:
    """The caches of one source at one image size.

    Args:
        image_size: side of the crops the model sees.
        crop_scale: RandomResizedCrop's area range (sizes the train cache, see `fastdata.cache_side_for`).
        cache_dir: where the caches live (never the data folder).
        cache_name: the source's part of the cache file names (`imagenette2-160`, `folder-<name>`).
        short_side: given the training samples, the images' shorter side, which caps the train cache's (a copy
            never upsamples what it caches); None where unknown.
        workers: decoding processes while building.
        key_ctime: key the caches by each file's status-change time too (`fastdata.source_key`).
        loader: opens an image (names the file and the fix when it cannot).
    """

    def __init__(self, image_size: int, crop_scale: tuple[float, float], cache_dir: Path, cache_name: str,
                 short_side: Callable[[Sequence[tuple[str, int]]], int | None], workers: int, key_ctime: bool = False,
                 loader: Callable = load_rgb) -> None:
        self.image_size, self.crop_scale, self.cache_dir = image_size, tuple(crop_scale), cache_dir
        self.cache_name, self.short_side, self.workers = cache_name, short_side, workers
        self.key_ctime, self.loader = key_ctime, loader
        self._caches: dict[str, CachePaths] = {}

    def cache_side(self, samples: Sequence[tuple[str, int]]) -> int:
        """Shorter side of the cached training images (see `fastdata.cache_side_for`), capped by theirs."""
        return cache_side_for(self.image_size, self.crop_scale, self.short_side(samples))

    def cache(self, name: str, samples: Sequence[tuple[str, int]], source: Path) -> CachePaths:
        """The cache of split `name` (`train`, `val` or `holdout`), built on first use (by one process at a time)
        and rebuilt when the files change. Its file names keep the form they have always had
        (`train-imagenette2-160-side128-v2-<hash>`), so existing caches stay valid."""
        if name not in self._caches:
            s = self.image_size
            if name == "train":
                side = self.cache_side(samples)
                params = {"side": side, "aspect": MAX_ASPECT, "filter": "bicubic"}
                fn, shape, size = train_cache_fn(side), (side, MAX_ASPECT * side, 3), f"side{side}"
            else:
                params, fn, shape, size = {"size": s}, val_cache_fn(val_transform(s)), (3, s, s), f"size{s}"
            self._caches[name], _ = ensure_cache(
                f"{name}-{self.cache_name}-{size}", samples, source, self.cache_dir, params, fn, shape, self.loader,
                workers=self.workers, log=lambda msg: print(msg, file=sys.stderr, flush=True), ctime=self.key_ctime)
        return self._caches[name]

    def _split(self, name: str, scan: ImageFolder, indices: Sequence[int] | None) -> CachePaths:
        samples = scan.samples if indices is None else [scan.samples[i] for i in indices]
        return self.cache(name, samples, Path(scan.root))

    def prepare(self, name: str, scan: ImageFolder, indices: Sequence[int] | None = None) -> None:
        self._split(name, scan, indices)

    def train_set(self, scan: ImageFolder, kept: Sequence[int] | None = None, ranks_on_node: int = 1
                  ) -> CacheDataset:
        """Every training image is cached; a run that holds part of train out indexes the kept ones in it."""
        return CacheDataset(self._split("train", scan, None), True, ranks_on_node, indices=kept)

    def eval_set(self, name: str, scan: ImageFolder, indices: Sequence[int] | None = None,
                 ranks_on_node: int = 1) -> CacheDataset:
        return CacheDataset(self._split(name, scan, indices), False, ranks_on_node)
