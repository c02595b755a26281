"""A small Vision Transformer built from torchvision's ViT encoder.

Differences from torchvision's `VisionTransformer`, both deliberate: the patch grid is floor(image / patch) like
ConvMixer's strided patch conv (so both models see the same tokens for any patch size), and the head reads the
mean token rather than a class token (the same global-average-pool head as ConvMixer and ResNet).
"""

import torch
from torch import nn
from torchvision.models.vision_transformer import Encoder

from convmixer_lit.base import ImageClassifier
from convmixer_lit.errors import ConfigError
from convmixer_lit.kernels.precision import float32_on_cpu


class Attention(nn.MultiheadAttention):
    """nn.MultiheadAttention, run in fp32 under CPU bf16 autocast: its flash-attention backward is 2.4x faster
    there with small heads (kernels/precision.py)."""

    def forward(self, query, key, value, **kwargs):
        return float32_on_cpu(super().forward, query, key, value, **kwargs)


class ViTNetwork(nn.Module):
    def __init__(self, image_size: int, patch_size: int, dim: int, depth: int, num_heads: int, mlp_dim: int,
                 num_classes: int, dropout: float = 0.0, pooled_norm: bool = False) -> None:
        super().__init__()
        self.pooled_norm = pooled_norm
        grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        self.encoder = Encoder(grid * grid, depth, num_heads, dim, mlp_dim, dropout, dropout)  # pos-emb + blocks + LN
        for block in self.encoder.layers:
            block.self_attention = Attention(dim, num_heads, dropout=dropout, batch_first=True)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, grid*grid, dim)
        if not self.pooled_norm:  # torchvision's Encoder: its last LayerNorm (encoder.ln) on every token, then the mean
            return self.head(self.encoder(tokens).mean(dim=1))
        enc = self.encoder  # the same parameters, encoder.ln moved after the mean (timm's fc_norm)
        return self.head(enc.ln(enc.layers(enc.dropout(tokens + enc.pos_embedding)).mean(dim=1)))


class ViT(ImageClassifier):
    """`--model vit`. Defaults: 6 layers, 8 heads, width 128, MLP 512, patch 7 (ConvMixer's grid; ~1.3 M params)."""

    weightless_hparams = ("num_heads", "pooled_norm")
    former_defaults = {"pooled_norm": False}  # checkpoints made before the option existed

    def __init__(self, dim: int = 128, depth: int = 6, num_heads: int = 8, mlp_dim: int = 512, patch_size: int = 7,
                 dropout: float = 0.0, pooled_norm: bool = False, **kwargs) -> None:
        """`pooled_norm`: normalise the mean token instead of every token before the mean (timm's `fc_norm`). In the
        mixer study's isotropic body, the same move gained the attention cell 7.3 pp and the conv cell -1.0 pp
        (docs/results.md); untested on this ViT. Off by default, so earlier studies mean what they meant."""
        super().__init__(**kwargs)
        self.check_positive(dim=dim, depth=depth, num_heads=num_heads, mlp_dim=mlp_dim)
        self.check_patch_size(patch_size)
        if dim % num_heads:
            raise ConfigError(f"--model.num_heads {num_heads} does not divide --model.dim {dim}; "
                                    f"pick a width that is a multiple of the head count")
        self.net = ViTNetwork(self.image_size, patch_size, dim, depth, num_heads, mlp_dim, self.num_classes, dropout,
                              pooled_norm)
