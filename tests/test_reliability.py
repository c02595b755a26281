"""Issue 6: never lose a run, never answer a user's mistake with a traceback — each item through the real command.

Bad inputs: `python -m convmixer_lit.fit` takes ~5 s to start here (torch + Lightning imports), and some 40 bad inputs
are tried, so they run as one batch: one interpreter imports the kit once, then forks a child per case that runs
`convmixer_lit.fit` as `__main__` with its own argv, working folder, stdout/stderr files and exit status, as
`python -m` does. The rest (kill and resume, non-finite loss, a corrupt JPEG read by a DataLoader worker, a misspelt
flag) start a fresh `python -m convmixer_lit.fit` each. docs/reliability.md lists every case and its message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from convmixer_lit.fit import main

from conftest import make_folder, make_imagenette, run_cli, tiny_fit_args

pytestmark = pytest.mark.slow  # every case runs the real command in its own process (`pytest -m "not slow"` skips)
FIT = "convmixer_lit.fit"
STEPS_PER_EPOCH = 36 // 8  # the synthetic set: 36 training images, batch 8, drop_last

# ---- the batch runner -------------------------------------------------------------------------------------------
DRIVER = r"""
import json, os, runpy, sys, traceback
cases = json.load(open(sys.argv[1]))
import convmixer_lit.cli  # torch, Lightning and the kit, once; `fit` itself runs fresh in each child
for case in cases:
    pid = os.fork()
    if pid == 0:
        for fd, name in ((1, case["stdout"]), (2, case["stderr"])):
            os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        os.chdir(case["cwd"])
        sys.path[:0] = case["pythonpath"]
        sys.argv = ["python -m convmixer_lit.fit", *case["argv"]]
        code = 0
        try:
            runpy.run_module("convmixer_lit.fit", run_name="__main__", alter_sys=True)
        except SystemExit as e:  # as the interpreter does at exit
            code = e.code if isinstance(e.code, int) else (e.code is not None and print(e.code, file=sys.stderr) or 0)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    with open(case["rc"], "w") as f:
        f.write(str(os.waitstatus_to_exitcode(status)))
