"""The `fast` data pipeline: decode every JPEG once into a uint8 cache, then augment whole batches on the device.

Train cache: each image, centre-cropped to at most `MAX_ASPECT`:1 and resized once (Pillow, antialiased) so that
its shorter side is `cache_side`, is stored in one fixed canvas of (cache_side, 2 * cache_side, 3) pixels, height x
width x RGB as decoded (so a crop is a strided view that the CPU resize reads directly); portrait images are stored
transposed so one canvas shape serves both orientations. `plan_crops` draws a RandomResizedCrop
box and a flip per image (torchvision's algorithm, vectorised, on the CPU from torch's global RNG) in the image's
source geometry, before the batch goes to the device; there `apply_crops` cuts and resizes all boxes
(`torchvision.ops.roi_align` in one call on a GPU; torch's SIMD uint8 resize per image on the CPU, where it is
5-10x faster than roi_align's scalar CPU kernel) and flips. Training batches come out channels-last (the layout the
conv nets run in), validation batches as the standard pipeline's.

Val cache: the exact tensors the standard pipeline's validation transform makes, stored at their final size, so
validation is identical on both pipelines.

Caches are `.npy` files (read into memory when they fit comfortably, else memory-mapped) named by
split, format version, parameters and a hash of the source files (relative paths, sizes, mtimes): changing the
data or the parameters makes a new cache; building is serialised across processes by a file lock and published
with `os.replace`, so a reader never sees a half-written cache.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from filelock import FileLock
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from convmixer_lit.errors import DataError

CACHE_VERSION = 2  # 2: train canvases are height x width x RGB (1 was RGB x height x width)
FREE_MARGIN_GB = 1.0  # disk left free after a cache is built: the rest of the machine needs some
MAX_ASPECT = 2  # longer side at most this times the shorter side in the train cache (centre-cropped beyond)
RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect-ratio range, the torchvision default the standard path uses
TRAIN_RESAMPLE = Image.Resampling.BICUBIC  # the one resize into the cache: sharp, so the later crop adds little blur
# geometry columns of the train cache's meta array (one int32 row per image)
LABEL, SRC_H, SRC_W, CACHE_H, CACHE_W, TRANSPOSED = range(6)


# ---- cache sizing ----------------------------------------------------------------------------------------------
def cache_side_for(image_size: int, crop_scale: Sequence[float], source_short: int | None = None) -> int:
    """Shorter side of the cached training images.

    Large enough that even the smallest crop RandomResizedCrop can draw (area `crop_scale[0]` of a square image at
    the most extreme aspect ratio 3/4) still has `image_size` pixels along both sides, so no crop is upsampled
    that the standard path would not upsample too: `ceil(image_size / sqrt(crop_scale[0] * 3/4))`, rounded up to a
    multiple of 8, but never more than the source's own shorter side (`source_short`, when the copy has one).
    """
    side = math.ceil(image_size / math.sqrt(crop_scale[0] * min(RATIO)))
    side = -(-side // 8) * 8
    return min(side, source_short) if source_short else side


def source_key(folder: Path, samples: Sequence[tuple[str, int]], params: dict, ctime: bool = False) -> str:
    """Hash of the sorted relative paths, sizes and mtimes of the source files, their labels and the parameters.

    `ctime` adds each file's status-change time, which any replacement of the file changes, even by a copy that
    keeps its size and modification time (`cp -p`, `rsync -a`): a user's folder is keyed so. The downloaded
    datasets are not (their files are checksummed once and never replaced), so their existing caches keep their
    names.
    """
    h = hashlib.sha256(repr(sorted(params.items())).encode())
    for path, label in sorted(samples):
        st = os.stat(path)
        line = f"{os.path.relpath(path, folder)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}"
        h.update((line + (f"\0{st.st_ctime_ns}" if ctime else "") + "\n").encode())
    return h.hexdigest()[:16]


# ---- decoding (runs in DataLoader workers while building) --------------------------------------------------------
def train_canvas(img: Image.Image, side: int) -> tuple[np.ndarray, np.ndarray]:
    """One image -> (canvas (side, 2*side, 3) uint8, geometry row without the label).

    The geometry holds the source size after the aspect bound (where crop boxes are drawn), the cached size in the
    same orientation, and whether the canvas holds the image transposed (portrait images).
    """
    w, h = img.size
    short, long = min(w, h), max(w, h)
    if long > MAX_ASPECT * short:  # rare very elongated images: keep the centre 2:1 part
        long = MAX_ASPECT * short
        left, top = (w - long) // 2 if w > h else 0, (h - long) // 2 if h > w else 0
        img = img.crop((left, top, left + (long if w > h else w), top + (long if h > w else h)))
        w, h = img.size
    cw, ch = (side, round(h * side / w)) if w <= h else (round(w * side / h), side)
    cw, ch = min(cw, MAX_ASPECT * side), min(ch, MAX_ASPECT * side)
    if (cw, ch) != (w, h):
        img = img.resize((cw, ch), TRAIN_RESAMPLE, reducing_gap=None)
    pixels = np.asarray(img, dtype=np.uint8)  # (ch, cw, 3)
    transposed = ch > cw
    if transposed:
        pixels = pixels.transpose(1, 0, 2)
    canvas = np.zeros((side, MAX_ASPECT * side, 3), dtype=np.uint8)
    valid = pixels.shape[1]
    canvas[:, :valid] = pixels
    if valid < canvas.shape[1]:  # roi_align's bilinear taps read one column past a crop at the right edge
        canvas[:, valid] = pixels[:, -1]
    return canvas, np.array([h, w, ch, cw, transposed], dtype=np.int32)


def val_tensor(img: Image.Image, transform: Callable) -> tuple[np.ndarray, np.ndarray]:
    """One image -> the standard pipeline's validation tensor, (3, s, s) uint8."""
    return transform(img).numpy(), np.zeros(0, dtype=np.int32)


