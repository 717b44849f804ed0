"""Raw image sources: tfds datasets, image folders and synthetic data.

`load_split` returns a `tf.data.Dataset` of `(image, label)` pairs, the image
uint8 `[height, width, channels]` and the label an int64 scalar, together with
a `SourceInfo`. Nothing here downloads: a tfds dataset is read only if it is
already prepared, or prepared from files already on disk (tfds's manual dir,
or Debian's Fashion-MNIST package); otherwise `DataNotFoundError` says at once
which files to put where. (Without `download=False`, tfds would spend minutes
retrying the network before failing.)
"""

import dataclasses
import os
import zlib

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from ppcd_tf import errors
from ppcd_tf.data import fashion_mnist_offline
from ppcd_tf.data.fashion_mnist_offline import DataNotFoundError
from ppcd_tf.data.fashion_mnist_offline import default_data_dir
from ppcd_tf.data.fashion_mnist_offline import manual_dir_for

FASHION_MNIST = "fashion_mnist"
CIFAR10 = "cifar10"
IMAGENET2012 = "imagenet2012"
IMAGE_FOLDER = "image_folder"
FAKE = "fake"
VALID_NAMES = (FASHION_MNIST, CIFAR10, IMAGENET2012, IMAGE_FOLDER, FAKE)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGENET_URL = "https://image-net.org/download-images"
# tfds imagenet2012 reads these archives from its manual dir, one per split.
IMAGENET_SPLIT_ARCHIVES = {
    "train": "ILSVRC2012_img_train.tar",
    "validation": "ILSVRC2012_img_val.tar",
    "test": "ILSVRC2012_img_test.tar",
}
IMAGENET_VALIDATION = "validation"
_UINT8_LEVELS = 256


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """Static facts about one split of an image source.

    Attributes:
        num_classes: number of label values (labels are in [0, num_classes)).
        num_examples: number of examples in the split.
        image_channels: channels of the source images (1 grey, 3 RGB).
        class_names: tuple of class names, or None if unknown.
    """

    num_classes: int
    num_examples: int
    image_channels: int
    class_names: tuple | None = None


def _base_split(split):
    """'train[:10%]' -> 'train'."""
    return split.split("[", 1)[0].strip()


def _info_from_builder(builder, split):
    """Returns the `SourceInfo` of `split` of a prepared tfds builder."""
    features = builder.info.features
    label = features["label"]
    channels = features["image"].shape[-1]
    return SourceInfo(
        num_classes=label.num_classes,
        num_examples=builder.info.splits[split].num_examples,
        image_channels=channels,
        class_names=tuple(label.names) if label.names else None)


def _check_split(builder, name, split):
    available = sorted(builder.info.splits.keys())
    if _base_split(split) not in available:
        raise errors.BadInputError(
            f"Split {split!r} is not in dataset {name!r}; available splits: "
            f"{available}.")


def _load_prepared(name, split, data_dir):
    """Reads a prepared tfds dataset (never downloads)."""
    builder = tfds.builder(name, data_dir=data_dir)
    _check_split(builder, name, split)
    dataset = builder.as_dataset(
        split=split, as_supervised=True, shuffle_files=False,
        read_config=tfds.ReadConfig(try_autocache=False))
    return dataset, _info_from_builder(builder, split)


def _prepare_from_manual_dir(name, data_dir, required_files, instructions):
    """Prepares tfds `name` from files in its manual dir, never downloading.

    Args:
        name: tfds builder name.
        data_dir: tfds data dir.
        required_files: file names that must be in the manual dir.
        instructions: how to obtain the files, for the error message.

    Raises:
        DataNotFoundError: at once, if a required file is missing.
    """
    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return
    manual_dir = manual_dir_for(data_dir)
    missing = [f for f in required_files
               if not os.path.isfile(os.path.join(manual_dir, f))]
    if missing:
        raise DataNotFoundError(
            f"Dataset {name!r} is not prepared in {data_dir} and "
            f"{', '.join(missing)} is missing: put it in {manual_dir} "
            f"(tfds's manual dir; the dataset is prepared from there, never "
            f"downloaded). {instructions}")
    with fashion_mnist_offline.preparation_lock(data_dir):
        builder = tfds.builder(name, data_dir=data_dir)
        if builder.is_prepared():
            return
        logging.info("Preparing %s in %s from %s", name, data_dir, manual_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                manual_dir=manual_dir))


