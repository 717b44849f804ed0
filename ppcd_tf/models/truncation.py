"""Batch-norm statistics precomputed per truncation value (BigGAN-deep).

The released BigGAN-deep generators are served without batch statistics:
their BNs normalise with standing statistics that depend on the truncation of
the noise. The PyTorch port (huggingface/pytorch-pretrained-BigGAN) stores them
as tables of `n` rows ([n, C] means and variances) for truncations 0, 1/(n-1),
..., 1 (n = 51: a step of 0.02) and reads a row for a truncation t in (0, 1]
as its `BigGANBatchNorm.forward` does:

  coef, start = modf(t / step)           (in float64, as Python computes it)
  coef == 0:  row = table[start]
  otherwise:  row = table[start] * coef + table[start + 1] * (1 - coef)

Note the weights: the fraction `coef` goes to the *lower* row, so between two
grid points the row is not the linear interpolation one would expect: just
above a grid point the next row dominates. With float64 rounding this reaches
grid points themselves: 0.28 / 0.02 is 14.000000000000002, so at truncation
0.28 the port reads (almost all of) row 15, the row of 0.30, while 0.3 / 0.02
is exactly 15. We reproduce the port's rule exactly, since the weights
imported from it were used with it: t / step is computed in float64 from the
truncation as given. Pass a float64 truncation (or a Python float) to match
the port; a float32 0.3 is 0.30000001 and reads (almost all of) row 16.
"""

import keras
import tensorflow as tf

from ppcd_tf import errors

_PACKAGE = "ppcd_tf"


def row_at(table, truncation):
    """The port's row of `table` [n, C] at `truncation` (scalar, (0, 1]).

    Returns a float32 [C] tensor (the products in float32, as the port's
    float32 tables multiply Python floats).
    """
    num_rows = table.shape[0]
    step = 1.0 / (num_rows - 1)
    # A Python float stays float64 (tf.cast would make it float32 first).
    truncation = tf.convert_to_tensor(truncation, dtype_hint=tf.float64)
    position = tf.cast(truncation, tf.float64) / tf.constant(step, tf.float64)
    start_f = tf.floor(position)
    coef = position - start_f
    start = tf.clip_by_value(tf.cast(start_f, tf.int32), 0, num_rows - 1)
    following = tf.minimum(start + 1, num_rows - 1)
    table = tf.cast(table, tf.float32)
    lower = tf.gather(table, start)
    mixed = (lower * tf.cast(coef, tf.float32)
             + tf.gather(table, following) * tf.cast(1.0 - coef, tf.float32))
    return tf.where(tf.equal(coef, 0.0), lower, mixed)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StatisticsTable(keras.layers.Layer):
    """Per-truncation BN statistics of one BN: non-trainable `means` and
    `variances`, both [num_rows, channels] (zeros and ones at creation; the
    importer writes the released ones).

    `statistics(truncation)` returns (mean [C], variance [C]) by the port's
    rule (`row_at`).
    """

    def __init__(self, num_rows, **kwargs):
        super().__init__(**kwargs)
        if num_rows < 2:
            raise errors.BadInputError(
                f"A truncation table needs at least 2 rows, got {num_rows}.")
        self.num_rows = int(num_rows)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        shape = (self.num_rows, channels)
        self.means = self.add_weight(name="means", shape=shape,
                                     initializer="zeros", trainable=False)
        self.variances = self.add_weight(name="variances", shape=shape,
                                         initializer="ones", trainable=False)

    def statistics(self, truncation):
        return (row_at(self.means, truncation),
                row_at(self.variances, truncation))

    def get_config(self):
        config = super().get_config()
        config.update(num_rows=self.num_rows)
        return config
