"""`--model timm_vit`: timm's VisionTransformer built as the mixer study's patch + attention cell.

An independent implementation to check the isotropic body against (issue 21): with the cell's sizes (64 px, patch
4, width 128, depth 6, 4 heads, MLP x4, no class token, mean pooling) it has exactly the cell's 1,230,218
parameters, so a gap between the two is the body's details (timm normalises after the mean-pool, `fc_norm`, where
the isotropic body normalises each token before it; timm's LayerNorm eps is 1e-6), not its size. timm is imported
only when the model is built: `pip install timm` (the `reference` extra) to use it.
"""

from __future__ import annotations

from convmixer_lit.base import ImageClassifier
from convmixer_lit.errors import ConfigError


class TimmViT(ImageClassifier):
    """timm's `VisionTransformer(class_token=False, global_pool="avg")` in the kit's recipe."""

    model_name = "timm_vit"
    weightless_hparams = ("num_heads",)

    def __init__(self, dim: int = 128, depth: int = 6, num_heads: int = 4, patch_size: int = 4,
                 mlp_ratio: float = 4.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.check_positive(dim=dim, depth=depth, num_heads=num_heads)
        self.check_patch_size(patch_size)
        if dim % num_heads:
            raise ConfigError(f"--model.num_heads {num_heads} does not divide --model.dim {dim}")
        try:
            from timm.models.vision_transformer import VisionTransformer
        except ImportError:
            raise ConfigError("--model timm_vit needs timm: pip install timm (the kit's `reference` extra)") from None
        self.net = VisionTransformer(img_size=self.image_size, patch_size=patch_size, num_classes=self.num_classes,
                                     embed_dim=dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                     class_token=False, global_pool="avg")
