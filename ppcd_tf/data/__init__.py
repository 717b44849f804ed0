"""Data: offline sources (tfds, image folders, synthetic) and the pipeline.

Public API:
    `ImageDataset`: gin-configurable, BigGAN-preprocessed, resumable batches.
    `load_split`, `SourceInfo`: raw uint8 sources.
    `prepare_fashion_mnist`: offline tfds preparation from Debian's files.
    `DataNotFoundError`: data absent on disk (never downloaded).
"""

from ppcd_tf.data.fashion_mnist_offline import DataNotFoundError
from ppcd_tf.data.fashion_mnist_offline import prepare_fashion_mnist
from ppcd_tf.data.pipeline import ImageDataset
from ppcd_tf.data.sources import VALID_NAMES
from ppcd_tf.data.sources import SourceInfo
from ppcd_tf.data.sources import load_split

__all__ = [
    "DataNotFoundError",
    "ImageDataset",
    "SourceInfo",
    "VALID_NAMES",
    "load_split",
    "prepare_fashion_mnist",
]
