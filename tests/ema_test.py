"""ExponentialMovingAverage: copy before the start step, the EMA formula
after it, spectral-norm vectors copied (never averaged), shape checks."""

import numpy as np
import tensorflow as tf

from ppcd_tf.models import layers
from ppcd_tf.training import ema as ema_lib


def _pair():
    source = layers.SNDense(3, name="dense")
    target = layers.SNDense(3, name="dense_ema")
    for layer in (source, target):
        layer.build((None, 2))
    return source, target


class ExponentialMovingAverageTest(tf.test.TestCase):

    def test_copy_then_average(self):
        source, target = _pair()
        ema = ema_lib.ExponentialMovingAverage(source, target, decay=0.75,
                                               start_step=2)
        ema.copy_weights()
        self.assertAllEqual(target.kernel.numpy(), source.kernel.numpy())
        # Before the start step the copy follows the live weights.
        source.kernel.assign(source.kernel + 1.0)
        ema.update(tf.constant(1, tf.int64))
        self.assertAllEqual(target.kernel.numpy(), source.kernel.numpy())
        # From the start step: ema = d * ema + (1 - d) * w.
        old = target.kernel.numpy()
        source.kernel.assign(source.kernel + 4.0)
        source.sn_u.assign(-source.sn_u)
        ema.update(tf.constant(2, tf.int64))
        self.assertAllClose(target.kernel.numpy(),
                            0.75 * old + 0.25 * source.kernel.numpy())
        # Spectral-norm vectors are copied.
        self.assertAllEqual(target.sn_u.numpy(), source.sn_u.numpy())

    def test_rejects_bad_arguments_and_other_shapes(self):
        source, target = _pair()
        with self.assertRaisesRegex(ValueError, "decay"):
            ema_lib.ExponentialMovingAverage(source, target, 1.0, 0)
        with self.assertRaisesRegex(ValueError, "start step"):
            ema_lib.ExponentialMovingAverage(source, target, 0.5, -1)
        other = layers.SNDense(4, name="other")
        other.build((None, 2))
        with self.assertRaisesRegex(ValueError, "shapes differ"):
            ema_lib.ExponentialMovingAverage(source, other, 0.5, 0)
        self.assertTrue(np.isfinite(target.kernel.numpy()).all())
