"""Imagenette / Imagewoof as a LightningDataModule.

Two pipelines (`--data.pipeline`; the default `auto` picks `fast` on the CPU and CUDA GPUs, where it is faster):

- `standard`: DataLoader workers decode JPEGs and crop them to uint8 tensors; normalisation to float happens batched
  on the training device (`on_after_batch_transfer`), which is 4x less data through worker queues and host-to-device
  copies.
- `fast`: every image is decoded once into a uint8 cache (see `fastdata`); the loader reads whole batches from it
  and the random crops and flips are made batched on the training device. Validation tensors are identical.
"""

from __future__ import annotations

import functools
import os
import shutil
import sys
import tempfile
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from filelock import FileLock
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from PIL import Image
from torch.utils.data import DataLoader, Subset
from torchvision.datasets import ImageFolder
from torchvision.datasets.utils import check_integrity, download_url, extract_archive
from torchvision.transforms import v2

from convmixer_lit.errors import ConfigError, DataError
from convmixer_lit.fastdata import (
    MAX_ASPECT,
    CacheDataset,
    CachePaths,
    CanvasBatch,
    CropBatch,
    apply_crops,
    cache_side_for,
    collate_batch,
    ensure_cache,
    plan_crops,
    train_cache_fn,
    val_cache_fn,
)
from convmixer_lit.hardware import usable_cores
from convmixer_lit.holdout import holdout_split, split_digest
from convmixer_lit.paths import default_cache_dir

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
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


class EpochShuffle(torch.utils.data.Sampler[int]):
    """A fresh permutation each epoch drawn from (seed, epoch) alone, not from torch's global RNG.

    So every model trained with one seed sees the same images in the same order (the global RNG is also drawn by
    weight initialisation, which differs between architectures: paired comparisons need this), and a run resumed
    at an epoch boundary continues with exactly the order the uninterrupted run would have had. Lightning calls
    `set_epoch` at the start of every training epoch.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch, 0)).tolist())

    def __len__(self) -> int:
        return self.n


def epoch_generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    """A generator seeded by (seed, epoch, stream): independent streams (order, crops) per epoch of a run."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 8 + stream)


WNID_NAMES = {  # human-readable names; any other class folder is shown by its folder name
    "n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
    "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn", "n03417042": "garbage truck",
    "n03425413": "gas pump", "n03445777": "golf ball", "n03888257": "parachute",
    "n02086240": "Shih-Tzu", "n02087394": "Rhodesian ridgeback", "n02088364": "beagle",
    "n02089973": "English foxhound", "n02093754": "Border terrier", "n02096294": "Australian terrier",
    "n02099601": "golden retriever", "n02105641": "Old English sheepdog", "n02111889": "Samoyed",
    "n02115641": "dingo",
}


def load_rgb(path: str) -> Image.Image:
    """ImageFolder's loader, but grayscale/CMYK become RGB and an unreadable file is named in the error."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path} ({e}); delete or replace that file and rerun") from None


def train_transform(image_size: int, crop_scale: tuple[float, float]) -> v2.Compose:
    return v2.Compose([v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True),
                       v2.RandomHorizontalFlip(), v2.PILToTensor()])


def val_transform(image_size: int) -> v2.Compose:
    """Deterministic: resize the shorter side to `image_size`, then take the centre square."""
    return v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) in [0, 255] -> float32 normalised with ImageNet statistics, on the images' device, in the
    images' memory format.

    Computed as x * (1 / std) + (-mean / std) in place over rows of the layout (a (1, 3, 1, 1) broadcast is several
    times slower on a CPU, where this runs once per batch on the critical path); equal to (x - mean) / std within
    fp32 rounding.
    """
    x = images.float()  # keeps the memory format
    b, c, h, w = x.shape
    scale, shift = _normalization_constants(x.device)
    if x.is_contiguous():  # NCHW: one row per image and channel
        x.view(b, c, h * w).mul_(scale.view(1, c, 1)).add_(shift.view(1, c, 1))
    elif x.is_contiguous(memory_format=torch.channels_last):  # NHWC: one row per image row, RGB interleaved
        x.permute(0, 2, 3, 1).view(b * h, w * c).mul_(scale.repeat(w)).add_(shift.repeat(w))
    else:
        x.mul_(scale.view(1, c, 1, 1)).add_(shift.view(1, c, 1, 1))
    return x


