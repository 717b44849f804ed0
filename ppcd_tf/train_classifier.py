r"""Trains the Fashion-MNIST classifier that judges and embeds samples.

Example (reproduces the shipped weights):

  python -m ppcd_tf.train_classifier --epochs 4 --seed 0

Trains `ppcd_tf.metrics.classifier.build_classifier` on the offline
Fashion-MNIST training split (the project's 32x32 preprocessing), evaluates
it on the test split, and writes `fmnist_classifier.weights.h5` and
`fmnist_classifier.json` (test accuracy, command, settings) into --output_dir
(default: the package's assets directory).
"""

import json
import os
import sys

from absl import flags
from absl import logging

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
classifier = lazy.load("ppcd_tf.metrics.classifier")
keras = lazy.load("keras")
np = lazy.load("numpy")
pipeline = lazy.load("ppcd_tf.data.pipeline")
tf = lazy.load("tensorflow")

FLAGS = flags.FLAGS
flags.DEFINE_integer("epochs", 4, "Training epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "Seed.")
flags.DEFINE_string("output_dir", files.ASSETS_DIR, "Where to write.")


def split_arrays(split, seed):
    """(images [N, 32, 32, 1] float32 in [-1, 1], labels [N] int32)."""
    data = pipeline.ImageDataset(name="fashion_mnist", split=split,
                                 resolution=32, seed=seed)
    images, labels = [], []
    batch = 1000
    stream = data.batches(batch)
    for x, y in stream.take(data.num_examples // batch):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    train_x, train_y = split_arrays("train", FLAGS.seed)
    test_x, test_y = split_arrays("test", FLAGS.seed)
    model = classifier.build_classifier()
    logits_model = keras.Model(model.input, model.outputs[1])
    logits_model.compile(
        optimizer=keras.optimizers.Adam(FLAGS.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"])
    logits_model.fit(train_x, train_y, batch_size=FLAGS.batch_size,
                     epochs=FLAGS.epochs, verbose=2)
    _, logits = classifier.features_and_logits(model, test_x)
    accuracy = float(np.mean(np.argmax(logits, 1) == test_y))
    logging.info("Test accuracy %.4f on %d images.", accuracy, len(test_y))
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    weights, record = classifier.shipped_paths(FLAGS.output_dir)
    model.save_weights(weights)
    with open(record, "w") as f:
        json.dump({"test_accuracy": accuracy, "test_examples": len(test_y),
                   "train_examples": len(train_y), "epochs": FLAGS.epochs,
                   "batch_size": FLAGS.batch_size,
                   "learning_rate": FLAGS.learning_rate, "seed": FLAGS.seed,
                   "tensorflow": tf.__version__,
                   "command": "python -m ppcd_tf.train_classifier "
                              + " ".join(sys.argv[1:])}, f, indent=2)
    print(f"test accuracy {accuracy:.4f}; wrote {weights}")


if __name__ == "__main__":
    errors.run(main)
