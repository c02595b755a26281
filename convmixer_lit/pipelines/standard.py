"""`--data.pipeline standard`: DataLoader workers decode and augment each image (torchvision transforms) and hand
uint8 crops to the device; 4x less data through worker queues and host-to-device copies than float tensors."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from torch.utils.data import Dataset, Subset
from torchvision.datasets import ImageFolder

from convmixer_lit.images import train_transform, val_transform


def with_transform(scan: ImageFolder, transform: Callable | None) -> ImageFolder:
    """The scan with another transform: a shallow copy, so a folder is listed once however many views it gets."""
    view = copy.copy(scan)
    view.transform = transform
    return view


class StandardPipeline:
    """RandomResizedCrop + flip for training, resize + centre crop for evaluation, in the loader's workers."""

    def __init__(self, image_size: int, crop_scale: tuple[float, float]) -> None:
        self.image_size, self.crop_scale = image_size, tuple(crop_scale)

    def prepare(self, name: str, scan: ImageFolder, indices: Sequence[int] | None = None) -> None:
        """Nothing to make beforehand: every image is decoded when it is read."""

    def train_set(self, scan: ImageFolder, kept: Sequence[int] | None = None, ranks_on_node: int = 1) -> Dataset:
        train = with_transform(scan, train_transform(self.image_size, self.crop_scale))
        return train if kept is None else Subset(train, list(kept))

    def eval_set(self, name: str, scan: ImageFolder, indices: Sequence[int] | None = None,
                 ranks_on_node: int = 1) -> Dataset:
        images = with_transform(scan, val_transform(self.image_size))
        return images if indices is None else Subset(images, list(indices))