"""


def run_batch(cases: list[dict], work: Path) -> dict[str, subprocess.CompletedProcess]:
    """Run `python -m convmixer_lit.fit` once per case (dicts with name, argv, cwd, optional pythonpath)."""
    jobs = []
    for case in cases:
        stem = work / f"case-{case['name']}"
        jobs.append({"argv": case["argv"], "cwd": str(case.get("cwd", work)), "pythonpath": case.get("pythonpath", []),
                     "stdout": f"{stem}.out", "stderr": f"{stem}.err", "rc": f"{stem}.rc"})
    spec = work / "cases.json"
    spec.write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "-c", DRIVER, str(spec)], env=env, check=True, timeout=600)
    return {case["name"]: subprocess.CompletedProcess(case["argv"], int(Path(job["rc"]).read_text()),
                                                      Path(job["stdout"]).read_text(), Path(job["stderr"]).read_text())
            for case, job in zip(cases, jobs)}


def error_line(r: subprocess.CompletedProcess) -> str:
    """The command's one `error: ...` line, after checking it is the only one, the last, and no traceback came."""
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == errors[0], r.stderr
    return errors[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def run_dir(out: Path, name: str = "version_0", model: str = "convmixer") -> Path:
    return out / "lightning_logs" / model / name


def result(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


# ---- bad inputs (and the reproducibility runs), one batch -------------------------------------------------------
# (id, extra flags, message pattern, whole stderr is the one line). The flags are appended to a tiny CPU run's, so
# they override it. Placeholders: {tmp} the batch folder, {data} the synthetic dataset, {port} a closed port, {folder} a
# synthetic folder dataset (4 classes).
BAD_INPUTS = [
    ("unknown-model", ["--model", "vitt"],
     "error: unknown model 'vitt'; available: convmixer, isotropic, resnet18, resnet9, timm_vit, vit, or a class path",
     True),
    ("unknown-flag", ["--foo", "1"], r"error: unknown flag --foo \(flags are spelt in full; `python -m "
     r"convmixer_lit.fit --help` lists them\)", True),
    ("misspelt-model-option", ["--model.dimm", "8"],
     r"error: --model.dimm is not an option of ConvMixer; did you mean --model.dim\?", True),
    ("non-number", ["--model.lr", "abc"], r"error: --model.lr 'abc': expected a number", True),
    ("bad-choice", ["--data.size", "999px"], r"error: --data.size '999px': expected one of 160px, 320px, full", True),
    ("class-path-not-found", ["--model", "convmixer_lit.models.Nope"],
     "error: --model convmixer_lit.models.Nope: convmixer_lit.models has no class Nope", True),
    ("config-missing", ["--config", "{tmp}/nope.yaml"], r"error: --config .*/nope.yaml: no such file", True),
    ("config-malformed", ["--config", "{tmp}/malformed.yaml"],
     r"error: --config .*/malformed.yaml is not valid YAML at line 2, column 4 \(.*\); fix the file", True),
    ("config-misspelt-key", ["--config", "{tmp}/misspelt.yaml"],
     r"error: unknown option trainer.max_epoch \(in a config file\); did you mean trainer.max_epochs\?", True),
    ("patch-larger-than-image", ["--model.patch_size", "64"],
     r"error: --model.patch_size 64 does not fit a 32px image; use a patch between 1 and --data.image_size", False),
    ("vit-grid-of-zero", ["--model", "vit", "--model.dim", "16", "--model.num_heads", "2", "--model.patch_size", "40"],
     r"error: --model.patch_size 40 does not fit a 32px image", False),
    ("heads-do-not-divide-width", ["--model", "vit", "--model.dim", "18", "--model.num_heads", "4"],
     r"error: --model.num_heads 4 does not divide --model.dim 18; pick a width that is a multiple", False),
    ("zero-lr", ["--model.lr", "0"], r"error: --model.lr must be positive, got 0.0", False),
    ("negative-lr", ["--model.lr", "-1"], r"error: --model.lr must be positive, got -1.0", False),
    ("zero-batch-size", ["--data.batch_size", "0"], r"error: --data.batch_size must be positive, got 0", False),
    ("image-too-small", ["--model", "resnet9", "--model.width", "4", "--data.image_size", "4"],
     r"error: --data.image_size must be at least 8 pixels, got 4", False),
    ("unknown-accelerator", ["--trainer.accelerator", "tpuu"],
     r"error: invalid --trainer.\* setting: You selected an invalid accelerator name: `accelerator='tpuu'`", False),
    ("endless-run", ["--trainer.max_epochs", "-1"],
     r"error: the one-cycle schedule needs a run of known length: set --trainer.max_epochs", False),
    ("dataset-missing", ["--data.root", "{tmp}/nodata", "--data.download", "false"],
     r"error: dataset folder .*/nodata/imagenette2-160 not found; put the extracted imagenette2-160/ under "
     r"--data.root, or pass --data.download true", False),
    ("dataset-folder-empty", ["--data.root", "{tmp}/empty", "--data.download", "false"],
     r"error: .*/empty/imagenette2-160/train is missing: .* must hold train/ and val/", False),
    ("dataset-without-class-folders", ["--data.root", "{tmp}/flat", "--data.download", "false"],
     r"error: .*/flat/imagenette2-160/train has no class folders; expected train/<class>/<image files>", False),
    ("dataset-class-folders-differ", ["--data.root", "{tmp}/mismatch", "--data.download", "false"],
     r"error: train/ and val/ in .*/mismatch/imagenette2-160 have different class folders \(3 vs 2; only in "
     r"train/: n03888257\); give every class a folder in both", False),
    ("dataset-class-without-images", ["--data.root", "{tmp}/noimages", "--data.download", "false"],
     r"error: class folder .*/noimages/imagenette2-160/train/n03888257 has no images \(.jpg, .jpeg, .png, .webp, "
     r".bmp, .tif, ...\); add its images, or delete the class from train/ and val/", False),
    # a user's own folder (--data.dataset folder): the root holds train/ and val/ itself
    ("folder-missing", ["--data.dataset", "folder", "--data.root", "{tmp}/nofolder"],
     r"error: --data.root .*/nofolder not found: with --data.dataset folder it is the folder that holds "
     r"train/<class>/<images> and val/<class>/<images>", False),
    ("folder-without-val", ["--data.dataset", "folder", "--data.root", "{tmp}/noval"],
     r"error: .*/noval/val is missing: with --data.dataset folder, --data.root \(.*/noval\) must hold "
     r"train/<class>/<images> and val/<class>/<images>", False),
    ("folder-empty-class", ["--data.dataset", "folder", "--data.root", "{tmp}/emptyclass"],
     r"error: class folder .*/emptyclass/val/dog has no images \(.*\); add its images, or delete the class", False),
    ("folder-class-only-in-val", ["--data.dataset", "folder", "--data.root", "{tmp}/extraval"],
     r"error: train/ and val/ in .*/extraval have different class folders \(4 vs 5; only in val/: wolf\); give "
     r"every class a folder in both", False),
    ("folder-class-only-in-train", ["--data.dataset", "folder", "--data.root", "{tmp}/extratrain"],
     r"error: train/ and val/ in .*/extratrain have different class folders \(5 vs 4; only in train/: wolf\)",
     False),
    ("folder-one-class", ["--data.dataset", "folder", "--data.root", "{tmp}/oneclass"],
     r"error: .*/oneclass/train holds one class folder \(cat\); a classifier needs at least two: add a folder of "
     r"images for each class", False),
    ("folder-corrupt-image", ["--data.dataset", "folder", "--data.root", "{tmp}/corrupt"],
     r"error: cannot read image .*/corrupt/train/dog/2.webp \(.*\); delete or replace that file, or pass "
     r"--data.skip_corrupt true to leave unreadable images out", False),
    ("folder-given-stats-half", ["--data.dataset", "folder", "--data.root", "{folder}", "--data.mean",
                                 "[0.5, 0.5, 0.5]"],
     r"error: give both --data.mean and --data.std \(three numbers each, in \[0, 1\] units", False),
    ("download-fails", ["--data.root", "{tmp}/offline", "--data.url", "http://127.0.0.1:{port}/x.tgz"],
     r"error: could not download http://127.0.0.1:\d+/x.tgz \(.*Connection refused.*\); download it yourself", False),
    ("not-a-checkpoint", ["--ckpt_path", "{tmp}/notes.ckpt"],
     r"error: .*/notes.ckpt is not a readable checkpoint \(UnpicklingError\); pass a .ckpt file written by", False),
    ("missing-checkpoint", ["--ckpt_path", "{tmp}/none.ckpt"], r"error: --ckpt_path .*/none.ckpt: no such file",
     False),
    ("checkpoint-of-another-model", ["--ckpt_path", "{tmp}/resnet9.ckpt"],
     r"error: .*/resnet9.ckpt holds a ResNet9 model, not ConvMixer; pick that model or another checkpoint", False),
    ("checkpoint-of-other-size", ["--model.dim", "8", "--ckpt_path", "{tmp}/repro-a/lightning_logs/convmixer/"
                                  "version_0/checkpoints/last.ckpt"],
     r"error: .*/last.ckpt was trained with other hyper-parameters \(its weights do not fit this model\)", False),
    ("resume-last-without-a-run", ["--ckpt_path", "last"],
     r"error: --ckpt_path last: no run of convmixer with a last.ckpt under .*; start one without --ckpt_path", False),
    ("output-under-a-file", ["--trainer.default_root_dir", "{tmp}/a-file/out"],
     r"error: --trainer.default_root_dir: cannot create .*/a-file/out/lightning_logs, because .*/a-file is a file",
     False),
    ("output-read-only", ["--trainer.default_root_dir", "{tmp}/read-only/out"],
     r"error: --trainer.default_root_dir: cannot write to .*/read-only \(permission denied\)", False),
]
REPRO = ["--trainer.deterministic", "true", "--trainer.max_epochs", "2"]


@pytest.fixture(scope="module")
def batch(fake_root, tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every bad input of BAD_INPUTS, and three short deterministic runs, each as its own `fit` process."""
    tmp = tmp_path_factory.mktemp("batch")
    (tmp / "malformed.yaml").write_text("model: [unclosed\n  x: {\n")
    (tmp / "misspelt.yaml").write_text("trainer: {max_epoch: 3}\n")
    (tmp / "notes.ckpt").write_text("not a checkpoint\n")
    (tmp / "a-file").write_text("")
    (tmp / "read-only").mkdir()
    (tmp / "read-only").chmod(0o555)
    (tmp / "empty" / "imagenette2-160").mkdir(parents=True)
    for split in ("train", "val"):
        (tmp / "flat" / "imagenette2-160" / split).mkdir(parents=True)
    make_imagenette(tmp / "mismatch", per_class={"train": 1})
    make_imagenette(tmp / "mismatch", per_class={"val": 1}, wnids=["n01440764", "n02102040"])
    make_imagenette(tmp / "noimages", per_class={"train": 1, "val": 1})
    for f in (tmp / "noimages" / "imagenette2-160" / "train" / "n03888257").iterdir():
        f.unlink()
    folder = make_folder(tmp / "folder", per_class={"train": 3, "val": 1})
    for name in ("noval", "emptyclass", "extraval", "extratrain", "oneclass", "corrupt"):
        shutil.copytree(folder, tmp / name)
    shutil.rmtree(tmp / "noval" / "val")
    for f in (tmp / "emptyclass" / "val" / "dog").iterdir():
        f.unlink()
    make_folder(tmp / "extraval", classes=["wolf"], per_class={"val": 1})
    make_folder(tmp / "extratrain", classes=["wolf"], per_class={"train": 1})
    for split in ("train", "val"):
        for c in ("dog", "red fox", "zebra"):
            shutil.rmtree(tmp / "oneclass" / split / c)
    (tmp / "corrupt" / "train" / "dog" / "2.webp").write_bytes(b"RIFF\x00\x01\x00\x00WEBPVP8 not really")
    base = lambda out, *extra: tiny_fit_args(fake_root, tmp / out, *extra)  # noqa: E731
    cases = [{"name": f"repro-{x}", "argv": base(f"repro-{x}", *REPRO, "--seed_everything", seed)}
             for x, seed in (("a", "0"), ("b", "0"), ("seed1", "1"))]
    cases.append({"name": "resnet9", "argv": base("resnet9", "--model", "resnet9", "--model.width", "4",
                                                  "--trainer.limit_train_batches", "1",
                                                  "--trainer.limit_val_batches", "1")})
    port = closed_port()
    for name, extra, _, _ in BAD_INPUTS:
        extra = [a.format(tmp=tmp, port=port, folder=folder) for a in extra]
        cases.append({"name": name, "argv": base(f"out-{name}", *extra)})
    try:
        # the checkpoint-of-another-model case reads the resnet9 run's checkpoint: copied there before it runs
        results = run_batch(cases[:4], tmp)
        shutil.copy(run_dir(tmp / "resnet9", model="resnet9") / "checkpoints" / "last.ckpt", tmp / "resnet9.ckpt")
        results.update(run_batch(cases[4:], tmp))
    finally:
        (tmp / "read-only").chmod(0o755)
    results["tmp"] = tmp
    return results


@pytest.mark.parametrize("name,pattern,parse_error", [(n, p, one) for n, _, p, one in BAD_INPUTS],
                         ids=[n for n, *_ in BAD_INPUTS])
def test_bad_input_is_one_clear_line(batch, name, pattern, parse_error):
    if name == "output-read-only" and os.geteuid() == 0:
        pytest.skip("root can write to a read-only folder")
    r = batch[name]
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    assert re.match(pattern, line), line
    if parse_error:  # refused while parsing: nothing else printed, no usage text
        assert r.stderr.strip() == line
    assert len(line) < 400


def test_same_seed_deterministic_runs_give_identical_metrics(batch):
    runs = {x: result(run_dir(batch["tmp"] / f"repro-{x}")) for x in ("a", "b", "seed1")}
    for r in runs.values():
        assert r["completed"] and len(r["history"]) == 2
    strip = lambda h: [{k: v for k, v in e.items() if k not in ("wall_time", "load_1min")} for e in h]  # noqa: E731
    assert strip(runs["a"]["history"]) == strip(runs["b"]["history"])  # every loss and accuracy, exactly
    assert runs["a"]["best_val_acc"] == runs["b"]["best_val_acc"]
    assert strip(runs["a"]["history"]) != strip(runs["seed1"]["history"])  # the comparison can fail


# ---- kill and resume ----------------------------------------------------------------------------------------------
EPOCHS = 12


@pytest.fixture(scope="module")
def killed_run(fake_root, tmp_path_factory) -> tuple[Path, list[str], Path]:
    """A run SIGKILLed just after its first checkpoint; a copy of that checkpoint is kept aside."""
    out = tmp_path_factory.mktemp("killed")
    args = tiny_fit_args(fake_root, out, "--trainer.max_epochs", str(EPOCHS))
    last = run_dir(out) / "checkpoints" / "last.ckpt"
    log = open(out / "first-attempt.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", FIT, *args], cwd=out, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 180
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert proc.returncode == -signal.SIGKILL, (out / "first-attempt.log").read_text()  # killed, not finished
    kept = out / "killed.ckpt"
    shutil.copy(last, kept)
    step = torch.load(kept, weights_only=False)["global_step"]
    assert 0 < step < EPOCHS * STEPS_PER_EPOCH
    assert not (run_dir(out) / "result.json").exists()
    return out, args, kept


@pytest.fixture(scope="module")
def uninterrupted(fake_root, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted")
    summary = main(tiny_fit_args(fake_root, out, "--trainer.max_epochs", str(EPOCHS)))
    return {"summary": summary, "curves": scalars(run_dir(out))}


def test_killed_run_resumes_in_its_own_folder_to_the_same_final_step(killed_run, uninterrupted):
    out, args, kept = killed_run
    r = run_cli(FIT, *args, "--ckpt_path", "last", cwd=out)
    assert r.returncode == 0, r.stderr
    run = run_dir(out)
    assert sorted(p.name for p in run.parent.iterdir()) == ["version_0"]  # no new run folder
    res = result(run)
    ref = uninterrupted["summary"]
    assert res["completed"] and res["global_step"] == ref["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert res["epochs"] == ref["epochs"] == EPOCHS
    assert [h["epoch"] for h in res["history"]] == list(range(EPOCHS))  # one entry an epoch, the killed ones kept
    assert [h["step"] for h in res["history"]] == [h["step"] for h in ref["history"]]
    # curves continue in the same folder (one event file per attempt) and the LR schedule went on where it was
    assert len(list(run.glob("events.out.tfevents.*"))) == 2
    curves = scalars(run)
    lrs = dict(curves["lr-AdamW/decay"])  # a step logged twice (redone after the kill) keeps its last value
    assert lrs == pytest.approx(dict(uninterrupted["curves"]["lr-AdamW/decay"]), rel=1e-6)
    assert max(s for s, _ in curves["train/loss"]) == EPOCHS * STEPS_PER_EPOCH - 1
    # optimizer and scheduler state came back from the checkpoint and went on to the end
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert ckpt["lr_schedulers"][0]["last_epoch"] == EPOCHS * STEPS_PER_EPOCH
    assert ckpt["optimizer_states"][0]["state"]
    assert (run / "config.yaml").is_file() and (run / "config.resumed-1.yaml").is_file()


def test_resume_from_a_given_checkpoint_file(killed_run, uninterrupted):
    """`--ckpt_path FILE` outside the run's folder: the run goes on, in a new run folder, to the same last step."""
    out, args, kept = killed_run
    target = out / "elsewhere"
    summary = main([*args, "--trainer.default_root_dir", str(target), "--ckpt_path", str(kept)])
    assert summary["completed"] and summary["global_step"] == uninterrupted["summary"]["global_step"]
    assert [h["epoch"] for h in summary["history"]] == list(range(EPOCHS))
    assert result(run_dir(target)) == summary


def test_resume_with_another_length_is_refused_and_changes_nothing(killed_run):
    """OneCycleLR cannot be stretched: a resume with a larger max_epochs stops at once, the run is untouched."""
    out, args, kept = killed_run
    ckpt = out / "longer" / "lightning_logs" / "convmixer" / "version_0" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(kept, ckpt)
    before = ckpt.read_bytes()
    r = run_cli(FIT, *args, "--trainer.default_root_dir", str(out / "longer"), "--trainer.max_epochs",
                str(2 * EPOCHS), "--ckpt_path", "last", cwd=out)
    assert r.returncode == 2
    assert error_line(r) == (
        f"error: the resumed run's learning-rate schedule spans {EPOCHS * STEPS_PER_EPOCH} steps (--trainer.max_epochs "
        f"{EPOCHS}), these settings give {2 * EPOCHS * STEPS_PER_EPOCH}: resume with the run's own "
        f"--trainer.max_epochs and --data.batch_size, or start a new run (without --ckpt_path) to train longer")
    assert ckpt.read_bytes() == before and not (ckpt.parent.parent / "result.json").exists()


# ---- training that cannot go on -----------------------------------------------------------------------------------
def test_non_finite_loss_stops_naming_epoch_and_step_and_keeps_the_last_checkpoint(fake_root, tmp_path):
    (tmp_path / "nan_after.py").write_text(textwrap.dedent("""
        from convmixer_lit.models import ConvMixer

        class NaNAfter(ConvMixer):
            '''ConvMixer whose loss turns NaN from step 6 on (the third batch of the second epoch).'''
            def training_step(self, batch, batch_idx):
                loss = super().training_step(batch, batch_idx)
                return loss * float("nan") if self.global_step >= 6 else loss
    """))
    r = run_cli(FIT, *tiny_fit_args(fake_root, tmp_path, "--model", "nan_after.NaNAfter", "--trainer.max_epochs", "3"),
                cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert r.returncode == 2
    assert error_line(r) == ("error: the training loss became nan at epoch 1, step 6 (batch 2); lower --model.lr or "
                             "use --trainer.precision 32-true. Checkpoints saved before this point are kept")
    assert max(s for s, _ in scalars(run_dir(tmp_path, model="nanafter"))["train/loss"]) == 5  # logged: the good steps
    run = run_dir(tmp_path, model="nanafter")
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == STEPS_PER_EPOCH and ckpt["epoch"] == 0  # the end of the last good epoch
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


# ---- the one-line rule through fresh processes ---------------------------------------------------------------------
def test_misspelt_flag_is_refused_not_expanded(tmp_path):
    """jsonargparse would expand --trainer.max_epoch to --trainer.max_epochs silently; the kit refuses it."""
    r = run_cli(FIT, "--model", "convmixer", "--trainer.max_epoch", "2", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: unknown flag --trainer.max_epoch; did you mean --trainer.max_epochs? (flags "
                                "are spelt in full; `python -m convmixer_lit.fit --help` lists them)")


def test_corrupt_jpeg_read_in_a_worker_stops_with_its_name(fake_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(fake_root, root)
    bad = root / "imagenette2-160" / "train" / "n02102040" / "n02102040_5.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated mid-header
    r = run_cli(FIT, *tiny_fit_args(root, tmp_path, "--data.num_workers", "1"), cwd=tmp_path)
    assert r.returncode == 2
    line = error_line(r)
    assert line.startswith(f"error: cannot read image {bad} (") and line.endswith(
        "); delete or replace that file, or pass --data.skip_corrupt true to leave unreadable images out")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_says_how_to_resume(fake_root, tmp_path, sig):
    """Lightning ends a Ctrl-C with exit(1) and a SIGTERM with exit(0): the kit exits 130 and says how to go on."""
    epochs = 100  # far longer than the signal takes to arrive, so a fast machine cannot finish the run first
    args = tiny_fit_args(fake_root, tmp_path, "--trainer.max_epochs", str(epochs))
    last = run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    err = open(tmp_path / "stderr.txt", "w+")
    # a shell without job control starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # ignored: give the child the default disposition a terminal's Ctrl-C meets
    proc = subprocess.Popen([sys.executable, "-m", FIT, *args], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # past the checkpoint write, inside the training loop, where a user's Ctrl-C lands
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(sig)
    assert proc.wait(timeout=120) == 130
    err.seek(0)
    stderr = err.read()
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted: resume with the same command plus --ckpt_path last"
    assert 0 < torch.load(last, weights_only=False)["global_step"] < epochs * STEPS_PER_EPOCH
