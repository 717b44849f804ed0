"""Tests of the differentiable channel-mask functions."""

import gin
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.pruning import masks
from tests import helpers

POINTS = np.array([-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0], np.float32)
CPUS = ["/cpu:0", "/cpu:1"]


def _closed_form(w, b):
    """Smooth-step value and derivative in float64 NumPy."""
    w = np.asarray(w, np.float64)
    value = np.where(
        w <= -b, 0.0,
        np.where(w < 0, (w + b) ** 2 / (2 * b * b),
                 np.where(w < b, 1 - (b - w) ** 2 / (2 * b * b), 1.0)))
    slope = np.where((w > -b) & (w < 0), (w + b) / (b * b),
                     np.where((w >= 0) & (w < b), (b - w) / (b * b), 0.0))
    return value, slope


def _value_and_grad(fn, w, *args):
    w = tf.convert_to_tensor(w)
    with tf.GradientTape() as tape:
        tape.watch(w)
        m = fn(w, *args)
    return m, tape.gradient(m, w)


class SmoothStepTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(1.0, 0.5)
    def test_value_and_gradient_match_closed_form(self, bound):
        m, grad = _value_and_grad(masks.smooth_step, POINTS,
                                  tf.constant(bound))
        value, slope = _closed_form(POINTS, bound)
        self.assertAllClose(m, value, atol=1e-6)
        self.assertAllClose(grad, slope, atol=1e-6)
        self.assertEqual(m.dtype, tf.float32)

    def test_known_points(self):
        m = masks.smooth_step(tf.constant([-0.5, 0.0, 0.5]), 1.0)
        self.assertAllClose(m, [0.125, 0.5, 0.875])

    @parameterized.parameters(1.0, 0.5)
    def test_gradient_zero_outside_band(self, bound):
        w = np.array([-3 * bound, -bound, bound, 3 * bound], np.float32)
        m, grad = _value_and_grad(masks.smooth_step, w, bound)
        self.assertAllEqual(m, [0.0, 0.0, 1.0, 1.0])
        self.assertAllEqual(grad, np.zeros_like(w))

    def test_zero_bound_is_hard_step_with_zero_gradient(self):
        m, grad = _value_and_grad(masks.smooth_step, POINTS, tf.constant(0.0))
        self.assertAllEqual(m, (POINTS > 0).astype(np.float32))
        self.assertAllEqual(grad, np.zeros_like(POINTS))
        self.assertTrue(np.all(np.isfinite(grad.numpy())))

    def test_no_gradient_to_bound_and_variables_work(self):
        w = tf.Variable(POINTS)
        bound = tf.Variable(0.5)
        with tf.GradientTape(persistent=True) as tape:
            m = tf.reduce_sum(masks.smooth_step(w, bound))
        self.assertIsNone(tape.gradient(m, bound))
        self.assertAllClose(tape.gradient(m, w), _closed_form(POINTS, 0.5)[1])

    def test_matches_gradient_checker(self):
        w = tf.constant([-0.7, -0.2, 0.3, 0.8], tf.float64)
        theoretical, numerical = tf.test.compute_gradient(
            lambda x: masks.smooth_step(x, 1.0), [w])
        self.assertAllClose(theoretical, numerical, atol=1e-5)

    def test_in_tf_function(self):
        fn = tf.function(lambda w, b: _value_and_grad(masks.smooth_step, w, b))
        for bound in (1.0, 0.0):
            m, grad = fn(POINTS, tf.constant(bound))
            expected = (_closed_form(POINTS, bound) if bound else
                        ((POINTS > 0).astype(np.float32), 0 * POINTS))
            self.assertAllClose(m, expected[0], atol=1e-6)
            self.assertAllClose(grad, expected[1], atol=1e-6)

    def test_mirrored_strategy_replicas_agree(self):
        strategy = helpers.two_replicas()
        w = tf.constant(POINTS)

        @tf.function
        def step(bound):
            return strategy.run(
                lambda: _value_and_grad(masks.smooth_step, w, bound))

        m, grad = step(tf.constant(0.5))
        values = strategy.experimental_local_results(m)
        grads = strategy.experimental_local_results(grad)
        self.assertLen(values, len(CPUS))
        value, slope = _closed_form(POINTS, 0.5)
        for replica_value, replica_grad in zip(values, grads):
            self.assertAllEqual(replica_value, values[0])
            self.assertAllEqual(replica_grad, grads[0])
            self.assertAllClose(replica_value, value, atol=1e-6)
            self.assertAllClose(replica_grad, slope, atol=1e-6)


class OtherMasksTest(tf.test.TestCase, parameterized.TestCase):

    def test_hard_step(self):
        m, grad = _value_and_grad(masks.hard_step, POINTS)
        self.assertAllEqual(m, (POINTS > 0).astype(np.float32))
        self.assertIsNone(grad)

    def test_straight_through(self):
        m, grad = _value_and_grad(masks.straight_through_step, POINTS, 0.5)
        self.assertAllEqual(m, (POINTS > 0).astype(np.float32))
        self.assertAllEqual(grad, (np.abs(POINTS) <= masks.STE_CLIP)
                            .astype(np.float32))

    def test_sigmoid(self):
        temperature = 0.5
        m, grad = _value_and_grad(masks.sigmoid_mask, POINTS, temperature)
        expected = 1 / (1 + np.exp(-POINTS / temperature))
        self.assertAllClose(m, expected)
        self.assertAllClose(grad, expected * (1 - expected) / temperature)
        with self.assertRaisesRegex(ValueError, "-1.0"):
            masks.sigmoid_mask(POINTS, -1.0)

    def test_sigmoid_selector_clamps_and_hardens(self):
        fn = masks.mask_function("sigmoid")
        cold = fn(tf.constant([-0.01, 0.01]), 1e-9)
        self.assertAllClose(
            cold, 1 / (1 + np.exp(-np.array([-10.0, 10.0]))), atol=1e-5)
        m, grad = _value_and_grad(fn, POINTS, tf.constant(0.0))
        self.assertAllEqual(m, (POINTS > 0).astype(np.float32))
        self.assertAllEqual(grad, np.zeros_like(POINTS))

    @parameterized.parameters(1.0, 0.5)
    def test_budget_keep_surrogate(self, width):
        m, grad = _value_and_grad(masks.budget_keep_surrogate, POINTS, width)
        self.assertAllEqual(m, (POINTS > 0).astype(np.float32))
        inside = np.abs(POINTS) < width
        self.assertAllClose(grad, np.where(inside, 1 / (2 * width), 0.0))

    def test_budget_keep_surrogate_zero_width(self):
        m, grad = _value_and_grad(masks.budget_keep_surrogate, POINTS, 0.0)
        self.assertAllEqual(m, (POINTS > 0).astype(np.float32))
        self.assertAllEqual(grad, np.zeros_like(POINTS))


class MaskFunctionTest(tf.test.TestCase):

    def test_default_and_names(self):
        self.assertIs(masks.mask_function(), masks.smooth_step)
        self.assertIs(masks.mask_function("straight_through"),
                      masks.straight_through_step)
        self.assertEqual(sorted(masks.MASK_FUNCTIONS),
                         ["sigmoid", "smooth_step", "straight_through"])

    def test_unknown_name(self):
        with self.assertRaisesRegex(ValueError, "'nope'.*smooth_step"):
            masks.mask_function("nope")

    def test_gin_binding(self):
        gin.parse_config("mask_function.name = 'straight_through'")
        self.assertIs(masks.mask_function(), masks.straight_through_step)


if __name__ == "__main__":
    tf.test.main()
