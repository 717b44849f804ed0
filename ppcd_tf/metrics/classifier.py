"""The Fashion-MNIST classifier: FID feature network and class-accuracy judge.

A small CNN on 32x32x1 images in [-1, 1] (the project's Fashion-MNIST
preprocessing): two conv stages (32, 64 filters, 3x3, ReLU, 2x2 max-pool),
a third conv stage (128 filters) with global average pooling, a 128-d
penultimate layer ("features", used for FID/KID) and 10 logits.

Its weights ship with the package (`ppcd_tf/assets/`), trained by
`python -m ppcd_tf.train_classifier` on the training split; the recorded
test-split accuracy sits next to them in `fmnist_classifier.json`.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf import files

ASSETS_DIR = files.ASSETS_DIR
WEIGHTS_FILE = "fmnist_classifier.weights.h5"
RECORD_FILE = "fmnist_classifier.json"
# What the classifier's record must hold (files.check_fields): its test
# accuracy is reported with every evaluation; the rest says how it was made.
RECORD_SCHEMA = {"test_accuracy": (int, float), "test_examples?": int,
                 "train_examples?": int, "epochs?": int, "seed?": int,
                 "tensorflow?": str, "command?": str}
INPUT_SHAPE = (32, 32, 1)
NUM_CLASSES = 10
FEATURE_DIM = 128
_FILTERS = (32, 64, 128)


def build_classifier():
    """Keras model: images [B, 32, 32, 1] -> (features [B, 128], logits [B, 10])."""
    images = keras.Input(INPUT_SHAPE, name="images")
    h = images
    for index, filters in enumerate(_FILTERS):
        h = keras.layers.Conv2D(filters, 3, padding="same",
                                activation="relu", name=f"conv{index}a")(h)
        h = keras.layers.Conv2D(filters, 3, padding="same",
                                activation="relu", name=f"conv{index}b")(h)
        if index < len(_FILTERS) - 1:
            h = keras.layers.MaxPooling2D(2, name=f"pool{index}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    features = keras.layers.Dense(FEATURE_DIM, activation="relu",
                                  name="features")(h)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(features)
    return keras.Model(images, [features, logits], name="fmnist_classifier")


def shipped_paths(assets_dir=ASSETS_DIR):
    return (os.path.join(assets_dir, WEIGHTS_FILE),
            os.path.join(assets_dir, RECORD_FILE))


def load_shipped_classifier(assets_dir=ASSETS_DIR):
    """(model, record) of the shipped classifier; clear error if missing."""
    weights, record = shipped_paths(assets_dir)
    if not (os.path.isfile(weights) and os.path.isfile(record)):
        raise errors.MissingInputError(
            f"The Fashion-MNIST classifier is missing ({weights}); recreate "
            "it with: python -m ppcd_tf.train_classifier")
    fix = ("restore it from a clean checkout of ppcd_tf/assets/ or "
           "recreate it with: python -m ppcd_tf.train_classifier")
    record_path = record
    record = files.read_json(
        record_path, "The classifier's record",
        missing_fix="recreate it with: python -m ppcd_tf.train_classifier",
        damaged_fix=fix)
    files.check_fields(record, record_path, RECORD_SCHEMA, fix)
    model = build_classifier()
    model.load_weights(weights)
    return model, record


def features_and_logits(model, images, batch_size=500):
    """Runs the classifier in batches: images [N, 32, 32, 1] -> numpy."""
    fn = tf.function(lambda x: model(x, training=False))
    features, logits = [], []
    for start in range(0, len(images), batch_size):
        f, l = fn(tf.convert_to_tensor(images[start:start + batch_size]))
        features.append(f.numpy())
        logits.append(l.numpy())
    return np.concatenate(features), np.concatenate(logits)
