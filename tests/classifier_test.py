"""The shipped Fashion-MNIST classifier reaches its recorded test accuracy."""

import os
import shutil

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


@pytest.mark.parametrize("content, field", [
    ('["not", "an", "object"]', "JSON object"),
    ('{"epochs": 4}', "'test_accuracy' is missing"),
    ('{"test_accuracy": "0.88"}', "'test_accuracy' must be"),
    ('{"test_accuracy": 0.88, "seed": "zero"}', "'seed' must be"),
])
def test_a_record_of_the_wrong_shape_names_the_field(tmp_path, content,
                                                       field):
    """Valid JSON of the wrong shape (a hand-edited record) is exit 3 naming
    the file and the field, not an AttributeError later."""
    weights, record = classifier.shipped_paths()
    shutil.copy(weights, tmp_path)
    path = os.path.join(tmp_path, os.path.basename(record))
    with open(path, "w") as f:
        f.write(content)
    with pytest.raises(errors.DamagedInputError) as raised:
        classifier.load_shipped_classifier(str(tmp_path))
    assert path in str(raised.value) and field in str(raised.value)
    assert "train_classifier" in str(raised.value)
