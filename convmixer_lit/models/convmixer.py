"""ConvMixer, exactly as in Trockman & Kolter, "Patches Are All You Need?" (2022), Listing 1."""

from torch import nn

from convmixer_lit.base import ImageClassifier
from convmixer_lit.kernels.depthwise import DepthwiseConv2d  # nn.Conv2d with a faster CPU backward


class Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x) + x


def convmixer(dim: int, depth: int, kernel_size: int, patch_size: int, num_classes: int) -> nn.Sequential:
    """Patch embedding (conv, stride = patch) -> GELU -> BN, then `depth` mixer blocks, then pool -> linear."""
    return nn.Sequential(
        nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size),
        nn.GELU(),
        nn.BatchNorm2d(dim),
        *[
            nn.Sequential(
                Residual(nn.Sequential(
                    DepthwiseConv2d(dim, dim, kernel_size, groups=dim, padding="same"),  # spatial mixing
                    nn.GELU(),
                    nn.BatchNorm2d(dim),
                )),
                nn.Conv2d(dim, dim, kernel_size=1),  # channel mixing
                nn.GELU(),
                nn.BatchNorm2d(dim),
            )
            for _ in range(depth)
        ],
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
        nn.Linear(dim, num_classes),
    )


class ConvMixer(ImageClassifier):
    """`--model convmixer`. Defaults are the study's: ConvMixer-256/12, kernel 7, patch 7 (~1.0 M parameters)."""

    channels_last = True

    def __init__(self, dim: int = 256, depth: int = 12, kernel_size: int = 7, patch_size: int = 7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.check_positive(dim=dim, depth=depth, kernel_size=kernel_size)
        self.check_patch_size(patch_size)
        self.net = convmixer(dim, depth, kernel_size, patch_size, self.num_classes)
