"""ResNet baselines: torchvision's ResNet-18, and the compact ResNet9 the original study actually trained."""

from torch import nn
from torchvision.models import resnet18

from convmixer_lit.base import ImageClassifier


class ResNet18(ImageClassifier):
    """`--model resnet18`: torchvision's ResNet-18 (11.2 M parameters), trained from scratch."""

    channels_last = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = resnet18(num_classes=self.num_classes)


def conv_bn(c_in: int, c_out: int, pool: bool = False) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c, c), conv_bn(c, c))

    def forward(self, x):
        return x + self.body(x)


def resnet9(width: int, num_classes: int) -> nn.Sequential:
    """The DAWNBench ResNet9: conv stages of width w, 2w, 4w, 8w with max-pools and two residual pairs."""
    w = width
    return nn.Sequential(
        conv_bn(3, w), conv_bn(w, 2 * w, pool=True), Residual(2 * w),
        conv_bn(2 * w, 4 * w, pool=True), conv_bn(4 * w, 8 * w, pool=True), Residual(8 * w),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * w, num_classes),
    )


class ResNet9(ImageClassifier):
    """`--model resnet9`: the original notebook's "ResNet-18"; width 32 gives ~1.6 M parameters."""

    channels_last = True

    def __init__(self, width: int = 32, **kwargs) -> None:
        super().__init__(**kwargs)
        self.check_positive(width=width)
        self.net = resnet9(width, self.num_classes)
