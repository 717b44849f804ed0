"""Bound schedules for the progressive channel masks.

`BoundSchedule` maps a training step to the mask bound b (DESIGN.md section
4.2): b0 up to `begin_step`, decaying to exactly 0 at `end_step`, then 0 (the
masks are hard from there on). With t = (step - begin) / (end - begin):

  | kind       | b(t)                    | shape                              |
  |------------|-------------------------|------------------------------------|
  | 'cube'     | b0 * (1 - t^(1/3))      | steep drop first, slow approach    |
  | 'linear'   | b0 * (1 - t)            |                                    |
  | 'cosine'   | b0 * (1 + cos(pi t))/2  |                                    |
  | 'constant' | b0 until end_step, 0    | hard switch                        |

'cube' is DMAD's default `--update_bound_rule cube` (SJLeo/DMAD,
`models/MaskCycleGAN.py` and `models/MaskPix2Pix.py`, `update_masklayer`):
`bound = 1 - math.pow(current_iter / update_bound_iters_count, 1 / 3)` with
`update_bound_iters_count = 0.75 * all_total_iters` and bound 0 afterwards,
b0 = 1 (`Mask.__init__` calls `update(bound=1.0)`). So the cube root is of
t, not of 1 - t: the band narrows quickly at the start (b = 0.5 at t = 1/8)
and slowly near the end, giving the masks a long stretch with a narrow band
to settle before they freeze. DMAD's other rule, 'double', is
`1 - t^(1/2)`. DESIGN.md's `(1 - t)^(1/3)` wording is a paraphrase; this
module follows the code.
"""

import math
import numbers

import gin
import tensorflow as tf

from ppcd_tf import errors

KINDS = ("cube", "linear", "cosine", "constant")
# Exponent of DMAD's 'cube' rule: b = b0 * (1 - t ** CUBE_EXPONENT).
CUBE_EXPONENT = 1.0 / 3.0
# Half of the cosine rule's (1 + cos(pi t)) range.
_COSINE_HALF = 0.5


def _is_python_number(step):
    return (isinstance(step, numbers.Real)
            and not isinstance(step, bool))


def _is_int(value):
    return (isinstance(value, numbers.Integral)
            and not isinstance(value, bool))


@gin.configurable
class BoundSchedule:
    """Mask bound as a function of the training step.

    Monotone non-increasing: `initial_bound` for step <= begin_step, exactly
    0 for step >= end_step (see the module docstring for the kinds).

    Args:
        initial_bound: float >= 0, b0.
        begin_step: int >= 0, last step at which the bound is b0.
        end_step: int > begin_step, first step at which the bound is 0
            (masks hard from here on).
        kind: one of 'cube', 'linear', 'cosine', 'constant'.

    Raises:
        ValueError: on a negative `initial_bound`, `begin_step < 0`,
            `end_step <= begin_step` or an unknown `kind`.
    """

    def __init__(self, initial_bound=1.0, begin_step=0, end_step=gin.REQUIRED,
                 kind="cube"):
        if not (_is_python_number(initial_bound)
                and math.isfinite(initial_bound) and initial_bound >= 0):
            raise errors.BadInputError(
                f"initial_bound must be a finite number >= 0, "
                f"got {initial_bound!r}.")
        if not _is_int(begin_step) or begin_step < 0:
            raise errors.BadInputError(
                f"begin_step must be an int >= 0, got "
                f"{begin_step!r}.")
        if not _is_int(end_step) or end_step <= begin_step:
            raise errors.BadInputError(
                f"end_step must be an int > begin_step "
                f"({begin_step}), got {end_step!r}.")
        if kind not in KINDS:
            raise errors.BadInputError(
                f"Unknown bound schedule kind {kind!r}; choose "
                f"one of {list(KINDS)}.")
        self.initial_bound = float(initial_bound)
        self.begin_step = int(begin_step)
        self.end_step = int(end_step)
        self.kind = kind

    def __call__(self, step):
        """Bound at `step`.

        Args:
            step: Python int (or float), or a scalar integer/float tensor or
                variable.

        Returns:
            A Python float for a Python number, else a float32 scalar tensor.
        """
        if _is_python_number(step):
            return float(self._python_value(step))
        return self._tensor_value(step)

    def _python_value(self, step):
        if step <= self.begin_step:
            return self.initial_bound
        if step >= self.end_step:
            return 0.0
        t = (step - self.begin_step) / (self.end_step - self.begin_step)
        return self.initial_bound * self._python_shape(t)

    def _python_shape(self, t):
        if self.kind == "cube":
            return 1.0 - t ** CUBE_EXPONENT
        if self.kind == "linear":
            return 1.0 - t
        if self.kind == "cosine":
            return _COSINE_HALF * (1.0 + math.cos(math.pi * t))
        return 1.0

    def _tensor_value(self, step):
        # float64 keeps large step counts exact before the ratio is taken.
        step = tf.cast(tf.convert_to_tensor(step), tf.float64)
        span = float(self.end_step - self.begin_step)
        t = tf.clip_by_value((step - self.begin_step) / span, 0.0, 1.0)
        if self.kind == "cube":
            shape = 1.0 - tf.pow(t, CUBE_EXPONENT)
        elif self.kind == "linear":
            shape = 1.0 - t
        elif self.kind == "cosine":
            shape = _COSINE_HALF * (1.0 + tf.cos(math.pi * t))
        else:
            shape = tf.ones_like(t)
        value = tf.where(step >= self.end_step, tf.zeros_like(t),
                         self.initial_bound * shape)
        value = tf.where(step <= self.begin_step,
                         tf.constant(self.initial_bound, tf.float64), value)
        return tf.cast(value, tf.float32)

    def get_config(self):
        """Constructor arguments as a JSON-serialisable dict."""
        return {
            "initial_bound": self.initial_bound,
            "begin_step": self.begin_step,
            "end_step": self.end_step,
            "kind": self.kind,
        }

    @classmethod
    def from_config(cls, config):
        """Inverse of `get_config`."""
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


