"""Built-in architectures. Importing this package registers them as `--model` names."""

from convmixer_lit.models.convmixer import ConvMixer
from convmixer_lit.models.isotropic import Isotropic
from convmixer_lit.models.resnet import ResNet9, ResNet18
from convmixer_lit.models.timm_vit import TimmViT
from convmixer_lit.models.vit import ViT

__all__ = ["ConvMixer", "Isotropic", "ResNet9", "ResNet18", "TimmViT", "ViT"]
