"""The shipped Fashion-MNIST classifier reaches its recorded test accuracy."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf import train_classifier
from ppcd_tf.metrics import classifier
from ppcd_tf.metrics import gan_metrics

# The recorded accuracy was measured on this machine kind's CPU kernels;
# another CPU may round a few logits differently.
ACCURACY_TOLERANCE = 0.003


@pytest.mark.slow
class ShippedClassifierTest(tf.test.TestCase):

    def test_recorded_accuracy_on_the_real_test_split(self):
        model, record = classifier.load_shipped_classifier()
        images, labels = train_classifier.split_arrays("test", seed=0)
        self.assertEqual(images.shape, (10000, 32, 32, 1))
        features, logits = classifier.features_and_logits(model, images)
        self.assertEqual(features.shape, (10000, classifier.FEATURE_DIM))
        accuracy = gan_metrics.class_accuracy(logits, labels)
        self.assertAllClose(accuracy, record["test_accuracy"],
                            atol=ACCURACY_TOLERANCE)
        self.assertGreater(accuracy, 0.85)
        # Real test images against themselves: FID ~0.
        fid = gan_metrics.fid_from_activations(features, features)
        self.assertLess(abs(fid), 1e-6)

    def test_missing_weights_error_says_how_to_recreate(self):
        with self.assertRaisesRegex(FileNotFoundError, "train_classifier"):
            classifier.load_shipped_classifier(
                self.create_tempdir().full_path)


def test_a_damaged_record_names_the_file_and_the_fix(tmp_path):
    weights, record = classifier.shipped_paths()
    shutil.copy(weights, tmp_path)
    with open(os.path.join(tmp_path, os.path.basename(record)), "w") as f:
        f.write('{"test_accuracy": 0.9')  # cut short
    with pytest.raises(errors.DamagedInputError,
                       match=r"record .*not valid JSON.*train_classifier"):
        classifier.load_shipped_classifier(str(tmp_path))
