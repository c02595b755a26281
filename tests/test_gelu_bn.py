"""kernels/gelu_bn.py: GELU -> BatchNorm2d fused into one layer computes the two stock layers' function."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from convmixer_lit.kernels import gelu_bn, native, precision
from convmixer_lit.kernels.gelu_bn import GeluBatchNorm2d, fuse_gelu_batchnorm
from convmixer_lit.models import ConvMixer

UNAVAILABLE = native.unavailable_reason()
needs_loop = pytest.mark.skipif(UNAVAILABLE is not None, reason=f"needs the compiled loops: {UNAVAILABLE}")


def pair(channels: int, **bn_kwargs) -> tuple[nn.Sequential, nn.Sequential]:
    """Stock GELU -> BN with non-trivial parameters and running statistics, and the same pair fused."""
    torch.manual_seed(channels)
    stock = nn.Sequential(nn.GELU(), nn.BatchNorm2d(channels, **bn_kwargs))
    bn = stock[1]
    with torch.no_grad():
        if bn.affine:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        if bn.track_running_stats:
            bn.running_mean.uniform_(0, 1)
            bn.running_var.uniform_(0.5, 2)
    fused = nn.Sequential(nn.GELU(), nn.BatchNorm2d(channels, **bn_kwargs))
    fused.load_state_dict(stock.state_dict())
    assert fuse_gelu_batchnorm(fused) == 1
    return stock, fused


def run(module: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    """Output, input gradient, parameter gradients and buffers after one forward and backward."""
    x = x.detach().clone().requires_grad_()
    out = module(x)
    out.backward(grad)
    return [out, x.grad, *[p.grad for p in module.parameters()], *module.buffers()]


def channels_last(*shape: int, scale: float = 2.0, offset: float = 0.3) -> torch.Tensor:
    return (torch.randn(*shape) * scale + offset).contiguous(memory_format=torch.channels_last)


@needs_loop
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("bn_kwargs", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}])
def test_fused_equals_gelu_then_batchnorm(training, bn_kwargs):
    """Outputs, every gradient and the running statistics (nn.BatchNorm2d's update rules, the cumulative average
    too) within fp32 rounding, 48 channels (three vector blocks), a row count that splits unevenly over 2 threads."""
    stock, fused = pair(48, **bn_kwargs)
    stock.train(training)
    fused.train(training)
    x, grad = channels_last(3, 48, 9, 11), torch.randn(3, 48, 9, 11)
    assert fused[1].fast_path(x)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = [run(fused, x, grad) for _ in range(2)][-1]  # twice: the running statistics' second update too
    finally:
        torch.set_num_threads(threads)
    want = [run(stock, x, grad) for _ in range(2)][-1]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=1e-5, atol=2e-5 * max(1.0, w.abs().max().item()))
    assert got[0].is_contiguous(memory_format=torch.channels_last)


@needs_loop
def test_inference_is_one_pass_with_the_running_statistics(monkeypatch):
    """Eval mode without gradients (evaluate, predict, validation): y from z in one pass, equal to the stock layers."""
    stock, fused = pair(32)
    stock.eval()
    fused.eval()
    x = channels_last(4, 32, 7, 5)
    calls = []
    real = gelu_bn.gelu_and_stats
    monkeypatch.setattr(gelu_bn, "gelu_and_stats", lambda z: calls.append(z) or real(z))
    with torch.no_grad():
        got, want = fused(x), stock(x)
    assert calls == []  # no statistics pass, no stored GELU
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)


@needs_loop
@pytest.mark.parametrize("training", [True, False])
def test_the_statistics_and_gradients_keep_their_precision_far_from_zero(training):
    """Activations around 1000 with unit spread: a naive sum of squares in fp32 would lose the variance, and
    normalising as a * scale + (beta - mean * scale) would lose ~10 bits; the mean is subtracted first."""
    stock, fused = pair(16)
    with torch.no_grad():
        for bn in (stock[1], fused[1]):
            bn.running_mean.fill_(1000.0)
    stock.train(training)
    fused.train(training)
    x, grad = channels_last(8, 16, 12, 12, scale=1.0, offset=1000.0), torch.randn(8, 16, 12, 12)
    exact = run(copy.deepcopy(stock).double(), x.double(), grad.double())  # the truth, in fp64
    got, want = run(fused, x, grad), run(stock, x, grad)
    for name, g, w, e in zip(["output", "input grad", "weight grad", "bias grad", "mean", "var", "count"], got, want,
                             exact, strict=True):
        ours, pytorch = (g.double() - e).abs().max().item(), (w.double() - e).abs().max().item()
        assert ours <= 2 * pytorch + 1e-6 * e.abs().max().item(), f"{name}: error {ours:.2e}, PyTorch's {pytorch:.2e}"


@needs_loop
def test_gelu_matches_pytorch_over_its_range():
    """The loops' GELU (and its derivative, through the eval-mode gradient) against PyTorch's, tails included."""
    stock, fused = pair(16)
    stock.eval()
    fused.eval()
    z = torch.linspace(-30, 30, 16 * 64 * 9).view(1, 16, 64, 9).contiguous(memory_format=torch.channels_last)
    got, want = run(fused, z, torch.ones_like(z)), run(stock, z, torch.ones_like(z))
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["nchw", "channels", "float64", "autocast", "stock layers", "one value"])
def test_what_the_loops_do_not_cover_runs_the_stock_layers_exactly(case, monkeypatch):
    channels = 20 if case == "channels" else 32
    stock, fused = pair(channels)
    x = torch.randn(1, channels, 1, 1) if case == "one value" else torch.randn(2, channels, 5, 6)
    if case != "nchw":
        x = x.contiguous(memory_format=torch.channels_last)
    if case == "float64":
        stock, fused, x = stock.double(), fused.double(), x.double()
    if case == "stock layers":
        monkeypatch.setattr(precision, "ENABLED", False)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        assert not fused[1].fast_path(x)
    if case == "one value":  # nn.BatchNorm2d's own error for a single value per channel
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            fused(x)
        return
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast"):
        got, want = run(fused, x, torch.ones_like(x)), run(stock, x, torch.ones_like(x))
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)


def test_fusing_keeps_every_name_and_only_takes_exact_gelu_then_batchnorm2d():
    """The state dict is unchanged (checkpoints load either way); tanh-GELU, BN1d and GELU -> other are left alone."""
    net = ConvMixer(dim=32, depth=2, kernel_size=3, patch_size=4, image_size=32).net
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert fuse_gelu_batchnorm(net) == 1 + 2 * 2  # the stem, and two per mixer block
    assert net.state_dict().keys() == before.keys()
    assert all(torch.equal(net.state_dict()[k], v) for k, v in before.items())
    assert fuse_gelu_batchnorm(net) == 0  # nothing left to fuse
    others = nn.Sequential(nn.GELU(approximate="tanh"), nn.BatchNorm2d(4), nn.GELU(), nn.BatchNorm1d(4),
                           nn.GELU(), nn.ReLU(), nn.BatchNorm2d(4))
    assert fuse_gelu_batchnorm(others) == 0


@needs_loop
def test_a_fused_convmixer_trains_like_the_stock_one():
    """ConvMixer after `setup` (what fit runs): fused layers, and one training step's loss, gradients and running
    statistics equal to the stock network's."""
    torch.manual_seed(0)
    ours = ConvMixer(dim=32, depth=2, kernel_size=3, patch_size=4, image_size=32)
    stock = ConvMixer(dim=32, depth=2, kernel_size=3, patch_size=4, image_size=32)
    stock.load_state_dict(ours.state_dict())
    ours.setup("fit")
    assert sum(isinstance(m, GeluBatchNorm2d) for m in ours.modules()) == 5
    stock.to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (8,))
    results = []
    for model in (ours, stock):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        results.append([loss, *[p.grad for p in model.parameters()], *model.buffers()])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_sync_batchnorm_and_gpus_keep_the_stock_layers():
    """`--trainer.sync_batchnorm` converts every BatchNorm to SyncBatchNorm (a fused layer would lose its GELU), and
    off the CPU the fused layer buys nothing: no fusion under either."""
    for device, layer_sync in (("cpu", object()), ("cuda", None)):
        model = ConvMixer(dim=32, depth=1, kernel_size=3, patch_size=4, image_size=32)
        model._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device),
                                                                  _layer_sync=layer_sync))
        model.prepare_net()
        assert not any(isinstance(m, GeluBatchNorm2d) for m in model.modules()), device
    model._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu"), _layer_sync=None))
    model.prepare_net()
    assert sum(isinstance(m, GeluBatchNorm2d) for m in model.modules()) == 3


def test_under_torch_compile_setup_leaves_the_layers_to_inductor():
    model = ConvMixer(dim=32, depth=1, kernel_size=3, patch_size=4, image_size=32, compile=True)
    model.prepare_net()
    assert not any(isinstance(m, GeluBatchNorm2d) for m in model.modules())


@needs_loop
def test_the_loops_use_the_same_vector_width():
    lib = gelu_bn.library()
    assert lib.gelu_bn_vector_lanes() == lib.depthwise_vector_lanes() in (8, 16)
