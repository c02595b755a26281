"""The data module: one LightningDataModule for every source and both input pipelines.

It reads a source (`--data.dataset`: Imagenette or Imagewoof, downloaded and checksummed, or a user's own folder of
`train/<class>/` and `val/<class>/`; see `sources/`), hands the source's split scans to a pipeline (`--data.pipeline`;
see `pipelines/`), and owns what every run shares whatever the source and pipeline: the class list the model is
sized from, the data order and crops drawn from (seed, epoch), the held-out part of train, the loaders, and the
normalisation of each batch on the training device:

- `standard`: DataLoader workers decode JPEGs and crop them to uint8 tensors.
- `fast`: every image is decoded once into a uint8 cache; the loader reads whole batches from it and the random
  crops and flips are made batched on the training device. Validation tensors are identical.

Either way normalisation to float happens batched on the training device (`on_after_batch_transfer`), with ImageNet's
statistics for Imagenette and Imagewoof, and for a folder its own, measured once on train and recorded in the
checkpoints' data hyper-parameters (`mean`, `std`), so `evaluate` and `predict` reproduce them without the data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from convmixer_lit.errors import ConfigError, DataError
from convmixer_lit.fastdata import CacheDataset, CanvasBatch, CropBatch, apply_crops, collate_batch, plan_crops
from convmixer_lit.hardware import usable_cores
from convmixer_lit.holdout import holdout_split, split_digest
from convmixer_lit.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_stats,
    load_rgb,
    normalize,
    train_transform,
    val_transform,
)
from convmixer_lit.paths import default_cache_dir
from convmixer_lit.pipelines.fast import FastPipeline
from convmixer_lit.pipelines.standard import StandardPipeline, with_transform
from convmixer_lit.sources import Source
from convmixer_lit.sources.folder import FolderSource
from convmixer_lit.sources.imagenette import ImagenetteSource

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "EpochShuffle", "ImagenetteDataModule", "epoch_generator", "load_rgb",
           "normalize", "recorded_stats", "train_transform", "val_transform"]
SKIP_FIX = "delete or replace that file, or pass --data.skip_corrupt true to leave unreadable images out"


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


def recorded_stats(datamodule_hparams: dict | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The normalisation a checkpoint's data module used: its recorded `mean`/`std` (given, or measured on a
    folder's train/), else ImageNet's (Imagenette, Imagewoof, and every checkpoint made before they were recorded).
    `predict` needs no data folder for it."""
    hp = datamodule_hparams or {}
    if hp.get("mean") is not None and hp.get("std") is not None:
        return tuple(hp["mean"]), tuple(hp["std"])
    return IMAGENET_MEAN, IMAGENET_STD


