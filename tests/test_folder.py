"""A user's own dataset (`--data.dataset folder`): layouts, formats and modes, measured statistics, both pipelines,
every bad input, and `fit` / `compare` / `evaluate` / `predict` on it through the real entry points."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from convmixer_lit import evaluate
from convmixer_lit.data import IMAGENET_MEAN, IMAGENET_STD, ImagenetteDataModule, recorded_stats
from convmixer_lit.errors import ConfigError, DataError
from convmixer_lit.fastdata import CACHE_VERSION, MAX_ASPECT
from convmixer_lit.images import load_rgb, normalize, val_transform
from convmixer_lit.study.plan import flag_settings

from conftest import FOLDER_CLASSES, make_folder, make_imagenette, run_cli, tiny_fit_args


def folder_module(root: Path, pipeline: str = "standard", cache_dir: Path | None = None, **kwargs
                  ) -> ImagenetteDataModule:
    kwargs = {"image_size": 32, "batch_size": 4, "num_workers": 0, **kwargs}
    return ImagenetteDataModule(root=str(root), dataset="folder", pipeline=pipeline,
                                cache_dir=str(cache_dir) if cache_dir else None, **kwargs)


def stats_reference(paths: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.stack([val_transform(size)(load_rgb(p)) for p in paths]).double() / 255
    return x.mean((0, 2, 3)), x.std((0, 2, 3), correction=0)


# ---- layout, formats, classes ------------------------------------------------------------------------------------
def test_classes_come_from_the_folder_names_and_every_format_and_mode_reads_as_rgb(folder_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(folder_root, root)
    (root / "train" / ".ipynb_checkpoints").mkdir()  # hidden folders are not classes, hidden files not images
    (root / "val" / ".ipynb_checkpoints").mkdir()
    (root / "train" / "cat" / "._0.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    dm = folder_module(root)
    assert dm.classes == dm.class_names == sorted(FOLDER_CLASSES) and dm.num_classes == 4
    assert dm.folder == root and dm.hparams.dataset == "folder"
    dm.setup("fit")
    assert len(dm.train_set) == 24 and len(dm.val_set) == 8
    for i in range(len(dm.val_set)):  # JPEG, RGBA PNG, WebP, grayscale, 16-bit and palette PNGs
        image, label = dm.val_set[i]
        assert image.shape == (3, 32, 32) and image.dtype == torch.uint8 and 0 <= label < 4
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and labels.max() < 4
    sixteen = root / "train" / "dog" / "4.png"  # 16-bit grayscale is scaled to 8 bits, not clipped to white
    with Image.open(sixteen) as im:
        assert im.mode == "I;16"
        expected = np.rint(np.asarray(im, dtype=np.float64) / 257)
    assert np.array_equal(np.asarray(load_rgb(str(sixteen)))[..., 1], expected) and expected.max() < 250


def test_holdout_works_on_a_folder_and_never_reads_val(folder_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(folder_root, root)
    shutil.rmtree(root / "val")  # a tuning trial reads train/ only
    for pipeline in ("standard", "fast"):
        dm = folder_module(root, pipeline, tmp_path / "cache", holdout_fraction=0.25, mean=(0.5,) * 3,
                           std=(0.25,) * 3)
        dm.prepare_data()
        dm.setup("fit")
        assert dm.eval_split == "holdout" and len(dm.train_set) == 16 and len(dm.val_set) == 8  # 2 of 6 per class
        labels = torch.cat([y for _, y in dm.val_dataloader()])
        assert torch.bincount(labels).tolist() == [2, 2, 2, 2]


# ---- normalisation -----------------------------------------------------------------------------------------------
def test_mean_and_std_are_measured_on_train_recorded_and_kept(folder_root, tmp_path, monkeypatch):
    from convmixer_lit import sources

    cache = tmp_path / "cache"
    dm = folder_module(folder_root, cache_dir=cache)
    assert dm.hparams.mean is None
    mean, std = dm.normalization
    ref_mean, ref_std = stats_reference([p for p, _ in dm.dataset("train").samples], 32)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), ref_mean, atol=1e-4)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), ref_std, atol=1e-4)
    assert (tuple(dm.hparams.mean), tuple(dm.hparams.std)) == (mean, std)  # what every checkpoint records
    assert recorded_stats(dict(dm.hparams)) == (mean, std)
    # the training pixels, normalised with them, have mean 0 and std 1 per channel
    x = normalize(torch.stack([val_transform(32)(load_rgb(p)) for p, _ in dm.dataset("train").samples]), mean, std)
    assert x.mean((0, 2, 3)).abs().max() < 2e-3 and (x.std((0, 2, 3)) - 1).abs().max() < 2e-3
    # measured once: another run of the same folder reads them from the cache folder
    assert len(list(cache.glob("stats-folder-my-photos-size32-*.json"))) == 1
    monkeypatch.setattr(sources, "channel_stats", lambda *a, **k: pytest.fail("measured again"))
    assert folder_module(folder_root, cache_dir=cache).normalization == (mean, std)
    # given ones win, and nothing is measured
    given = folder_module(folder_root, cache_dir=tmp_path / "other", mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    assert given.normalization == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.2)) and not (tmp_path / "other").exists()


def test_imagenette_keeps_imagenet_statistics_and_old_checkpoints_do_too(fake_root):
    dm = ImagenetteDataModule(root=str(fake_root), num_workers=0, download=False)
    assert dm.normalization == (IMAGENET_MEAN, IMAGENET_STD) and dm.hparams.mean is None
    assert recorded_stats({"root": "data", "image_size": 160}) == (IMAGENET_MEAN, IMAGENET_STD)  # made before
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(dm.on_after_batch_transfer((x, torch.zeros(2)), 0)[0], normalize(x))


@pytest.mark.parametrize("kwargs,message", [
    ({"mean": (0.5, 0.5, 0.5)}, "give both --data.mean and --data.std"),
    ({"mean": (0.5, 0.5, 0.5), "std": (0.2, 0.0, 0.2)}, r"--data.std must be positive for every channel"),
    ({"mean": (123.7, 116.3, 103.5), "std": (58.4, 57.1, 57.4)}, r"are in \[0, 1\] units .* divide 0-255"),
    ({"url": "http://mirror/x.tgz"}, r"--data.url and --data.md5 are for the downloaded datasets"),
])
def test_bad_settings_are_config_errors(folder_root, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        folder_module(folder_root, **kwargs)


# ---- bad folders -------------------------------------------------------------------------------------------------
def _missing_val(root):
    shutil.rmtree(root / "val")


def _missing_train(root):
    shutil.rmtree(root / "train")


def _empty_class(root):
    for f in (root / "train" / "dog").iterdir():
        f.unlink()


def _val_has_more(root):
    make_folder(root, classes=["wolf"], per_class={"val": 1})


def _train_has_more(root):
    shutil.rmtree(root / "val" / "zebra")


def _broken_link(root):
    (root / "train" / "cat" / "gone.jpg").symlink_to(root / "nowhere.jpg")


def _one_class(root):
    for split in ("train", "val"):
        for c in FOLDER_CLASSES[1:]:
            shutil.rmtree(root / split / c)


def _no_classes(root):
    for split in ("train", "val"):
        shutil.rmtree(root / split)
        (root / split).mkdir()


@pytest.mark.parametrize("damage,message", [
    (None, r"--data.root .*/nowhere not found: with --data.dataset folder it is the folder that holds "
           r"train/<class>/<images> and val/<class>/<images>"),
    (_missing_val, r".*/data/val is missing: with --data.dataset folder, --data.root \(.*/data\) must hold train/"),
    (_missing_train, r".*/data/train is missing"),
    (_empty_class, r"class folder .*/data/train/dog has no images \(.jpg, .jpeg, .png, .webp.*\); add its images, "
                   r"or delete the class from train/ and val/"),
    (_val_has_more, r"train/ and val/ in .*/data have different class folders \(4 vs 5; only in val/: wolf\); "
                    r"give every class a folder in both"),
    (_train_has_more, r"different class folders \(4 vs 3; only in train/: zebra\)"),
    (_one_class, r".*/data/train holds one class folder \(cat\); a classifier needs at least two: add a folder"),
    (_no_classes, r".*/data/train has no class folders; expected train/<class>/<image files>"),
    (_broken_link, r".*/data/train/cat/gone.jpg is a link to a file that does not exist; delete the link"),
], ids=["no-root", "no-val", "no-train", "empty-class", "val-has-more", "train-has-more", "one-class", "no-classes",
        "broken-link"])
def test_every_bad_layout_is_one_data_error_naming_the_folder(folder_root, tmp_path, damage, message):
    root = tmp_path / "data"
    shutil.copytree(folder_root, root)
    if damage is None:
        root = tmp_path / "nowhere"
    else:
        damage(root)
    with pytest.raises(DataError, match=message):
        folder_module(root, "fast", tmp_path / "cache").prepare_data()  # what the Trainer calls first
    assert not (tmp_path / "cache").exists()  # nothing measured or cached before the error


def test_a_folder_smaller_than_one_batch_is_refused_not_trained_for_zero_steps(folder_root):
    with pytest.raises(DataError, match=r".*/train has 24 training images, fewer than one batch "
                                        r"\(--data.batch_size 32\); lower --data.batch_size or add images"):
        dm = folder_module(folder_root, batch_size=32, mean=(0.5,) * 3, std=(0.2,) * 3)
        dm.setup("fit")
        dm.train_dataloader()


def test_a_corrupt_image_is_named_or_skipped_and_counted(folder_root, tmp_path, monkeypatch, capsys):
    from convmixer_lit import sources

    root = tmp_path / "data"
    shutil.copytree(folder_root, root)
    bad = root / "train" / "zebra" / "1.png"
    bad.write_bytes(bad.read_bytes()[:300])  # truncated mid-stream
    fix = r"\); delete or replace that file, or pass --data.skip_corrupt true to leave unreadable images out"
    with pytest.raises(DataError, match=rf"cannot read image {bad} \(.*{fix}"):
        _ = folder_module(root, cache_dir=tmp_path / "cache").normalization  # measuring decodes train/
    given = folder_module(root, mean=(0.5,) * 3, std=(0.2,) * 3)
    given.setup("fit")
    index = [p for p, _ in given.train_set.samples].index(str(bad))
    with pytest.raises(DataError, match=rf"cannot read image {bad} \(.*{fix}"):
        given.train_set[index]  # the standard pipeline meets it when it reads it
    for pipeline in ("standard", "fast"):
        dm = folder_module(root, pipeline, tmp_path / "cache", skip_corrupt=True)
        dm.prepare_data()
        dm.setup("fit")
        assert len(dm.train_set) == 23 and len(dm.val_set) == 8
        assert str(bad) not in [p for p, _ in dm.dataset("train").samples]
    err = capsys.readouterr().err
    assert f"left out 1 unreadable image of {root / 'train'} (first: {bad})" in err
    assert err.count("decoding the 24 images") == 1  # found once, then remembered in the cache folder
    monkeypatch.setattr(sources, "find_unreadable", lambda *a, **k: pytest.fail("decoded again"))
    assert len(folder_module(root, cache_dir=tmp_path / "cache", skip_corrupt=True).dataset("train").samples) == 23


# ---- the fast pipeline's cache -----------------------------------------------------------------------------------
def test_a_folder_of_small_images_is_cached_at_their_own_size_not_upsampled(tmp_path, monkeypatch):
    """The crop settings ask for a 64 px train cache at image_size 32; the images' largest shorter side is 56, so
    the cache is 56 (no pixel the images do not have); Imagenette keeps its published cap. The size is read from
    the headers once and kept beside the caches."""
    root = make_folder(tmp_path / "data", per_class={"train": 4, "val": 1})
    samples = folder_module(root).dataset("train").samples
    largest = max(min(Image.open(p).size) for p, _ in samples)
    assert largest < 64  # the synthetic images: 48-64 x 40-56
    cache = tmp_path / "cache"
    dm = folder_module(root, "fast", cache, mean=(0.5,) * 3, std=(0.2,) * 3)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.cache_side == largest and f"-side{largest}-" in dm.train_set.paths.images.name
    assert np.load(cache / dm.train_set.paths.images.name).shape[1:] == (largest, MAX_ASPECT * largest, 3)
    assert [json.loads(p.read_text())["largest_short_side"] for p in cache.glob("sizes-folder-data-*.json")] \
        == [largest]
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("read again"))  # kept: not read again
    assert folder_module(root, "fast", cache).cache_side == largest
    monkeypatch.undo()
    big = folder_module(root, "fast", tmp_path / "other", image_size=16)  # a smaller crop needs less than that
    assert big.cache_side == 32  # ceil(16 / sqrt(0.35 * 3/4)) = 32, below the images' 56: not raised to it


def test_a_changed_folder_is_never_read_stale_from_the_fast_cache(tmp_path):
    root = make_folder(tmp_path / "data", per_class={"train": 3, "val": 1})
    bmp = root / "train" / "cat" / "odd.bmp"  # uncompressed: a replacement of the same size is easy to make
    Image.fromarray(np.full((40, 48, 3), 10, np.uint8)).save(bmp)
    cache = tmp_path / "cache"

    def train_cache() -> tuple[str, np.ndarray]:
        dm = folder_module(root, "fast", cache, mean=(0.5,) * 3, std=(0.2,) * 3)
        dm.prepare_data()
        dm.setup("fit")
        return dm.train_set.paths.images.name, dm.train_set.meta[:, 0]

    odd = [p for p, _ in folder_module(root).dataset("train").samples].index(str(bmp))

    first, labels = train_cache()
    assert first.startswith("train-folder-data-side") and len(labels) == 13
    assert train_cache()[0] == first  # unchanged: reused
    stat = bmp.stat()
    Image.fromarray(np.full((40, 48, 3), 250, np.uint8)).save(bmp)  # replaced: same size, same mtime
    os.utime(bmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert bmp.stat().st_size == stat.st_size and bmp.stat().st_mtime_ns == stat.st_mtime_ns
    replaced, _ = train_cache()
    assert replaced != first
    images = np.load(cache / replaced)
    assert images[odd, :40, :40].min() >= 240  # the new pixels
    (root / "train" / "dog" / "extra.jpg").write_bytes((root / "train" / "dog" / "0.jpg").read_bytes())
    added, labels = train_cache()
    assert added not in (first, replaced) and len(labels) == 14
    (root / "train" / "dog" / "extra.jpg").unlink()
    (root / "train" / "zebra" / "0.jpg").unlink()
    removed, labels = train_cache()
    assert removed not in (first, replaced, added) and len(labels) == 12


def test_imagenette_cache_names_are_the_ones_existing_caches_have(fake_root, tmp_path):
    """The names are a hash of relative path, label, size and mtime per file (no ctime) and the settings, as before
    the sources were split out: a user's existing Imagenette caches stay valid."""
    dm = ImagenetteDataModule(root=str(fake_root), image_size=48, num_workers=0, download=False, pipeline="fast",
                              cache_dir=str(tmp_path))
    dm.setup("fit")
    side = dm.cache_side
    params = {"side": side, "aspect": MAX_ASPECT, "filter": "bicubic", "shape": (side, MAX_ASPECT * side, 3)}
    h = hashlib.sha256(repr(sorted(params.items())).encode())
    train = fake_root / "imagenette2-160" / "train"
    for path, label in sorted(dm.dataset("train").samples):
        st = os.stat(path)
        h.update(f"{os.path.relpath(path, train)}\0{label}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    expected = f"train-imagenette2-160-side{side}-v{CACHE_VERSION}-{h.hexdigest()[:16]}.images.npy"
    assert dm.train_set.paths.images.name == expected


# ---- studies -----------------------------------------------------------------------------------------------------
def test_a_folder_studys_root_is_a_setting_where_imagenettes_is_a_location():
    assert "--data.root" not in flag_settings(["--data.root", "/a"])  # Imagenette: the data moved
    assert flag_settings(["--data.dataset", "folder", "--data.root", "/a"])["--data.root"] == ["/a"]
    assert flag_settings(["--data.root=/a"], {"data": {"dataset": "folder"}}) == {"--data.root": ["/a"]}
    assert "--data.root" not in flag_settings(["--data.root=/a"], {"data": {"dataset": "imagewoof"}})


# ---- through the real commands -----------------------------------------------------------------------------------
@pytest.mark.slow  # end to end: `fit` in its own process, then evaluate and predict on its checkpoint
@pytest.mark.parametrize("pipeline", ["standard", "fast"])
def test_fit_evaluate_and_predict_on_a_folder(folder_root, tmp_path, pipeline, capsys):
    root = tmp_path / "my-photos"
    shutil.copytree(folder_root, root)
    args = tiny_fit_args(root, tmp_path, "--data.dataset", "folder", "--data.pipeline", pipeline,
                         "--data.cache_dir", str(tmp_path / "cache"), "--trainer.max_epochs", "2")
    r = run_cli("convmixer_lit.fit", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "lightning_logs" / "convmixer" / "version_0"
    result = json.loads((run / "result.json").read_text())
    assert result["completed"] and result["data_pipeline"] == pipeline and result["hparams"]["num_classes"] == 4
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["hyper_parameters"]["class_names"] == sorted(FOLDER_CLASSES)
    head = [v for k, v in ckpt["state_dict"].items() if k.endswith("weight") and v.ndim == 2][-1]
    assert head.shape == (4, 16)  # the head sized from the folder's 4 classes, with no flag for it
    data = ckpt["datamodule_hyper_parameters"]
    assert data["dataset"] == "folder" and len(data["mean"]) == len(data["std"]) == 3
    assert "measured the per-channel mean" in r.stderr

    result = evaluate.main(["--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--accelerator", "cpu"])
    assert result["images"] == 8 and result["class_names"] == sorted(FOLDER_CLASSES)
    assert result["top1"] == pytest.approx(ckpt_val_acc(run, ckpt["epoch"]), abs=1e-6)
    capsys.readouterr()

    # predict needs only the checkpoint: the folder is gone, its names and statistics are in the file
    image = tmp_path / "red fox.png"
    shutil.copy(root / "val" / "red fox" / "1.png", image)
    shutil.rmtree(root)
    r = run_cli("convmixer_lit.predict", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"), str(image),
                "--top_k", "4", "--json", "--accelerator", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    top = json.loads(r.stdout)["predictions"][0]["top_k"]
    assert sorted(c["class"] for c in top) == sorted(FOLDER_CLASSES)
    assert sum(c["probability"] for c in top) == pytest.approx(1, abs=1e-4)


def ckpt_val_acc(run: Path, epoch: int) -> float:
    history = json.loads((run / "result.json").read_text())["history"]
    return next(h["val_acc"] for h in history if h["epoch"] == epoch)


@pytest.mark.slow  # end to end: compare and its fit processes
def test_compare_two_models_on_a_folder(folder_root, tmp_path):
    preset = tmp_path / "preset"
    preset.mkdir()
    models = {"convmixer": {"class_path": "convmixer_lit.models.ConvMixer",
                            "init_args": {"dim": 16, "depth": 1, "kernel_size": 3, "patch_size": 8}},
              "resnet9": {"class_path": "convmixer_lit.models.ResNet9", "init_args": {"width": 4}}}
    for name, model in models.items():
        config = {"model": model, "data": {"image_size": 32, "batch_size": 8, "num_workers": 0},
                  "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False}}
        (preset / f"{name}.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "study"
    r = run_cli("convmixer_lit.compare", "--preset", str(preset), "--models", *models, "--seeds", "0",
                "--output", str(out), "--data.dataset", "folder", "--data.root", str(folder_root),
                "--data.cache_dir", str(tmp_path / "cache"), "--trainer.accelerator", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    for name in models:
        result = json.loads((out / "results" / f"{name}-seed0.json").read_text())
        assert result["completed"] and result["hparams"]["num_classes"] == 4
        assert result["study"]["pass_through"][:4] == ["--data.dataset", "folder", "--data.root", str(folder_root)]
    assert "convmixer" in (out / "summary.md").read_text() and (out / "summary.csv").is_file()
    # the same study on another folder is other settings: refused, nothing overwritten
    other = make_imagenette(tmp_path / "other", name="x")
    r = run_cli("convmixer_lit.compare", "--preset", str(preset), "--models", *models, "--seeds", "0",
                "--output", str(out), "--data.dataset", "folder", "--data.root", str(other / "x"),
                "--trainer.accelerator", "cpu", cwd=tmp_path)
    assert r.returncode == 2 and "was made with other settings" in r.stderr.strip().splitlines()[-1]


def test_images_inside_hidden_or_system_folders_within_a_class_are_not_read(folder_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(folder_root, root)
    before = {p for p, _ in folder_module(root).dataset("train", transform=lambda x: x).samples}
    some = next((root / "train" / "cat").glob("*.jpg"))
    for hidden in (".ipynb_checkpoints", "@eaDir", "__MACOSX"):
        (root / "train" / "cat" / hidden).mkdir()
        shutil.copy(some, root / "train" / "cat" / hidden / "thumb.jpg")
    (root / "train" / "cat" / "more").mkdir()  # an ordinary sub-folder still counts, as in ImageFolder
    shutil.copy(some, root / "train" / "cat" / "more" / "extra.jpg")
    after = {p for p, _ in folder_module(root).dataset("train", transform=lambda x: x).samples}
    assert after - before == {str(root / "train" / "cat" / "more" / "extra.jpg")}


def test_a_resume_keeps_its_statistics_and_refuses_renamed_classes(folder_root, tmp_path):
    from convmixer_lit import fit
    from convmixer_lit.checkpoint import check_checkpoint
    from convmixer_lit.errors import CheckpointError

    root = tmp_path / "data"
    shutil.copytree(folder_root, root)
    fit.main(tiny_fit_args(root, tmp_path / "out", "--data.dataset", "folder", "--data.batch_size", "4",
                           "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--run_name", "r"))
    ckpt = tmp_path / "out" / "lightning_logs" / "convmixer" / "r" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=False)
    model = saved["hyper_parameters"]
    # new images would change a fresh measurement; the resumed run takes the checkpoint's numbers instead
    for i, extra in enumerate(sorted((root / "train" / "cat").glob("*"))[:3]):
        shutil.copy(extra, root / "train" / "dog" / f"copy{i}{extra.suffix}")
    dm = folder_module(root)
    from convmixer_lit.models import ConvMixer

    net = ConvMixer(**{k: v for k, v in model.items() if not k.startswith("_")})
    check_checkpoint(ckpt, net, dm)
    assert dm.normalization == (tuple(saved["datamodule_hyper_parameters"]["mean"]),
                                tuple(saved["datamodule_hyper_parameters"]["std"]))
    # a class folder renamed: the same count, shifted labels -> refused
    for split in ("train", "val"):
        (root / split / "dog").rename(root / split / "bird")
    with pytest.raises(CheckpointError, match="was trained on the classes"):
        check_checkpoint(ckpt, net, folder_module(root))


def test_a_folder_study_refuses_runs_on_changed_images(folder_root, tmp_path):
    """The study record holds the folder's fingerprint: images added between two calls are refused, not mixed in;
    the same images under another path are the same data."""
    from convmixer_lit.errors import ConfigError
    from convmixer_lit.study import plan
    from convmixer_lit.study.plan import Run, check_same_study, study_record

    root = tmp_path / "data"
    shutil.copytree(folder_root, root)
    run = Run("m", 0, tmp_path / "m.yaml", "convmixer", tmp_path)
    passed = ["--data.dataset", "folder", "--data.root", str(root)]
    first = study_record(run, {"model": {}}, passed, None)
    assert first["data"] and study_record(run, {"model": {}}, ["--data.root", "x"], None).get("data") is None
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    plan._fingerprint.cache_clear()
    assert plan._fingerprint(str(copy)) == first["data"]
    shutil.copy(next((root / "train" / "cat").iterdir()), root / "train" / "dog" / "new.jpg")
    plan._fingerprint.cache_clear()
    with pytest.raises(ConfigError, match="was made on other images: the folder .* has changed since"):
        check_same_study(tmp_path / "r.json", first, study_record(run, {"model": {}}, passed, None))
