"""Class-aware distillation losses, per example (DESIGN.md section 4.4).

Contract: every loss returns a float32 tensor of shape [B] (one value per
example); callers sum it and divide by the *global* batch size, like the GAN
losses in `ppcd_tf.training.gan_losses`. Inputs may be in any float dtype (mixed
precision); they are cast to float32 first. Teacher-side inputs are treated
as constants (`tf.stop_gradient`): only the student is trained. Feature maps
are channels-last, [B, H, W, C].

  * `attention_map(F)`: mean_c F^2, flattened to [B, H*W], L2-normalised per
    example (Zagoruyko & Komodakis attention transfer; DMAD).
  * `attention_transfer_loss(student, teacher)`: per layer and example,
    sum over positions of (A_s - A_t)^2, summed over layers (optionally
    weighted). Since both maps have unit norm the per-layer term lies in
    [0, 4] whatever the resolution; a mean over positions would weight
    low-resolution layers up by H*W.
  * `class_activation_map(phi, embed_y)`: the projection discriminator's
    class activation map <embed_D(y), phi(x)[h, w]>, [B, h*w], normalised.
  * `class_aware_loss(cam_s, cam_t)`: per-example squared L2 distance.
  * `output_l1_loss(x_s, x_t)`: per-example mean |x_s - x_t| (TinyGAN).
  * `feature_matching_loss(f_s, f_t)`: per-example mean |f_s - f_t| over a
    list of discriminator feature maps, summed over the maps (TinyGAN's
    feature-level distillation, here in the frozen teacher D's features).
  * `DistillationWeights`: the gin-configurable weights of these terms,
    with an optional linear decay of the output-L1 weight.

Spatial mismatches are resolved with `area_resize`, which computes exactly
what `tf.image.resize(method='area')` computes but is differentiable: TF
2.21 registers no gradient for the `ResizeArea` op (`LookupError: gradient
registry has no entry for: ResizeArea`), so the same box-filter weights are
applied as two matrix products.
"""

import math
import numbers

import gin
import numpy as np
import tensorflow as tf

from ppcd_tf import errors

# Lower bound on the squared L2 norm in the per-example normalisation (the
# `epsilon` of tf.math.l2_normalize): an all-zero map stays zero, finite.
NORMALISATION_EPSILON = 1e-12


