"""The training binary `python -m ppcd_tf.train`, driven as a user would.

Every test runs the binary in a subprocess: clear errors for common
mistakes (all in one process, tests/cli_batch.py), the files and TensorBoard
summaries a run writes, and the mirrored strategy on two logical CPUs (kill
-9 and resume: kill_probe_test.py).
"""

import glob
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import helpers

DEBUG_FILES = ["debug.gin"]
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
# A mistake must be reported within this many seconds (no retries, no
# downloads, no training). A quiet run reports in ~10 s; 30 s was missed
# once by a low-priority run sharing the CPU with a training run.
ERROR_DEADLINE_S = 60


def tiny_bindings(*extra):
    return list(helpers.TINY_BINDINGS) + list(extra)


def checkpoint_step(path):
    """The `step` variable saved in checkpoint `path` (prefix)."""
    return int(tf.train.load_checkpoint(path).get_tensor(STEP_KEY))


read_events = helpers.read_events


def _read_through_tensorboard(test, model_dir, tags):
    """What a user's browser reads: a TensorBoard on the run serves the
    scalars (the event files' values), the sample images, the operative
    configuration as text and the run's settings as HParams."""
    with helpers.tensorboard_server(model_dir) as get:
        deadline = time.monotonic() + 60
        while "losses/d_loss" not in get("/data/plugin/scalars/tags").get(
                "train", {}) and time.monotonic() < deadline:
            time.sleep(0.5)
        scalar_tags = get("/data/plugin/scalars/tags")["train"]
        for tag in ("losses/d_loss", "losses/g_loss", "learning_rate/g",
                    "speed/steps_per_sec"):
            test.assertIn(tag, scalar_tags)
        points = get("/data/plugin/scalars/scalars?run=train&tag="
                     "losses%2Fd_loss")
        test.assertEqual([step for _, step, _ in points], [1, 2])
        test.assertAllClose([value for _, _, value in points],
                            [float(v) for _, _, v in tags["losses/d_loss"]])
        test.assertIn("samples/ema", get("/data/plugin/images/tags")[
            "train"])
        test.assertIn("run/operative_config",
                      get("/data/plugin/text/tags")["train"])
        (text,) = get("/data/plugin/text/text?run=train&tag="
                      "run%2Foperative_config")
        test.assertIn("TrainLoop.num_steps", text["text"])
        experiment = get("/data/plugin/hparams/experiment",
                         {"experimentName": ""})
        names = [info["name"] for info in experiment["hparamInfos"]]
        test.assertIn("TrainLoop.num_steps", names)
        test.assertIn("generator/Adam.learning_rate", names)
        metrics = [info["name"]["tag"] for info in experiment["metricInfos"]]
        test.assertIn("losses/d_loss", metrics)


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def assert_finished(test, result, what="training run"):
    test.assertEqual(result.returncode, 0,
                     f"{what} failed (exit {result.returncode}); stderr "
                     f"tail:\n{tail(result.stderr)}")


# CliErrorTest's mistakes: test name -> (gin files, bindings beyond
# TINY_BINDINGS, extra flags); "{tmp}" is an empty directory of the case's
# own. They run as one batch (tests/cli_batch.py: `run_main` as `python -m
# ppcd_tf.train` runs it, flags and gin reset between cases), paying the
# interpreter start and the TensorFlow import (~5-7 s on 2 cores) once.
# The mirrored case comes first: --logical_cpus must split the CPU before
# TensorFlow starts its runtime, which no earlier case in the process may
# have done (later cases use the default strategy, one device: the split
# changes nothing for them).
ERROR_CASES = {
    "global_batch_not_divisible_by_replicas": (
        DEBUG_FILES, ["GLOBAL_BATCH_SIZE = 5"],
        ["--strategy", "mirrored", "--logical_cpus", "2"]),
    "malformed_binding": (DEBUG_FILES, ["TrainLoop.num_steps = = 3"], []),
    "unknown_gin_file": (["no_such_config.gin"], [], []),
    "unknown_dataset_lists_valid_names": (
        DEBUG_FILES, ["ImageDataset.name = 'mnist_typo'"], []),
    "missing_data_files_fail_at_once": (
        DEBUG_FILES, ["ImageDataset.name = 'cifar10'",
                      "ImageDataset.data_dir = '{tmp}'"], []),
}