def _load_fashion_mnist(split, data_dir):
    fashion_mnist_offline.prepare_fashion_mnist(data_dir)
    return _load_prepared(FASHION_MNIST, split, data_dir)


def _load_cifar10(split, data_dir):
    builder = tfds.builder(CIFAR10, data_dir=data_dir)
    # The registered file names, e.g. cifar-10-binary.tar.gz (tfds's cifar10
    # reads the *binary* archive, not cifar-10-python.tar.gz).
    files = sorted(info.filename for info in builder.url_infos.values())
    _prepare_from_manual_dir(
        CIFAR10, data_dir, files,
        f"Get it from {CIFAR10_URL} ('CIFAR-10 binary version'); tfds "
        f"checks its sha256.")
    return _load_prepared(CIFAR10, split, data_dir)


def _load_imagenet2012(split, data_dir):
    base = _base_split(split)
    if base not in IMAGENET_SPLIT_ARCHIVES:
        raise errors.BadInputError(
            f"Split {split!r} is not in dataset {IMAGENET2012!r}; available "
            f"splits: {sorted(IMAGENET_SPLIT_ARCHIVES)}.")
    # tfds 4.9's imagenet2012 builder always opens the validation archive
    # (to map validation file names to labels), whatever the split.
    required = sorted({IMAGENET_SPLIT_ARCHIVES[base],
                       IMAGENET_SPLIT_ARCHIVES[IMAGENET_VALIDATION]})
    _prepare_from_manual_dir(
        IMAGENET2012, data_dir, required,
        f"Register at {IMAGENET_URL} to download the archives; tfds needs "
        f"{IMAGENET_SPLIT_ARCHIVES[IMAGENET_VALIDATION]} for any split and "
        f"prepares every split whose archive is there.")
    return _load_prepared(IMAGENET2012, split, data_dir)


