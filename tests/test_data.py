import hashlib
import http.server
import sys
import tarfile
import threading
from functools import partial

import pytest
import torch

from convmixer_lit.data import ImagenetteDataModule, normalize
from convmixer_lit.errors import ConfigError, DataError

from conftest import WNIDS, make_imagenette


def test_batches_shapes_dtypes_and_classes(fake_root):
    dm = ImagenetteDataModule(pipeline="standard", root=str(fake_root),
                                  image_size=48, batch_size=5, num_workers=0, download=False)
    assert dm.num_classes == 3 and dm.classes == WNIDS
    assert dm.class_names == ["tench", "English springer", "parachute"]
    dm.setup("fit")
    assert len(dm.train_set) == 36 and len(dm.val_set) == 12
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (5, 3, 48, 48) and images.dtype == torch.uint8  # grayscale files became RGB
    assert labels.dtype == torch.int64 and labels.max() < 3
    x, y = dm.on_after_batch_transfer((images, labels), 0)
    assert x.dtype == torch.float32 and torch.equal(y, labels)
    assert -3 < x.mean() < 3 and 0.2 < x.std() < 3  # normalised


def test_validation_is_deterministic_and_training_is_random(fake_root):
    dm = ImagenetteDataModule(pipeline="standard", root=str(fake_root),
                                  image_size=48, batch_size=12, num_workers=0, download=False)
    dm.setup("fit")
    a, b = next(iter(dm.val_dataloader()))[0], next(iter(dm.val_dataloader()))[0]
    assert torch.equal(a, b)
    first = torch.stack([dm.train_set[0][0] for _ in range(5)])
    assert not all(torch.equal(first[0], f) for f in first[1:])


def test_validation_crop_is_the_centre(fake_root):
    """A 160 x W image at image_size 160 is centre-cropped, not resized: the centre pixels are unchanged."""
    dm = ImagenetteDataModule(pipeline="standard", root=str(fake_root), image_size=160, num_workers=0, download=False)
    dm.setup("validate")
    path, _ = dm.val_set.samples[0]
    import numpy as np
    from PIL import Image
    src = np.asarray(Image.open(path).convert("RGB"))
    h, w = src.shape[:2]
    top, left = (h - 160) // 2, (w - 160) // 2
    expected = torch.from_numpy(src[top:top + 160, left:left + 160].copy()).permute(2, 0, 1)
    got = dm.val_set[0][0]
    assert (got.int() - expected.int()).abs().max() <= 1


def test_grayscale_jpeg_becomes_rgb(fake_root):
    dm = ImagenetteDataModule(pipeline="standard", root=str(fake_root), image_size=32, num_workers=0, download=False)
    dm.setup("validate")
    gray = [i for i, (p, _) in enumerate(dm.val_set.samples) if p.endswith("_3.JPEG")]
    img = dm.val_set[gray[0]][0]
    assert img.shape == (3, 32, 32) and torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])


