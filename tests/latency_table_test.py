"""The latency table measured on this machine (ppcd_tf.workflows.latency_table and
tools/latency_table.py), on a tiny generator: every term is measured on its
grid, the offset makes the prediction at full width equal the measured full
generator, the term functions compute tensors of the right shapes, and the
tool writes a readable table and refuses bad flags. (Timing values are not
asserted: the machine is shared.)"""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from ppcd_tf.models import arch
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.models import latency
from ppcd_tf.pruning import channel_masks
from ppcd_tf.workflows import latency_table
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHANNELS = arch.generator_channels(32, 4, "16")   # widths 16, attention 2/8


def _generator():
    g = generator_lib.Generator(CHANNELS, 3, dim_z=16, shared_dim=8,
                                image_channels=1)
    g.build()
    return g


class WidthGridTest(tf.test.TestCase):

    def test_grid(self):
        self.assertEqual(latency_table.width_grid(64, 16, 4),
                         (4, 16, 32, 48, 64))
        self.assertEqual(latency_table.width_grid(20, 8, 4),
                         (4, 8, 16, 20))
        self.assertEqual(latency_table.width_grid(2, 16, 4), (2,))


class MeasureTableTest(tf.test.TestCase):

    def test_terms_shapes_and_offset(self):
        generator = _generator()
        builder = latency_table._TermBuilder(generator, 2)  # pylint: disable=protected-access
        widths = dict(channel_masks.mask_widths(CHANNELS))
        # Each term computes tensors of the shapes the generator has there.
        expected = {"linear": (2, 4, 4, 16), "block1.conv1": (2, 8, 8, 16),
                    "block3.conv2": (2, 32, 32, 16),
                    "block2.shortcut": (2, 16, 16, 16),
                    "attention2.mix": (2, 16, 16, 8),
                    "output": (2, 32, 32, 1)}
        for name, axes in latency.term_names(CHANNELS):
            fn, inputs = builder.build(name, [widths[a] for a in axes])
            outputs = tf.nest.flatten(fn(*inputs))
            for output in outputs:
                self.assertTrue(np.all(np.isfinite(output.numpy())), name)
            if name in expected:
                self.assertEqual(tuple(outputs[0].shape), expected[name])

        table = latency_table.measure_table(
            generator, batch_size=2, grid_step=8, min_width=4, repeats=1,
            calls=1)
        self.assertEqual([t.name for t in table.terms],
                         [n for n, _ in latency.term_names(CHANNELS)])
        for term in table.terms:
            values = np.asarray(term.seconds)
            self.assertEqual(values.shape, tuple(len(g) for g in term.grid))
            self.assertTrue(np.all(values >= 0.0), term.name)
        self.assertEqual(table.terms[0].grid, ((4, 8, 16),))
        # The offset is what the full generator costs beyond its terms.
        terms_only = latency.LatencyTable(table.terms, 0.0, 2,
                                          table.generator, 0.0)
        summed = terms_only.predict(widths)
        self.assertGreaterEqual(table.offset_seconds, 0.0)
        self.assertAllClose(table.predict(widths),
                            max(summed, table.measured_full_seconds),
                            rtol=1e-9)
        rows = latency_table.check_prediction(
            table, generator, [{k: max(1, w // 2) for k, w in widths.items()}],
            repeats=1)
        self.assertLen(rows, 1)
        self.assertGreater(rows[0]["measured_seconds"], 0.0)


class LatencyTableToolTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._batch = None
        cls._root = tempfile.mkdtemp(dir=tf.compat.v1.test.get_temp_dir())

    @classmethod
    def tearDownClass(cls):
        # shutil removes the link to the shared export; TensorFlow's own
        # clean-up of its temporary directory at exit cannot (it fails on a
        # link to a directory and leaves the whole directory behind).
        shutil.rmtree(cls._root, ignore_errors=True)
        super().tearDownClass()

    def _runs(self):
        """The tool's invocations of this class in one interpreter
        (tests/cli_batch.py runs the script's `main` as `python
        tools/latency_table.py` does, flags reset per case), in order: the
        table written, the same output refused without --overwrite, a bad
        fraction, a missing teacher run. Returns ({name: result}, root)."""
        cls = type(self)
        if cls._batch is None:
            root = cls._root
            output = os.path.join(root, "table.json")
            export = helpers.linked(helpers.tiny_teacher_export(), root,
                                    "teacher_export")
            teacher = helpers.tiny_teacher_dir()
            bad_output = os.path.join(root, "t.json")
            cases = {
                "table": ["--teacher_dir", teacher, "--output", output,
                          "--batch_size", "2", "--grid_step", "16",
                          "--repeats", "1", "--calls", "1",
                          "--check_fractions", "0.5",
                          "--check_exports", export],
                "again": ["--teacher_dir", teacher, "--output", output],
                "fractions": ["--teacher_dir", teacher, "--output",
                              bad_output, "--check_fractions", "1.5"],
                "missing": ["--teacher_dir", "/nonexistent/run",
                            "--output", bad_output],
            }
            results = helpers.run_cli_batch({
                "script": os.path.join(ROOT, "tools", "latency_table.py"),
                "cases": list(cases.values())})
            cls._batch = dict(zip(cases, results)), root
        return cls._batch

    def test_writes_a_table_the_trainer_reads(self):
        results, root = self._runs()
        result = results["table"]
        self.assertEqual(result["status"], 0, result["stderr"][-3000:])
        self.assertIn("widths x0.5: predicted", result["stdout"])
        self.assertIn("teacher_export: predicted", result["stdout"])
        table = latency.LatencyTable.read(os.path.join(root, "table.json"))
        with open(os.path.join(helpers.tiny_teacher_dir(),
                               "models.json")) as f:
            config = json.load(f)["generator"]
        self.assertEqual(table.generator["channels"], config["channels"])
        # An existing output is kept unless --overwrite.
        again = results["again"]
        self.assertEqual(again["status"], 2)
        self.assertIn("--overwrite", again["stderr"])

    def test_bad_flags(self):
        results, root = self._runs()
        result = results["fractions"]
        self.assertEqual(result["status"], 2)
        self.assertIn("--check_fractions", result["stderr"])
        missing = results["missing"]
        self.assertEqual(missing["status"], 3, missing["stderr"][-2000:])
        self.assertFalse(os.path.exists(os.path.join(root, "t.json")))


if __name__ == "__main__":
    tf.test.main()