class _Decode(Dataset):
    def __init__(self, samples: Sequence[tuple[str, int]], fn: Callable, loader: Callable) -> None:
        self.samples, self.fn, self.loader = samples, fn, loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.fn(self.loader(self.samples[i][0]))


def collate_batch(batch):
    """An identity `collate_fn`: the decoder yields single items, `CacheDataset.__getitems__` collated batches."""
    return batch


# ---- building and opening --------------------------------------------------------------------------------------
class CachePaths(NamedTuple):
    images: Path
    meta: Path


def cache_paths(cache_dir: Path, name: str, key: str) -> CachePaths:
    stem = f"{name}-v{CACHE_VERSION}-{key}"
    return CachePaths(cache_dir / f"{stem}.images.npy", cache_dir / f"{stem}.meta.npy")


def ensure_cache(name: str, samples: Sequence[tuple[str, int]], folder: Path, cache_dir: Path, params: dict,
                 fn: Callable, shape: tuple[int, ...], loader: Callable, workers: int = 0,
                 log: Callable[[str], None] = print, ctime: bool = False) -> tuple[CachePaths, bool]:
    """Build the cache for `samples` unless a complete one exists; return its paths and whether this call built it.

    `name` starts the file names (e.g. `train-imagenette2-160-side160`); `params` (every setting that changes the
    cached pixels) and the source files go into the hash that ends them. One process builds while others wait on
    the lock and then find it complete (the meta file is published last, so it marks a complete cache).
    `fn(image) -> (array of shape, int32 geometry row)` makes each entry; `loader(path)` opens an image; `ctime`:
    see `source_key`.
    """
    key = source_key(folder, samples, {**params, "shape": shape}, ctime=ctime)
    paths = cache_paths(cache_dir, name, key)
    split = name.split("-")[0]
    if paths.meta.is_file() and paths.images.is_file():
        return paths, False
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(paths.meta).removesuffix(".meta.npy") + ".lock"):
            if paths.meta.is_file() and paths.images.is_file():
                return paths, False
            _build(paths, samples, fn, shape, loader, workers, log, split)
    except OSError as e:  # a read-only data root, a full disk (unreadable images are DataErrors already)
        raise DataError(f"cannot write the fast-pipeline cache in {cache_dir} ({e.strerror or e}); pass "
                        f"--data.cache_dir DIR to put it elsewhere") from None
    return paths, True


