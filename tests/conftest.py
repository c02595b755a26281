"""Shared fixtures: a synthetic Imagenette-layout folder of real JPEGs, and the real data where present."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convmixer_lit.hardware import compile_cache_per_cpu_class

# as the kit does before it compiles (base.py): tests that call torch.compile themselves must not reuse kernels that
# inductor cached under another instruction set (a run under docs/benchmarks.md's AVX2 emulation got wrong sums)
compile_cache_per_cpu_class()

# Three Imagenette classes and their wnids: enough to exercise names, labels and class counts.
WNIDS = ["n01440764", "n02102040", "n03888257"]
REAL_DATA_ENV = "CONVMIXER_LIT_DATA"


def make_imagenette(root: Path, name: str = "imagenette2-160", per_class: dict | None = None,
                    wnids: list[str] = WNIDS, seed: int = 0) -> Path:
    """Write `root/name/{train,val}/<wnid>/*.JPEG`: shortest side 160, random aspect, every 4th image grayscale.

    Each class has its own mean colour, so a model can learn it in a few steps.
    """
    rng = np.random.default_rng(seed)
    per_class = per_class or {"train": 12, "val": 4}
    for split, n in per_class.items():
        for c, wnid in enumerate(wnids):
            d = root / name / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                long_side = int(rng.integers(160, 260))
                w, h = (long_side, 160) if i % 2 else (160, long_side)
                base = np.zeros(3)
                base[c % 3] = 200
                pixels = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
                img = Image.fromarray(pixels)
                if i % 4 == 3:
                    img = img.convert("L")
                img.save(d / f"{wnid}_{i}.JPEG", quality=85)
    return root


FOLDER_CLASSES = ["cat", "dog", "red fox", "zebra"]  # a user's own classes: 4 of them (not Imagenette's 10), a space
# (file name, how it is saved): every format and mode a user's folder may hold, cycled over each class's images
FOLDER_FORMATS = [("{i}.jpg", "RGB"), ("{i}.png", "RGBA"), ("{i}.webp", "RGB"), ("{i}.PNG", "L"),
                  ("{i}.png", "I;16"), ("{i}.png", "P")]


def make_folder(root: Path, classes: list[str] = FOLDER_CLASSES, per_class: dict | None = None, seed: int = 0
                ) -> Path:
    """Write a user's own dataset, `root/{train,val}/<class>/`: small images (48 x 40 to 64 x 56) as JPEG, PNG and
    WebP, in RGB, RGBA, grayscale, 16-bit grayscale and palette-with-transparency modes (`FOLDER_FORMATS`, cycled).

    Each class has its own mean colour (so a model can learn the colour ones in a few steps); returns `root`.
    """
    rng = np.random.default_rng(seed)
    per_class = per_class or {"train": 6, "val": 2}
    for split, n in per_class.items():
        for c, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                w, h = int(rng.integers(48, 65)), int(rng.integers(40, 57))
                base = np.full(3, 40.0)
                base[c % 3] = 200
                pixels = np.clip(base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
                file, mode = FOLDER_FORMATS[i % len(FOLDER_FORMATS)]
                img = Image.fromarray(pixels)
                if mode == "RGBA":
                    img = Image.fromarray(np.dstack([pixels, rng.integers(0, 256, (h, w), dtype=np.uint8)]))
                elif mode == "I;16":
                    img = Image.fromarray(pixels.mean(2).astype(np.uint16) * 257)
                elif mode == "P":
                    img = img.convert("P")
                    img.info["transparency"] = 0
                elif mode == "L":
                    img = img.convert("L")
                img.save(d / file.format(i=i), **({"transparency": 0} if mode == "P" else {}))
    return root


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory) -> Path:
    """A user's own dataset (see `make_folder`): 4 classes, 24 train and 8 val images."""
    return make_folder(tmp_path_factory.mktemp("folder") / "my-photos")


@pytest.fixture(scope="session", autouse=True)
def private_user_cache(tmp_path_factory) -> Path:
    """Point $XDG_CACHE_HOME (the fast pipeline's default cache folder) at a temporary folder for the whole run,
    subprocesses included, so the suite never fills or reads the user's real cache."""
    folder = tmp_path_factory.mktemp("xdg-cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory) -> Path:
    """A data root holding a small synthetic `imagenette2-160/` (3 classes, 36 train and 12 val images)."""
    return make_imagenette(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The folder holding the real `imagenette2-160/`, from $CONVMIXER_LIT_DATA (set by .ci/run)."""
    value = os.environ.get(REAL_DATA_ENV)
    if not value:
        pytest.skip(f"real-data test: set {REAL_DATA_ENV} to the folder that holds imagenette2-160/")
    root = Path(value)
    if not (root / "imagenette2-160" / "train").is_dir():
        pytest.skip(f"real-data test: {root}/imagenette2-160/train not found")
    return root


def run_cli(module: str, *args: str, cwd: Path | None = None, env: dict | None = None,
            timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` as a user would, capturing output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


TINY_CONVMIXER = ["--model", "convmixer", "--model.dim", "16", "--model.depth", "1", "--model.patch_size", "8",
                  "--model.kernel_size", "3"]


def tiny_fit_args(root: Path, out: Path, *extra: str, model: list[str] = TINY_CONVMIXER) -> list[str]:
    """Flags for a seconds-long CPU run on the synthetic data."""
    return [*model, "--data.root", str(root), "--data.image_size", "32", "--data.batch_size", "8",
            "--data.num_workers", "0", "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1",
            "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.log_every_n_steps", "1", "--seed_everything", "0",
            *extra]
