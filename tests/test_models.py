import pytest
import torch
from torch import nn

from convmixer_lit import MODELS
from convmixer_lit.errors import ConfigError
from convmixer_lit.models import ConvMixer, ResNet9, ResNet18, ViT


def n_params(model) -> int:
    return sum(p.numel() for p in model.net.parameters())


def convmixer_params(dim, depth, k, p, classes):
    """Closed form of the paper's ConvMixer parameter count."""
    embed = 3 * dim * p * p + dim + 2 * dim
    block = (dim * k * k + dim) + 2 * dim + (dim * dim + dim) + 2 * dim
    return embed + depth * block + dim * classes + classes


@pytest.mark.parametrize("cls,kwargs", [
    (ConvMixer, dict(dim=32, depth=2, kernel_size=5, patch_size=4)),
    (ViT, dict(dim=32, depth=2, num_heads=4, mlp_dim=64, patch_size=4)),
    (ResNet18, {}),
    (ResNet9, dict(width=8)),
])
@pytest.mark.parametrize("image_size", [32, 64])
def test_forward_shape(cls, kwargs, image_size):
    model = cls(num_classes=7, image_size=image_size, **kwargs).eval()
    x = torch.randn(2, 3, image_size, image_size)
    assert model(x).shape == (2, 7)


def test_convmixer_defaults_are_the_studys_and_count_matches_closed_form():
    model = ConvMixer(num_classes=10)
    h = model.hparams
    assert (h.dim, h.depth, h.kernel_size, h.patch_size) == (256, 12, 7, 7)
    assert n_params(model) == convmixer_params(256, 12, 7, 7, 10)
    assert 0.8e6 <= n_params(model) <= 1.6e6  # the study's parameter budget


def test_convmixer_follows_the_paper():
    net = ConvMixer(num_classes=10, dim=16, depth=2, kernel_size=5, patch_size=4).net
    embed = net[0]
    assert isinstance(embed, nn.Conv2d) and embed.stride == (4, 4) and embed.kernel_size == (4, 4)
    assert isinstance(net[1], nn.GELU) and isinstance(net[2], nn.BatchNorm2d)
    block = net[3]
    depthwise = block[0].fn[0]
    assert depthwise.groups == 16 and depthwise.padding == "same" and depthwise.kernel_size == (5, 5)
    assert isinstance(block[0].fn[1], nn.GELU) and isinstance(block[0].fn[2], nn.BatchNorm2d)
    assert block[1].kernel_size == (1, 1) and isinstance(block[2], nn.GELU) and isinstance(block[3], nn.BatchNorm2d)
    # residual around the depthwise part only: zeroing its output leaves the input unchanged
    x = torch.randn(1, 16, 8, 8)
    for p in block[0].fn.parameters():
        nn.init.zeros_(p)
    assert torch.equal(block[0](x), x)