def _float32(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def _static_spatial(x, what):
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise errors.BadInputError(
            f"{what} needs static spatial dimensions, got shape "
            f"{x.shape}.")
    return height, width


def _area_weights(in_size, out_size):
    """[out_size, in_size] box-filter weights of area resampling.

    Output pixel o covers the input interval [o s, (o + 1) s) with
    s = in_size / out_size; its weight on input pixel j is the length of
    the overlap with [j, j + 1), divided by s (rows sum to 1).
    """
    scale = in_size / out_size
    weights = np.zeros((out_size, in_size), np.float64)
    for o in range(out_size):
        start, end = o * scale, (o + 1) * scale
        for j in range(int(math.floor(start)),
                       min(int(math.ceil(end)), in_size)):
            weights[o, j] = (min(end, j + 1) - max(start, j)) / scale
    return weights


def area_resize(images, size):
    """Differentiable area resampling of [B, H, W, C] to [B, *size, C].

    Same values as `tf.image.resize(images, size, method='area')` (box
    filter, align_corners=False), computed as `R_h @ x @ R_w^T` so that it
    has a gradient.

    Args:
        images: float tensor [B, H, W, C] with static H and W.
        size: (new_height, new_width), Python ints.

    Returns:
        float32 tensor [B, new_height, new_width, C].

    Raises:
        ValueError: if H or W is not static.
    """
    images = _float32(images)
    height, width = _static_spatial(images, "area_resize")
    new_height, new_width = (int(s) for s in size)
    if (height, width) == (new_height, new_width):
        return images
    rows = tf.constant(_area_weights(height, new_height), tf.float32)
    cols = tf.constant(_area_weights(width, new_width), tf.float32)
    return tf.einsum("oh,bhwc,pw->bopc", rows, images, cols)


def _normalise(maps, epsilon):
    """Per-example L2 normalisation of [B, N] maps."""
    return tf.math.l2_normalize(maps, axis=1, epsilon=epsilon)


def _flatten(maps):
    """[B, H, W] or [B, H, W, 1] -> [B, H*W]."""
    return tf.reshape(maps, (tf.shape(maps)[0], -1))


def attention_grid(features):
    """mean_c F^2 of features [B, H, W, C] as [B, H, W, 1] (float32): the
    unnormalised attention map (what `distill.bank` stores per tap)."""
    features = _float32(features)
    return tf.reduce_mean(tf.square(features), axis=-1, keepdims=True)


def attention_map(features, epsilon=NORMALISATION_EPSILON):
    """Normalised spatial attention map of a feature map.

    Args:
        features: float tensor [B, H, W, C].
        epsilon: lower bound on the squared norm in the normalisation.

    Returns:
        float32 tensor [B, H*W]: mean over channels of F^2, flattened and
        L2-normalised per example (so it does not depend on C or on a global
        scale of F).
    """
    return _normalise(_flatten(attention_grid(features)), epsilon)


def _squared_distance(a, b):
    """Per-example squared L2 distance of [B, N] maps -> [B]."""
    return tf.reduce_sum(tf.square(a - b), axis=1)


def attention_transfer_loss(student_features, teacher_features, layers=None,
                            weights=None, epsilon=NORMALISATION_EPSILON,
                            teacher_grids=False):
    """Attention transfer between student and teacher feature maps.

    The student may have fewer channels than the teacher (attention maps
    average over channels). If a layer's spatial sizes differ, the
    student's unnormalised map is area-resampled to the teacher's size
    before normalisation.

    Args:
        student_features: dict name -> float tensor [B, H_s, W_s, C_s]
            (e.g. `Generator(..., return_features=True)`'s second output).
        teacher_features: dict name -> float tensor [B, H_t, W_t, C_t].
        layers: names to use; None means all common keys, sorted.
        weights: None (every layer weight 1) or a dict name -> float; layers
            missing from it get weight 1.
        epsilon: lower bound on the squared norm in the normalisation.
        teacher_grids: `teacher_features` holds the teacher's
            `attention_grid`s [B, H_t, W_t, 1] (a `distill.bank`'s), not
            its feature maps.

    Returns:
        float32 tensor [B]: sum over layers of weight * sum over positions
        of (A_s - A_t)^2.

    Raises:
        ValueError: if no layer is selected, a selected layer is missing
            from either dict, or `weights` names a layer not selected.
    """
    if layers is None:
        layers = sorted(set(student_features) & set(teacher_features))
    layers = list(layers)
    if not layers:
        raise errors.BadInputError(
            f"No common layers to distil: student has "
            f"{sorted(student_features)}, teacher has "
            f"{sorted(teacher_features)}.")
    for name in layers:
        if name not in student_features or name not in teacher_features:
            raise errors.BadInputError(
                f"Layer {name!r} is missing: student has "
                f"{sorted(student_features)}, teacher has "
                f"{sorted(teacher_features)}.")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(layers))
    if unknown:
        raise errors.BadInputError(
            f"weights name layers {unknown} that are not "
            f"distilled; layers are {layers}.")
    total = None
    for name in layers:
        teacher = tf.stop_gradient(teacher_features[name])
        teacher = (_float32(teacher) if teacher_grids
                   else attention_grid(teacher))
        student = attention_grid(student_features[name])
        teacher_size = _static_spatial(teacher, f"Teacher layer {name!r}")
        if _static_spatial(student, f"Student layer {name!r}") != teacher_size:
            student = area_resize(student, teacher_size)
        term = _squared_distance(_normalise(_flatten(student), epsilon),
                                 _normalise(_flatten(teacher), epsilon))
        if name in weights:
            term = float(weights[name]) * term
        total = term if total is None else total + term
    return total


def class_activation_map(d_features, class_embedding,
                         epsilon=NORMALISATION_EPSILON):
    """Class activation map of a projection discriminator.

    CAM_y(x)[h, w] = <embed_D(y), phi(x)[h, w]>, with phi the discriminator's
    last spatial features (`Discriminator(..., return_features=True)`:
    'features' and 'class_embedding'). CAM values can be negative, so the
    raw map is L2-normalised (not its square, unlike `attention_map`): the
    sign, i.e. evidence for vs. against class y, is kept.

    Args:
        d_features: float tensor [B, h, w, C].
        class_embedding: float tensor [B, C], embed_D(y).
        epsilon: lower bound on the squared norm in the normalisation.

    Returns:
        float32 tensor [B, h*w], L2-normalised per example.
    """
    cam = tf.einsum("bhwc,bc->bhw", _float32(d_features),
                    _float32(class_embedding))
    return _normalise(_flatten(cam), epsilon)


def class_aware_loss(student_cam, teacher_cam):
    """Per-example squared L2 distance between normalised CAMs.

    Args:
        student_cam: float tensor [B, N] from `class_activation_map` on the
            student's images.
        teacher_cam: float tensor [B, N], same on the teacher's images
            (treated as a constant).

    Returns:
        float32 tensor [B].
    """
    return _squared_distance(_float32(student_cam),
                             tf.stop_gradient(_float32(teacher_cam)))