def _build(paths: CachePaths, samples, fn, shape, loader, workers: int, log, split: str) -> None:
    from tqdm.auto import tqdm

    for stale in paths.images.parent.glob(f".{paths.images.name.removesuffix('.images.npy')}.*"):
        stale.unlink(missing_ok=True)  # left by a crashed build; we hold the lock, so nobody else is writing
    n = len(samples)
    size_gb = n * math.prod(shape) / 1e9
    free_gb = shutil.disk_usage(paths.images.parent).free / 1e9
    if size_gb > free_gb - FREE_MARGIN_GB:  # a user's large folder would fill the disk mid-build
        raise DataError(f"the fast-pipeline {split} cache of {n:,} images needs {size_gb:.1f} GB in "
                        f"{paths.images.parent}, which has {free_gb:.1f} GB free; pass --data.cache_dir DIR on a "
                        f"larger disk, or --data.pipeline standard (no cache)")
    log(f"building the fast-pipeline {split} cache: {n:,} images -> {paths.images} ({size_gb:.2f} GB); once, "
        f"reused until the data or the cache parameters change")
    start = time.perf_counter()
    tmp_images = paths.images.with_name(f".{paths.images.stem}.{os.getpid()}.tmp.npy")
    tmp_meta = paths.meta.with_name(f".{paths.meta.stem}.{os.getpid()}.tmp.npy")
    try:
        images = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8, shape=(n, *shape))
        meta = np.zeros((n, 6), dtype=np.int32)
        decode = DataLoader(_Decode(samples, fn, loader), batch_size=None, num_workers=workers,
                            collate_fn=collate_batch, prefetch_factor=16 if workers else None)
        with tqdm(total=n, desc=f"caching {split}", unit="img", disable=None, file=sys.stderr) as bar:
            for i, (pixels, geometry) in enumerate(decode):
                images[i] = pixels
                meta[i, LABEL] = samples[i][1]
                meta[i, 1:1 + len(geometry)] = geometry
                bar.update()
        images.flush()
        del images
        np.save(tmp_meta, meta)
        os.replace(tmp_images, paths.images)
        os.replace(tmp_meta, paths.meta)  # last: its presence marks a complete cache
    finally:
        tmp_images.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    log(f"built the {split} cache in {time.perf_counter() - start:.1f} s")


class CanvasBatch(NamedTuple):
    """A training batch as the fast loader yields it: canvases (B, side, 2*side, 3) uint8, labels and each image's
    geometry (int32, (B, 5))."""
    images: torch.Tensor
    labels: torch.Tensor
    geometry: torch.Tensor


class CropBatch(NamedTuple):
    """A training batch with its crops drawn: `boxes` (B, 4) x1, y1, x2, y2 in canvas pixels; `flags` (B, 2):
    transposed, flip."""
    images: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor
    flags: torch.Tensor


