"""Exponential moving average of the generator's weights, with a start step.

As in BigGAN-PyTorch (`utils.ema`): before `start_step` the EMA copy follows
the live weights exactly (decay 0), afterwards
`ema = decay * ema + (1 - decay) * weight`. BN moving statistics are averaged
like weights (BigGAN averages the whole state dict); spectral-norm `u`
vectors are copied, since an average of unit vectors is not a unit vector.

Updates run in cross-replica context (between `strategy.run` calls), so every
replica's copy receives the same value.
"""

import tensorflow as tf

from ppcd_tf import errors

# Variables whose name ends with one of these are copied, not averaged.
COPIED_VARIABLE_SUFFIXES = ("sn_u",)


def _is_copied(variable):
    name = variable.path if hasattr(variable, "path") else variable.name
    name = name.split(":")[0]
    return name.endswith(COPIED_VARIABLE_SUFFIXES)


class ExponentialMovingAverage:
    """Keeps `target` (a model of the same structure) an EMA of `source`."""

    def __init__(self, source, target, decay, start_step):
        if not 0.0 <= decay < 1.0:
            raise errors.BadInputError(
                f"EMA decay must be in [0, 1), got {decay}.")
        if start_step < 0:
            raise errors.BadInputError(
                f"EMA start step must be >= 0, got {start_step}.")
        self.decay = float(decay)
        self.start_step = int(start_step)
        source_vars = source.weights
        target_vars = target.weights
        if len(source_vars) != len(target_vars):
            raise errors.BadInputError(
                f"EMA source has {len(source_vars)} weights, target has "
                f"{len(target_vars)}: the models differ in structure.")
        for s, t in zip(source_vars, target_vars):
            if tuple(s.shape) != tuple(t.shape):
                raise errors.BadInputError(
                    f"EMA weight shapes differ: {s.path} "
                    f"{s.shape} vs {t.path} {t.shape}.")
        self._pairs = list(zip(source_vars, target_vars))

    def copy_weights(self):
        """target := source (used at initialisation)."""
        for s, t in self._pairs:
            t.assign(s)

    def update(self, step):
        """One EMA update after the G step number `step` (int tensor)."""
        step = tf.cast(step, tf.int64)
        decay = tf.where(step < self.start_step, 0.0, self.decay)
        for s, t in self._pairs:
            value = tf.convert_to_tensor(s)
            if _is_copied(s) or not value.dtype.is_floating:
                t.assign(value)
            else:
                d = tf.cast(decay, value.dtype)
                t.assign(d * tf.convert_to_tensor(t) + (1.0 - d) * value)
