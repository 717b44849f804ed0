"""A short teacher run on the real, offline Fashion-MNIST via the binary.

Uses the default tfds data dir ($TFDS_DATA_DIR or ~/tensorflow_datasets),
as a user would: preparing Fashion-MNIST from Debian's files takes ~20 s on
a 2-core CPU the first time and is reused afterwards.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf.data import fashion_mnist_offline
from tests import helpers

NUM_STEPS = 6
RESOLUTION = 32
NUM_CLASSES = 10
SAMPLES_PER_CLASS = 4
PAD = 1  # ppcd_tf.training.summaries.GRID_PADDING
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
GIN_FILES = ["data/fashion_mnist32.gin", "model/biggan32.gin",
             "stage/teacher.gin"]


def _prepared_info_files(data_dir):
    return glob.glob(os.path.join(
        data_dir, fashion_mnist_offline.BUILDER_NAME, "*",
        "dataset_info.json"))


@pytest.mark.slow
class FashionMnistCliTest(tf.test.TestCase):

    def test_teacher_trains_on_fashion_mnist(self):
        data_dir = fashion_mnist_offline.default_data_dir()
        sources_present = all(
            os.path.isfile(os.path.join(fashion_mnist_offline.DEBIAN_DIR, n))
            for n in fashion_mnist_offline.UPSTREAM_FILES)
        if not sources_present and not _prepared_info_files(data_dir):
            self.skipTest("Fashion-MNIST not available: run `make data`.")

        model_dir = self.create_tempdir().full_path
        result = helpers.run_train(model_dir, GIN_FILES, [
            "CH = 8",
            "GLOBAL_BATCH_SIZE = 16",
            f"TrainLoop.num_steps = {NUM_STEPS}",
            "TrainLoop.log_every = 2",
            "TrainLoop.checkpoint_every = 3",
            "TrainLoop.sample_every = 3",
            "TrainLoop.steps_per_loop = 3",
            f"SampleGrid.samples_per_class = {SAMPLES_PER_CLASS}",
        ], timeout=400, grappler=True)  # As users run it: Grappler on.
        self.assertEqual(result.returncode, 0,
                         "\n".join(result.stderr.splitlines()[-40:]))
        self.assertIn("Data: fashion_mnist, 32x32x1, 10 classes, 60000",
                      result.stderr)

        # Prepared under the tfds data dir.
        self.assertNotEmpty(_prepared_info_files(data_dir),
                            f"fashion_mnist not prepared in {data_dir}")

        latest = tf.train.latest_checkpoint(
            os.path.join(model_dir, "checkpoints"))
        self.assertEqual(os.path.basename(latest), f"ckpt-{NUM_STEPS}")
        self.assertEqual(
            int(tf.train.load_checkpoint(latest).get_tensor(STEP_KEY)),
            NUM_STEPS)

        losses = {}
        for path in glob.glob(os.path.join(model_dir, "train",
                                           "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.tag.startswith("losses/"):
                        losses.setdefault(value.tag, []).append(
                            float(tf.make_ndarray(value.tensor)))
        for tag in ("losses/d_loss", "losses/g_loss"):
            self.assertLen(losses.get(tag, []), NUM_STEPS // 2, tag)
        for tag, values in losses.items():
            self.assertTrue(np.all(np.isfinite(values)), (tag, values))

        # One grey row per class: 10 x (32 + 1) + 1 pixels high.
        for name in (f"samples_{NUM_STEPS:08d}.png", "latest.png"):
            png = tf.io.decode_png(tf.io.read_file(
                os.path.join(model_dir, "samples", name)))
            self.assertEqual(png.shape, (
                NUM_CLASSES * (RESOLUTION + PAD) + PAD,
                SAMPLES_PER_CLASS * (RESOLUTION + PAD) + PAD, 1))