RETRAIN_DECAYS = ("none", "linear", "cosine")


@gin.configurable
class RetrainSchedule:
    """Learning-rate factors of the student's G and D after the cut.

    Before `cut_step` both factors are 1 (the optimizers' own rates). From
    the cut to the end of the run, with t = (step - cut) / (end - cut):

      factor = scale * (final_fraction + (1 - final_fraction) * d(t)),
      d = 1 ('none'), 1 - t ('linear') or (1 + cos(pi t)) / 2 ('cosine').

    A short retraining at a constant rate leaves the student wandering
    (quality is not monotone in steps); decaying the rate to a small final
    fraction lets it settle by the end of the run.

    Args:
      g_lr_scale, d_lr_scale: factors of G's and D's base rates after the cut.
      decay: one of RETRAIN_DECAYS.
      final_fraction: the decayed factor's value at the last step, in [0, 1].
      decay_discriminator: also decay D's rate (else D keeps d_lr_scale).
    """

    def __init__(self, g_lr_scale=1.0, d_lr_scale=1.0, decay="none",
                 final_fraction=0.0, decay_discriminator=True):
        if decay not in RETRAIN_DECAYS:
            raise errors.BadInputError(
                f"RetrainSchedule.decay must be one of "
                f"{RETRAIN_DECAYS}, got {decay!r}.")
        if not 0.0 <= final_fraction <= 1.0:
            raise errors.BadInputError(
                f"RetrainSchedule.final_fraction must be in "
                f"[0, 1], got {final_fraction}.")
        for name, value in (("g_lr_scale", g_lr_scale),
                            ("d_lr_scale", d_lr_scale)):
            if not value > 0.0:
                raise errors.BadInputError(
                    f"RetrainSchedule.{name} must be > 0, got "
                    f"{value}.")
        self.scales = {"g": float(g_lr_scale), "d": float(d_lr_scale)}
        self.decay = decay
        self.final_fraction = float(final_fraction)
        self.decay_discriminator = bool(decay_discriminator)

    def decay_factor(self, step, cut_step, end_step):
        """d(t) mapped to [final_fraction, 1] (1 before the cut)."""
        if self.decay == "none" or step < cut_step or end_step <= cut_step:
            return 1.0
        t = min(1.0, (step - cut_step) / float(end_step - cut_step))
        shape = (1.0 - t if self.decay == "linear"
                 else _COSINE_HALF * (1.0 + math.cos(math.pi * t)))
        return self.final_fraction + (1.0 - self.final_fraction) * shape

    def factor(self, network, step, cut_step, end_step):
        """Learning-rate factor of `network` ('g' or 'd') at G step `step`."""
        if step < cut_step:
            return 1.0
        factor = self.scales[network]
        if network == "g" or self.decay_discriminator:
            factor *= self.decay_factor(step, cut_step, end_step)
        return factor
