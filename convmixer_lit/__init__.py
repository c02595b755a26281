"""convmixer_lit: is it the patches or the attention? ConvMixer vs ViT vs ResNet on Imagenette, one recipe."""

from convmixer_lit.base import MODELS, ImageClassifier
from convmixer_lit.data import ImagenetteDataModule

__all__ = ["MODELS", "ImageClassifier", "ImagenetteDataModule"]
__version__ = "0.1.0"
