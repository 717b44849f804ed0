"""Tests of the mask-bound schedules."""

import math

import gin
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.pruning import schedules

BEGIN, END = 10, 90
KIND_PARAMS = [(kind,) for kind in schedules.KINDS]


def _schedule(kind, initial_bound=2.0):
    return schedules.BoundSchedule(initial_bound=initial_bound,
                                   begin_step=BEGIN, end_step=END, kind=kind)


class BoundScheduleTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*KIND_PARAMS)
    def test_endpoints(self, kind):
        schedule = _schedule(kind)
        for step in (0, BEGIN - 1, BEGIN):
            self.assertEqual(schedule(step), 2.0)
        for step in (END, END + 1, 10 * END):
            self.assertEqual(schedule(step), 0.0)
        self.assertAllEqual(schedule(tf.constant(BEGIN)), 2.0)
        self.assertAllEqual(schedule(tf.constant(END, tf.int64)), 0.0)

    @parameterized.parameters(*KIND_PARAMS)
    def test_monotone_non_increasing(self, kind):
        schedule = _schedule(kind)
        values = np.array([schedule(s) for s in range(END + 5)])
        self.assertTrue(np.all(np.diff(values) <= 0), values)
        if kind != "constant":
            inner = values[BEGIN:END + 1]
            self.assertTrue(np.all(np.diff(inner) < 0), inner)
        self.assertAllInRange(values, 0.0, 2.0)

    @parameterized.parameters(*KIND_PARAMS)
    def test_python_and_tensor_agree(self, kind):
        schedule = _schedule(kind)
        steps = np.arange(END + 5)
        python = [schedule(int(s)) for s in steps]
        self.assertTrue(all(type(v) is float for v in python))
        tensor = schedule(tf.constant(steps, tf.int64))
        self.assertEqual(tensor.dtype, tf.float32)
        self.assertAllClose(tensor, python, rtol=1e-6, atol=1e-7)
        variable = tf.Variable(BEGIN + 20, dtype=tf.int64)
        compiled = tf.function(schedule)(variable)
        self.assertEqual(compiled.dtype, tf.float32)
        self.assertAllClose(compiled, schedule(BEGIN + 20))

    def test_closed_forms(self):
        step = BEGIN + (END - BEGIN) // 8  # t = 1/8
        t = 1 / 8
        expected = {
            "cube": 2.0 * (1 - t ** (1 / 3)),  # DMAD: 1 - t^(1/3) = 0.5
            "linear": 2.0 * (1 - t),
            "cosine": 2.0 * 0.5 * (1 + math.cos(math.pi * t)),
            "constant": 2.0,
        }
        for kind, value in expected.items():
            self.assertAllClose(_schedule(kind)(step), value)
        self.assertAllClose(_schedule("cube")(step), 1.0)

    @parameterized.parameters(*KIND_PARAMS)
    def test_config_round_trip(self, kind):
        schedule = _schedule(kind)
        config = schedule.get_config()
        clone = schedules.BoundSchedule.from_config(config)
        self.assertEqual(clone.get_config(), config)
        self.assertEqual(clone(BEGIN + 7), schedule(BEGIN + 7))

    @parameterized.named_parameters(
        ("negative_bound", dict(initial_bound=-1.0, end_step=5), "-1.0"),
        ("negative_begin", dict(begin_step=-3, end_step=5), "-3"),
        ("end_not_after_begin", dict(begin_step=5, end_step=5), "end_step"),
        ("bad_kind", dict(end_step=5, kind="exp"), "'exp'"),
    )
    def test_validation(self, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            schedules.BoundSchedule(**kwargs)

    def test_gin_requires_end_step_and_binds(self):
        with self.assertRaises((ValueError, RuntimeError, TypeError)):
            schedules.BoundSchedule()
        gin.parse_config(["BoundSchedule.end_step = 40",
                          "BoundSchedule.kind = 'linear'"])
        schedule = schedules.BoundSchedule()
        self.assertEqual(schedule.end_step, 40)
        self.assertAllClose(schedule(20), 0.5)


if __name__ == "__main__":
    tf.test.main()