def available_memory() -> int | None:
    """Bytes of memory the OS can give without swapping (Linux's MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class CacheDataset(Dataset):
    """Images of one cache by index; `__getitems__` reads a whole batch in one copy.

    Train caches yield `CanvasBatch`es, val caches `(images, labels)` like the standard pipeline. The pixels are
    read into memory on first use when they take at most a quarter of the available memory (one sequential read,
    seconds), else memory-mapped: the OS may drop a mapped file's pages at any time (our CPU machine did, within
    minutes, with most of its memory free), and every page it drops costs a random disk read per image later.
    Under DDP each of the `ranks_on_node` processes on a machine would hold its own copy (1.45 GB at 160 px, ~5.8 GB
    at 320 px, each), so they share the quarter; a cache too large for its share stays mapped, and the ranks then
    read one copy through the OS's page cache. Where the free memory is unknown (no /proc/meminfo: macOS, Windows)
    the cache is mapped. Opened lazily, so pickling the dataset for spawned workers copies no pixels.
    `indices`, where given, is the subset of the cache this dataset holds (a run that holds part of train out).
    """

    def __init__(self, paths: CachePaths, train: bool, ranks_on_node: int = 1,
                 indices: Sequence[int] | None = None) -> None:
        self.paths, self.train, self.ranks_on_node = paths, train, max(1, ranks_on_node)
        self.meta = np.load(paths.meta)
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        self._images: np.ndarray | None = None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            images = np.load(self.paths.images, mmap_mode="r")
            room = available_memory()
            fits = room is not None and images.nbytes <= room // (4 * self.ranks_on_node)
            self._images = np.array(images) if fits else images
        return self._images

    @property
    def in_memory(self) -> bool:
        return not isinstance(self.images, np.memmap)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_images": None}

    def __len__(self) -> int:
        return len(self.meta) if self.indices is None else len(self.indices)

    def __getitems__(self, indices: Sequence[int]):
        idx = np.asarray(indices, dtype=np.int64)
        if self.indices is not None:
            idx = self.indices[idx]
        images = torch.from_numpy(np.ascontiguousarray(self.images[idx]))
        meta = torch.from_numpy(self.meta[idx])
        labels = meta[:, LABEL].long()
        if not self.train:
            return images, labels
        return CanvasBatch(images, labels, meta[:, SRC_H:].contiguous())


# ---- batched augmentation --------------------------------------------------------------------------------------
def uniform(n: int, k: int, generator: torch.Generator | None = None, rank: int = 0, world_size: int = 1
            ) -> torch.Tensor:
    """(n, k) float64 uniforms on the CPU from `generator` (default: torch's global RNG, so `seed_everything` fixes
    them). Under DDP every rank draws all ranks' numbers and keeps its own: ranks stay in step (they consume the
    same amount) but crop their images differently."""
    return torch.rand(world_size, n, k, generator=generator, dtype=torch.float64)[rank]


def sample_crops(height: torch.Tensor, width: torch.Tensor, scale: Sequence[float], ratio: Sequence[float] = RATIO,
                 generator: torch.Generator | None = None, tries: int = 10, rank: int = 0, world_size: int = 1
                 ) -> torch.Tensor:
    """RandomResizedCrop boxes for a batch of image sizes: (B, 4) float64 top, left, height, width in pixels.

    The same distribution as torchvision's `RandomResizedCrop` parameters: up to `tries` draws of an area fraction
    (uniform in `scale`) and an aspect ratio (log-uniform in `ratio`), the first that fits wins and is placed
    uniformly; images where none fits get the centre crop, clamped to the ratio range. All draws are made for every
    image at once (on the CPU, see `uniform`), so the cost does not depend on how many tries each image needs.
    """
    height, width = height.double().cpu(), width.double().cpu()
    n = height.numel()
    u = uniform(n, tries * 2 + 2, generator, rank, world_size)
    area = (height * width)[:, None] * (scale[0] + (scale[1] - scale[0]) * u[:, :tries])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, tries:2 * tries])
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    fits = (w > 0) & (w <= width[:, None]) & (h > 0) & (h <= height[:, None])
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first try that fits (0 if none does)
    ok = fits.any(dim=1)
    h, w = h.gather(1, first)[:, 0], w.gather(1, first)[:, 0]
    top = torch.floor(u[:, -2] * (height - h + 1))
    left = torch.floor(u[:, -1] * (width - w + 1))
    # fallback: the centre crop, as wide as the image allows within the ratio range
    in_ratio = width / height
    fb_w = torch.where(in_ratio > max(ratio), torch.round(height * max(ratio)), width)
    fb_h = torch.where(in_ratio < min(ratio), torch.round(width / min(ratio)), height)
    h, w = torch.where(ok, h, fb_h), torch.where(ok, w, fb_w)
    top = torch.where(ok, top, torch.div(height - fb_h, 2, rounding_mode="floor"))
    left = torch.where(ok, left, torch.div(width - fb_w, 2, rounding_mode="floor"))
    return torch.stack([top, left, h, w], dim=1)


def plan_crops(batch: CanvasBatch, scale: Sequence[float], generator: torch.Generator | None = None, rank: int = 0,
               world_size: int = 1) -> CropBatch:
    """Draw each image's crop box and flip (on the CPU, so no device sync); returns the boxes in canvas pixels."""
    geometry = batch.geometry.cpu().double()
    src_h, src_w, cache_h, cache_w, transposed = geometry.unbind(1)
    top, left, h, w = sample_crops(src_h, src_w, scale, generator=generator, rank=rank,
                                   world_size=world_size).unbind(1)
    sy, sx = cache_h / src_h, cache_w / src_w
    y1, x1, y2, x2 = top * sy, left * sx, (top + h) * sy, (left + w) * sx
    t = transposed.bool()
    boxes = torch.stack([torch.where(t, y1, x1), torch.where(t, x1, y1),
                         torch.where(t, y2, x2), torch.where(t, x2, y2)], dim=1).float()
    flip = uniform(len(t), 1, generator, rank, world_size)[:, 0] < 0.5
    flags = torch.stack([t, flip], dim=1)
    if batch.images.is_pinned():
        boxes, flags = boxes.pin_memory(), flags.pin_memory()
    return CropBatch(batch.images, batch.labels, boxes, flags)


