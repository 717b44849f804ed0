"""The sampling tool on an exported SavedModel and on a training run."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import exporting
from tests import helpers

CLASSES = (1, 3)
PER_CLASS = 3
RESOLUTION = 32


def _sample(args):
    return subprocess.run(
        [sys.executable, "-m", "ppcd_tf.sample"] + list(args),
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=180, check=False)


def _png(path):
    return tf.io.decode_png(tf.io.read_file(path)).numpy().astype(np.int32)


@pytest.mark.slow
class SampleToolTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = tf.compat.v1.test.get_temp_dir()
        cls.model_dir = helpers.tiny_teacher_dir()
        cls.export_dir = os.path.join(root, "sample_export")
        exporting.export_run(cls.model_dir, cls.export_dir, overwrite=True)

    def test_saved_model_and_run_give_the_same_grid(self):
        out = self.create_tempdir().full_path
        classes = ",".join(map(str, CLASSES))
        paths = {}
        for flag, source in (("--saved_model", self.export_dir),
                             ("--model_dir", self.model_dir)):
            paths[flag] = os.path.join(out, flag.strip("-") + ".png")
            result = _sample([flag, source, "--classes", classes, "--n",
                              str(PER_CLASS), "--truncation", "0.5",
                              "--seed", "3", "--out", paths[flag]])
            self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        grid = _png(paths["--saved_model"])
        # One row per class, PER_CLASS columns, 1-px padding.
        self.assertEqual(grid.shape[:2],
                         (len(CLASSES) * (RESOLUTION + 1) + 1,
                          PER_CLASS * (RESOLUTION + 1) + 1))
        # Same seed, same z: the exported compact model and the run agree
        # (8-bit PNGs; at most one level of rounding).
        self.assertLessEqual(
            int(np.abs(grid - _png(paths["--model_dir"])).max()), 1)

    def test_individual_files(self):
        out = self.create_tempdir().full_path
        result = _sample(["--saved_model", self.export_dir, "--classes", "2",
                          "--n", "2", "--individual", "--out", out])
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        self.assertEqual(sorted(os.listdir(out)),
                         ["class2_000.png", "class2_001.png"])
        self.assertEqual(_png(os.path.join(out, "class2_000.png")).shape,
                         (RESOLUTION + 2, RESOLUTION + 2, 3))

    def test_bad_arguments_fail_clearly(self):
        out = os.path.join(self.create_tempdir().full_path, "x.png")
        cases = [
            (["--saved_model", self.export_dir, "--classes", "99"],
             "outside", 2),
            (["--saved_model", self.export_dir, "--truncation", "0"],
             "truncation", 2),
            (["--saved_model", self.export_dir, "--model_dir",
              self.model_dir], "exactly one", 2),
            # Not an export (no metadata): a missing input, as everywhere.
            (["--saved_model", self.model_dir], "metadata.json", 3),
        ]
        for args, message, status in cases:
            result = _sample(args + ["--out", out])
            self.assertEqual(result.returncode, status,
                             (args, result.stderr))
            self.assertIn(message, result.stderr, args)
            self.assertNotIn("Traceback", result.stderr, args)
        self.assertFalse(os.path.exists(out))
