"""Quick validation during training, and the best student it keeps.

GAN quality is not monotone in training steps (a PPCD student trained on
under a constant learning rate got better, then worse again), so a run can
keep its best generator by a quick measure, as BigGAN-PyTorch keeps 'best'
copies by FID. The measure here is the report's protocol made small:

  * real statistics: the evaluation feature network's features of a slice
    of the *training* split that training does not read (the data gin's
    `VALIDATION_SPLIT`; the report's test split is never touched);
  * generated: `num_samples` images of the EMA generator, z ~ N(0, I),
    balanced labels, from a fixed seed (the same z at every validation);
  * score = FID + accuracy_weight x (1 - class accuracy), lower is better.

`BestKeeper` copies the checkpoint of each new best score into
`<model_dir>/best/` (an ordinary full checkpoint, so export, evaluate and
sample read it with `--checkpoint best`) and appends every validation to
`<model_dir>/validation.jsonl`.
"""

import json
import os
import shutil
import time

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.metrics import evaluation
from ppcd_tf.metrics import feature_networks
from ppcd_tf.metrics import gan_metrics
from ppcd_tf.runs import run_dir

BEST_DIR = run_dir.BEST_DIR
BEST_RECORD = run_dir.BEST_RECORD
HISTORY_FILE = run_dir.VALIDATION_HISTORY_FILE


@gin.configurable
class QuickValidator:
    """FID and class accuracy of a generator against a held-out slice.

    Args:
      split: tfds split of the held-out real images, e.g.
        'train[55000:]' (bound to the data gin's VALIDATION_SPLIT).
      num_samples: generated images per validation.
      seed: seed of the validation's z (fixed: every validation sees the
        same z and labels, so scores differ only by the generator).
      accuracy_weight: weight of (1 - class accuracy) in the score; 5.0
        makes one point of accuracy count as 0.05 FID (about 5 % of the
        shipped teacher's FID, as the targets' 2 points to 10 %).
      feature_network: feature network name (None: the evaluation default
        for the dataset, the shipped classifier for Fashion-MNIST).
      feature_weights: weights file of that network, where it needs one.
      cache_dir: where the real features are cached (None: the
        evaluation's default cache).
      batch_size: generation and feature batch size.
    """

    def __init__(self, split=gin.REQUIRED, num_samples=1000, seed=97,
                 accuracy_weight=5.0, feature_network=None,
                 feature_weights=None, cache_dir=None,
                 batch_size=evaluation.DEFAULT_BATCH_SIZE):
        if int(num_samples) < 2:
            raise errors.BadInputError(
                f"QuickValidator.num_samples must be >= 2, got "
                f"{num_samples}.")
        if not accuracy_weight >= 0:
            raise errors.BadInputError(
                f"QuickValidator.accuracy_weight must be >= 0, got "
                f"{accuracy_weight}.")
        self.split = split
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.accuracy_weight = float(accuracy_weight)
        self.feature_network = feature_network
        self.feature_weights = feature_weights
        self.cache_dir = cache_dir or evaluation.DEFAULT_CACHE_DIR
        self.batch_size = int(batch_size)
        self._network = None
        self._real = None

    def prepare(self, dataset, resolution, data_dir=None):
        """Builds the feature network and the held-out real features (once;
        cached on disk like the evaluation's)."""
        name = (self.feature_network
                or feature_networks.default_for_dataset(dataset))
        self._network = feature_networks.build(
            name, self.feature_weights, batch_size=self.batch_size)
        self._real = evaluation.real_features(
            self._network, dataset, self.split, resolution, self.cache_dir,
            data_dir=data_dir, batch_size=self.batch_size)
        self._judge = (getattr(self._network, "dataset", None) == dataset)

    def measure(self, generate, dim_z, num_classes):
        """Figures of `generate(z [N, dim_z], labels [N]) -> images`.

        Returns:
          dict: fid, class_accuracy (None when the network does not know
          the dataset's classes), score, num_samples, seconds.
        """
        if self._real is None:
            raise RuntimeError("QuickValidator.prepare was not called.")
        start = time.time()
        source = evaluation.GeneratorSource(
            generate=lambda z, labels: np.asarray(
                generate(tf.constant(z), tf.constant(labels))),
            dim_z=dim_z, num_classes=num_classes, resolution=None,
            dataset=None, description={})
        features, logits, labels = evaluation.generated_features(
            source, self._network, self.num_samples, self.seed,
            batch_size=self.batch_size)
        fid = float(gan_metrics.fid_from_activations(self._real.features,
                                                     features))
        accuracy = None
        score = fid
        if self._judge and logits.shape[1] == num_classes:
            accuracy = float(gan_metrics.class_accuracy(logits, labels))
            score += self.accuracy_weight * (1.0 - accuracy)
        return {"fid": fid, "class_accuracy": accuracy, "score": score,
                "num_samples": self.num_samples, "split": self.split,
                "seconds": round(time.time() - start, 2)}


