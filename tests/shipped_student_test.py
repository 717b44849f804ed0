"""The shipped PPCD students (ppcd_tf/assets/student_fashion_mnist32_5x,
_8x, _12x and _16x): exports that load without ppcd_tf's training code, as small as their
records say, and as good: evaluated here on 2,000 samples of a seed not used
for a record (7), FID and class accuracy fall within the noise of the
recorded figures."""

import json
import os

import numpy as np
import pytest

from ppcd_tf.exporting import saved_model
from ppcd_tf.metrics import evaluation
from ppcd_tf.metrics import feature_networks
from tests import helpers

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "ppcd_tf", "assets")
# name -> (G parameters, least compression).
STUDENTS = {"student_fashion_mnist32_5x": (74524, 5.2),
            "student_fashion_mnist32_8x": (49173, 8.0),
            "student_fashion_mnist32_12x": (32844, 12.0),
            "student_fashion_mnist32_16x": (24639, 16.0)}
NUM_SAMPLES = 2000
SEED = 7
# Spread of the 2,000-sample figures: at least this many standard
# deviations of the four recorded screening seeds, and at least these floors
# (binomial std of a 2,000-sample accuracy near 0.87 is 0.0075).
SIGMAS = 4.0
FID_FLOOR = 0.08
ACCURACY_FLOOR = 0.03


@pytest.fixture(scope="module", params=sorted(STUDENTS))
def student(request):
    with open(os.path.join(ASSETS, f"{request.param}.json")) as f:
        return request.param, json.load(f)


def test_record_and_export_agree(student):
    name, record = student
    params, compression = STUDENTS[name]
    path = os.path.join(ASSETS, name)
    metadata = saved_model.read_metadata(path)
    assert metadata["params"] == record["params"] == params
    assert record["source_params"] / record["params"] >= compression
    assert "interpolate" in saved_model.load_export(path).signature_names
    assert metadata["serving_graph"]["batch_norms_folded"]
    size = sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)
    assert size < 2e6
    targets = record["targets"]
    assert targets["fid_ratio"] <= 1.10
    assert targets["accuracy_drop_points"] <= 2.0
    assert any("ppcd_tf.export" in c for c in record["commands"])


@pytest.mark.slow
def test_figures_reproduce_on_an_unused_seed(student):
    name, record = student
    screening = record["screening_2000_samples"]["seeds"]
    assert str(SEED) not in screening
    fids = np.array([v["fid"] for v in screening.values()])
    accuracies = np.array([v["class_accuracy"] for v in screening.values()])
    network = feature_networks.build("fmnist_classifier")
    real = helpers.shared_real_features(network)
    result = evaluation.evaluate(
        evaluation.GeneratorSource.from_saved_model(
            os.path.join(ASSETS, name)), network, real,
        num_samples=NUM_SAMPLES, seeds=(SEED,))["summary"]
    fid = result["fid"]["mean"]
    accuracy = result["class_accuracy"]["mean"]
    assert abs(fid - fids.mean()) <= max(SIGMAS * fids.std(), FID_FLOOR)
    assert abs(accuracy - accuracies.mean()) <= max(
        SIGMAS * accuracies.std(), ACCURACY_FLOOR)
    # And against the 10,000 x 3 record: accuracy within the noise, FID of
    # fewer samples biased upwards but close.
    recorded = record["evaluation"]["summary"]
    assert accuracy == pytest.approx(recorded["class_accuracy"]["mean"],
                                     abs=ACCURACY_FLOOR)
    assert recorded["fid"]["mean"] * 0.9 < fid < recorded["fid"]["mean"] \
        * 1.3
