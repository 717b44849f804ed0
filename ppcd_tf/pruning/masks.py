"""Differentiable channel-mask functions (pure TensorFlow, no Keras layers).

A channel mask is `m = f(w, bound)` with one real logit `w_c` per channel and
a scalar bound `b >= 0` that a schedule shrinks to 0 during the pruning phase
(DESIGN.md section 4.2). The generator multiplies its features by `m` at the
places listed in DESIGN.md section 4.1 (after the BatchNorm that follows a
conv, before the ReLU), so a zero mask removes the channel for real.

Functions (all elementwise; `w` any shape, float; the output has `w`'s shape
and dtype; `bound` a scalar that never receives a gradient):

  * `smooth_step(w, bound)`: DMAD's piecewise-quadratic step (default).
  * `hard_step(w)`: `1[w > 0]`, no gradient.
  * `straight_through_step(w, bound=None)`: hard forward, clipped identity
    backward (STE); ignores `bound`.
  * `sigmoid_mask(w, temperature)`: `sigmoid(w / temperature)`.
  * `budget_keep_surrogate(w, width)`: exact 0/1 "kept" indicator whose
    gradient is that of `clip(0.5 + w / (2 width), 0, 1)`, for budget
    accounting on what will actually be kept (DESIGN.md section 4.3).

`mask_function(name)` (gin-configurable) picks one as `f(w, bound)`.

Reference: DMAD, Li et al., "Learning Efficient GANs for Image Translation
via Differentiable Masks and co-Attention Distillation",
https://arxiv.org/abs/2011.08382 (code: SJLeo/DMAD, `models/MaskLayer.py`).
"""

import gin
import tensorflow as tf

from ppcd_tf import errors

# Half-width of the band |w| <= STE_CLIP where the straight-through estimator
# passes the gradient through (the classic "hard tanh" STE).
STE_CLIP = 1.0
# Lower clamp on the sigmoid temperature in `mask_function('sigmoid')`.
MIN_TEMPERATURE = 1e-3


def _as_tensor(w):
    """`w` as a float tensor (variables are read, so tapes still see them)."""
    w = tf.convert_to_tensor(w)
    if not w.dtype.is_floating:
        raise errors.BadInputError(
            f"Mask logits must be floating point, got dtype "
            f"{w.dtype!r}.")
    return w


def _as_scalar(value, dtype):
    """`value` as a gradient-free scalar tensor of `dtype`."""
    return tf.stop_gradient(tf.cast(tf.convert_to_tensor(value), dtype))


def _safe_positive(x):
    """`x` where `x > 0`, else 1: a denominator that is never zero."""
    return tf.where(x > 0, x, tf.ones_like(x))


def hard_step(w):
    """Hard step `1[w > 0]`.

    Args:
        w: float tensor, any shape.

    Returns:
        Tensor of `w`'s shape and dtype with values exactly 0 or 1; it has no
        gradient (a tape returns None for `w`).
    """
    w = _as_tensor(w)
    return tf.cast(w > 0, w.dtype)


@tf.custom_gradient
def _smooth_step(w, bound):
    positive = bound > 0
    b = _safe_positive(bound)
    two_b2 = 2.0 * b * b
    left = tf.square(w + b) / two_b2
    right = 1.0 - tf.square(b - w) / two_b2
    soft = tf.where(
        w <= -b, tf.zeros_like(w),
        tf.where(w < 0, left, tf.where(w < b, right, tf.ones_like(w))))
    value = tf.where(positive, soft, tf.cast(w > 0, w.dtype))

    def grad(upstream):
        b2 = b * b
        slope = tf.where(
            (w > -b) & (w < 0), (w + b) / b2,
            tf.where((w >= 0) & (w < b), (b - w) / b2, tf.zeros_like(w)))
        slope = tf.where(positive, slope, tf.zeros_like(slope))
        return upstream * slope, None

    return value, grad


def smooth_step(w, bound):
    """DMAD's differentiable step with bound `b`.

    m(w) = 0                          for w <= -b
           (w + b)^2 / (2 b^2)        for -b < w < 0
           1 - (b - w)^2 / (2 b^2)    for 0 <= w < b
           1                          for w >= b
    so m(0) = 0.5, m(-b/2) = 1/8, m(b/2) = 7/8 (DMAD's Lagrange nodes). The
    gradient is the true derivative of the quadratics: (w + b) / b^2 on
    (-b, 0), (b - w) / b^2 on [0, b), 0 elsewhere. When b == 0 the value is
    exactly the hard step `1[w > 0]` and the gradient is 0 everywhere (no
    NaN or Inf). `bound` never gets a gradient.

    Args:
        w: float tensor of mask logits, any shape (e.g. [C]).
        bound: scalar (Python float or tensor) >= 0.

    Returns:
        Tensor of `w`'s shape and dtype with values in [0, 1].
    """
    w = _as_tensor(w)
    return _smooth_step(w, _as_scalar(bound, w.dtype))


