"""The mixer study's family: every stem x mixer cell builds, trains, matches in size, and mixes tokens only in its
mixer."""

import pytest
import torch
from torch import nn

from convmixer_lit import MODELS
from convmixer_lit.errors import ConfigError
from convmixer_lit.models.isotropic import MIXERS, STEMS, Isotropic

CELLS = [(s, m) for s in STEMS for m in MIXERS]


def body_params(model: Isotropic) -> int:
    """Parameters outside the token mixers (the issue's "a mixer's own weights aside")."""
    mixers = sum(p.numel() for b in model.net.blocks for p in b.mixer.parameters())
    return model.num_parameters() - mixers


@pytest.mark.parametrize("stem,mixer", CELLS)
def test_every_cell_trains_one_step(stem, mixer):
    torch.manual_seed(0)
    model = Isotropic(stem=stem, mixer=mixer, dim=32, depth=2, num_heads=4, image_size=32, num_classes=10)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert model(x).shape == (4, 10) and torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)  # every parameter is used and trained


def test_study_cells_match_in_size_and_cost():
    """The preset's size (dim 128, depth 6, MLP ratio 4, 64 px, patch 4): 0.8-1.2 M parameters in every body,
    within 10% of each other; the conv stem costs a few % of FLOPs, not a block."""
    models = {c: Isotropic(stem=c[0], mixer=c[1], image_size=64) for c in CELLS}
    bodies = {c: body_params(m) for c, m in models.items()}
    assert 0.8e6 <= min(bodies.values()) and max(bodies.values()) <= 1.2e6
    assert max(bodies.values()) / min(bodies.values()) <= 1.10
    flops = {c: m.flops_per_image() for c, m in models.items()}
    for mixer in MIXERS:
        assert 1.0 < flops[("conv", mixer)] / flops[("patch", mixer)] < 1.05
    assert models[("patch", "pool")].num_parameters() == models[("patch", "identity")].num_parameters()