# What an image folder does with files it cannot read ('skip': train
# without them, listed in a warning; 'refuse': stop before training).
UNREADABLE_POLICIES = ("skip", "refuse")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # what tfds' ImageFolder reads
_MAGIC_BYTES = {".png": (b"\x89PNG\r\n\x1a\n",),
                ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",)}
_LISTED_FILES = 10


def unreadable_images(split_dir):
    """[(path, why)] of the image files under <split_dir>/<class>/ that
    cannot be images of their extension: empty, or without the format's
    signature (a scan of each file's first bytes, not a full decode)."""
    bad = []
    for root, _, names in sorted(os.walk(split_dir)):
        for name in sorted(names):
            extension = os.path.splitext(name)[1].lower()
            if extension not in IMAGE_EXTENSIONS:
                continue
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    head = f.read(8)
            except OSError as error:
                bad.append((path, error.strerror))
                continue
            if not head:
                bad.append((path, "empty file"))
            elif not head.startswith(_MAGIC_BYTES[extension]):
                bad.append((path, f"not a {extension[1:].upper()} image"))
    return bad


def _report_unreadable(bad, split_dir, policy):
    listed = "; ".join(f"{path} ({why})" for path, why in bad[:_LISTED_FILES])
    more = (f" and {len(bad) - _LISTED_FILES} more"
            if len(bad) > _LISTED_FILES else "")
    summary = (f"{len(bad)} unreadable image file(s) in {split_dir}: "
               f"{listed}{more}")
    if policy == "refuse":
        raise errors.DamagedInputError(
            f"{summary}. Remove or replace them, or bind "
            "ImageDataset.unreadable_images = 'skip' to train without them.")
    logging.warning("%s. Training without them (ImageDataset."
                    "unreadable_images = 'refuse' stops instead).", summary)


def _load_image_folder(split, image_folder, unreadable="skip"):
    if unreadable not in UNREADABLE_POLICIES:
        raise errors.BadInputError(
            f"ImageDataset.unreadable_images must be one of "
            f"{UNREADABLE_POLICIES}, got {unreadable!r}.")
    if not image_folder:
        raise errors.BadInputError(
            f"Source {IMAGE_FOLDER!r} needs `image_folder`: a directory laid "
            f"out as <image_folder>/<split>/<class>/<image>.png|jpg.")
    split_dir = os.path.join(os.path.expanduser(image_folder), split)
    if not os.path.isdir(split_dir):
        raise DataNotFoundError(
            f"Image folder split directory {split_dir} does not exist: lay "
            f"out images as {image_folder}/{split}/<class>/<image>.png|jpg.")
    bad = unreadable_images(split_dir)
    if bad:
        _report_unreadable(bad, split_dir, unreadable)
    builder = tfds.folder_dataset.ImageFolder(image_folder)
    dataset = builder.as_dataset(split=split, as_supervised=True,
                                 shuffle_files=False)
    info = _info_from_builder(builder, split)
    if bad:
        # The scanned files fail to decode; the dataset passes over them.
        dataset = dataset.ignore_errors()
        info = dataclasses.replace(
            info, num_examples=info.num_examples - len(bad))
    return dataset, info


def _split_seed(seed, split):
    """Deterministic numpy seed sequence for `(seed, split)`."""
    return [seed, zlib.crc32(split.encode("utf-8"))]


def _load_fake(split, num_examples, num_classes, resolution, channels, seed):
    """Deterministic synthetic uint8 images and int64 labels.

    Each split gets its own data. Images are uniform noise around a
    class-dependent grey level, so labels carry some signal.
    """
    if num_examples < 1 or num_classes < 1:
        raise errors.BadInputError(
            f"fake_num_examples ({num_examples}) and fake_num_classes "
            f"({num_classes}) must be >= 1.")
    rng = np.random.default_rng(_split_seed(seed, split))
    labels = rng.integers(0, num_classes, size=num_examples, dtype=np.int64)
    shape = (num_examples, resolution, resolution, channels)
    noise = rng.integers(0, _UINT8_LEVELS, size=shape, dtype=np.int64)
    level = (labels * _UINT8_LEVELS // num_classes)[:, None, None, None]
    images = ((noise + level) // 2).astype(np.uint8)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    info = SourceInfo(num_classes=num_classes, num_examples=num_examples,
                      image_channels=channels, class_names=None)
    return dataset, info


def load_split(name, split, data_dir=None, image_folder=None,
               fake_num_examples=64, fake_num_classes=10, fake_resolution=32,
               fake_channels=3, seed=0, unreadable_images="skip"):
    """Loads one split of an image source without ever downloading.

    Args:
        name: one of `VALID_NAMES`: 'fashion_mnist' (prepared offline from
            Debian's `dataset-fashion-mnist` files on first use), 'cifar10'
            and 'imagenet2012' (prepared data, or the original archives in
            `<data_dir>/downloads/manual`), 'image_folder'
            (`<image_folder>/<split>/<class>/*.png|jpg`) or 'fake'
            (deterministic synthetic data).
        split: tfds split string, e.g. 'train', 'test' or 'train[:10%]'.
        data_dir: tfds data dir; `$TFDS_DATA_DIR` or `~/tensorflow_datasets`
            if None.
        image_folder: root directory, for name 'image_folder'.
        fake_num_examples: examples in a 'fake' split.
        fake_num_classes: classes of 'fake' labels.
        fake_resolution: height and width of 'fake' images.
        fake_channels: channels of 'fake' images.
        seed: seed of 'fake' data.
        unreadable_images: an image folder's files that cannot be images
            (`UNREADABLE_POLICIES`): 'skip' them with a warning listing
            them, or 'refuse' (DamagedInputError) before training.

    Returns:
        `(dataset, info)`: a finite `tf.data.Dataset` of `(image, label)`,
        image uint8 `[height, width, channels]` (height and width may vary
        for imagenet2012 and image folders), label int64 `[]`; and its
        `SourceInfo`.

    Raises:
        ValueError: unknown name or split.
        DataNotFoundError: the data is not on disk; the message says which
            files to put where.
    """
    if name not in VALID_NAMES:
        raise errors.BadInputError(
            f"Unknown dataset name {name!r}; valid names: "
            f"{', '.join(VALID_NAMES)}.")
    if name == FAKE:
        return _load_fake(split, fake_num_examples, fake_num_classes,
                          fake_resolution, fake_channels, seed)
    if name == IMAGE_FOLDER:
        return _load_image_folder(split, image_folder, unreadable_images)
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    loaders = {
        FASHION_MNIST: _load_fashion_mnist,
        CIFAR10: _load_cifar10,
        IMAGENET2012: _load_imagenet2012,
    }
    return loaders[name](split, data_dir)
