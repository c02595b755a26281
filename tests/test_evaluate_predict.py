"""Using a trained model: `evaluate` reproduces what the run logged, `predict` names classes, and a DDP run's logged
accuracy is the single-process accuracy of its checkpoint (no image counted twice, metrics synced across ranks)."""

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from convmixer_lit import evaluate, predict
from convmixer_lit.data import ImagenetteDataModule
from convmixer_lit.errors import CheckpointError
from convmixer_lit.fit import main as fit
from convmixer_lit.models import ConvMixer

from conftest import make_imagenette, run_cli, tiny_fit_args

NAMES = ["tench", "English springer", "parachute"]  # conftest's three wnids, in label order


@pytest.fixture(scope="module")
def trained(fake_root, tmp_path_factory) -> tuple[Path, dict]:
    """A two-epoch tiny ConvMixer (default precision: bf16-mixed where the CPU has bf16): its run folder, summary."""
    out = tmp_path_factory.mktemp("trained")
    summary = fit(tiny_fit_args(fake_root, out, "--trainer.max_epochs", "2"))
    return out / "lightning_logs" / "convmixer" / "version_0", summary


def best_checkpoint(run: Path) -> Path:
    (best,) = (run / "checkpoints").glob("best-epoch*.ckpt")
    return best


def test_evaluate_reproduces_the_logged_val_acc_of_the_checkpoints_epoch(trained, capsys):
    run, summary = trained
    best = best_checkpoint(run)
    result = evaluate.main(["--ckpt_path", str(best), "--accelerator", "cpu"])
    logged = next(h for h in summary["history"] if h["epoch"] == result["epoch"])
    assert result["top1"] == pytest.approx(logged["val_acc"], abs=1e-6)
    assert result["loss"] == pytest.approx(logged["val_loss"], abs=1e-4)
    events = EventAccumulator(str(run))
    events.Reload()
    assert result["top1"] == pytest.approx(events.Scalars("val/acc")[result["epoch"]].value, abs=1e-6)

    out = run / "evaluate" / best.stem
    assert (out / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["top1"] == result["top1"] and metrics["images"] == 12 and metrics["class_names"] == NAMES
    assert list(metrics["per_class"]) == NAMES
    assert sum(c["images"] for c in metrics["per_class"].values()) == 12
    matrix = torch.tensor(metrics["confusion_matrix"])
    assert matrix.trace() / matrix.sum() == pytest.approx(result["top1"], abs=1e-6)
    printed = capsys.readouterr().out
    assert "top-1 accuracy:" in printed and all(name in printed for name in NAMES)


def test_predict_names_the_classes_the_model_picks_on_validation_tensors(trained, fake_root, capsys):
    run, _ = trained
    best = best_checkpoint(run)
    val = fake_root / "imagenette2-160" / "val"
    images = [val / "n01440764" / "n01440764_0.JPEG", val / "n03888257" / "n03888257_3.JPEG"]  # _3: grayscale

    predict.main(["--ckpt_path", str(best), *map(str, images), "--top_k", "2", "--accelerator", "cpu"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(images[0]) and lines[3] == str(images[1]) and len(lines) == 6
    assert lines[1].lstrip().startswith("1. ") and lines[1].rstrip().endswith("%")

    result = predict.main(["--ckpt_path", str(best), *map(str, images), "--json", "--accelerator", "cpu"])
    parsed = json.loads(capsys.readouterr().out)
    assert parsed == result and [p["image"] for p in parsed["predictions"]] == list(map(str, images))

    # the reference: Lightning's own loader, and the data module's validation sample and batch transform
    model = ConvMixer.load_from_checkpoint(best, map_location="cpu").eval()
    dm = ImagenetteDataModule(root=str(fake_root), image_size=model.image_size, num_workers=0)
    dataset = dm.dataset("val")
    index = {path: i for i, (path, _) in enumerate(dataset.samples)}
    samples = [dataset[index[str(path)]] for path in images]
    batch = (torch.stack([x for x, _ in samples]), torch.tensor([y for _, y in samples]))
    x, _ = dm.on_after_batch_transfer(batch, 0)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=parsed["precision"] == "bf16-mixed"):
        expected = model(x).float().softmax(-1)  # one batch, as predict runs them: same kernels, same rounding
    for prediction, reference in zip(parsed["predictions"], expected):
        top = prediction["top_k"]
        probs = [c["probability"] for c in top]
        assert len(top) == 3  # --top_k 5, capped at the 3 classes
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
        assert {c["class"] for c in top} == set(NAMES) and all(NAMES[c["index"]] == c["class"] for c in top)
        assert top[0]["index"] == int(reference.argmax())
        assert probs == pytest.approx(reference.sort(descending=True).values.tolist(), abs=1e-5)
    for i, prediction in enumerate(parsed["predictions"]):  # the text form (--top_k 2) lists the same two first
        for n, c in enumerate(prediction["top_k"][:2]):
            assert lines[3 * i + 1 + n].split(maxsplit=1)[1].startswith(c["class"] + " ")


@pytest.mark.slow
def test_predict_errors_are_one_line(trained, fake_root, tmp_path, capsys):
    best = str(best_checkpoint(trained[0]))
    r = run_cli("convmixer_lit.predict", "--ckpt_path", best, str(tmp_path / "missing.jpg"), cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"error: image {tmp_path / 'missing.jpg'} not found"]

    not_an_image = tmp_path / "notes.JPEG"
    not_an_image.write_text("not a picture")
    image = str(next((fake_root / "imagenette2-160" / "val" / "n01440764").iterdir()))
    for args, expected in ((["--ckpt_path", best, str(not_an_image)], f"error: cannot read image {not_an_image}"),
                           (["--ckpt_path", str(not_an_image), image], f"error: {not_an_image} is not a readable "
                                                                       f"checkpoint"),
                           (["--ckpt_path", best, image, "--top_k", "0"], "error: --top_k must be at least 1")):
        with pytest.raises(SystemExit) as e:
            predict.main(args)
        captured = capsys.readouterr()
        assert e.value.code == 2 and captured.out == ""
        assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith(expected)


def test_evaluate_errors_are_one_line(trained, tmp_path, capsys):
    """A precision Lightning rejects, and a checkpoint whose hyper-parameters its class no longer takes."""
    best = best_checkpoint(trained[0])
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--ckpt_path", str(best), "--accelerator", "cpu", "--precision", "bogus",
                       "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: --accelerator cpu --precision bogus: ")
    ckpt = evaluate.read_checkpoint(best)
    ckpt["hyper_parameters"]["no_such_argument"] = 1
    with pytest.raises(CheckpointError, match=r"hyper-parameters no longer fit \S*ConvMixer \(.*no_such_argument"):
        evaluate.load_model(ckpt, best)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_logs_the_single_process_accuracy(tmp_path):
    """15 validation images on 2 ranks: a padded sampler would count one twice (with this seed, 9/16 instead of
    9/15), and unsynced metrics would see only rank 0's 8. Batches of 7 give the ranks 2 and 1 validation batches,
    which works only while validation makes no collective call per step."""
    root = make_imagenette(tmp_path / "data", per_class={"train": 12, "val": 5})
    out = tmp_path / "out"
    r = run_cli("convmixer_lit.fit", *tiny_fit_args(root, out, "--trainer.devices", "2", "--trainer.strategy", "ddp",
                                                    "--data.batch_size", "7", "--trainer.max_epochs", "3"),
                cwd=tmp_path, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("best val top-1") == 1  # rank 0 alone reports
    assert [p.name for p in (out / "lightning_logs" / "convmixer").iterdir()] == ["version_0"]
    run = out / "lightning_logs" / "convmixer" / "version_0"
    assert "batch_size: 7" in (run / "config.yaml").read_text()
    result = json.loads((run / "result.json").read_text())
    assert result["world_size"] == 2 and result["completed"] and len(result["history"]) == 3
    assert result["global_step"] == 3 * (36 // 2 // 7)  # each rank steps through its half of the training set

    single = evaluate.main(["--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--accelerator", "cpu"])
    assert single["images"] == 15 and single["epoch"] == result["history"][-1]["epoch"]
    assert single["top1"] == pytest.approx(result["final_val_acc"], abs=1e-6)
    assert single["loss"] == pytest.approx(result["history"][-1]["val_loss"], abs=1e-4)


def test_evaluate_normalises_as_the_checkpoint_trained_whatever_data_it_reads(trained, tmp_path):
    """An Imagenette checkpoint (ImageNet's statistics, not recorded) evaluated on a folder of images must not have
    the folder's own statistics measured for it: the model saw ImageNet-normalised inputs. Given flags still win."""
    from convmixer_lit.images import IMAGENET_MEAN, IMAGENET_STD

    best = str(best_checkpoint(trained[0]))
    assert evaluate.read_checkpoint(best)["datamodule_hyper_parameters"].get("mean") is None
    args, _ = evaluate.parse(["--ckpt_path", best, "--data.dataset", "folder", "--data.root", str(tmp_path)])
    assert tuple(args.data.mean) == IMAGENET_MEAN and tuple(args.data.std) == IMAGENET_STD
    args, _ = evaluate.parse(["--ckpt_path", best, "--data.mean", "[0.5,0.5,0.5]", "--data.std", "[0.2,0.2,0.2]"])
    assert tuple(args.data.mean) == (0.5, 0.5, 0.5) and tuple(args.data.std) == (0.2, 0.2, 0.2)
