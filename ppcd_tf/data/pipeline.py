"""Gin-configurable input pipeline: BigGAN preprocessing, resumable batches.

`ImageDataset` wraps one split of a source from `ppcd_tf.data.sources` and
produces an infinite, deterministic stream of preprocessed batches. The
stream is a pure function of `(seed, start_example)` (and the number of
input pipelines): epoch `e` is the cached, preprocessed split shuffled with
a seed derived from `(seed, e)`, so a run resumed with
`start_example = k * batch_size` yields exactly the batches the original run
yielded from batch `k` on, also across epoch boundaries.
"""

import gin
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.data import sources

_VALID_CHANNELS = (1, 3)
_GREY, _RGB = _VALID_CHANNELS
_UINT8_HALF_RANGE = 127.5  # uint8 [0, 255] -> [-1, 1]: x / 127.5 - 1.
_BACKGROUND = 0.0  # Padded pixels, in [0, 255] units: -1 after scaling.
_RESIZE_METHOD = "bilinear"
# Epoch e of seed s is shuffled with op seed s * _EPOCH_SEED_STRIDE + e.
_EPOCH_SEED_STRIDE = 1000003
# Fixed graph-level seed of the per-epoch shuffle, so that the stream does
# not depend on the global TF seed (tf.random.set_seed), only on `seed`.
_SHUFFLE_GRAPH_SEED = 20240601
_MAX_EPOCH = tf.int64.max


def _scale_to_unit_range(image):
    """float32 in [0, 255] -> [-1, 1]: 0 -> -1.0, 255 -> 1.0 exactly."""
    return tf.clip_by_value(image / _UINT8_HALF_RANGE - 1.0, -1.0, 1.0)


