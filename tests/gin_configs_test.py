"""Every gin file in gin/ parses and trains one step at tiny size.

Files are discovered by glob, so new files are covered automatically. A file
of one axis (data / model / stage) is completed with small defaults for the
other axes; data that is not on this machine is replaced by the synthetic
'fake' source (the loading paths themselves are tested in data_test.py).
"""

import glob
import os
import re

import gin
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf import config as config_lib
from tests import helpers

GIN_FILES = sorted(
    os.path.relpath(path, helpers.GIN_DIR)
    for path in glob.glob(os.path.join(helpers.GIN_DIR, "**", "*.gin"),
                          recursive=True))
# Sources available offline on every machine of this project.
OFFLINE_SOURCES = ("fake", "fashion_mnist")
DEFAULTS = {"data": "data/fake.gin", "model": "model/biggan32.gin",
            "stage": "stage/teacher.gin"}


def _resolution_of(relpath):
    text = open(os.path.join(helpers.GIN_DIR, relpath)).read()
    match = re.search(r"^RESOLUTION\s*=\s*(\d+)", text, re.M)
    if match:
        return int(match.group(1))
    match = re.search(r"biggan(?:_deep)?(\d+)", relpath)
    return int(match.group(1)) if match else None


PPCD_STAGE = "stage/ppcd.gin"


# Add-ons to a PPCD run (composed after stage/ppcd.gin).
PPCD_ADDONS = ("extras/teacher_without_d.gin",)


def _is_ppcd_stage(relpath):
    return (relpath == PPCD_STAGE or relpath in PPCD_ADDONS
            or relpath.startswith("experiments" + os.sep)
            or os.path.basename(relpath).startswith("ablation_"))


def _traces_its_own_loop(relpath):
    """Whether the one step of `relpath` runs compiled: the stage files and
    the PPCD add-ons change the training step itself (losses, masks, the
    cut), so theirs is traced here (the ablations' only compiled coverage;
    ppcd_test runs them eagerly). Data, model, extras and experiment files
    only change what the step is given or its sizes: they parse, build and
    step eagerly (~3 s instead of ~15 s of tracing each)."""
    return relpath.startswith("stage" + os.sep) or relpath in PPCD_ADDONS


EXTRAS_BASE = ["data/fashion_mnist32.gin", "model/biggan32.gin",
               "stage/teacher.gin"]


def _composition(relpath, teacher_dir=None):
    """(gin files, extra bindings) that make `relpath` a complete run."""
    axis = relpath.split(os.sep)[0]
    if axis == "extras" and relpath not in PPCD_ADDONS:
        # Add-ons to a complete run (validation needs a dataset the
        # evaluation's feature network knows: the offline Fashion-MNIST).
        return EXTRAS_BASE + [relpath], []
    if axis not in DEFAULTS and not _is_ppcd_stage(relpath):
        return [relpath], []
    if _is_ppcd_stage(relpath):
        # PPCD stages extend the teacher stage and need a trained teacher.
        stages = [DEFAULTS["stage"], PPCD_STAGE]
        if relpath != PPCD_STAGE:
            stages.append(relpath)
        bindings = [f"TEACHER_DIR = '{teacher_dir}'",
                    "TARGET_PARAM_RATIO = 0.5",
                    "PruningBudget.min_channels = 1",
                    "PruningPhase.prune_end_fraction = 1.0"]
        if axis == "experiments":
            # An experiment's schedule on the tiny model (its own scale is
            # tested where it is documented, e.g. imagenet128_runbook_test).
            bindings += ["TrainLoop.validate_every = 0",
                         "GanSteps.accumulation_steps = 1"]
        return [DEFAULTS["data"], DEFAULTS["model"]] + stages, bindings
    files = {**DEFAULTS, axis: relpath}
    bindings = []
    resolution = _resolution_of(relpath)
    if axis == "data" and resolution:
        files["model"] = f"model/biggan{resolution}.gin"
    if axis == "model" and resolution:
        bindings.append(f"RESOLUTION = {resolution}")
    text = open(os.path.join(helpers.GIN_DIR, relpath)).read()
    if re.search(r"accumulation_steps\s*=\s*([3-9]|\d\d)", text):
        # Keep the accumulation path but not an 8x unrolled graph.
        bindings.append("GanSteps.accumulation_steps = 2")
    if resolution and resolution >= 256:
        # Attention at 128x128 costs 16k x 4k scores per image; attention
        # itself is exercised by the other resolutions.
        bindings += ["GLOBAL_BATCH_SIZE = 2", "ATTENTION = ''"]
    if axis == "data":
        text = open(os.path.join(helpers.GIN_DIR, relpath)).read()
        name = re.search(r"ImageDataset.name\s*=\s*'(\w+)'", text).group(1)
        if name not in OFFLINE_SOURCES:
            bindings.append("ImageDataset.name = 'fake'")
    return [files["data"], files["model"], files["stage"]], bindings


def test_every_axis_has_files():
    axes = {path.split(os.sep)[0] for path in GIN_FILES}
    assert {"data", "model", "stage", "extras", "debug.gin"} <= axes, \
        GIN_FILES


@pytest.mark.slow
class GinFilesTrainTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*GIN_FILES)
    def test_parses_and_trains_one_step(self, relpath):
        teacher_dir = (helpers.tiny_teacher_dir()
                       if _is_ppcd_stage(relpath) else None)
        files, bindings = _composition(relpath, teacher_dir)
        helpers.parse(files, list(helpers.TINY_BINDINGS) + [
            "GLOBAL_BATCH_SIZE = 8", "TrainLoop.num_steps = 1",
            "ImageDataset.cache = False"] + bindings)
        trainer_cls = gin.query_parameter("run.trainer_cls").scoped_configurable_fn
        trainer = trainer_cls(model_dir=self.create_tempdir().full_path,
                              strategy=helpers.one_device())
        metrics = (trainer.train() if _traces_its_own_loop(relpath)
                   else helpers.train_eagerly(trainer))
        self.assertEqual(int(trainer.step.numpy()), 1)
        self.assertTrue(all(np.isfinite(v) for v in metrics.values()),
                        metrics)


class GinErrorTest(tf.test.TestCase):

    def test_malformed_binding(self):
        with self.assertRaisesRegex(config_lib.ConfigError, "Malformed"):
            helpers.parse(["debug.gin"], ["TrainLoop.num_steps = = 3"])

    def test_unknown_configurable(self):
        with self.assertRaisesRegex(config_lib.ConfigError, "Invalid"):
            helpers.parse(["debug.gin"], ["NoSuchThing.value = 3"])

    def test_missing_file(self):
        with self.assertRaisesRegex(config_lib.ConfigError, "not found"):
            helpers.parse(["data/no_such_file.gin"])
