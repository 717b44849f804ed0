"""Quick validation and the best checkpoint it keeps (ppcd_tf.training.validation).

* BestKeeper: only a lower score replaces best/, every validation is
  recorded, best/ is a readable checkpoint (run_dir.resolve_checkpoint).
* QuickValidator on the real offline Fashion-MNIST: real held-out images
  score far better than noise (FID near 0, the classifier's accuracy).
* Runs: a PPCD run validates only after the cut and keeps its best student,
  which export and evaluation read with checkpoint='best'.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.data import pipeline
from ppcd_tf.exporting import pipeline as pipeline_lib
from ppcd_tf.runs import run_dir
from ppcd_tf.training import ppcd_trainer
from ppcd_tf.training import validation
from tests import helpers


def _save_checkpoint(directory, step, value):
    variable = tf.Variable(float(value))
    step_variable = tf.Variable(step, dtype=tf.int64)
    return tf.train.Checkpoint(x=variable, step=step_variable).write(
        os.path.join(directory, f"ckpt-{step}"))


def _history(model_dir):
    with open(os.path.join(model_dir, run_dir.VALIDATION_HISTORY_FILE)) as f:
        return [json.loads(line) for line in f]


def test_best_keeper_keeps_the_lowest_score(tmp_path):
    model_dir = str(tmp_path)
    directory = os.path.join(model_dir, "checkpoints")
    keeper = validation.BestKeeper(model_dir)
    with pytest.raises(errors.MissingInputError, match="no best checkpoint"):
        run_dir.resolve_checkpoint(model_dir, "best")
    offers = [(2, 3.0), (4, 2.0), (6, 2.5), (8, 2.0)]
    kept = []
    for step, score in offers:
        path = _save_checkpoint(directory, step, score)
        kept.append(keeper.offer(step, {"score": score, "fid": score},
                                 path))
    assert kept == [True, True, False, False]  # a tie does not replace
    assert [line["step"] for line in _history(model_dir)] == [2, 4, 6, 8]
    best = run_dir.resolve_checkpoint(model_dir, "best")
    assert best == os.path.join(model_dir, "best", "ckpt-4")
    assert run_dir.checkpoint_step(best) == 4
    assert tf.train.load_checkpoint(best).get_tensor(
        "x/.ATTRIBUTES/VARIABLE_VALUE") == 2.0
    assert run_dir.read_best(model_dir)["figures"]["score"] == 2.0
    # A new keeper (a resumed run) continues from the recorded best.
    assert validation.BestKeeper(model_dir).best_score == 2.0
    assert sorted(os.listdir(os.path.join(model_dir, "best"))) == [
        "best.json", "ckpt-4.data-00000-of-00001", "ckpt-4.index"]


def test_resolve_checkpoint_names(tmp_path):
    model_dir = str(tmp_path)
    directory = os.path.join(model_dir, "checkpoints")
    _save_checkpoint(directory, 3, 1.0)
    tf.train.CheckpointManager(tf.train.Checkpoint(), directory, 3)
    path = os.path.join(directory, "ckpt-3")
    assert run_dir.resolve_checkpoint(model_dir, path) == path
    with pytest.raises(errors.MissingInputError, match="does not exist"):
        run_dir.resolve_checkpoint(model_dir, path + "0")


@pytest.fixture(scope="module")
def fashion_validator():
    validator = validation.QuickValidator(
        split="train[59000:]", num_samples=500, seed=3,
        cache_dir=os.path.join(helpers.REPO_ROOT, ".pytest_cache",
                               "validation_features"))
    validator.prepare("fashion_mnist", 32)
    return validator


@pytest.mark.slow
def test_real_images_beat_noise(fashion_validator):
    data = pipeline.ImageDataset(name="fashion_mnist",
                                 split="train[58000:59000]", resolution=32,
                                 cache=False)
    images, labels = [], []
    for batch_images, batch_labels in data.one_pass(250):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
    images, labels = np.concatenate(images), np.concatenate(labels)
    by_class = {c: images[labels == c] for c in range(10)}

    def real(z, wanted):
        wanted = np.asarray(wanted)
        return np.stack([by_class[c][i % len(by_class[c])]
                         for i, c in enumerate(wanted)])

    def noise(z, wanted):
        rng = np.random.default_rng(0)
        return rng.uniform(-1, 1, (len(wanted), 32, 32, 1)).astype(
            np.float32)

    good = fashion_validator.measure(real, 16, 10)
    bad = fashion_validator.measure(noise, 16, 10)
    assert good["fid"] < 1.0, good  # 500 samples: a small-sample bias
    assert good["class_accuracy"] > 0.85, good
    assert bad["fid"] > 10 * good["fid"], (good, bad)
    assert good["score"] == pytest.approx(
        good["fid"] + 5.0 * (1 - good["class_accuracy"]))
    assert good["score"] < bad["score"]
    # The same generator gives the same figures (fixed z and labels).
    assert fashion_validator.measure(real, 16, 10)["fid"] == good["fid"]


@pytest.mark.slow
@pytest.mark.eager
def test_ppcd_run_keeps_its_best_student_after_the_cut(tmp_path):
    model_dir = str(tmp_path / "ppcd")
    # debug.gin's fake data: the classifier's features (no accuracy: the
    # network does not know the fake classes), its "validation" split.
    helpers.parse(["debug.gin", "stage/ppcd.gin"], list(
        helpers.TINY_BINDINGS) + [
        f"TEACHER_DIR = '{helpers.tiny_teacher_dir()}'",
        "TARGET_PARAM_RATIO = 0.5", "PruningBudget.min_channels = 1",
        "PruningPhase.prune_end_fraction = 0.5", "TrainLoop.num_steps = 6",
        "TrainLoop.checkpoint_every = 1", "TrainLoop.sample_every = 0",
        "TrainLoop.validator = @QuickValidator()",
        "TrainLoop.validate_every = 1",
        "QuickValidator.split = 'validation'",
        "QuickValidator.num_samples = 8",
        "QuickValidator.feature_network = 'fmnist_classifier'",
        f"QuickValidator.cache_dir = '{tmp_path / 'cache'}'"])
    trainer = ppcd_trainer.PPCDTrainer(model_dir=model_dir,
                                       strategy=helpers.one_device())
    trainer.train()
    history = _history(model_dir)
    # Cut at step 3: only the students of steps 4..6 compete.
    assert [line["step"] for line in history] == [4, 5, 6]
    assert all(line["class_accuracy"] is None for line in history)
    best = run_dir.read_best(model_dir)
    scores = {line["step"]: line["score"] for line in history}
    assert best["step"] == min(scores, key=scores.get)
    restored = run_dir.restore_generator(model_dir, "best")
    assert restored.step == best["step"]
    assert restored.masks is None  # the compact student
    report = pipeline_lib.export_run(model_dir, str(tmp_path / "export"),
                                  checkpoint="best")
    assert report["step"] == best["step"]
    assert "/best/" in report["checkpoint"]
    with open(tmp_path / "export" / "assets.extra" / "metadata.json") as f:
        metadata = json.load(f)
    assert metadata["source"]["validation"]["step"] == best["step"]
    # The final figures for TensorBoard's HParams table, in the run itself.
    tags = helpers.read_events(os.path.join(model_dir, "train"))
    final = {tag[len("final/"):]: float(entries[-1][2])
             for tag, entries in tags.items() if tag.startswith("final/")}
    assert set(final) == {"best_validation_fid", "best_validation_step",
                          "param_compression", "mac_compression"}
    assert final["best_validation_step"] == best["step"]
    assert final["best_validation_fid"] == pytest.approx(
        best["figures"]["fid"], rel=1e-6)
    # The parameter compression equals the live ratio's at the end.
    assert final["param_compression"] == pytest.approx(
        float(tags["pruning/compression"][-1][2]), rel=1e-5)
    assert final["param_compression"] > 1.5  # TARGET_PARAM_RATIO 0.5
    assert final["mac_compression"] > 1.0
    assert {entries[-1][0] for tag, entries in tags.items()
            if tag.startswith("final/")} == {6}