def test_normalize_matches_torchvision():
    from torchvision.transforms import v2

    from convmixer_lit.data import IMAGENET_MEAN, IMAGENET_STD
    x = torch.randint(0, 256, (2, 3, 8, 6), dtype=torch.uint8)
    ref = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(x.float() / 255)
    assert torch.allclose(normalize(x), ref, atol=1e-5) and normalize(x).is_contiguous()
    # the fast pipeline's channels-last batches and any other strides: same values, layout kept
    cl = normalize(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(cl, ref, atol=1e-5) and cl.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(normalize(x.transpose(2, 3)), ref.transpose(2, 3), atol=1e-5)
    assert x.dtype == torch.uint8  # the input is left alone


def test_missing_folder_without_download_says_what_to_do(tmp_path):
    dm = ImagenetteDataModule(root=str(tmp_path), download=False)
    with pytest.raises(DataError, match="imagenette2-160.*--data.download true"):
        _ = dm.num_classes  # reading the classes reads the folder


def test_wrong_layout_is_reported(tmp_path):
    (tmp_path / "imagenette2-160" / "train" / "n01440764").mkdir(parents=True)
    with pytest.raises(DataError, match="val is missing"):
        _ = ImagenetteDataModule(root=str(tmp_path), download=False).num_classes
    (tmp_path / "imagenette2-160" / "val" / "n02102040").mkdir(parents=True)
    with pytest.raises(DataError, match="different class folders"):
        _ = ImagenetteDataModule(root=str(tmp_path), download=False).num_classes


def test_imagewoof_and_sizes_pick_their_folders(tmp_path):
    assert ImagenetteDataModule(root=str(tmp_path), dataset="imagewoof").folder.name == "imagewoof2-160"
    assert ImagenetteDataModule(root=str(tmp_path), size="320px").folder.name == "imagenette2-320"
    assert ImagenetteDataModule(root=str(tmp_path), dataset="imagewoof", size="full").folder.name == "imagewoof2"


def test_bad_values_raise_config_errors(tmp_path):
    for kwargs in (dict(batch_size=0), dict(image_size=2), dict(crop_scale=(0.9, 0.2)), dict(num_workers=-1)):
        with pytest.raises(ConfigError):
            ImagenetteDataModule(root=str(tmp_path), **kwargs)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no access log on the test's output
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that stops reading mid-file (the interrupted-download tests) is expected, not a traceback."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture
def served_archive(tmp_path):
    """A local HTTP server (127.0.0.1 only) serving a synthetic imagenette2-160.tgz."""
    src = make_imagenette(tmp_path / "src", per_class={"train": 2, "val": 1})
    www = tmp_path / "www"
    www.mkdir()
    archive = www / "imagenette2-160.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "imagenette2-160", arcname="imagenette2-160")
    server = QuietServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(www)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/imagenette2-160.tgz"
    yield url, hashlib.md5(archive.read_bytes()).hexdigest()
    server.shutdown()


def test_download_verifies_and_extracts(served_archive, tmp_path):
    url, md5 = served_archive
    dm = ImagenetteDataModule(pipeline="standard", root=str(tmp_path / "data"), url=url, md5=md5, num_workers=0)
    assert dm.num_classes == 3
    assert (tmp_path / "data" / "imagenette2-160" / "val" / WNIDS[0]).is_dir()
    assert not list((tmp_path / "data").glob(".extract-*"))  # no half-extracted leftovers


def test_download_with_wrong_checksum_is_refused(served_archive, tmp_path):
    url, _ = served_archive
    dm = ImagenetteDataModule(root=str(tmp_path / "data"), url=url, md5="0" * 32)
    with pytest.raises(DataError, match="md5"):
        dm.prepare_data()
    assert not (tmp_path / "data" / "imagenette2-160").exists()
    assert not (tmp_path / "data" / "imagenette2-160.tgz").exists()


def test_offline_download_names_the_url_and_the_fix(tmp_path):
    import socket
    with socket.socket() as s:  # a port nobody listens on: connection refused, like being offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/imagenette2-160.tgz"
    with pytest.raises(DataError, match=f"could not download {url}.*put the archive"):
        ImagenetteDataModule(root=str(tmp_path), url=url).prepare_data()


@pytest.mark.slow
def test_real_data(real_root):
    dm = ImagenetteDataModule(pipeline="standard", root=str(real_root),
                                  image_size=64, batch_size=16, num_workers=0, download=False)
    assert dm.num_classes == 10
    assert "tench" in dm.class_names and "parachute" in dm.class_names
    dm.setup("fit")
    assert len(dm.train_set) == 9469 and len(dm.val_set) == 3925
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 3, 64, 64) and images.dtype == torch.uint8


@pytest.mark.slow
def test_real_grayscale_images_load_as_rgb(real_root):
    from PIL import Image
    dm = ImagenetteDataModule(pipeline="standard", root=str(real_root), image_size=64, num_workers=0, download=False)
    dm.setup("fit")
    gray = []
    for i, (path, _) in enumerate(dm.train_set.samples):
        with Image.open(path) as im:
            if im.mode == "L":
                gray.append(i)
        if len(gray) == 3:
            break
    assert gray, "the real data has grayscale JPEGs"
    for i in gray:
        assert dm.train_set[i][0].shape == (3, 64, 64)
