"""One isotropic body where only two factors change: the patch stem and the token mixer (the mixer study).

Every cell is MetaFormer's block, `x + mixer(norm(x))` then `x + mlp(norm(x))`, on a fixed token grid, with the
same per-token LayerNorm (its statistics never span positions, so no token mixing hides in it), channel MLP,
learned position embedding, mean-pool head, initialisation and recipe. Tokens are kept as (B, H, W, C): the norm and
the MLP act on the last dimension, and the conv/pool mixers see a channels-last NCHW view of the same memory.

- stem `patch`: one p x p stride-p conv (ConvMixer's and ViT's). `conv`: 3 x 3 stride-2 convs with BN + ReLU down
  to the same grid, then a 1 x 1 conv to `dim` (Xiao et al. 2021). Here it costs ~2% of the body's FLOPs, far less
  than one block, so no block is dropped to pay for it (Xiao's stems cost about one block).
- mixer `attention`: multi-head self-attention; `conv`: depthwise k x k; `pool`: 3 x 3 average pooling minus the
  input (PoolFormer); `identity`: no token mixing at all.
Relation to the reference models: patch + conv is ConvMixer with ViT's pre-norm residual MLP block (ConvMixer has
BN and no MLP expansion); patch + attention is ViT with a mean-token head, as `--model vit`.
"""

import torch
import torch.nn.functional as F
from torch import nn

from convmixer_lit.base import ImageClassifier
from convmixer_lit.errors import ConfigError

STEMS, MIXERS = ("patch", "conv"), ("attention", "conv", "pool", "identity")


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.qkv, self.proj = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):  # (B, H, W, C)
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, h, w, c))


class Spatial(nn.Module):
    """Runs an NCHW op on (B, H, W, C) tokens through a channels-last view (no copy)."""

    def __init__(self, op: nn.Module, minus_input: bool = False) -> None:
        super().__init__()
        self.op, self.minus_input = op, minus_input

    def forward(self, x):
        y = self.op(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return y - x if self.minus_input else y


def mixer(kind: str, dim: int, heads: int, kernel_size: int) -> nn.Module:
    return {"attention": lambda: Attention(dim, heads),
            "conv": lambda: Spatial(nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)),
            "pool": lambda: Spatial(nn.AvgPool2d(3, 1, 1, count_include_pad=False), minus_input=True),
            "identity": nn.Identity}[kind]()


class Block(nn.Module):
    def __init__(self, token_mixer: nn.Module, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1, self.mixer, self.norm2 = nn.LayerNorm(dim), token_mixer, nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def stem(kind: str, dim: int, patch_size: int) -> nn.Sequential:
    if kind == "patch":
        return nn.Sequential(nn.Conv2d(3, dim, patch_size, stride=patch_size))
    layers, c = [], 3
    for i in range(patch_size.bit_length() - 1):  # log2(p) stride-2 convs, widths dim/2^k rising to dim/2
        out = max(dim >> (patch_size.bit_length() - 1 - i), 16)
        layers += [nn.Conv2d(c, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        c = out
    return nn.Sequential(*layers, nn.Conv2d(c, dim, 1))


class IsotropicNetwork(nn.Module):
    def __init__(self, stem_kind: str, mixer_kind: str, image_size: int, patch_size: int, dim: int, depth: int,
                 mlp_ratio: float, num_heads: int, kernel_size: int, num_classes: int, pooled_norm: bool = False
                 ) -> None:
        super().__init__()
        self.pooled_norm = pooled_norm
        self.grid, self.patch_size = image_size // patch_size, patch_size
        self.stem = stem(stem_kind, dim, patch_size)
        self.pos = nn.Parameter(torch.zeros(self.grid, self.grid, dim))  # 3-D: channels_last leaves it alone
        self.blocks = nn.Sequential(*[Block(mixer(mixer_kind, dim, num_heads, kernel_size), dim, mlp_ratio)
                                      for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features before the head: mean over the token grid."""
        side = self.grid * self.patch_size  # floor(image / patch) tokens, as the strided patch conv gives
        x = self.stem(x[..., :side, :side]).permute(0, 2, 3, 1)  # (B, H, W, C)
        if self.pooled_norm:  # timm's fc_norm: normalise the pooled features
            return self.norm(self.blocks(x + self.pos).mean(dim=(1, 2)))
        return self.norm(self.blocks(x + self.pos)).mean(dim=(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Isotropic(ImageClassifier):
    """`--model isotropic`: the mixer study's family (stem x mixer on one body; defaults: the study's size)."""

    channels_last = True
    former_defaults = {"pooled_norm": False}  # checkpoints and studies made before it was the default (2026-12-07)

    def __init__(self, stem: str = "patch", mixer: str = "conv", dim: int = 128, depth: int = 6,
                 patch_size: int = 4, mlp_ratio: float = 4.0, num_heads: int = 4, kernel_size: int = 7,
                 pooled_norm: bool = True, **kwargs) -> None:
        """`pooled_norm`: normalise the mean-pooled features (timm's `fc_norm`) instead of each token before the
        pool (false). The per-token norm cost the attention cell 7.3 pp and the conv cell -1.0 pp (docs/results.md):
        it favoured one mixer. The untuned mixer study was made with false, and pins it."""
        super().__init__(**kwargs)
        self.weightless_hparams = ("mixer", "pooled_norm") + (("num_heads",) if mixer == "attention" else ())
        self.check_positive(dim=dim, depth=depth, num_heads=num_heads, kernel_size=kernel_size)
        self.check_patch_size(patch_size)
        if stem not in STEMS or mixer not in MIXERS:
            raise ConfigError(f"--model.stem must be one of {', '.join(STEMS)} and --model.mixer one of "
                              f"{', '.join(MIXERS)}; got stem {stem!r}, mixer {mixer!r}")
        if stem == "conv" and patch_size & (patch_size - 1):
            raise ConfigError(f"--model.stem conv reaches the grid by stride-2 convs, so --model.patch_size must be "
                              f"a power of 2, got {patch_size}")
        if mixer == "attention" and dim % num_heads:
            raise ConfigError(f"--model.num_heads {num_heads} does not divide --model.dim {dim}")
        if mixer == "conv" and kernel_size % 2 == 0:
            raise ConfigError(f"--model.kernel_size must be odd (same padding), got {kernel_size}")
        if mlp_ratio <= 0:
            raise ConfigError(f"--model.mlp_ratio must be positive, got {mlp_ratio}")
        self.net = IsotropicNetwork(stem, mixer, self.image_size, patch_size, dim, depth, mlp_ratio, num_heads,
                                    kernel_size, self.num_classes, pooled_norm)