def apply_crops(batch: CropBatch, size: int, method: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Cut every box out of its canvas and resize it to `size` x `size`, on the images' device.

    Methods (`auto`: `resize` on the CPU, `roi_align` elsewhere):
    - `roi_align`: one `torchvision.ops.roi_align` call for the whole batch. It averages ceil(box / size)^2 bilinear
      taps per output pixel (`sampling_ratio=0`), a box filter that stands in for antialiasing when shrinking (the
      cache side bounds it at about 4 x 4 taps). One kernel launch on a GPU, but its CPU kernel is scalar, slower
      per image than decoding the JPEG.
    - `resize`: per image, the box rounded to whole cache pixels and resized by torch's SIMD uint8 antialiased
      bilinear kernel (the one torchvision's tensor RandomResizedCrop uses), which reads the crop straight from the
      height x width x RGB canvas (a strided view: no copy) and is 5-10x faster than `roi_align` on the CPU; the
      loop's Python overhead is small there, but it would mean B x several kernel launches on a GPU.
    Returns uint8 images (B, 3, size, size), channels-last, in the images' original orientation, flipped where
    drawn, and the labels.
    """
    images = batch.images  # (B, side, 2 * side, 3)
    device = images.device
    if method == "auto":
        method = "resize" if device.type == "cpu" else "roi_align"
    if method == "roi_align":
        from torchvision.ops import roi_align

        boxes = batch.boxes.to(device, non_blocking=True)
        index = torch.arange(len(boxes), device=device, dtype=boxes.dtype)[:, None]
        nchw = images.permute(0, 3, 1, 2).contiguous().float()
        out = roi_align(nchw, torch.cat([index, boxes], dim=1), output_size=size, spatial_scale=1.0,
                        sampling_ratio=0, aligned=True)
        out = out.round_().clamp_(0, 255).to(torch.uint8)
        flags = batch.flags.to(device, non_blocking=True)
        transposed, flip = flags[:, 0].view(-1, 1, 1, 1), flags[:, 1].view(-1, 1, 1, 1)
        out = torch.where(transposed, out.transpose(-1, -2), out)
        out = torch.where(flip, out.flip(-1), out).contiguous(memory_format=torch.channels_last)
    elif method == "resize":
        boxes = batch.boxes.cpu().round().long()
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        out = torch.empty(len(boxes), size, size, images.shape[-1], dtype=images.dtype, device=device)  # (B, H, W, 3)
        for k, ((x1, y1, x2, y2), (transposed, flip)) in enumerate(zip(boxes.tolist(), batch.flags.tolist())):
            crop = images[k:k + 1, y1:y2, x1:x2].permute(0, 3, 1, 2)  # a (1, 3, h, w) view of the canvas
            crop = torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear", antialias=True)[0]
            crop = crop.permute(1, 2, 0)  # (size, size, 3)
            crop = crop.transpose(0, 1) if transposed else crop
            out[k] = crop.flip(1) if flip else crop
        out = out.permute(0, 3, 1, 2)  # (B, 3, size, size), channels-last in memory
    else:
        raise ValueError(f"unknown crop method {method!r}; use auto, roi_align or resize")
    return out, batch.labels


def train_cache_fn(side: int) -> Callable:
    return partial(train_canvas, side=side)


def val_cache_fn(transform: Callable) -> Callable:
    return partial(val_tensor, transform=transform)