@tf.custom_gradient
def _straight_through(w, clip):
    def grad(upstream):
        inside = tf.cast(tf.abs(w) <= clip, upstream.dtype)
        return upstream * inside, None

    return tf.cast(w > 0, w.dtype), grad


def straight_through_step(w, bound=None, clip=STE_CLIP):
    """Hard step with a straight-through (clipped identity) gradient.

    Forward: `1[w > 0]` (exactly 0/1). Backward: `d m / d w = 1` for
    `|w| <= clip`, 0 outside (the classic STE).

    Args:
        w: float tensor of mask logits, any shape.
        bound: ignored; accepted so that every mask function has the
            signature `f(w, bound)`.
        clip: positive float, half-width of the band passing the gradient.

    Returns:
        Tensor of `w`'s shape and dtype with values exactly 0 or 1.
    """
    del bound  # The STE mask is hard at every bound.
    w = _as_tensor(w)
    return _straight_through(w, _as_scalar(clip, w.dtype))


def sigmoid_mask(w, temperature):
    """Sigmoid relaxation `sigmoid(w / temperature)`.

    As temperature -> 0 it approaches the hard step (with m(0) = 0.5).

    Args:
        w: float tensor of mask logits, any shape.
        temperature: scalar > 0 (Python float or tensor; a Python value <= 0
            raises).

    Returns:
        Tensor of `w`'s shape and dtype with values in (0, 1).

    Raises:
        ValueError: if `temperature` is a Python number <= 0.
    """
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise errors.BadInputError(
            f"temperature must be > 0, got {temperature!r}.")
    w = _as_tensor(w)
    return tf.sigmoid(w / _as_scalar(temperature, w.dtype))


def _make_sigmoid(min_temperature):
    def sigmoid_with_bound(w, bound):
        """`sigmoid(w / max(bound, min_temperature))`; hard when bound == 0."""
        w = _as_tensor(w)
        bound = _as_scalar(bound, w.dtype)
        temperature = tf.maximum(bound, tf.cast(min_temperature, w.dtype))
        return tf.where(bound > 0, tf.sigmoid(w / temperature), hard_step(w))

    return sigmoid_with_bound


MASK_FUNCTIONS = {
    "smooth_step": smooth_step,
    "straight_through": straight_through_step,
    "sigmoid": sigmoid_mask,
}


@gin.configurable
def mask_function(name="smooth_step", min_temperature=MIN_TEMPERATURE):
    """The mask function `f(w, bound)` called `name`.

    Args:
        name: one of `MASK_FUNCTIONS` ('smooth_step', 'straight_through',
            'sigmoid'). For 'sigmoid' the bound is the temperature, clamped
            below by `min_temperature`, and the mask is the hard step once
            the bound is 0. 'straight_through' ignores the bound.
        min_temperature: positive float, lower clamp of the sigmoid
            temperature.

    Returns:
        A callable `f(w, bound)` -> mask of `w`'s shape and dtype.

    Raises:
        ValueError: on an unknown name or a non-positive `min_temperature`.
    """
    if name not in MASK_FUNCTIONS:
        raise errors.BadInputError(
            f"Unknown mask function {name!r}; choose one of "
            f"{sorted(MASK_FUNCTIONS)}.")
    if name == "sigmoid":
        if not min_temperature > 0:
            raise errors.BadInputError(
                f"min_temperature must be > 0, got "
                f"{min_temperature!r}.")
        return _make_sigmoid(min_temperature)
    return MASK_FUNCTIONS[name]


@tf.custom_gradient
def _budget_keep(w, width):
    positive = width > 0
    safe_width = _safe_positive(width)

    def grad(upstream):
        inside = positive & (tf.abs(w) < width)
        slope = tf.where(inside, 0.5 / safe_width * tf.ones_like(w),
                         tf.zeros_like(w))
        return upstream * slope, None

    return tf.cast(w > 0, w.dtype), grad


def budget_keep_surrogate(w, width):
    """Straight-through "kept" indicator for budget accounting.

    Value: `1[w > 0]`, exactly 0 or 1 (what the hard mask will keep).
    Gradient: that of `clip(0.5 + w / (2 width), 0, 1)`, i.e.
    `1 / (2 width)` for `|w| < width` and 0 elsewhere (0 everywhere when
    width == 0). Summing it over a layer's channels gives the hard kept count
    with a soft count's gradient (DESIGN.md section 4.3).

    Args:
        w: float tensor of mask logits, any shape (e.g. [C]).
        width: scalar >= 0 (Python float or tensor), half-width of the band
            where the gradient is non-zero; typically the current bound.

    Returns:
        Tensor of `w`'s shape and dtype with values exactly 0 or 1.
    """
    w = _as_tensor(w)
    return _budget_keep(w, _as_scalar(width, w.dtype))
