"""The distillation objective of PPCD: the student G's loss terms against a
frozen teacher (DESIGN.md section 4.4).

`DistillationObjective.terms(...)` returns, each already reduced over the
global batch by the caller's `reduce` (per-example sum / global batch):

  g_loss_attention    attention transfer at every G block / attention output
  g_loss_class_aware  class activation maps of the teacher's and the
                      student's images under the CAM discriminator
  g_loss_output_l1    L1 between the student's and the teacher's images,
                      weighted by `DistillationWeights.output_l1_weight(step)`
  g_loss_d_features   (only with DistillationWeights.d_features > 0) L1
                      between the frozen teacher D's block outputs on the
                      student's and on the teacher's images

`terms(..., batch_fraction=f)` computes every term on the first
ceil(f * B) examples of the micro-batch only (the teacher G and D then run
on those alone) and scales each term by B / ceil(f * B), so that it stays an
estimate of the same per-example mean (`CompactPhase.distillation_fraction`
uses it after the cut).
"""

import math

import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.distill import losses as distill_losses

CAM_DISCRIMINATORS = ("teacher", "student")
TERM_NAMES = ("g_loss_attention", "g_loss_class_aware", "g_loss_output_l1")
FEATURE_MATCHING_TERM = "g_loss_d_features"


class DistillationObjective:
    """Teacher-side forward passes and the distillation terms.

    Args:
      weights: `distill_losses.DistillationWeights`.
      teacher_generator, teacher_discriminator: frozen teacher models.
      cam_discriminator: 'teacher' (the frozen teacher D) or 'student' (the D
        being trained) computes the class activation maps.
    """

    def __init__(self, weights, teacher_generator, teacher_discriminator,
                 cam_discriminator="teacher"):
        if cam_discriminator not in CAM_DISCRIMINATORS:
            raise errors.BadInputError(
                f"cam_discriminator must be one of "
                f"{CAM_DISCRIMINATORS}, got "
                f"{cam_discriminator!r}.")
        self.weights = weights
        self.teacher_generator = teacher_generator
        self.teacher_discriminator = teacher_discriminator
        self.cam_discriminator = cam_discriminator

    def teacher_outputs(self, z, labels):
        """(teacher images [B, H, W, C], {tap: features}), no gradient; in
        the teacher's compute dtype (the losses cast to float32)."""
        images, features = self.teacher_generator(
            z, labels, training=False, return_features=True)
        return (tf.stop_gradient(images),
                {k: tf.stop_gradient(v) for k, v in features.items()})

    @property
    def term_names(self):
        """Names of the terms `terms` returns."""
        if self.weights.d_features > 0:
            return TERM_NAMES + (FEATURE_MATCHING_TERM,)
        return TERM_NAMES

    def teacher_d_features(self, fake, teacher_images, labels):
        """The frozen teacher D's features of the teacher's and the
        student's images: (teacher half, student half), each {features,
        class_embedding, blocks} as the D returns them.

        Two passes, not one over the concatenated batch: the teacher half
        carries no gradient (nothing trainable lies behind it), and in one
        pass the backward would still run through the frozen D for both
        halves (0-10 % of a compact post-cut step on our 2-core CPU,
        BENCHMARKS.md)."""
        _, teacher_half = self.teacher_discriminator(
            teacher_images, labels, training=False, return_features=True)
        _, student_half = self.teacher_discriminator(
            fake, labels, training=False, return_features=True)
        return tf.nest.map_structure(tf.stop_gradient, teacher_half), \
            student_half

    def class_activation_maps(self, fake, teacher_images, labels,
                              student_d_features, student_discriminator,
                              teacher_d=None):
        """(teacher CAMs [B, h*w] without gradient, student CAMs [B, h*w]).
        `teacher_d`: `teacher_d_features(...)` when already computed."""
        if self.cam_discriminator == "teacher":
            teacher_half, student_half = (teacher_d or self.teacher_d_features(
                fake, teacher_images, labels))
            teacher_cam = distill_losses.class_activation_map(
                teacher_half["features"], teacher_half["class_embedding"])
            student_cam = distill_losses.class_activation_map(
                student_half["features"], student_half["class_embedding"])
        else:
            _, feats = student_discriminator(teacher_images, labels,
                                             training=False,
                                             return_features=True)
            teacher_cam = distill_losses.class_activation_map(
                feats["features"], feats["class_embedding"])
            student_cam = distill_losses.class_activation_map(
                student_d_features["features"],
                student_d_features["class_embedding"])
        return tf.stop_gradient(teacher_cam), student_cam

    def needs_teacher_d(self):
        """Whether a G step runs the frozen teacher D: for its CAMs (class-
        aware term on, CAMs from the teacher) or the feature term."""
        weights = self.weights
        return weights.d_features > 0 or (
            weights.class_aware > 0 and self.cam_discriminator == "teacher")

    def terms(self, z, labels, step, fake, student_features,
              student_d_features, student_discriminator, reduce,
              banked=None, batch_fraction=1.0):
        """{term_names: scalar} for the student's images `fake` [B, H, W, C]
        and feature taps at inputs (z [B, dim_z], labels [B]); `reduce`
        turns per-example values [B] into the global-batch share. `banked`:
        a `distill.bank.TeacherBank` draw for these inputs ({"images",
        "grids"}): the teacher G is then not run. `batch_fraction` in
        (0, 1]: the terms are computed on the first ceil(fraction * B)
        examples only (B static), each scaled by B / that count.

        A term whose weight is 0 is 0 and costs nothing: the teacher passes
        only it needs are not run (with every weight 0, as in
        stage/ablation_no_distillation.gin, neither teacher model runs)."""
        weights = self.weights
        terms = {name: tf.constant(0.0) for name in self.term_names}
        if not any(w > 0 for w in (weights.attention, weights.class_aware,
                                   weights.output_l1, weights.d_features)):
            return terms
        if batch_fraction < 1.0:
            (z, labels, fake, student_features, student_d_features, banked,
             reduce) = _first_share(
                 batch_fraction, reduce, (z, labels, fake, student_features,
                                          student_d_features, banked))
        if banked is None:
            teacher_images, teacher_features = self.teacher_outputs(z,
                                                                    labels)
        else:
            teacher_images, teacher_features = (banked["images"],
                                                banked["grids"])
        teacher_d = (self.teacher_d_features(fake, teacher_images, labels)
                     if self.needs_teacher_d() else None)
        if weights.attention > 0:
            terms["g_loss_attention"] = weights.attention * reduce(
                distill_losses.attention_transfer_loss(
                    student_features, teacher_features,
                    layers=weights.attention_layers,
                    teacher_grids=banked is not None))
        if weights.class_aware > 0:
            teacher_cam, student_cam = self.class_activation_maps(
                fake, teacher_images, labels, student_d_features,
                student_discriminator, teacher_d)
            terms["g_loss_class_aware"] = weights.class_aware * reduce(
                distill_losses.class_aware_loss(student_cam, teacher_cam))
        if weights.output_l1 > 0:
            terms["g_loss_output_l1"] = weights.output_l1_weight(step) * (
                reduce(distill_losses.output_l1_loss(fake, teacher_images)))
        if weights.d_features > 0:
            terms[FEATURE_MATCHING_TERM] = weights.d_features * reduce(
                distill_losses.feature_matching_loss(
                    teacher_d[1]["blocks"], teacher_d[0]["blocks"]))
        return terms


def distilled_count(batch_fraction, batch):
    """Examples of a micro-batch of `batch` the terms are computed on:
    ceil(batch_fraction * batch), at least 1."""
    if not 0.0 < batch_fraction <= 1.0:
        raise errors.BadInputError(
            f"The distillation's batch fraction must be in (0, 1], got "
            f"{batch_fraction!r}.")
    return max(1, math.ceil(batch_fraction * batch))


def _first_share(batch_fraction, reduce, tensors):
    """`tensors` (nested; every tensor's first axis the micro-batch B, a
    static size; None entries stay None) cut to their first
    `distilled_count` examples, and `reduce` scaled by B / that count."""
    batch = int(tensors[0].shape[0])
    count = distilled_count(batch_fraction, batch)
    if count == batch:
        return tensors + (reduce,)
    share = tf.nest.map_structure(
        lambda t: None if t is None else t[:count], tensors)
    scale = batch / count
    return tuple(share) + (lambda values: reduce(values) * scale,)