def test_conv_stem_reaches_the_patch_grid():
    for patch, size in ((4, 64), (2, 32), (8, 64)):
        for stem in STEMS:
            net = Isotropic(stem=stem, mixer="identity", dim=32, depth=1, patch_size=patch, image_size=size).net
            tokens = net.stem(torch.zeros(1, 3, size, size))
            assert tokens.shape[-2:] == (size // patch, size // patch)
    strided = [m for m in Isotropic(stem="conv", dim=128).net.stem if isinstance(m, nn.Conv2d) and m.stride == (2, 2)]
    assert [(m.kernel_size, m.out_channels) for m in strided] == [((3, 3), 32), ((3, 3), 64)]


@pytest.mark.parametrize("pooled_norm", [False, True])
@pytest.mark.parametrize("mixer", ["identity", "attention"])
def test_only_the_mixer_mixes_tokens(mixer, pooled_norm):
    """Patch stem, eval mode: replacing one patch changes the pooled features by the same amount whatever the other
    patches are (identity: no hidden token mixing in the norm, stem or MLP); with attention it does not. With
    `pooled_norm` the features are read before the last norm, which then acts on the pooled vector only."""
    torch.manual_seed(0)
    net = Isotropic(stem="patch", mixer=mixer, dim=32, depth=2, num_heads=4, image_size=32,
                    pooled_norm=pooled_norm).net.eval()
    if pooled_norm:  # the mean-pooled tokens, as they enter the norm
        net.norm = torch.nn.Identity()
    a, b = torch.randn(2, 1, 3, 32, 32).unbind(0)
    b[..., 8:12, 12:16] = a[..., 8:12, 12:16]  # the same patch, in different surroundings
    new_patch = torch.randn(1, 3, 4, 4)

    def change(x):
        y = x.clone()
        y[..., 8:12, 12:16] = new_patch
        with torch.no_grad():
            return net.features(y) - net.features(x)

    ca, cb = change(a), change(b)
    same = bool((ca - cb).abs().max() <= 1e-5 * ca.abs().max())  # relative: unnormalised features are small
    assert same == (mixer == "identity")


def test_registry_and_bad_settings():
    assert MODELS["isotropic"] is Isotropic
    for kwargs, flag in ((dict(stem="stride1"), "--model.stem"), (dict(mixer="mlp"), "--model.mixer"),
                         (dict(stem="conv", patch_size=6), "power of 2"), (dict(num_heads=3), "--model.num_heads"),
                         (dict(kernel_size=4), "--model.kernel_size"), (dict(mlp_ratio=0), "--model.mlp_ratio")):
        with pytest.raises(ConfigError, match=flag.replace(".", r"\.")):
            Isotropic(image_size=64, **{"mixer": "attention" if "num_heads" in kwargs else "conv", **kwargs})


def test_attention_mixer_is_standard_multi_head_attention():
    """The same function as nn.MultiheadAttention given the same weights (so a weak attention cell is not a bug)."""
    from convmixer_lit.models.isotropic import Attention

    torch.manual_seed(0)
    ours, ref = Attention(32, 4), nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(2, 4, 4, 32)
    tokens = x.reshape(2, 16, 32)
    assert torch.allclose(ours(x).reshape(2, 16, 32), ref(tokens, tokens, tokens)[0], atol=1e-6)


def test_the_timm_reference_is_the_attention_cell_s_size_and_trains_through_the_kit():
    """timm's ViT as the patch + attention cell (issue 21's independent implementation): the same parameters, the
    kit's step (a loss that falls on a fixed batch), registered as `--model timm_vit`."""
    import torch

    from convmixer_lit.base import MODELS
    from convmixer_lit.models import Isotropic, TimmViT

    ref = TimmViT(num_classes=10, image_size=64)
    cell = Isotropic(stem="patch", mixer="attention", num_classes=10, image_size=64)
    assert ref.num_parameters() == cell.num_parameters() == 1_230_218
    assert MODELS["timm_vit"] is TimmViT
    x, y = torch.randn(4, 3, 64, 64), torch.randint(0, 10, (4,))
    assert ref(x).shape == (4, 10)
    optimizer = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(ref(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_pooled_norm_normalises_the_pooled_features_with_the_same_parameters():
    import torch

    from convmixer_lit.models import Isotropic

    a = Isotropic(stem="patch", mixer="attention", num_classes=10, image_size=64, pooled_norm=False)
    b = Isotropic(stem="patch", mixer="attention", num_classes=10, image_size=64)  # the default since 2026-12-07
    assert b.hparams.pooled_norm is True
    b.load_state_dict(a.state_dict())  # the same parameters, only where the last LayerNorm sits differs
    x = torch.randn(2, 3, 64, 64)
    fa, fb = a.net.features(x), b.net.features(x)
    assert fa.shape == fb.shape == (2, 128) and not torch.allclose(fa, fb)
    # pooled then normalised: each feature vector has zero mean and unit variance over channels (before the affine)
    assert torch.allclose(fb.mean(dim=1), b.net.norm.bias.mean().expand(2), atol=1e-5)


# ---- pooled_norm became the default: old checkpoints and studies keep their meaning ---------------------------------
def save_checkpoint(model: Isotropic, path, drop: tuple[str, ...] = ()) -> None:
    """A checkpoint as `fit` writes it; `drop`: hyper-parameters it predates (made before the option existed)."""
    hparams = {k: v for k, v in model.hparams.items() if k not in drop}
    import lightning

    torch.save({"state_dict": model.state_dict(), "pytorch-lightning_version": lightning.__version__,
                "hyper_parameters": {**hparams, "_class_path": "convmixer_lit.models.Isotropic",
                                     "_instantiator": "lightning.pytorch.cli.instantiate_module"}}, path)


def test_a_checkpoint_from_before_the_option_reloads_with_the_per_token_norm(tmp_path):
    from convmixer_lit.evaluate import load_model

    old = Isotropic(mixer="attention", dim=32, depth=1, image_size=32, pooled_norm=False).eval()
    save_checkpoint(old, tmp_path / "old.ckpt", drop=("pooled_norm",))
    reloaded = load_model(torch.load(tmp_path / "old.ckpt", weights_only=False), tmp_path / "old.ckpt")
    by_lightning = Isotropic.load_from_checkpoint(tmp_path / "old.ckpt").eval()  # as a user would
    x = torch.randn(2, 3, 32, 32)
    for model in (reloaded, by_lightning):
        assert model.hparams.pooled_norm is False
        with torch.no_grad():
            assert torch.equal(model(x), old(x))  # not the default (pooled) body on the same weights
    assert Isotropic.load_from_checkpoint(tmp_path / "old.ckpt", pooled_norm=True).hparams.pooled_norm is True


@pytest.mark.parametrize("saved, now, flag", [
    (dict(pooled_norm=False), dict(), "--model.pooled_norm false"),  # the default changed under a resume
    (dict(mixer="pool"), dict(mixer="identity"), "--model.mixer pool"),  # neither mixer has weights
    (dict(mixer="attention", num_heads=4), dict(mixer="attention", num_heads=2), "--model.num_heads 4"),
])
def test_a_resume_refuses_what_the_weights_cannot_tell(tmp_path, saved, now, flag):
    from convmixer_lit.checkpoint import check_checkpoint
    from convmixer_lit.errors import CheckpointError

    size = dict(dim=32, depth=1, image_size=32)
    save_checkpoint(Isotropic(**size, **saved), tmp_path / "a.ckpt")
    model = Isotropic(**size, **now)
    assert set(model.state_dict()) == set(torch.load(tmp_path / "a.ckpt", weights_only=False)["state_dict"])
    with pytest.raises(CheckpointError, match=f"pass {flag},"):
        check_checkpoint(tmp_path / "a.ckpt", model)
    check_checkpoint(tmp_path / "a.ckpt", Isotropic(**size, **saved))  # the same settings resume
    # a checkpoint from before the option: trained with the per-token norm, so only pooled_norm false resumes it
    save_checkpoint(Isotropic(**size, pooled_norm=False), tmp_path / "old.ckpt", drop=("pooled_norm",))
    check_checkpoint(tmp_path / "old.ckpt", Isotropic(**size, pooled_norm=False))
    with pytest.raises(CheckpointError, match="pass --model.pooled_norm false,"):
        check_checkpoint(tmp_path / "old.ckpt", Isotropic(**size))


def test_a_study_record_sees_a_changed_default(tmp_path):
    """The untuned mixer study's records do not name pooled_norm (the default was false): its preset now pins false
    and continues them; a config that leaves it to today's default (true) trains another body and is refused."""
    from pathlib import Path

    from convmixer_lit.errors import ConfigError as StudyError
    from convmixer_lit.study.plan import Run, check_same_study, study_record

    def config(**init_args) -> dict:
        return {"model": {"class_path": "convmixer_lit.models.Isotropic", "init_args": {"dim": 32, **init_args}}}

    run = Run("patch-conv", 0, Path("patch-conv.yaml"), "isotropic", tmp_path)
    made_before = {k: v for k, v in study_record(run, config(), [], None).items() if k != "defaults"}
    now_unset = study_record(run, config(), [], None)
    now_pinned = study_record(run, config(pooled_norm=False), [], None)
    assert now_unset["defaults"] == {"pooled_norm": True} and "defaults" not in now_pinned
    check_same_study(tmp_path, made_before, now_pinned)
    with pytest.raises(StudyError, match=r"other settings .*: model.pooled_norm False -> True; "):
        check_same_study(tmp_path, made_before, now_unset)
    check_same_study(tmp_path, now_unset, study_record(run, config(pooled_norm=True), [], None))
    flag = ["--model.pooled_norm", "true"]  # set by a flag on both sides: no default is involved
    made_before_by_flag = {k: v for k, v in study_record(run, config(), flag, None).items() if k != "defaults"}
    assert "defaults" not in study_record(run, config(), flag, None)
    check_same_study(tmp_path, made_before_by_flag, study_record(run, config(), flag, None))
    with pytest.raises(StudyError, match="other settings"):  # a record made now, then the default changes again
        check_same_study(tmp_path, now_unset, {**now_unset, "defaults": {"pooled_norm": False}})


def test_the_committed_mixer_studies_continue_under_their_presets():
    """Every committed result of the untuned and the tuned mixer study still matches what its preset would train
    (compare's check before reusing a run): a change of default has not changed what either study means."""
    import json
    from pathlib import Path

    from convmixer_lit.configs import load_layered
    from convmixer_lit.study.plan import Run, check_same_study, effective_config, study_record

    repo = Path(__file__).resolve().parents[1]
    results = sorted((repo / "docs/results/mixer-study/results").glob("*.json"))
    assert len(results) >= 24
    for path in results:
        old = json.loads(path.read_text())["study"]
        cell = repo / old["config_file"]
        run = Run(old["entry"], 0, cell, "isotropic", path.parent)
        check_same_study(path, old, study_record(run, load_layered(cell), old["pass_through"], old["preset"]))
        assert effective_config(old["config"], old.get("defaults"))["model"]["init_args"]["pooled_norm"] is False
    for path in sorted((repo / "docs/results/mixer-study-tuned/tuning/results").glob("*.json")):
        assert json.loads(path.read_text())["study"]["config"]["model"]["init_args"]["pooled_norm"] is True