class CliErrorTest(tf.test.TestCase):
    """Common mistakes: non-zero exit, a clear message, no traceback, fast."""

    # name -> (batch result, the case's {tmp}); filled on first use.
    _batch = None

    @classmethod
    def _batch_results(cls):
        if CliErrorTest._batch is None:
            root = tempfile.mkdtemp(dir=tf.compat.v1.test.get_temp_dir())
            cases, tmps = [], []
            for name, (files, bindings, extra) in ERROR_CASES.items():
                tmp = os.path.join(root, name)
                model_dir = os.path.join(root, name + "_run")
                os.makedirs(tmp)
                os.makedirs(model_dir)
                # train_command's argv less `python -m ppcd_tf.train`.
                argv = helpers.train_command(
                    model_dir, files,
                    tiny_bindings(*[b.format(tmp=tmp) for b in bindings]),
                    extra)
                cases.append(argv[3:])
                tmps.append(tmp)
            results = helpers.run_cli_batch(
                {"module": "ppcd_tf.train", "cases": cases})
            CliErrorTest._batch = dict(zip(ERROR_CASES, zip(results, tmps)))
        return CliErrorTest._batch

    def _check(self, status, stderr, elapsed):
        self.assertNotEqual(status, 0,
                            f"expected a failure; stderr:\n{tail(stderr)}")
        self.assertNotIn("Traceback", stderr,
                         f"a traceback instead of a clear message:\n"
                         f"{tail(stderr, 60)}")
        self.assertLess(elapsed, ERROR_DEADLINE_S,
                        f"took {elapsed:.1f} s to report the error")

    def _run(self, argv):
        start = time.monotonic()
        result = subprocess.run(argv, cwd=helpers.REPO_ROOT,
                                env=helpers.python_env(), capture_output=True,
                                text=True, timeout=120, check=False)
        self._check(result.returncode, result.stderr,
                    time.monotonic() - start)
        return result

    def _run_debug(self, name):
        """(status, stderr, the case's {tmp}) of ERROR_CASES[name], from
        the batch; its time is the case's own, from the start of its run
        (the first case's includes the TensorFlow import)."""
        result, tmp = self._batch_results()[name]
        self._check(result["status"], result["stderr"], result["seconds"])
        return result["status"], result["stderr"], tmp

    def test_malformed_binding(self):
        status, stderr, _ = self._run_debug("malformed_binding")
        self.assertEqual(status, 2, tail(stderr))
        self.assertRegex(stderr, r"error: Malformed gin binding")

    def test_unknown_gin_file(self):
        status, stderr, _ = self._run_debug("unknown_gin_file")
        self.assertEqual(status, 2, tail(stderr))
        self.assertRegex(stderr,
                         r"error: Gin file 'no_such_config.gin' not found")

    def test_unknown_dataset_lists_valid_names(self):
        _, stderr, _ = self._run_debug("unknown_dataset_lists_valid_names")
        self.assertRegex(stderr, r"error: .*'mnist_typo'")
        for name in ("fashion_mnist", "cifar10", "imagenet2012",
                     "image_folder", "fake"):
            self.assertIn(name, stderr)

    def test_missing_data_files_fail_at_once(self):
        status, stderr, data_dir = self._run_debug(
            "missing_data_files_fail_at_once")
        self.assertEqual(status, 3, tail(stderr))
        # Names the archive to supply and where to put it.
        self.assertRegex(stderr,
                         r"error: .*cifar-10-[a-z]+\.tar\.gz is missing")
        self.assertIn(os.path.join(data_dir, "downloads", "manual"), stderr)

    def test_global_batch_not_divisible_by_replicas(self):
        _, stderr, _ = self._run_debug(
            "global_batch_not_divisible_by_replicas")
        self.assertRegex(stderr,
                         r"error: global_batch_size 5 is not divisible by "
                         r".*2")

    def test_missing_model_dir(self):
        # A process of its own: a flag error answers before TensorFlow is
        # imported (~0.1 s), so a batch would save nothing, and this keeps
        # the real `python -m ppcd_tf.train` start-up under test.
        result = self._run([sys.executable, "-m", "ppcd_tf.train",
                            "--gin_file", "debug.gin"])
        self.assertIn("--model_dir must have a value", result.stderr)