def test_vit_defaults():
    model = ViT(num_classes=10, image_size=160)
    h = model.hparams
    assert (h.depth, h.num_heads, h.patch_size) == (6, 8, 7)
    assert 1e6 <= n_params(model) <= 2e6
    assert model.net.encoder.pos_embedding.shape[1] == (160 // 7) ** 2  # same token grid as ConvMixer p7


def test_resnet_parameter_counts():
    assert n_params(ResNet18(num_classes=10)) == 11_181_642  # torchvision's ResNet-18 with a 10-way head
    assert 1.4e6 <= n_params(ResNet9(num_classes=10)) <= 1.8e6


def test_registry_has_builtin_short_names():
    assert {"convmixer", "vit", "resnet18", "resnet9"} <= set(MODELS)
    assert MODELS["vit"] is ViT


def test_invalid_hyperparameters_raise_config_errors():
    with pytest.raises(ConfigError, match="patch_size"):
        ConvMixer(image_size=32, patch_size=64)
    with pytest.raises(ConfigError, match="num_heads"):
        ViT(image_size=32, dim=30, num_heads=8, patch_size=4)
    with pytest.raises(ConfigError, match="lr"):
        ConvMixer(lr=0)
    with pytest.raises(ConfigError, match="--model.num_heads must be a positive integer, got 0"):
        ViT(image_size=32, num_heads=0, patch_size=4)
    with pytest.raises(ConfigError, match="kernel_size"):
        ConvMixer(image_size=32, kernel_size=0, patch_size=4)
    with pytest.raises(ConfigError, match="width"):
        ResNet9(width=0)


def test_checkpoint_hyperparameters_rebuild_the_model():
    model = ConvMixer(num_classes=5, image_size=32, dim=16, depth=1, patch_size=4, kernel_size=3, lr=3e-3)
    h = dict(model.hparams)
    assert h["dim"] == 16 and h["num_classes"] == 5 and h["lr"] == 3e-3
    clone = ConvMixer(**h)
    assert n_params(clone) == n_params(model)


def _outputs_and_grads(module: nn.Module, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """Forward under CPU bf16 autocast (as `fit` trains), backward; returns output and every gradient."""
    inputs = [x.detach().clone().requires_grad_() for x in inputs]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(*inputs)
        out = out[0] if isinstance(out, tuple) else out
    out.float().square().mean().backward()
    return [out.float(), *[x.grad for x in inputs], *[p.grad for p in module.parameters()]]


def test_vit_attention_in_fp32_computes_the_same_function():
    from convmixer_lit.models.vit import Attention

    torch.manual_seed(0)
    fast = Attention(32, 4, batch_first=True)
    reference = nn.MultiheadAttention(32, 4, batch_first=True)
    reference.load_state_dict(fast.state_dict())  # same parameter names: checkpoints are unchanged
    x = torch.randn(3, 10, 32)
    call = dict(need_weights=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(x, x, x, **call)[0].dtype == torch.float32
        assert reference(x, x, x, **call)[0].dtype == torch.bfloat16

    class SelfAttention(nn.Module):
        def __init__(self, attn):
            super().__init__()
            self.attn = attn

        def forward(self, x):
            return self.attn(x, x, x, need_weights=False)[0]

    got, want = _outputs_and_grads(SelfAttention(fast), x), _outputs_and_grads(SelfAttention(reference), x)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w.float(), rtol=3e-2, atol=3e-2 * w.abs().max().item())


def test_flop_counts_match_the_closed_forms():
    """Counted FLOPs (result.json, summary.csv, bench) include attention, which fused kernels would hide."""
    T, d, m, L, p = (64 // 4) ** 2, 128, 256, 6, 4
    vit_macs = L * (T * (4 * d * d + 2 * d * m) + 2 * T * T * d) + T * d * 3 * p * p + d * 10
    vit = ViT(num_classes=10, image_size=64, dim=d, depth=L, num_heads=8, mlp_dim=m, patch_size=p)
    assert vit.flops_per_image() == 2 * vit_macs
    dim, depth, k = 64, 3, 5
    cm_macs = T * dim * 3 * p * p + depth * T * (dim * k * k + dim * dim) + dim * 10
    cm = ConvMixer(num_classes=10, image_size=64, dim=dim, depth=depth, kernel_size=k, patch_size=p)
    assert cm.flops_per_image() == 2 * cm_macs


def test_optimizer_is_fused_adamw_without_decay_on_norms_and_biases():
    from types import SimpleNamespace

    model = ConvMixer(dim=16, depth=1, kernel_size=3, patch_size=8, image_size=32, weight_decay=0.05)
    model._trainer = SimpleNamespace(estimated_stepping_batches=10)  # all configure_optimizers reads of it
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True  # CPU tensors
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert scheduler.total_steps == 10 and config["lr_scheduler"]["interval"] == "step"


def test_vit_pooled_norm_moves_the_last_layernorm_after_the_mean_with_the_same_parameters():
    a = ViT(num_classes=10, image_size=64, patch_size=8)
    b = ViT(num_classes=10, image_size=64, patch_size=8, pooled_norm=True)
    b.load_state_dict(a.state_dict())  # the same parameter names: checkpoints load either way
    x = torch.randn(2, 3, 64, 64)
    tokens = a.net.patch_embed(x).flatten(2).transpose(1, 2)
    enc = a.net.encoder
    body = enc.layers(tokens + enc.pos_embedding)
    torch.testing.assert_close(a.net(x), a.net.head(enc.ln(body).mean(dim=1)))  # norm each token, then pool
    torch.testing.assert_close(b.net(x), a.net.head(enc.ln(body.mean(dim=1))))  # pool, then norm
    assert not torch.allclose(a.net(x), b.net(x), atol=1e-4)
