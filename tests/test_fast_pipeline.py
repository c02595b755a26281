"""`--data.pipeline fast`: the uint8 cache and the batched on-device augmentation, checked against `standard`."""

import json
import multiprocessing
import os
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as v1

from convmixer_lit.data import ImagenetteDataModule, epoch_generator, load_rgb, normalize, val_transform
from convmixer_lit.errors import DataError
from convmixer_lit.fastdata import (
    RATIO,
    CacheDataset,
    CanvasBatch,
    apply_crops,
    ensure_cache,
    plan_crops,
    sample_crops,
    train_cache_fn,
    train_canvas,
    val_cache_fn,
)
from convmixer_lit.models.convmixer import ConvMixer

from conftest import WNIDS, make_imagenette, run_cli, tiny_fit_args


def data_module(root: Path, pipeline: str, cache_dir: Path | None = None, **kwargs) -> ImagenetteDataModule:
    kwargs = {"image_size": 48, "batch_size": 6, "num_workers": 0, "download": False, **kwargs}
    return ImagenetteDataModule(root=str(root), pipeline=pipeline, cache_dir=str(cache_dir) if cache_dir else None,
                                **kwargs)


def cache_files(cache_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.npy")}


@pytest.fixture(scope="module")
def pair(fake_root, tmp_path_factory):
    """The synthetic data through both pipelines (fast caches in a temporary folder)."""
    cache = tmp_path_factory.mktemp("cache")
    std, fast = data_module(fake_root, "standard"), data_module(fake_root, "fast", cache)
    for dm in (std, fast):
        dm.prepare_data()
        dm.setup("fit")
    return std, fast


def test_auto_pipeline_is_fast_on_cpu_and_cuda_and_standard_elsewhere(fake_root, monkeypatch):
    from types import SimpleNamespace

    class CUDAAccelerator:  # what `auto` looks at: the trainer's accelerator class
        pass

    class MPSAccelerator:
        pass

    dm = data_module(fake_root, "auto")
    assert dm.pipeline == "fast" and dm.loader_workers == 0  # no trainer: the CPU
    for accelerator, expected in ((CUDAAccelerator, "fast"), (MPSAccelerator, "standard")):
        monkeypatch.setattr(dm, "trainer", SimpleNamespace(accelerator=accelerator()), raising=False)
        assert dm.pipeline == expected
    assert data_module(fake_root, "standard").pipeline == "standard"
    assert ImagenetteDataModule(root=str(fake_root)).hparams.pipeline == "auto"  # the default
    assert data_module(fake_root, "fast", num_workers=None).loader_workers == 0  # fast reads in the main process


def test_cache_is_read_into_memory_when_it_fits_else_memory_mapped(pair, monkeypatch):
    from convmixer_lit import fastdata

    _, fast = pair
    assert CacheDataset(fast.train_set.paths, train=True).in_memory  # a few MB: read once
    size = fast.train_set.images.nbytes
    monkeypatch.setattr(fastdata, "available_memory", lambda: 4 * size - 1)
    mapped = CacheDataset(fast.train_set.paths, train=True)
    assert not mapped.in_memory  # more than a quarter of what is free: mapped
    batch, ref = mapped.__getitems__([3, 1, 4]), fast.train_set.__getitems__([3, 1, 4])
    assert all(torch.equal(a, b) for a, b in zip(batch, ref))


def test_ddp_ranks_on_one_machine_share_the_in_memory_budget(pair, fake_root, monkeypatch):
    """Each DDP rank holds its own copy, so two ranks on a node may each take an eighth of the free memory, not a
    quarter; the count is per node (`devices`), not the world size; unknown free memory (macOS, Windows) maps."""
    from types import SimpleNamespace

    from convmixer_lit import fastdata

    class CPUAccelerator:
        pass

    _, fast = pair
    size = fast.train_set.images.nbytes
    monkeypatch.setattr(fastdata, "available_memory", lambda: 4 * size)  # one copy fills the quarter exactly
    assert CacheDataset(fast.train_set.paths, train=True).in_memory
    assert not CacheDataset(fast.train_set.paths, train=True, ranks_on_node=2).in_memory
    dm = data_module(fake_root, "fast", fast.cache_dir)
    monkeypatch.setattr(dm, "trainer", SimpleNamespace(accelerator=CPUAccelerator(), num_devices=2, world_size=4))
    dm.setup("fit")  # 2 nodes x 2 devices: 2 ranks share this machine
    assert dm.train_set.ranks_on_node == dm.val_set.ranks_on_node == 2 and not dm.train_set.in_memory
    monkeypatch.setattr(fastdata, "available_memory", lambda: None)
    assert not CacheDataset(fast.train_set.paths, train=True).in_memory


def test_fast_batches_have_the_standard_shapes_dtypes_and_labels(pair):
    std, fast = pair
    assert len(fast.train_set) == len(std.train_set) == 36 and len(fast.val_set) == len(std.val_set) == 12
    assert fast.train_set.meta[:, 0].tolist() == [label for _, label in std.train_set.samples]
    batch = next(iter(fast.train_dataloader()))
    assert isinstance(batch, CanvasBatch) and batch.images.dtype == torch.uint8
    images, labels = fast.augment(batch)
    ref_images, ref_labels = next(iter(std.train_dataloader()))
    assert images.shape == ref_images.shape == (6, 3, 48, 48) and images.dtype == ref_images.dtype
    assert labels.dtype == ref_labels.dtype == torch.int64 and torch.equal(labels, batch.labels)
    x, y = fast.on_after_batch_transfer(fast.on_before_batch_transfer(batch, 0), 0)
    assert x.shape == (6, 3, 48, 48) and x.dtype == torch.float32 and torch.equal(y, batch.labels)
    assert -3 < x.mean() < 3 and 0.2 < x.std() < 3  # normalised
    x, y = next(fast.train_batches(limit=1))  # the benchmark's entry point: no Trainer needed
    assert x.shape == (6, 3, 48, 48) and x.dtype == torch.float32


def test_validation_tensors_are_identical(pair):
    std, fast = pair
    ref = [torch.cat(t) for t in zip(*std.val_dataloader())]
    got = [torch.cat(t) for t in zip(*fast.val_dataloader())]
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    assert torch.equal(fast.on_after_batch_transfer((got[0], got[1]), 0)[0], normalize(ref[0]))


@pytest.mark.parametrize("size", [(160, 213), (213, 160), (160, 160), (160, 480), (500, 160)])
def test_crop_boxes_follow_torchvision_distribution(size):
    """2,000 boxes from the vectorised sampler vs torchvision's RandomResizedCrop.get_params on the same size."""
    h, w, n, scale = *size, 2000, (0.35, 1.0)
    torch.manual_seed(0)
    ref = torch.tensor([v1.RandomResizedCrop.get_params(torch.empty(1, h, w), list(scale), list(RATIO))
                        for _ in range(n)], dtype=torch.float64)
    got = sample_crops(torch.full((n,), h), torch.full((n,), w), scale, generator=torch.Generator().manual_seed(1))
    for boxes in (ref, got):
        top, left, bh, bw = boxes.unbind(1)
        assert (bh >= 1).all() and (bw >= 1).all() and (top >= 0).all() and (left >= 0).all()
        assert (top + bh <= h).all() and (left + bw <= w).all()

    def stats(boxes):
        top, left, bh, bw = boxes.unbind(1)
        area, log_ratio = bh * bw / (h * w), torch.log(bw / bh)
        cy, cx = (top + bh / 2) / h, (left + bw / 2) / w
        q = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
        return torch.cat([area.quantile(q), area.mean()[None], log_ratio.quantile(q), log_ratio.mean()[None],
                          cy.quantile(q), cx.quantile(q)])

    assert torch.allclose(stats(got), stats(ref), atol=0.03), (stats(got), stats(ref))
    def full_side(b):  # crops as tall or as wide as the image: the fallback, mostly
        return ((b[:, 2] == h) | (b[:, 3] == w)).double().mean()
    assert abs(full_side(got) - full_side(ref)) < 0.03


def test_flips_are_fair_and_draws_reproducible_per_seed_and_rank(pair):
    _, fast = pair
    batch = next(iter(fast.train_dataloader()))
    big = CanvasBatch(batch.images[:1].expand(4000, -1, -1, -1), batch.labels[:1].expand(4000),
                      batch.geometry[:1].expand(4000, -1))
    flips = plan_crops(big, (0.35, 1.0), torch.Generator().manual_seed(0)).flags[:, 1].double().mean()
    assert abs(flips - 0.5) < 0.03
    fast._crop_rng = None  # the start of epoch 0 again
    a = fast.on_before_batch_transfer(batch, 0).boxes
    b = fast.on_before_batch_transfer(batch, 0).boxes
    fast._crop_rng = None
    torch.manual_seed(123)  # the global RNG (drawn by weight initialisation) has no say in the crops
    assert torch.equal(fast.on_before_batch_transfer(batch, 0).boxes, a) and not torch.equal(a, b)
    ranks, states = [], []
    for rank in (0, 1):  # under DDP: different crops, but both ranks' global RNGs stay in step
        torch.manual_seed(3)
        ranks.append(plan_crops(batch, (0.35, 1.0), rank=rank, world_size=2).boxes)
        states.append(torch.get_rng_state())
    assert not torch.equal(ranks[0], ranks[1]) and torch.equal(states[0], states[1])


def smooth_images(root: Path) -> Path:
    """A tiny dataset of smooth images (so resampling filters barely matter): landscape, portrait, grayscale,
    square, and 5:2 / 2:5 ones that the train cache centre-crops to 2:1."""
    yy, xx = np.mgrid[0:1:512j, 0:1:512j]
    base = np.stack([255 * xx, 255 * yy, 127 + 100 * np.sin(6 * xx + 4 * yy)], -1).astype(np.uint8)
    sizes = [(213, 160), (160, 213), (160, 160), (400, 160), (160, 400), (240, 160)]
    for split in ("train", "val"):
        for c, wnid in enumerate(WNIDS[:2]):
            d = root / "imagenette2-160" / split / wnid
            d.mkdir(parents=True)
            for i, (w, h) in enumerate(sizes):
                img = Image.fromarray(np.roll(base, 97 * (i + c), axis=1)).resize((w, h), Image.Resampling.BICUBIC)
                (img.convert("L") if i == 5 else img).save(d / f"{wnid}_{i}.JPEG", quality=95)
    return root


@pytest.mark.parametrize("method", ["resize", "roi_align"])
def test_fast_crops_show_the_same_pixels_as_standard_crops(method, tmp_path):
    """With crop_scale (1, 1) both pipelines take the whole image (centre 4:3 part of elongated ones) and resize it:
    the same picture, up to resampling filters and the random flip, in every orientation."""
    root = smooth_images(tmp_path / "data")
    kwargs = {"image_size": 64, "batch_size": 12, "crop_scale": (1.0, 1.0)}
    std, fast = data_module(root, "standard", **kwargs), data_module(root, "fast", tmp_path / "cache", **kwargs)
    for dm in (std, fast):
        dm.setup("fit")
    batch = fast.train_set.__getitems__(list(range(12)))
    got, _ = apply_crops(fast.on_before_batch_transfer(batch, 0), 64, method)
    for i, (path, _) in enumerate(std.train_set.samples):
        ref = std.train_set.transform(load_rgb(path)).float()
        diff = min((got[i].float() - ref).abs().mean(), (got[i].float().flip(-1) - ref).abs().mean())
        assert diff < 1, (path, diff)


@pytest.mark.parametrize("method", ["resize", "roi_align"])
def test_random_fast_crops_cut_the_drawn_box(method, tmp_path):
    """Random boxes: each fast crop equals torchvision's resized_crop of the same box of the source image (drawn in
    the source's geometry; long images first lose the ends the cache drops), flipped where drawn."""
    from torchvision.transforms.v2 import functional as F
    root = smooth_images(tmp_path / "data")
    torch.manual_seed(0)  # the module's seed, as seed_everything(0) before it is built
    fast = data_module(root, "fast", tmp_path / "cache", image_size=40, crop_scale=(0.1, 1.0))
    fast.setup("fit")
    batch = fast.train_set.__getitems__(list(range(len(fast.train_set))) * 4)
    got, _ = apply_crops(fast.on_before_batch_transfer(batch, 0), 40, method)
    geometry = batch.geometry.double()  # the module draws epoch 0's crops from its own (seed, epoch) generator
    boxes = sample_crops(geometry[:, 0], geometry[:, 1], (0.1, 1.0), generator=epoch_generator(fast.seed, 0, 1))
    paths = [p for p, _ in fast.dataset("train").samples] * 4
    for i, (top, left, h, w) in enumerate(boxes.long().tolist()):
        src = load_rgb(paths[i])
        long, short = max(src.size), min(src.size)
        if long > 2 * short:
            dx, dy = ((long - 2 * short) // 2, 0) if src.width > src.height else (0, (long - 2 * short) // 2)
            left, top = left + dx, top + dy
        ref = F.pil_to_tensor(F.resized_crop(src, top, left, h, w, [40, 40], antialias=True)).float()
        diff = min((got[i].float() - ref).abs().mean(), (got[i].float().flip(-1) - ref).abs().mean())
        # resize rounds the box to whole cache pixels (<= 0.5 px shift), roi_align cuts it exactly
        assert diff < (1 if method == "roi_align" else 1.5), (paths[i], (top, left, h, w), diff)


def test_cache_centre_crops_long_images_and_transposes_portrait_ones():
    pixels = np.random.default_rng(0).integers(0, 256, (100, 300, 3), dtype=np.uint8)  # H 100, W 300 (3:1)
    canvas, geometry = train_canvas(Image.fromarray(pixels), side=100)
    assert canvas.shape == (100, 200, 3) and geometry.tolist() == [100, 200, 100, 200, 0]
    assert np.array_equal(canvas, pixels[:, 50:250])  # the centre 2:1, untouched at this side
    canvas, geometry = train_canvas(Image.fromarray(pixels.transpose(1, 0, 2).copy()), side=50)  # portrait
    assert canvas.shape == (50, 100, 3) and geometry.tolist() == [200, 100, 100, 50, 1]
    canvas, geometry = train_canvas(Image.fromarray(pixels[:, :150]), side=64)  # 3:2 -> 96 wide, padded
    assert geometry.tolist() == [100, 150, 64, 96, 0]
    assert np.array_equal(canvas[:, 96], canvas[:, 95]) and not canvas[:, 97:].any()


def test_cache_is_reused_and_rebuilt_when_the_files_change(tmp_path, monkeypatch):
    root = make_imagenette(tmp_path / "data", per_class={"train": 3, "val": 1})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = sorted(p for p in root.rglob("*"))
    data_module(root, "fast").prepare_data()  # default cache folder: $XDG_CACHE_HOME/convmixer_lit
    cache = tmp_path / "xdg" / "convmixer_lit"
    assert sorted(p for p in root.rglob("*")) == before  # the data root is never written to
    first = cache_files(cache)
    assert len(first) == 4  # train and val, images and meta each
    time.sleep(0.01)
    dm = data_module(root, "fast")
    dm.setup("fit")
    assert cache_files(cache) == first and len(dm.train_set) == 9  # reused, not rewritten
    make_imagenette(tmp_path / "more", per_class={"train": 1, "val": 0})
    new = root / "imagenette2-160" / "train" / WNIDS[0] / "added.JPEG"
    os.replace(tmp_path / "more" / "imagenette2-160" / "train" / WNIDS[0] / f"{WNIDS[0]}_0.JPEG", new)
    dm = data_module(root, "fast")
    dm.setup("fit")
    assert len(dm.train_set) == 10 and len(cache_files(cache)) == 6  # a new train cache; val unchanged, reused
    os.utime(new, ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed file: new mtime
    dm = data_module(root, "fast")
    dm.setup("fit")
    assert len(cache_files(cache)) == 8 and not list(cache.glob(".*tmp*"))


def test_cache_built_by_worker_processes_equals_one_built_inline(fake_root, tmp_path):
    caches = []
    for workers in (0, 2):
        dm = data_module(fake_root, "fast", tmp_path / f"w{workers}", num_workers=workers)
        dm.setup("fit")
        caches.append([np.load(p) for p in (*dm.train_set.paths, *dm.val_set.paths)])
    assert all(np.array_equal(a, b) for a, b in zip(*caches))


def test_an_unreadable_image_is_named_and_leaves_no_cache(tmp_path):
    root = make_imagenette(tmp_path / "data", per_class={"train": 2, "val": 1})
    bad = root / "imagenette2-160" / "train" / WNIDS[1] / "broken.JPEG"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.JPEG"):
        data_module(root, "fast", tmp_path / "cache").prepare_data()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.suffix != ".lock"]


def test_an_unwritable_cache_folder_is_one_data_error(fake_root, tmp_path):
    (tmp_path / "a-file").write_text("")  # root may write anywhere, but not below a regular file
    with pytest.raises(DataError, match=r"cannot write the fast-pipeline cache in .*a-file/cache .*--data.cache_dir"):
        data_module(fake_root, "fast", tmp_path / "a-file" / "cache").prepare_data()


def _build_in_child(args):
    samples, folder, cache_dir, barrier = args
    barrier.wait()
    paths, built = ensure_cache("train-test", samples, folder, cache_dir, {"side": 64}, train_cache_fn(64),
                                (64, 128, 3), load_rgb, log=lambda msg: None)
    return str(paths.images), built


@pytest.mark.slow
def test_two_processes_building_at_once_make_one_valid_cache(fake_root, tmp_path):
    dm = data_module(fake_root, "standard")
    samples, folder = dm.dataset("train").samples, dm.folder / "train"
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(2)
    with ctx.Pool(2) as pool:
        results = pool.map(_build_in_child, [(samples, folder, tmp_path, barrier)] * 2)
    assert results[0][0] == results[1][0] and sorted(r[1] for r in results) == [False, True]
    images = np.load(results[0][0], mmap_mode="r")
    assert images.shape == (36, 64, 128, 3) and images[:, :, :64].std() > 10
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".lock", ".npy", ".npy"]  # no temporary leftovers


@pytest.mark.slow
def test_fit_with_the_fast_pipeline_and_validate_matches_standard(fake_root, tmp_path):
    cache = tmp_path / "cache"
    result = run_cli("convmixer_lit.fit", *tiny_fit_args(fake_root, tmp_path, "--data.pipeline", "fast",
                                                         "--data.cache_dir", str(cache)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "building the fast-pipeline train cache" in result.stderr
    assert len(list(cache.glob("*.npy"))) == 4
    run = tmp_path / "lightning_logs" / "convmixer" / "version_0"
    summary = json.loads((run / "result.json").read_text())
    assert summary["completed"] and summary["global_step"] == 36 // 8 and summary["data_pipeline"] == "fast"
    # trainer.validate on the checkpoint: both pipelines give the same numbers (identical validation images)
    model = ConvMixer.load_from_checkpoint(run / "checkpoints" / "last.ckpt", map_location="cpu")
    logged = []
    for pipeline in ("standard", "fast"):
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        dm = data_module(fake_root, pipeline, cache, image_size=32, batch_size=8)
        logged.append(trainer.validate(model, datamodule=dm, verbose=False)[0])
    assert logged[0]["val/loss"] == pytest.approx(logged[1]["val/loss"], abs=1e-6)
    assert logged[0]["val/acc"] == logged[1]["val/acc"]


@pytest.mark.slow
def test_real_data_subset_cache(real_root, tmp_path):
    """A sample of the real images (all 10 classes, grayscale and very long ones included) through the cache."""
    std = data_module(real_root, "standard", image_size=64)
    train = std.dataset("train").samples
    picked = train[::150]
    long = []
    for path, label in train[:3000]:
        with Image.open(path) as im:
            if max(im.size) > 2 * min(im.size):
                long.append((path, label))
    picked = sorted(set(picked) | set(long[:5]))
    fast = data_module(real_root, "fast", image_size=64)
    side = fast.cache_side
    assert side == 128  # 64 / sqrt(0.35 * 3/4) = 125 -> 128, below the source's 160
    paths, built = ensure_cache("train-real", picked, std.folder / "train", tmp_path, {"side": side},
                                train_cache_fn(side), (side, 2 * side, 3), load_rgb, log=lambda msg: None)
    assert built
    ds = CacheDataset(paths, train=True)
    assert ds.meta[:, 0].tolist() == [label for _, label in picked] and len(set(ds.meta[:, 0])) == 10
    src_h, src_w = ds.meta[:, 1], ds.meta[:, 2]
    assert (np.maximum(src_h, src_w) <= 2 * np.minimum(src_h, src_w)).all()  # long ones were centre-cropped to 2:1
    assert (np.minimum(ds.meta[:, 3], ds.meta[:, 4]) == side).all()
    assert int((np.maximum(src_h, src_w) == 2 * np.minimum(src_h, src_w)).sum()) >= len(long[:5]) > 0
    images, labels = fast.augment(ds.__getitems__(list(range(len(ds)))))
    assert images.shape == (len(picked), 3, 64, 64) and images.float().std() > 20
    val = std.dataset("val").samples[::400]
    paths, _ = ensure_cache("val-real", val, std.folder / "val", tmp_path, {"size": 64},
                            val_cache_fn(val_transform(64)), (3, 64, 64), load_rgb, log=lambda msg: None)
    cached = torch.from_numpy(np.load(paths.images))
    assert torch.equal(cached, torch.stack([val_transform(64)(load_rgb(p)) for p, _ in val]))


@pytest.mark.parametrize("pipeline", ["standard", "fast"])
def test_one_seed_one_data_order_whatever_else_draws_the_global_rng(fake_root, tmp_path, pipeline):
    """Cells of a study trained with one seed see the same images in the same order, though their weight
    initialisations draw the global RNG differently; each epoch has its own order, fixed by (seed, epoch)."""
    def labels(seed: int, draws: int, epoch: int = 0) -> list[int]:
        torch.manual_seed(seed)  # seed_everything, before the data module is built
        dm = data_module(fake_root, pipeline, tmp_path / "cache")
        dm.setup("fit")
        torch.randn(draws)  # a model's initialisation
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # what Lightning does at each epoch start
        return [int(y) for batch in loader for y in batch[1]]

    first = labels(0, draws=10)
    assert labels(0, draws=12345) == first
    assert labels(1, draws=10) != first and labels(0, draws=10, epoch=1) != first
    assert len(labels(0, draws=10, epoch=1)) == len(first)


def test_a_cache_that_would_not_fit_on_the_disk_is_refused_before_it_is_written(fake_root, tmp_path, monkeypatch):
    """A user's large folder at the fast pipeline's canvas size can need tens of GB: refused in one line, naming the
    size, the free space and the ways out, and nothing is left behind."""
    from collections import namedtuple

    from convmixer_lit import fastdata
    from convmixer_lit.errors import DataError

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fastdata.shutil, "disk_usage", lambda path: usage(10**12, 10**12, 5 * 10**8))  # 0.5 GB free
    dm = ImagenetteDataModule(root=str(fake_root), image_size=32, batch_size=4, num_workers=0, pipeline="fast",
                              cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"cache of 36 images needs 0\.0 GB in .*cache, which has 0\.5 GB free; "
                                        r"pass --data.cache_dir DIR on a larger disk, or --data.pipeline standard"):
        dm.prepare_data()
    assert not any(p.suffix == ".npy" for p in (tmp_path / "cache").rglob("*"))