@functools.cache
def _normalization_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 / std, -mean / std) per channel on 0-255 pixels, made once per device: a host-to-GPU copy every batch
    would stall the training step."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64) * 255
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64) * 255
    return (1 / std).float().to(device), (-mean / std).float().to(device)


class ImagenetteDataModule(L.LightningDataModule):
    """Imagenette or Imagewoof (fast.ai), any of the three published sizes, from `root/<dataset>2-<size>/`.

    Args:
        root: folder that holds (or will hold) the extracted `imagenette2-160/` etc.
        dataset: `imagenette` (10 easy classes) or `imagewoof` (10 dog breeds, much harder).
        size: which published copy: shortest side `160px`, `320px`, or `full` resolution.
        image_size: side of the square training/validation crops fed to the model.
        batch_size: images per step (per device under DDP).
        num_workers: DataLoader worker processes; default: one per available core, at most 8. The `fast`
            pipeline defaults to 0 (its batches are one copy out of a memory map, cheap in the main process) and
            builds its cache with one worker per core; a number given here is used for both.
        download: fetch and verify the archive when the folder is absent.
        crop_scale: RandomResizedCrop's area range for training crops.
        url: archive address, to use a mirror; default: fast.ai's.
        md5: checksum of the archive at `url`; default: the published one (checked only for the default url
            unless given).
        pipeline: `standard` decodes and augments every image in DataLoader workers; `fast` decodes each image
            once into a uint8 cache and augments whole batches on the training device (same crop and flip
            distribution, identical validation images); `auto` (default): `fast` on the CPU, where `fit` measured
            faster with it (equal for ViT; docs/benchmarks.md: it leaves both cores to the model), and on CUDA GPUs,
            which JPEG decoding at ~1,000 images/s per core cannot feed; `standard` on other accelerators, where
            the batched crops are untested.
        cache_dir: where the `fast` pipeline keeps its cache; default: the user's cache folder,
            `$XDG_CACHE_HOME/convmixer_lit` (`~/.cache/convmixer_lit`), so a shared or read-only data root is never
            written to. Cache files are named by a hash of the source files and settings, so one folder serves
            any number of data roots.
        holdout_fraction: train on `train/` minus this stratified fraction of it and validate on that held-out
            part, never reading `val/` (what a study's tuning trials do, so val stays unseen until the finals);
            0 (default): train on all of `train/`, validate on `val/`.
        holdout_seed: which images are held out (convmixer_lit/holdout.py), independent of the run's seed, so every
            trial and model holds out the same ones.
    """

    def __init__(self, root: str = "data", dataset: Literal["imagenette", "imagewoof"] = "imagenette",
                 size: Literal["160px", "320px", "full"] = "160px", image_size: int = 160, batch_size: int = 64,
                 num_workers: int | None = None, download: bool = True,
                 crop_scale: tuple[float, float] = (0.35, 1.0), url: str | None = None,
                 md5: str | None = None, pipeline: Literal["auto", "standard", "fast"] = "auto",
                 cache_dir: str | None = None, holdout_fraction: float = 0.0, holdout_seed: int = 0) -> None:
        super().__init__()
        if image_size < 8:
            raise ConfigError(f"--data.image_size must be at least 8 pixels, got {image_size}")
        if batch_size < 1:
            raise ConfigError(f"--data.batch_size must be positive, got {batch_size}")
        if num_workers is not None and num_workers < 0:
            raise ConfigError(f"--data.num_workers must be 0 or more, got {num_workers}")
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ConfigError(f"--data.crop_scale must satisfy 0 < low <= high <= 1, got {list(crop_scale)}")
        if not 0 <= holdout_fraction < 1:
            raise ConfigError(f"--data.holdout_fraction must be in [0, 1) (0.1 holds out a tenth of train/), got "
                              f"{holdout_fraction}")
        if pipeline not in ("auto", "standard", "fast"):
            raise ConfigError(f"--data.pipeline must be auto, standard or fast, got {pipeline!r}")
        self.save_hyperparameters()
        archive, published_md5 = ARCHIVES[(dataset, size)]
        self.url = url or _BASE_URL + archive
        self.md5 = md5 or (published_md5 if url is None else None)
        self.folder = Path(root).expanduser() / archive.removesuffix(".tgz")
        self.image_size, self.batch_size = image_size, batch_size
        cores = min(8, usable_cores())
        self.num_workers = cores if num_workers is None else num_workers
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.cache_workers = cores if num_workers is None else num_workers
        self._classes: list[str] | None = None
        self._caches: dict[str, CachePaths] = {}
        # seed_everything(N) has run before the data module is built (LightningCLI); data order and crops derive
        # from N and the epoch only (EpochShuffle)
        self.seed = torch.initial_seed() % (1 << 40)
        self._crop_rng: tuple[int, torch.Generator] | None = None
        self._holdout: tuple[list[int], list[int]] | None = None

    @property
    def eval_split(self) -> Literal["val", "holdout"]:
        """What validation reads: `val/`, or the part of `train/` held out (`--data.holdout_fraction`)."""
        return "holdout" if self.hparams.holdout_fraction > 0 else "val"

    @property
    def pipeline(self) -> Literal["standard", "fast"]:
        """The pipeline in use: `--data.pipeline`, with `auto` resolved for the trainer's device (the CPU without
        one)."""
        chosen = self.hparams.pipeline
        if chosen == "auto":
            chosen = "fast" if self._accelerator in ("CPUAccelerator", "CUDAAccelerator") else "standard"
        return chosen

    @property
    def _accelerator(self) -> str:
        """The trainer's accelerator class name; `CPUAccelerator` without a trainer (e.g. the benchmark's loops)."""
        trainer = getattr(self, "trainer", None)
        return trainer.accelerator.__class__.__name__ if trainer is not None else "CPUAccelerator"

    @property
    def loader_workers(self) -> int:
        """DataLoader workers: `fast` batches are one copy out of the cache each, cheap in the main process (its
        workers only build the cache), so it uses none unless `--data.num_workers` says otherwise."""
        if self.pipeline == "fast":
            return self.hparams.num_workers or 0
        return self.num_workers

    # ---- files -------------------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Download and extract once (one process at a time; extraction is atomic, so no half-made folder).

        The `fast` pipeline also builds its caches here (Lightning calls this on one process per node, before
        `setup`); only the validation cache when the trainer only validates or tests.
        """
        self._fetch()
        if self.pipeline == "fast":
            fn = getattr(getattr(getattr(self, "trainer", None), "state", None), "fn", None)
            scored = self.eval_split
            for split in (scored,) if fn in ("validate", "test") else () if fn == "predict" else ("train", scored):
                self._cache(split)

    def _fetch(self) -> None:
        if self.folder.is_dir():
            return
        if not self.hparams.download:
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

    @property
    def classes(self) -> list[str]:
        """Class folder names (WordNet ids) in label order, read from the data (downloading it if needed)."""
        if self._classes is None:
            self._fetch()
            splits = {}
            for split in ("train", "val") if self.eval_split == "val" else ("train",):  # tuning never reads val/
                d = self.folder / split
                if not d.is_dir():
                    raise DataError(f"{d} is missing: {self.folder} must hold train/ and val/, each with one "
                                    f"folder of images per class; delete it and rerun to download again")
                splits[split] = sorted(p.name for p in d.iterdir() if p.is_dir())
            if not splits["train"]:
                raise DataError(f"{self.folder / 'train'} has no class folders; expected train/<class>/*.JPEG")
            if "val" in splits and splits["train"] != splits["val"]:
                raise DataError(f"train/ and val/ in {self.folder} have different class folders "
                                f"({len(splits['train'])} vs {len(splits['val'])}); the dataset is incomplete")
            self._classes = splits["train"]
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [WNID_NAMES.get(c, c) for c in self.classes]

    # ---- datasets and loaders ---------------------------------------------------------------------------
    def dataset(self, split: Literal["train", "val"], transform=None) -> ImageFolder:
        """The split as an ImageFolder; `transform` defaults to this module's transform for that split."""
        if transform is None:
            transform = (train_transform(self.image_size, tuple(self.hparams.crop_scale)) if split == "train"
                         else val_transform(self.image_size))
        try:
            ds = ImageFolder(str(self.folder / split), transform=transform, loader=load_rgb)
        except (FileNotFoundError, OSError) as e:
            raise DataError(f"{self.folder / split}: {e}") from None
        if ds.classes != self.classes:
            raise DataError(f"{self.folder / split} has classes {ds.classes}, expected {self.classes}")
        return ds

    # ---- the held-out part of train (tuning) ------------------------------------------------------------------
    def holdout_indices(self) -> tuple[list[int], list[int]]:
        """(kept, held out): indices into `train/`'s samples (all of them kept, none held out without a holdout)."""
        if self._holdout is None:
            labels = [label for _, label in self.dataset("train", transform=lambda x: x).samples]
            self._holdout = holdout_split(labels, self.hparams.holdout_fraction, self.hparams.holdout_seed)
        return self._holdout

    def holdout_record(self) -> dict:
        """What a study records of its split: fraction, seed, sizes and a digest of the held-out files."""
        kept, held = self.holdout_indices()
        samples = self.dataset("train", transform=lambda x: x).samples
        names = [os.path.relpath(samples[i][0], self.folder / "train") for i in held]
        return {"fraction": self.hparams.holdout_fraction, "seed": self.hparams.holdout_seed, "train_images": len(kept),
                "held_out_images": len(held), "held_out_digest": split_digest(names)}

    def _samples(self, split: Literal["train", "val", "holdout"]) -> list[tuple[str, int]]:
        """The (path, label) list a cache is built from: the held-out images for `holdout`, all of a folder else
        (the train cache holds every training image; a holdout run indexes the kept ones in it)."""
        if split == "holdout":
            samples = self.dataset("train", transform=lambda x: x).samples
            return [samples[i] for i in self.holdout_indices()[1]]
        return self.dataset(split, transform=lambda x: x).samples

    def setup(self, stage: str | None = None) -> None:
        fast, ranks = self.pipeline == "fast", self._ranks_on_node
        holdout = self.eval_split == "holdout"
        kept, held = self.holdout_indices() if holdout else (None, None)
        if stage in ("fit", None) and not hasattr(self, "train_set"):
            if fast:
                self.train_set = CacheDataset(self._cache("train"), True, ranks, indices=kept)
            else:
                train = self.dataset("train")
                self.train_set = Subset(train, kept) if holdout else train
        if not hasattr(self, "val_set"):
            if fast:
                self.val_set = CacheDataset(self._cache(self.eval_split), False, ranks)
            elif holdout:  # train/'s images with the validation transform
                self.val_set = Subset(self.dataset("train", transform=val_transform(self.image_size)), held)
            else:
                self.val_set = self.dataset("val")

    @property
    def _ranks_on_node(self) -> int:
        """Training processes on this machine, each holding its own data (Lightning's `devices` count per node)."""
        trainer = getattr(self, "trainer", None)
        return trainer.num_devices if trainer is not None and trainer.world_size > 1 else 1

    # ---- the fast pipeline's caches ---------------------------------------------------------------------------
    @property
    def cache_side(self) -> int:
        """Shorter side of the `fast` pipeline's cached training images (see `fastdata.cache_side_for`)."""
        return cache_side_for(self.image_size, self.hparams.crop_scale, SOURCE_SHORT_SIDE[self.hparams.size])

    def _cache(self, split: Literal["train", "val"]) -> CachePaths:
        """The split's cache, built on first use (by one process at a time) and rebuilt when the files change."""
        if split not in self._caches:
            samples = self._samples(split)
            s = self.image_size
            if split == "train":
                side = self.cache_side
                params = {"side": side, "aspect": MAX_ASPECT, "filter": "bicubic"}
                fn, shape = train_cache_fn(side), (side, MAX_ASPECT * side, 3)
            else:
                params, fn, shape = {"size": s}, val_cache_fn(val_transform(s)), (3, s, s)
            name = f"{split}-{self.folder.name}-" + (f"side{params['side']}" if split == "train" else f"size{s}")
            source = self.folder / ("val" if split == "val" else "train")
            self._caches[split], _ = ensure_cache(
                name, samples, source, self.cache_dir, params, fn, shape, load_rgb,
                workers=self.cache_workers, log=lambda msg: print(msg, file=sys.stderr, flush=True))
        return self._caches[split]

    def _loader(self, dataset, shuffle: bool, sampler=None, pin_memory: bool | None = None) -> DataLoader:
        on_gpu = self._accelerator == "CUDAAccelerator" if pin_memory is None else pin_memory
        workers = self.loader_workers
        collate = {"collate_fn": collate_batch} if isinstance(dataset, CacheDataset) else {}
        if shuffle and sampler is None:
            sampler = EpochShuffle(len(dataset), self.seed)
        return DataLoader(dataset, batch_size=self.batch_size, drop_last=shuffle, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=on_gpu, sampler=sampler,
                          generator=torch.Generator().manual_seed(self.seed), **collate)

    def _eval_sampler(self, dataset) -> UnrepeatedDistributedSampler | None:
        """Under DDP, each rank evaluates its own shard and no image twice.

        Lightning's default DistributedSampler pads the set to a multiple of the world size, so 3,925 images on 2
        ranks would count one twice; shards off by one are safe here (metrics sync once, at epoch end). Training
        keeps Lightning's padded, shuffled DistributedSampler.
        """
        trainer = getattr(self, "trainer", None)
        kwargs = getattr(trainer.strategy, "distributed_sampler_kwargs", None) if trainer is not None else None
        if not kwargs or trainer.world_size < 2:
            return None
        return UnrepeatedDistributedSampler(dataset, shuffle=False, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False, sampler=self._eval_sampler(self.val_set))

    test_dataloader = val_dataloader

    # ---- batches on the device ------------------------------------------------------------------------------
    def _plan(self, batch: CanvasBatch) -> CropBatch:
        """Draw the crops from a generator of (seed, epoch), like the order (EpochShuffle), each DDP rank its own."""
        trainer = getattr(self, "trainer", None)
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        epoch = trainer.current_epoch if trainer is not None else 0
        if self._crop_rng is None or self._crop_rng[0] != epoch:
            self._crop_rng = (epoch, epoch_generator(self.seed, epoch, 1))
        return plan_crops(batch, self.hparams.crop_scale, generator=self._crop_rng[1], rank=rank, world_size=world)

    def augment(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch as `train_dataloader` yields it, on any device -> (uint8 crops, labels) on that device.

        The standard pipeline's batches are already augmented (in the workers); the fast pipeline's are cut, resized
        and flipped here. Works without a Trainer, e.g. to time the pipelines.
        """
        if isinstance(batch, CanvasBatch):
            batch = self._plan(batch)
        if isinstance(batch, CropBatch):
            batch = apply_crops(batch, self.image_size)
        return batch

    def train_batches(self, device: str | torch.device = "cpu", limit: int | None = None
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised training batches on `device`, exactly as a Trainer's training step receives them."""
        if not hasattr(self, "train_set"):
            self.prepare_data()
            self.setup("fit")
        loader = self._loader(self.train_set, shuffle=True, pin_memory=torch.device(device).type == "cuda")
        for n, batch in enumerate(loader):
            if limit is not None and n >= limit:
                break
            batch = self.on_before_batch_transfer(batch, 0)
            moved = [x.to(device, non_blocking=True) for x in batch]
            batch = type(batch)(*moved) if hasattr(batch, "_fields") else tuple(moved)
            yield self.on_after_batch_transfer(batch, 0)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Fast pipeline: draw the crop boxes on the CPU, before the transfer, so the device never waits for them."""
        return self._plan(batch) if isinstance(batch, CanvasBatch) else batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Any batch -> normalised float images; fast training batches (recognised by their type, so validation,
        sanity checks and `trainer.validate` never augment) are cropped and flipped first."""
        images, labels = self.augment(batch)
        return normalize(images), labels