class ImagenetteDataModule(L.LightningDataModule):
    """Imagenette or Imagewoof (fast.ai), any of the three published sizes, from `root/<dataset>2-<size>/`; or a
    user's own folder of images, `root/train/<class>/*` and `root/val/<class>/*` (`dataset="folder"`).

    Args:
        root: for `imagenette`/`imagewoof`: the folder that holds (or will hold) the extracted `imagenette2-160/`
            etc.; for `folder`: the folder that holds `train/` and `val/` itself.
        dataset: `imagenette` (10 easy classes), `imagewoof` (10 dog breeds, much harder), or `folder`: your own
            images in `root/train/<class>/` and `root/val/<class>/` (JPEG, PNG, WebP, ...; any mode, read as RGB),
            the classes named by their folders (sorted), the model's head sized from their count, and the inputs
            normalised with the mean and std measured on train (or given with `mean`/`std`).
        size: which published copy of Imagenette/Imagewoof: shortest side `160px`, `320px`, or `full` resolution.
        image_size: side of the square training/validation crops fed to the model.
        batch_size: images per step (per device under DDP).
        num_workers: DataLoader worker processes; default: one per available core, at most 8. The `fast`
            pipeline defaults to 0 (its batches are one copy out of a memory map, cheap in the main process) and
            builds its cache with one worker per core; a number given here is used for both.
        download: fetch and verify the Imagenette/Imagewoof archive when the folder is absent.
        crop_scale: RandomResizedCrop's area range for training crops.
        url: Imagenette/Imagewoof archive address, to use a mirror; default: fast.ai's.
        md5: checksum of the archive at `url`; default: the published one (checked only for the default url
            unless given).
        pipeline: `standard` decodes and augments every image in DataLoader workers; `fast` decodes each image
            once into a uint8 cache and augments whole batches on the training device (same crop and flip
            distribution, identical validation images); `auto` (default): `fast` on the CPU, where `fit` measured
            faster with it (equal for ViT; docs/benchmarks.md: it leaves both cores to the model), and on CUDA GPUs,
            which JPEG decoding at ~1,000 images/s per core cannot feed; `standard` on other accelerators, where
            the batched crops are untested.
        cache_dir: where the `fast` pipeline keeps its cache (and a folder's measured statistics); default: the
            user's cache folder, `$XDG_CACHE_HOME/convmixer_lit` (`~/.cache/convmixer_lit`), so a shared or
            read-only data root is never written to. Cache files are named by a hash of the source files and
            settings, so one folder serves any number of data roots.
        holdout_fraction: train on `train/` minus this stratified fraction of it and validate on that held-out
            part, never reading `val/` (what a study's tuning trials do, so val stays unseen until the finals);
            0 (default): train on all of `train/`, validate on `val/`.
        holdout_seed: which images are held out (convmixer_lit/holdout.py), independent of the run's seed, so every
            trial and model holds out the same ones.
        mean: per-channel (R, G, B) mean in [0, 1] units, as torchvision's Normalize takes it; default: ImageNet's
            for Imagenette/Imagewoof, measured on train for a folder. Recorded in every checkpoint.
        std: per-channel standard deviation, the same way (give both or neither).
        skip_corrupt: leave out images that cannot be decoded (each split is decoded once up front to find them,
            remembered in the cache folder until its files change) and say how many; default: stop at the first
            one, naming it, so a study's dataset never changes unnoticed.
    """

    def __init__(self, root: str = "data", dataset: Literal["imagenette", "imagewoof", "folder"] = "imagenette",
                 size: Literal["160px", "320px", "full"] = "160px", image_size: int = 160, batch_size: int = 64,
                 num_workers: int | None = None, download: bool = True,
                 crop_scale: tuple[float, float] = (0.35, 1.0), url: str | None = None,
                 md5: str | None = None, pipeline: Literal["auto", "standard", "fast"] = "auto",
                 cache_dir: str | None = None, holdout_fraction: float = 0.0, holdout_seed: int = 0,
                 mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None,
                 skip_corrupt: bool = False) -> None:
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
        if dataset not in ("imagenette", "imagewoof", "folder"):
            raise ConfigError(f"--data.dataset must be imagenette, imagewoof or folder, got {dataset!r}")
        if dataset == "folder" and (url or md5):
            raise ConfigError("--data.url and --data.md5 are for the downloaded datasets (imagenette, imagewoof); "
                              "with --data.dataset folder, --data.root is the folder holding train/ and val/")
        check_stats(mean, std)
        self.save_hyperparameters()
        self.source: Source = (FolderSource(root) if dataset == "folder"
                               else ImagenetteSource(root, dataset, size, url, md5, download))
        self.folder = self.source.folder  # holds train/ and val/
        self.image_size, self.batch_size = image_size, batch_size
        cores = min(8, usable_cores())
        self.num_workers = cores if num_workers is None else num_workers
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.cache_workers = cores if num_workers is None else num_workers
        self._loader_fn = partial(load_rgb, fix=SKIP_FIX)  # picklable, for DataLoader workers started by spawn
        self.standard = StandardPipeline(image_size, crop_scale)
        self.fast = FastPipeline(image_size, crop_scale, self.cache_dir, self.source.cache_name,
                                 partial(self.source.train_short_side, cache_dir=self.cache_dir), self.cache_workers,
                                 self.source.key_ctime, self._loader_fn)
        self._classes: list[str] | None = None
        self._scans: dict[str, ImageFolder] = {}
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
    def _pipeline(self) -> StandardPipeline | FastPipeline:
        return self.fast if self.pipeline == "fast" else self.standard

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
        """Download and extract once (Imagenette/Imagewoof), measure a folder's statistics, and with the `fast`
        pipeline build its caches: Lightning calls this on one process per node, before `setup`, so the other
        processes find them made. Only what validation reads when the trainer only validates or tests."""
        self.source.fetch()
        fn = getattr(getattr(getattr(self, "trainer", None), "state", None), "fn", None)
        if fn == "predict":
            return
        trains = fn not in ("validate", "test")
        holdout = self.eval_split == "holdout"
        reads = (["train"] if trains or holdout else []) + ([] if holdout else ["val"])
        for split in reads:
            self._scan(split)  # every split it reads checked before anything is measured or built
        if trains:
            _ = self.normalization  # measured (a folder's) before any process trains or saves a checkpoint
        if self.pipeline == "fast":
            held = self.holdout_indices()[1] if holdout else None
            if trains:
                self.fast.prepare("train", self._scan("train"))
            self.fast.prepare(self.eval_split, self._scan("train" if holdout else "val"), held)

    @property
    def classes(self) -> list[str]:
        """Class folder names in label order (WordNet ids for Imagenette), read from the data (downloading it if
        needed)."""
        if self._classes is None:  # tuning never reads val/
            self._classes = self.source.classes(("train", "val") if self.eval_split == "val" else ("train",))
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names(self.classes)

    @property
    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel (mean, std) that `on_after_batch_transfer` normalises with: `--data.mean`/`--data.std`, else
        the source's fixed statistics (ImageNet's for Imagenette/Imagewoof, exactly as before), else measured on
        train/ (a folder) and written into the hyper-parameters, so every checkpoint records what the run used."""
        hp = self.hparams
        if hp.mean is None:
            if self.source.stats is not None:
                return self.source.stats
            hp.mean, hp.std = self.source.measured_stats(self._scan("train").samples, self.image_size,
                                                         self.cache_dir, self.cache_workers, self._loader_fn)
        return tuple(hp.mean), tuple(hp.std)

    # ---- datasets and loaders ---------------------------------------------------------------------------
    def _scan(self, split: Literal["train", "val"]) -> ImageFolder:
        """The split's images and labels, listed once (and checked: classes, empty class folders, unreadable
        images with `--data.skip_corrupt`)."""
        if split not in self._scans:
            classes = self.classes  # the layout checked first: a missing folder is named as such
            scan = self.source.scan(split, self._loader_fn)
            if scan.classes != classes:
                raise DataError(f"{self.folder / split} has classes {scan.classes}, expected {classes}")
            if self.hparams.skip_corrupt:
                self._leave_out_unreadable(split, scan)
            self._scans[split] = scan
        return self._scans[split]

    def _leave_out_unreadable(self, split: str, scan: ImageFolder) -> None:
        """Drop the images that cannot be decoded from the scan, saying how many and naming the first."""
        bad = self.source.unreadable(scan.samples, Path(scan.root), self.cache_dir, self.cache_workers)
        if not bad:
            return
        skipped = set(bad)
        scan.samples = [s for s in scan.samples if s[0] not in skipped]
        scan.imgs, scan.targets = scan.samples, [label for _, label in scan.samples]
        print(f"--data.skip_corrupt: left out {len(bad)} unreadable image{'s' * (len(bad) > 1)} of "
              f"{self.folder / split} (first: {bad[0]})", file=sys.stderr, flush=True)
        left = set(scan.targets)
        empty = [c for i, c in enumerate(scan.classes) if i not in left]
        if empty:
            raise DataError(f"class folder {self.folder / split / empty[0]} has no readable images; add some, or "
                            f"delete the class from train/ and val/")

    def dataset(self, split: Literal["train", "val"], transform=None) -> ImageFolder:
        """The split as an ImageFolder; `transform` defaults to this module's transform for that split."""
        if transform is None:
            transform = (train_transform(self.image_size, tuple(self.hparams.crop_scale)) if split == "train"
                         else val_transform(self.image_size))
        return with_transform(self._scan(split), transform)

    # ---- the held-out part of train (tuning) ------------------------------------------------------------------
    def holdout_indices(self) -> tuple[list[int], list[int]]:
        """(kept, held out): indices into `train/`'s samples (all of them kept, none held out without a holdout)."""
        if self._holdout is None:
            self._holdout = holdout_split(self._scan("train").targets, self.hparams.holdout_fraction,
                                          self.hparams.holdout_seed)
        return self._holdout

    def holdout_record(self) -> dict:
        """What a study records of its split: fraction, seed, sizes and a digest of the held-out files."""
        kept, held = self.holdout_indices()
        samples = self._scan("train").samples
        names = [os.path.relpath(samples[i][0], self.folder / "train") for i in held]
        return {"fraction": self.hparams.holdout_fraction, "seed": self.hparams.holdout_seed, "train_images": len(kept),
                "held_out_images": len(held), "held_out_digest": split_digest(names)}

    def setup(self, stage: str | None = None) -> None:
        """The datasets of the pipeline in use; the held-out part of train is validated on where there is one."""
        ranks, pipeline = self._ranks_on_node, self._pipeline
        holdout = self.eval_split == "holdout"
        kept, held = self.holdout_indices() if holdout else (None, None)
        if stage in ("fit", None) and not hasattr(self, "train_set"):
            _ = self.normalization  # every process, before the first batch and the first checkpoint
            self.train_set = pipeline.train_set(self._scan("train"), kept, ranks)
        if not hasattr(self, "val_set"):
            self.val_set = pipeline.eval_set(self.eval_split, self._scan("train" if holdout else "val"), held, ranks)

    @property
    def _ranks_on_node(self) -> int:
        """Training processes on this machine, each holding its own data (Lightning's `devices` count per node)."""
        trainer = getattr(self, "trainer", None)
        return trainer.num_devices if trainer is not None and trainer.world_size > 1 else 1

    @property
    def cache_side(self) -> int:
        """Shorter side of the `fast` pipeline's cached training images (see `fastdata.cache_side_for`)."""
        return self.fast.cache_side(self.dataset("train").samples)

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
        trainer = getattr(self, "trainer", None)
        world = trainer.world_size if trainer is not None else 1
        if len(self.train_set) // world < self.batch_size:  # batches are full (drop_last): no step would train
            each = f" for each of {world} processes" if world > 1 else ""
            raise DataError(f"{self.folder / 'train'} has {len(self.train_set)} training images, fewer than one "
                            f"batch (--data.batch_size {self.batch_size}){each}; lower --data.batch_size or add "
                            f"images")
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
        return normalize(images, *self.normalization), labels
