"""How an image file becomes pixels, and pixels become the model's input: shared by the sources, both pipelines and
`predict`, so that a picture gets the same tensor wherever it is read.

- `load_rgb`: any file Pillow reads (JPEG, PNG, WebP, ...; grayscale, palette, RGBA, CMYK, 16-bit) as 8-bit RGB.
- `train_transform` / `val_transform`: the standard pipeline's crops (the fast pipeline reproduces them).
- `normalize`: uint8 batches to float on the training device, with a dataset's per-channel mean and std; ImageNet's
  statistics for Imagenette and Imagewoof, measured ones (`channel_stats`) for a user's folder.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from convmixer_lit.errors import ConfigError, DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
READ_FIX = "delete or replace that file and rerun"  # what a reader of one image can do about a bad one


def load_rgb(path: str, fix: str = READ_FIX) -> Image.Image:
    """ImageFolder's loader (`convert("RGB")`: alpha is dropped, as torchvision and timm do), but any mode becomes
    8-bit RGB and an unreadable file is named in the error, with `fix` (what to do about it) after it.

    16-bit grayscale (PNG scans, medical images) is scaled to 8 bits (`convert` would clip it to white), and palette
    images with a transparent colour go through RGBA (Pillow warns on every such file otherwise).
    """
    try:
        with Image.open(path) as img:
            if img.mode in ("I", "I;16", "I;16B", "I;16L"):  # 16-bit grayscale: 0..65535 -> 0..255
                pixels = np.asarray(img, dtype=np.float64)
                img = Image.fromarray(np.clip(np.rint(pixels / 257), 0, 255).astype(np.uint8), mode="L")
            elif img.mode == "F":  # float grayscale: taken as 0..255, as Pillow's own conversion does
                img = Image.fromarray(np.clip(np.rint(np.asarray(img)), 0, 255).astype(np.uint8), mode="L")
            elif img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path} ({e}); {fix}") from None


def train_transform(image_size: int, crop_scale: tuple[float, float]) -> v2.Compose:
    return v2.Compose([v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True),
                       v2.RandomHorizontalFlip(), v2.PILToTensor()])


def val_transform(image_size: int) -> v2.Compose:
    """Deterministic: resize the shorter side to `image_size`, then take the centre square."""
    return v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()])


def normalize(images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> torch.Tensor:
    """uint8 (B, 3, H, W) in [0, 255] -> float32 normalised with per-channel `mean` and `std` (in [0, 1] units, as
    torchvision's Normalize takes them; ImageNet's by default), on the images' device, in the images' memory format.

    Computed as x * (1 / std) + (-mean / std) in place over rows of the layout (a (1, 3, 1, 1) broadcast is several
    times slower on a CPU, where this runs once per batch on the critical path); equal to (x - mean) / std within
    fp32 rounding.
    """
    x = images.float()  # keeps the memory format
    b, c, h, w = x.shape
    scale, shift = _normalization_constants(x.device, tuple(map(float, mean)), tuple(map(float, std)))
    if x.is_contiguous():  # NCHW: one row per image and channel
        x.view(b, c, h * w).mul_(scale.view(1, c, 1)).add_(shift.view(1, c, 1))
    elif x.is_contiguous(memory_format=torch.channels_last):  # NHWC: one row per image row, RGB interleaved
        x.permute(0, 2, 3, 1).view(b * h, w * c).mul_(scale.repeat(w)).add_(shift.repeat(w))
    else:
        x.mul_(scale.view(1, c, 1, 1)).add_(shift.view(1, c, 1, 1))
    return x


@functools.cache
def _normalization_constants(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 / std, -mean / std) per channel on 0-255 pixels, made once per device and statistics: a host-to-GPU copy
    every batch would stall the training step."""
    mean_t = torch.tensor(mean, dtype=torch.float64) * 255
    std_t = torch.tensor(std, dtype=torch.float64) * 255
    return (1 / std_t).float().to(device), (-mean_t / std_t).float().to(device)


# ---- a dataset's own statistics ----------------------------------------------------------------------------------
class _PixelSums(Dataset):
    """Per image: the per-channel sums of its pixels and of their squares (float64), and its pixel count."""

    def __init__(self, paths: Sequence[str], transform: Callable, loader: Callable) -> None:
        self.paths, self.transform, self.loader = paths, transform, loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        x = self.transform(self.loader(self.paths[i])).double().flatten(1)  # (3, pixels)
        return x.sum(1), (x * x).sum(1), x.shape[1]


def _one_item(item):
    """The identity, as a module-level function: DataLoader workers started by spawn (macOS, Windows) pickle it."""
    return item


def channel_stats(paths: Sequence[str], transform: Callable, loader: Callable = load_rgb, workers: int = 0
                  ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel (mean, std) in [0, 1] units of the pixels `transform` makes of the images at `paths`, rounded to
    4 decimals (a 255th of the range is 0.0039: finer digits change no input). Decoded in `workers` processes."""
    sums = torch.zeros(3, dtype=torch.float64)
    squares = torch.zeros(3, dtype=torch.float64)
    count = 0
    loader = DataLoader(_PixelSums(paths, transform, loader), batch_size=None, num_workers=workers,
                        collate_fn=_one_item)
    for s, q, n in loader:
        sums += s
        squares += q
        count += n
    mean = sums / count
    std = (squares / count - mean * mean).clamp(min=0).sqrt()
    return (tuple(round(float(m) / 255, 4) for m in mean),  # type: ignore[return-value]
            tuple(round(max(float(s) / 255, 1e-4), 4) for s in std))


def check_stats(mean: Sequence[float] | None, std: Sequence[float] | None) -> None:
    """Refuse statistics that cannot normalise: both or neither given, three finite values each, std positive."""
    if (mean is None) != (std is None):
        raise ConfigError("give both --data.mean and --data.std (three numbers each, in [0, 1] units as "
                          "torchvision's Normalize takes them), or neither to use the dataset's own")
    if mean is None:
        return
    if len(mean) != 3 or len(std) != 3 or not all(math.isfinite(v) for v in (*mean, *std)):
        raise ConfigError(f"--data.mean and --data.std take three finite numbers each (R, G, B), got "
                          f"{list(mean)} and {list(std)}")
    if min(std) <= 0:
        raise ConfigError(f"--data.std must be positive for every channel, got {list(std)}")
    if not all(0 <= m <= 1 for m in mean) or max(std) > 1:
        raise ConfigError(f"--data.mean {list(mean)} and --data.std {list(std)} are in [0, 1] units (pixels / 255, "
                          f"as torchvision's Normalize takes them): divide 0-255 statistics by 255")


class _Readable(Dataset):
    """Per image: None when it decodes, else its path."""

    def __init__(self, paths: Sequence[str], loader: Callable) -> None:
        self.paths, self.loader = paths, loader

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> str | None:
        try:
            self.loader(self.paths[i])
        except DataError:
            return self.paths[i]
        return None


def find_unreadable(paths: Sequence[str], loader: Callable = load_rgb, workers: int = 0) -> list[str]:
    """The paths whose images cannot be decoded, in order; each image is decoded fully, in `workers` processes."""
    found = DataLoader(_Readable(paths, loader), batch_size=None, num_workers=workers, collate_fn=_one_item)
    return [p for p in found if p is not None]
