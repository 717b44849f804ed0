"""The sampling tool on an exported SavedModel and on a training run."""

import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf.reporting import sampling
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
        cls.model_dir = helpers.tiny_teacher_dir()
        cls.export_dir = helpers.tiny_teacher_export()
        cls._batch = None

    def _batched(self):
        """The command-line cases of this class run in one interpreter
        (tests/cli_batch.py: `run_main` as `python -m ppcd_tf.sample` runs
        it, flags reset per case; ~5 s of start-up and TensorFlow import
        saved per case). test_individual_files keeps a process of its own.
        Returns ({name: result}, the output directory)."""
        cls = type(self)
        if cls._batch is None:
            out = tempfile.mkdtemp(dir=tf.compat.v1.test.get_temp_dir())
            classes = ",".join(map(str, CLASSES))
            grid = ["--classes", classes, "--n", str(PER_CLASS),
                    "--truncation", "0.5", "--seed", "3"]
            bad = os.path.join(out, "x.png")
            cases = {
                "saved_model": ["--saved_model", self.export_dir, *grid,
                                "--out", os.path.join(out, "saved_model.png")],
                "model_dir": ["--model_dir", self.model_dir, *grid,
                              "--out", os.path.join(out, "model_dir.png")],
                "interpolate": ["--saved_model", self.export_dir,
                                "--interpolate_classes", "0,9", "--steps",
                                "5", "--n", "2", "--out",
                                os.path.join(out, "interp.png")],
                "sweep": ["--model_dir", self.model_dir,
                          "--truncation_sweep", "0.5,1", "--n", "2",
                          "--individual", "--out",
                          os.path.join(out, "sweep")],
                "bad_class": ["--saved_model", self.export_dir,
                              "--interpolate_classes", "0,10", "--out", bad],
                # Not an export (no metadata): a missing input, as
                # everywhere.
                "not_an_export": ["--saved_model", self.model_dir, "--out",
                                  bad],
            }
            results = helpers.run_cli_batch(
                {"module": "ppcd_tf.sample", "cases": list(cases.values())})
            cls._batch = dict(zip(cases, results)), out
        return cls._batch

    def test_saved_model_and_run_give_the_same_grid(self):
        results, out = self._batched()
        for name in ("saved_model", "model_dir"):
            self.assertEqual(results[name]["status"], 0,
                             results[name]["stderr"][-2000:])
        grid = _png(os.path.join(out, "saved_model.png"))
        # One row per class, PER_CLASS columns, 1-px padding.
        self.assertEqual(grid.shape[:2],
                         (len(CLASSES) * (RESOLUTION + 1) + 1,
                          PER_CLASS * (RESOLUTION + 1) + 1))
        # Same seed, same z: the exported compact model and the run agree
        # (8-bit PNGs; at most one level of rounding).
        self.assertLessEqual(
            int(np.abs(grid - _png(os.path.join(out, "model_dir.png"))).max()),
            1)

    def test_interpolation_and_truncation_grids(self):
        from ppcd_tf.exporting import saved_model as saved_model_lib
        from ppcd_tf.runs import run_dir
        export = saved_model_lib.load_export(self.export_dir)
        run = run_dir.restore_generator(self.model_dir)
        rows, steps = 2, 4
        grids = [sampling.interpolation_grid(source, 1, 7, rows, steps,
                                               0.5, 3)
                 for source in (export, run)]
        self.assertEqual(grids[0].shape, (rows * steps, RESOLUTION,
                                          RESOLUTION, 3))
        # The export's interpolate signature and the run agree.
        self.assertAllClose(grids[0], grids[1], atol=1e-4, rtol=0)
        # Row ends are the two classes' images of the row's z.
        z = saved_model_lib.truncated_z((rows, export.dim_z), (3, 0), 0.5)
        for column, label in ((0, 1), (steps - 1, 7)):
            self.assertAllClose(
                grids[0][column::steps],
                export.generate(z, tf.fill([rows], label)).numpy(),
                atol=1e-5, rtol=0)
        sweep = [sampling.truncation_grid(source, [2, 5], 3,
                                            [0.25, 1.0], 1)
                 for source in (export, run)]
        self.assertEqual(sweep[0].shape, (6, RESOLUTION, RESOLUTION, 3))
        self.assertAllClose(sweep[0], sweep[1], atol=1e-4, rtol=0)
        # The truncation-1 row is the plain sample grid of the same seed.
        plain = sampling.sample_saved_model(self.export_dir, [2], 3, 1.0, 1)
        self.assertAllClose(sweep[0][3], plain[0], atol=1e-5, rtol=0)

    def test_grid_modes_from_the_command_line(self):
        results, out = self._batched()
        result = results["interpolate"]
        self.assertEqual(result["status"], 0, result["stderr"][-2000:])
        self.assertEqual(_png(os.path.join(out, "interp.png")).shape[:2],
                         (2 * (RESOLUTION + 1) + 1, 5 * (RESOLUTION + 1) + 1))
        sweep = os.path.join(out, "sweep")
        result = results["sweep"]
        self.assertEqual(result["status"], 0, result["stderr"][-2000:])
        self.assertEqual(sorted(os.listdir(sweep)), [
            "truncation0.5_000.png", "truncation0.5_001.png",
            "truncation1_000.png", "truncation1_001.png"])

    def test_individual_files(self):
        """A process of its own: `python -m ppcd_tf.sample` end to end."""
        out = self.create_tempdir().full_path
        result = _sample(["--saved_model", self.export_dir, "--classes", "2",
                          "--n", "2", "--individual", "--out", out])
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        self.assertEqual(sorted(os.listdir(out)),
                         ["class2_000.png", "class2_001.png"])
        self.assertEqual(_png(os.path.join(out, "class2_000.png")).shape,
                         (RESOLUTION + 2, RESOLUTION + 2, 3))

    def test_bad_arguments_fail_clearly(self):
        """The checks main runs, in-process: each bad argument raises a
        SampleError that names it."""
        out = os.path.join(self.create_tempdir().full_path, "x.png")

        def check(saved_model=self.export_dir, model_dir=None, classes=None,
                  truncation=1.0, interpolate_classes=None, steps=8,
                  truncation_sweep=None):
            sampling.check_args(saved_model, model_dir, classes, 4,
                              truncation, out)
            sampling.check_modes(
                interpolate_classes, steps, truncation_sweep,
                sampling.num_classes_of(saved_model, model_dir))

        cases = [
            (dict(classes=["99"]), "outside"),
            (dict(truncation=0.0), "truncation"),
            (dict(model_dir=self.model_dir), "exactly one"),
            (dict(interpolate_classes=["3"]), "two class ids"),
            (dict(interpolate_classes=["0", "10"]), "outside [0, 10)"),
            (dict(interpolate_classes=["0", "1"], steps=1),
             "--steps must be >= 2"),
            (dict(truncation_sweep=["0.5", "0"]), "--truncation_sweep values"),
            (dict(truncation_sweep=["0.5"], interpolate_classes=["0", "1"]),
             "at most one"),
        ]
        for kwargs, message in cases:
            with self.assertRaisesRegex(sampling.SampleError,
                                        re.escape(message), msg=str(kwargs)):
                check(**kwargs)
        self.assertFalse(os.path.exists(out))

    def test_bad_arguments_exit_clearly_from_the_command_line(self):
        """The binary: bad input exits 2, a missing input 3, with the
        message and without a traceback or an output file."""
        results, out = self._batched()
        for name, message, status in (
                ("bad_class", "outside [0, 10)", 2),
                ("not_an_export", "metadata.json", 3)):
            result = results[name]
            self.assertEqual(result["status"], status,
                             (name, result["stderr"]))
            self.assertIn(message, result["stderr"], name)
            self.assertNotIn("Traceback", result["stderr"], name)
        self.assertFalse(os.path.exists(os.path.join(out, "x.png")))