@pytest.mark.slow
class CliOutputsTest(tf.test.TestCase):

    def test_writes_configs_and_tensorboard_summaries(self):
        model_dir = self.create_tempdir().full_path
        result = helpers.run_train(model_dir, DEBUG_FILES, tiny_bindings(
            "TrainLoop.num_steps = 2", "TrainLoop.profile_steps = (1, 2)"))
        assert_finished(self, result)
        # The trace of step 1 for TensorBoard's Profile tab.
        self.assertLen(glob.glob(os.path.join(
            model_dir, "train", "plugins", "profile", "*", "*.xplane.pb")), 1)

        with open(os.path.join(model_dir, "config.gin")) as f:
            config = f.read()
        self.assertIn("# Binding: TrainLoop.num_steps = 2", config)
        self.assertIn("ImageDataset.name = 'fake'", config)
        with open(os.path.join(model_dir, "operative_config.gin")) as f:
            operative = f.read()
        self.assertIn("TrainLoop.num_steps = 2", operative)
        self.assertIn("build_generator.ch", operative)

        train_dir = os.path.join(model_dir, "train")
        self.assertNotEmpty(glob.glob(os.path.join(
            train_dir, "events.out.tfevents.*")))
        tags = read_events(train_dir)
        for tag in ("losses/d_loss", "losses/g_loss", "learning_rate/g",
                    "speed/steps_per_sec"):
            self.assertIn(tag, tags, sorted(tags))
            steps = [step for step, _, _ in tags[tag]]
            self.assertEqual(steps, [1, 2], tag)
            for _, plugin, value in tags[tag]:
                self.assertEqual(plugin, "scalars", tag)
                self.assertTrue(np.isfinite(float(value)), tag)
        self.assertAllClose(float(tags["learning_rate/g"][0][2]), 1e-4)
        # The run's settings (HParams dashboard) and its configuration.
        events = helpers.read_events(train_dir, with_metadata=True)
        settings = helpers.session_hparams(events)
        self.assertIsNotNone(settings, sorted(events))
        self.assertEqual(settings["TrainLoop.num_steps"], 2)
        self.assertEqual(settings["ImageDataset.name"], "fake")
        self.assertAllClose(settings["generator/Adam.learning_rate"], 1e-4)
        (step, plugin, text), = tags["run/operative_config"]
        self.assertEqual((step, plugin), (0, "text"))
        self.assertIn("TrainLoop.num_steps = 2", text.item().decode())
        self.assertIn("samples/ema", tags, sorted(tags))
        step, plugin, value = tags["samples/ema"][-1]
        self.assertEqual((step, plugin), (2, "images"))
        # [width, height, png]: 2 classes x 2 samples of 32x32, 1-px padding.
        self.assertEqual([int(v) for v in value[:2]], [2 * 33 + 1] * 2)
        png = tf.io.decode_png(value[2])
        self.assertEqual(png.shape[:2], (2 * 33 + 1, 2 * 33 + 1))
        _read_through_tensorboard(self, model_dir, tags)

    def test_mirrored_strategy_on_two_logical_cpus(self):
        model_dir = self.create_tempdir().full_path
        result = helpers.run_train(
            model_dir, DEBUG_FILES, tiny_bindings("TrainLoop.num_steps = 2"),
            extra_flags=["--strategy", "mirrored", "--logical_cpus", "2"])
        assert_finished(self, result, "mirrored run")
        self.assertRegex(result.stderr, r"Strategy \w+ with 2 replica\(s\)")
        self.assertIn("Global batch 4 (2 replica(s) x 2", result.stderr)
        latest = tf.train.latest_checkpoint(
            os.path.join(model_dir, "checkpoints"))
        self.assertEqual(os.path.basename(latest), "ckpt-2")
        self.assertEqual(checkpoint_step(latest), 2)
        for _, _, value in read_events(
                os.path.join(model_dir, "train"))["losses/d_loss"]:
            self.assertTrue(np.isfinite(float(value)))
