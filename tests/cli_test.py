"""The training binary `python -m ppcd_tf.train`, driven as a user would.

Every test runs the binary in a subprocess: clear errors for common
mistakes, the files and TensorBoard summaries a run writes, and the mirrored
strategy on two logical CPUs (kill -9 and resume: kill_probe_test.py).
"""

import glob
import os
import subprocess
import sys
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


class CliErrorTest(tf.test.TestCase):
    """Common mistakes: non-zero exit, a clear message, no traceback, fast."""

    def _run(self, argv):
        start = time.monotonic()
        result = subprocess.run(argv, cwd=helpers.REPO_ROOT,
                                env=helpers.python_env(), capture_output=True,
                                text=True, timeout=120, check=False)
        elapsed = time.monotonic() - start
        self.assertNotEqual(result.returncode, 0,
                            f"expected a failure; stderr:\n"
                            f"{tail(result.stderr)}")
        self.assertNotIn("Traceback", result.stderr,
                         f"a traceback instead of a clear message:\n"
                         f"{tail(result.stderr, 60)}")
        self.assertLess(elapsed, ERROR_DEADLINE_S,
                        f"took {elapsed:.1f} s to report the error")
        return result

    def _run_debug(self, bindings=(), files=DEBUG_FILES, extra_flags=()):
        model_dir = self.create_tempdir().full_path
        return self._run(helpers.train_command(
            model_dir, files, tiny_bindings(*bindings), extra_flags))

    def test_malformed_binding(self):
        result = self._run_debug(["TrainLoop.num_steps = = 3"])
        self.assertEqual(result.returncode, 2, tail(result.stderr))
        self.assertRegex(result.stderr, r"error: Malformed gin binding")

    def test_unknown_gin_file(self):
        result = self._run_debug(files=["no_such_config.gin"])
        self.assertEqual(result.returncode, 2, tail(result.stderr))
        self.assertRegex(result.stderr,
                         r"error: Gin file 'no_such_config.gin' not found")

    def test_unknown_dataset_lists_valid_names(self):
        result = self._run_debug(["ImageDataset.name = 'mnist_typo'"])
        self.assertRegex(result.stderr, r"error: .*'mnist_typo'")
        for name in ("fashion_mnist", "cifar10", "imagenet2012",
                     "image_folder", "fake"):
            self.assertIn(name, result.stderr)

    def test_missing_data_files_fail_at_once(self):
        data_dir = self.create_tempdir().full_path
        result = self._run_debug(["ImageDataset.name = 'cifar10'",
                                  f"ImageDataset.data_dir = '{data_dir}'"])
        self.assertEqual(result.returncode, 3, tail(result.stderr))
        # Names the archive to supply and where to put it.
        self.assertRegex(result.stderr,
                         r"error: .*cifar-10-[a-z]+\.tar\.gz is missing")
        self.assertIn(os.path.join(data_dir, "downloads", "manual"),
                      result.stderr)

    def test_global_batch_not_divisible_by_replicas(self):
        result = self._run_debug(["GLOBAL_BATCH_SIZE = 5"],
                                 extra_flags=["--strategy", "mirrored",
                                              "--logical_cpus", "2"])
        self.assertRegex(result.stderr,
                         r"error: global_batch_size 5 is not divisible by "
                         r".*2")

    def test_missing_model_dir(self):
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