class BestKeeper:
    """`<model_dir>/best/`: the checkpoint with the lowest validation score.

    The record (`best/best.json`: step, checkpoint name, figures) and the
    checkpoint files are replaced together (a staged directory renamed into
    place), so an interrupted copy leaves the previous best intact.
    """

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.best = run_dir.read_best(model_dir)

    @property
    def best_score(self):
        return None if self.best is None else self.best["figures"]["score"]

    def offer(self, step, figures, checkpoint):
        """Records one validation; copies `checkpoint` (a path prefix) to
        best/ when its score is the lowest so far. Returns whether it was."""
        line = dict(figures, step=int(step))
        path = os.path.join(self.model_dir, HISTORY_FILE)
        with tf.io.gfile.GFile(path, "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
        if self.best_score is not None and figures["score"] >= self.best_score:
            return False
        record = {"step": int(step),
                  "checkpoint": os.path.basename(checkpoint),
                  "source": checkpoint, "figures": figures}
        target = os.path.join(self.model_dir, BEST_DIR)
        with files.staged_directory(target, overwrite=True) as staged:
            for name in tf.io.gfile.glob(checkpoint + ".*"):
                shutil.copyfile(name, os.path.join(staged,
                                                   os.path.basename(name)))
            files.write_json(os.path.join(staged, BEST_RECORD), record)
        self.best = record
        return True


def best_figures(model_dir):
    """The run's best quick validation as final figures ({name: number or
    None}; {} without a best checkpoint): FID, class accuracy and step."""
    best = run_dir.read_best(model_dir)
    if best is None:
        return {}
    return {"best_validation_fid": best["figures"].get("fid"),
            "best_validation_class_accuracy":
                best["figures"].get("class_accuracy"),
            "best_validation_step": best["step"]}


class RunValidation:
    """A run's validations: the validator prepared at the first one, each
    measure logged and summarised, the best kept (`BestKeeper`).

    Args:
      validator: a `QuickValidator`.
      model_dir: the run directory.
      dataset: the run's `ImageDataset` (name, resolution, data_dir).
    """

    def __init__(self, validator, model_dir, dataset):
        self.validator = validator
        self.model_dir = model_dir
        self.dataset = dataset
        self.keeper = None

    def __call__(self, step, generate, dim_z, num_classes, checkpoint):
        """Measures `generate(z, labels)` (the EMA generator); a new best
        score copies `checkpoint` (this step's) to <model_dir>/best/.
        Returns the figures."""
        if self.keeper is None:
            self.validator.prepare(self.dataset.name, self.dataset.resolution,
                                   self.dataset.data_dir)
            self.keeper = BestKeeper(self.model_dir)
        figures = self.validator.measure(generate, dim_z, num_classes)
        improved = self.keeper.offer(step, figures, checkpoint)
        for name in ("fid", "class_accuracy", "score"):
            if figures[name] is not None:
                tf.summary.scalar(f"validation/{name}", figures[name],
                                  step=step)
        accuracy = figures["class_accuracy"]
        logging.info(
            "validation at step %d: FID %.4f, class accuracy %s, score %.4f "
            "(%d samples of %s, %.1f s)%s", step, figures["fid"],
            "n/a" if accuracy is None else f"{accuracy:.4f}",
            figures["score"], figures["num_samples"], figures["split"],
            figures["seconds"],
            " -> new best, kept in best/" if improved else
            f" (best: step {self.keeper.best['step']})")
        return figures
