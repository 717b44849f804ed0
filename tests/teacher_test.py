"""The shipped Fashion-MNIST teacher: present, documented, and as good as
its record says (class accuracy of its samples under the shipped
classifier)."""

import os

import pytest

from ppcd_tf.metrics import evaluation
from ppcd_tf.metrics import feature_networks
from tests import helpers
from ppcd_tf.workflows import teachers

NUM_SAMPLES = 2000
# Binomial std of a 2000-sample accuracy near 0.85 is 0.008; the recorded
# figure is a mean over 3 x 10,000 samples.
ACCURACY_TOLERANCE = 0.03
CHANCE = 0.1


@pytest.fixture(scope="module")
def teacher_dir():
    return teachers.shipped_teacher_dir("fashion_mnist32")


def test_record_says_how_it_was_made(teacher_dir):
    record = teachers.read_record(teacher_dir)
    assert "ppcd_tf.train" in record["command"] or "make teacher" in \
        record["command"]
    assert record["step"] > 0
    assert os.path.isfile(os.path.join(
        teacher_dir, "checkpoints", f"ckpt-{record['step']}.index"))
    for name in ("models.json", "config.gin", "operative_config.gin"):
        assert os.path.isfile(os.path.join(teacher_dir, name))
    summary = record["evaluation"]["summary"]
    assert summary["class_accuracy"]["mean"] > 5 * CHANCE
    assert summary["fid"]["mean"] > 0.0
    size = sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(teacher_dir) for f in files)
    assert size < 5e6  # small enough to ship


def test_samples_reach_the_recorded_class_accuracy(teacher_dir):
    record = teachers.read_record(teacher_dir)["evaluation"]["summary"]
    network = feature_networks.build("fmnist_classifier")
    real = helpers.shared_real_features(network)
    result = evaluation.evaluate(
        evaluation.GeneratorSource.from_run(teacher_dir), network, real,
        num_samples=NUM_SAMPLES, seeds=(11,))
    summary = result["summary"]
    assert summary["class_accuracy"]["mean"] == pytest.approx(
        record["class_accuracy"]["mean"], abs=ACCURACY_TOLERANCE)
    # FID of fewer samples is biased upwards, never far below the record.
    assert summary["fid"]["mean"] > 0.8 * record["fid"]["mean"]
    assert summary["fid"]["mean"] < 1.5 * record["fid"]["mean"] + 1.0