def _pad_centered(image, resolution):
    """Pads float `[h, w, C]` (h, w <= resolution) centered with 0."""
    shape = tf.shape(image)
    pad_h = resolution - shape[0]
    pad_w = resolution - shape[1]
    paddings = [[pad_h // 2, pad_h - pad_h // 2],
                [pad_w // 2, pad_w - pad_w // 2],
                [0, 0]]
    return tf.pad(image, paddings, constant_values=_BACKGROUND)


def _crop_and_resize(image, resolution):
    """Center-crops float `[h, w, C]` to a square and resizes it."""
    shape = tf.shape(image)
    side = tf.minimum(shape[0], shape[1])
    top = (shape[0] - side) // 2
    left = (shape[1] - side) // 2
    square = image[top:top + side, left:left + side, :]
    return tf.image.resize(square, [resolution, resolution],
                           method=_RESIZE_METHOD, antialias=True)


@gin.configurable
class ImageDataset:
    """One split of an image source as an infinite stream of batches.

    Attributes (read-only properties): `num_classes`, `num_examples`,
    `image_channels` (of the output), `class_names` (tuple or None),
    `resolution`.

    Loading happens in the constructor (for 'fashion_mnist' this prepares
    the dataset offline once, about 10 s); see `sources.load_split`.
    """

    def __init__(self, name=gin.REQUIRED, resolution=gin.REQUIRED,
                 split="train", data_dir=None, image_folder=None,
                 image_channels=None, shuffle_buffer=10000, cache=True,
                 seed=0, fake_num_examples=64, fake_num_classes=10,
                 unreadable_images="skip"):
        """Loads the split.

        Args:
            name: source name, one of `sources.VALID_NAMES`.
            resolution: output height and width in pixels.
            split: tfds split string, e.g. 'train' or 'test'.
            data_dir: tfds data dir (None: `$TFDS_DATA_DIR` or
                `~/tensorflow_datasets`).
            image_folder: root of an image folder, for name 'image_folder'.
            image_channels: output channels: None keeps the source's, 3
                tiles grey to RGB, 1 converts RGB to grey.
            shuffle_buffer: shuffle buffer size in examples (capped at the
                split size).
            cache: keep decoded, preprocessed examples in memory after the
                first epoch. Use False for data larger than memory.
            seed: seed of the shuffle order (and of 'fake' data).
            fake_num_examples: examples of a 'fake' split.
            fake_num_classes: classes of a 'fake' split.
            unreadable_images: an image folder's unreadable files: 'skip'
                (listed in a warning) or 'refuse' (stop before training).

        Raises:
            ValueError: bad arguments or unknown name.
            sources.DataNotFoundError: the data is not on disk.
        """
        if resolution is gin.REQUIRED or name is gin.REQUIRED:
            raise errors.BadInputError(
                "ImageDataset needs `name` and `resolution`; pass them or "
                "bind ImageDataset.name / ImageDataset.resolution in gin.")
        if int(resolution) < 1:
            raise errors.BadInputError(
                f"resolution must be >= 1, got {resolution}.")
        if image_channels is not None and image_channels not in (
                _VALID_CHANNELS):
            raise errors.BadInputError(
                f"image_channels must be None, 1 or 3, got {image_channels}.")
        if shuffle_buffer < 1:
            raise errors.BadInputError(
                f"shuffle_buffer must be >= 1, got {shuffle_buffer}.")
        self._name = name
        self._resolution = int(resolution)
        self._split = split
        self._data_dir = data_dir
        self._shuffle_buffer = int(shuffle_buffer)
        self._cache = bool(cache)
        self._seed = int(seed)
        self._source, self._info = sources.load_split(
            name, split, data_dir=data_dir, image_folder=image_folder,
            fake_num_examples=fake_num_examples,
            fake_num_classes=fake_num_classes,
            fake_resolution=self._resolution,
            fake_channels=image_channels or _RGB, seed=self._seed,
            unreadable_images=unreadable_images)
        if self._info.image_channels not in _VALID_CHANNELS:
            raise errors.BadInputError(
                f"Source {name!r} has {self._info.image_channels}-channel "
                f"images; only grey (1) and RGB (3) are supported.")
        self._image_channels = image_channels or self._info.image_channels

    @property
    def num_classes(self):
        return self._info.num_classes

    @property
    def num_examples(self):
        return self._info.num_examples

    @property
    def image_channels(self):
        return self._image_channels

    @property
    def name(self):
        return self._name

    @property
    def split(self):
        return self._split

    @property
    def data_dir(self):
        return self._data_dir

    @property
    def class_names(self):
        return self._info.class_names

    @property
    def resolution(self):
        return self._resolution

    def preprocess(self, image_uint8):
        """BigGAN preprocessing of one image.

        Geometry rule: if the image is no larger than `resolution` on both
        sides, it is padded centered with the background value -1 (uint8 0),
        not resized: a 28x28 Fashion-MNIST image at resolution 32 gets 2 px
        of -1 on each side. Otherwise it is center-cropped to a square and
        resized to `resolution` (bilinear with antialiasing, i.e. area-like
        when downscaling). Values are scaled as `x / 127.5 - 1`, so 0 -> -1.0
        and 255 -> 1.0 exactly. Channels: grey is tiled to RGB if
        `image_channels` is 3; RGB is converted to grey if it is 1.

        Args:
            image_uint8: uint8 `[h, w, C_source]`.

        Returns:
            float32 `[resolution, resolution, image_channels]` in [-1, 1].
        """
        # Geometry works in [0, 255] units, so black (and padding) is exactly
        # -1 after scaling.
        image = tf.cast(image_uint8, tf.float32)
        source_channels = self._info.image_channels
        if self._image_channels == _RGB and source_channels == _GREY:
            image = tf.image.grayscale_to_rgb(image)
        elif self._image_channels == _GREY and source_channels == _RGB:
            image = tf.image.rgb_to_grayscale(image)
        res = self._resolution
        height, width = image.shape[0], image.shape[1]
        if height is not None and width is not None:
            if height <= res and width <= res:
                image = _pad_centered(image, res)
            else:
                image = _crop_and_resize(image, res)
        else:
            shape = tf.shape(image)
            fits = tf.logical_and(shape[0] <= res, shape[1] <= res)
            image = tf.cond(fits, lambda: _pad_centered(image, res),
                            lambda: _crop_and_resize(image, res))
        image = _scale_to_unit_range(image)
        return tf.ensure_shape(image, [res, res, self._image_channels])

    def _preprocess_example(self, image, label):
        return self.preprocess(image), tf.cast(label, tf.int32)

    def one_pass(self, batch_size, max_examples=None):
        """The split once, in its stored order, preprocessed (evaluation).

        Args:
            batch_size: examples per batch (the last batch may be smaller).
            max_examples: take only the first this many examples (None: all).

        Returns:
            finite `tf.data.Dataset` of (float32 `[B, R, R, C]`, int32 `[B]`).
        """
        base = self._source
        if max_examples is not None:
            base = base.take(int(max_examples))
        base = base.map(self._preprocess_example,
                        num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
        return base.batch(int(batch_size)).prefetch(tf.data.AUTOTUNE)

    def _epoch_seed(self, epoch):
        return self._seed * _EPOCH_SEED_STRIDE + epoch

    def _examples(self, start_example, input_context):
        """Infinite per-pipeline stream of preprocessed examples.

        Args:
            start_example: examples already consumed, summed over all
                input pipelines.
            input_context: `tf.distribute.InputContext` or None.

        Returns:
            `tf.data.Dataset` of (float32 `[R, R, C]`, int32 `[]`).
        """
        num_pipelines = 1
        pipeline_id = 0
        if input_context is not None:
            num_pipelines = input_context.num_input_pipelines
            pipeline_id = input_context.input_pipeline_id
        if start_example < 0 or start_example % num_pipelines:
            raise errors.BadInputError(
                f"start_example ({start_example}) must be >= 0 and a "
                f"multiple of the {num_pipelines} input pipelines; resume "
                f"at a step boundary (step * global batch size).")
        base = self._source
        per_pipeline = self.num_examples
        if num_pipelines > 1:
            base = base.shard(num_pipelines, pipeline_id)
            per_pipeline = len(range(pipeline_id, self.num_examples,
                                     num_pipelines))
        if per_pipeline < 1:
            raise errors.BadInputError(
                f"Input pipeline {pipeline_id} of {num_pipelines} gets no "
                f"examples of the {self.num_examples} in split "
                f"{self._split!r}; use fewer input pipelines.")
        base = base.map(self._preprocess_example,
                        num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
        if self._cache:
            base = base.cache()
        buffer_size = min(self._shuffle_buffer, per_pipeline)

        def epoch_dataset(epoch):
            # Traced in its own function graph: this fixes the graph-level
            # seed there only, so the shuffle order depends on `seed` and
            # `epoch` alone, not on the global TF seed.
            tf.compat.v1.set_random_seed(_SHUFFLE_GRAPH_SEED)
            return base.shuffle(buffer_size, seed=self._epoch_seed(epoch),
                                reshuffle_each_iteration=False)

        start_epoch, skip = divmod(start_example // num_pipelines,
                                   per_pipeline)
        stream = tf.data.Dataset.range(start_epoch, _MAX_EPOCH)
        return stream.flat_map(epoch_dataset).skip(skip)

    def batches(self, batch_size, start_example=0, input_context=None):
        """Infinite, deterministic stream of preprocessed batches.

        Args:
            batch_size: examples per batch (per replica under a strategy).
            start_example: examples already consumed by the run being
                resumed, summed over all input pipelines (normally
                `step * global_batch_size`). The stream from
                `start_example = k * batch_size` equals the stream from 0
                without its first `k` batches.
            input_context: `tf.distribute.InputContext`; with several input
                pipelines, pipeline `i` reads shard `i` of the split.

        Returns:
            `tf.data.Dataset` of `(images, labels)`: float32
            `[batch_size, R, R, C]` in [-1, 1] and int32 `[batch_size]`.
        """
        if batch_size < 1:
            raise errors.BadInputError(
                f"batch_size must be >= 1, got {batch_size}.")
        dataset = self._examples(int(start_example), input_context)
        dataset = dataset.batch(batch_size, drop_remainder=True)
        dataset = dataset.prefetch(tf.data.AUTOTUNE)
        options = tf.data.Options()
        options.deterministic = True
        return dataset.with_options(options)

    def make_distributed(self, strategy, global_batch_size, start_example=0):
        """Distributed batches for `strategy`.

        Args:
            strategy: a `tf.distribute.Strategy`.
            global_batch_size: examples per step over all replicas; must be
                divisible by `strategy.num_replicas_in_sync`.
            start_example: examples already consumed (step * global batch).

        Returns:
            A distributed dataset whose per-replica values are
            `(images [global_batch_size // replicas, R, R, C], labels)`.

        Raises:
            ValueError: `global_batch_size` not divisible by the replicas.
        """
        replicas = strategy.num_replicas_in_sync
        if global_batch_size < 1 or global_batch_size % replicas:
            lower = max(replicas, global_batch_size // replicas * replicas)
            raise errors.BadInputError(
                f"global_batch_size {global_batch_size} is not divisible by "
                f"the {replicas} replicas in sync; use a multiple of "
                f"{replicas} (e.g. {lower} or {lower + replicas}).")

        def dataset_fn(input_context):
            return self.batches(
                input_context.get_per_replica_batch_size(global_batch_size),
                start_example=start_example, input_context=input_context)

        return strategy.distribute_datasets_from_function(dataset_fn)