def output_l1_loss(student_images, teacher_images):
    """Per-example mean absolute difference between images.

    Args:
        student_images: float tensor [B, H, W, C].
        teacher_images: float tensor [B, H, W, C] (treated as a constant).

    Returns:
        float32 tensor [B]: mean over H, W, C of |x_s - x_t|.
    """
    diff = tf.abs(_float32(student_images)
                  - tf.stop_gradient(_float32(teacher_images)))
    return tf.reduce_mean(_flatten(diff), axis=1)


def feature_matching_loss(student_features, teacher_features):
    """Per-example feature-matching distance over discriminator features.

    Args:
        student_features: list of float tensors [B, h_i, w_i, c_i], a
            discriminator's block outputs on the student's images.
        teacher_features: the same list on the teacher's images (treated as
            constants).

    Returns:
        float32 tensor [B]: sum over the maps of mean |f_s - f_t|.
    """
    if len(student_features) != len(teacher_features) or not (
            student_features):
        raise errors.BadInputError(
            f"feature_matching_loss needs equally many (>= 1) feature maps,"
            f" got {len(student_features)} and {len(teacher_features)}.")
    total = 0.0
    for student, teacher in zip(student_features, teacher_features):
        diff = tf.abs(_float32(student)
                      - tf.stop_gradient(_float32(teacher)))
        total += tf.reduce_mean(_flatten(diff), axis=1)
    return total


def _check_weight(name, value):
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0):
        raise errors.BadInputError(
            f"{name} must be a finite number >= 0, got "
            f"{value!r}.")
    return float(value)


@gin.configurable
class DistillationWeights:
    """Weights of the distillation terms (gin-configurable).

    Args:
        attention: weight of `attention_transfer_loss`.
        class_aware: weight of `class_aware_loss`.
        output_l1: initial weight of `output_l1_loss`.
        output_l1_decay_steps: None (constant `output_l1`) or an int > 0:
            the L1 weight decays linearly from `output_l1` at step 0 to 0 at
            this step, and stays 0.
        attention_layers: feature names for attention transfer; None means
            all layers the student and teacher share.
        d_features: weight of `feature_matching_loss` on the frozen teacher
            D's block outputs for the student's vs the teacher's images
            (0: off, the teacher D is then run only for the CAMs).

    Raises:
        ValueError: on a negative or non-finite weight or a non-positive
            `output_l1_decay_steps`.
    """

    def __init__(self, attention=1.0, class_aware=1.0, output_l1=1.0,
                 output_l1_decay_steps=None, attention_layers=None,
                 d_features=0.0):
        self.attention = _check_weight("attention", attention)
        self.d_features = _check_weight("d_features", d_features)
        self.class_aware = _check_weight("class_aware", class_aware)
        self.output_l1 = _check_weight("output_l1", output_l1)
        if output_l1_decay_steps is not None and not (
                isinstance(output_l1_decay_steps, numbers.Integral)
                and not isinstance(output_l1_decay_steps, bool)
                and output_l1_decay_steps > 0):
            raise errors.BadInputError(
                f"output_l1_decay_steps must be None or an int "
                f"> 0, got {output_l1_decay_steps!r}.")
        self.output_l1_decay_steps = (
            None if output_l1_decay_steps is None
            else int(output_l1_decay_steps))
        self.attention_layers = (
            None if attention_layers is None else tuple(attention_layers))

    def output_l1_weight(self, step):
        """Output-L1 weight at `step`.

        Args:
            step: Python int, or a scalar integer/float tensor or variable.

        Returns:
            A Python float for a Python number, else a float32 scalar tensor:
            `output_l1 * max(0, 1 - step / output_l1_decay_steps)`, or
            `output_l1` when there is no decay.
        """
        python = (isinstance(step, numbers.Real)
                  and not isinstance(step, bool))
        if self.output_l1_decay_steps is None:
            return (self.output_l1 if python
                    else tf.constant(self.output_l1, tf.float32))
        if python:
            fraction = min(max(step / self.output_l1_decay_steps, 0.0), 1.0)
            return self.output_l1 * (1.0 - fraction)
        step = tf.cast(tf.convert_to_tensor(step), tf.float64)
        fraction = tf.clip_by_value(step / self.output_l1_decay_steps,
                                    0.0, 1.0)
        return tf.cast(self.output_l1 * (1.0 - fraction), tf.float32)

    def get_config(self):
        """Constructor arguments as a dict."""
        return {
            "attention": self.attention,
            "class_aware": self.class_aware,
            "output_l1": self.output_l1,
            "output_l1_decay_steps": self.output_l1_decay_steps,
            "attention_layers": self.attention_layers,
            "d_features": self.d_features,
        }

    @classmethod
    def from_config(cls, config):
        """Inverse of `get_config`."""
        return cls(**config)
