"""Tests of the distillation losses and weights."""

import gin
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.distill import losses
from ppcd_tf.distill import objective

BATCH = 3


def _features(height, channels, seed):
    return tf.random.stateless_normal((BATCH, height, height, channels),
                                      seed=(seed, 0))


def _assert_finite_gradient(test, grad):
    test.assertIsNotNone(grad)
    test.assertTrue(np.all(np.isfinite(grad.numpy())))
    test.assertGreater(np.abs(grad.numpy()).sum(), 0.0)


class AttentionTest(tf.test.TestCase, parameterized.TestCase):

    def test_attention_map_shape_norm_and_scale_invariance(self):
        features = _features(4, 6, seed=1)
        a = losses.attention_map(features)
        self.assertEqual(a.shape, (BATCH, 16))
        self.assertEqual(a.dtype, tf.float32)
        self.assertAllClose(tf.norm(a, axis=1), np.ones(BATCH))
        self.assertAllClose(losses.attention_map(3.0 * features), a)
        manual = np.mean(features.numpy() ** 2, axis=-1).reshape(BATCH, -1)
        manual /= np.linalg.norm(manual, axis=1, keepdims=True)
        self.assertAllClose(a, manual)

    def test_attention_map_of_zeros_is_finite(self):
        features = tf.zeros((BATCH, 4, 4, 2))
        with tf.GradientTape() as tape:
            tape.watch(features)
            a = losses.attention_map(features)
        self.assertAllEqual(a, np.zeros((BATCH, 16)))
        self.assertTrue(np.all(np.isfinite(tape.gradient(a, features))))

    def test_zero_when_equal_positive_otherwise(self):
        teacher = {"block1": _features(4, 8, 1), "block2": _features(8, 4, 2)}
        loss = losses.attention_transfer_loss(teacher, teacher)
        self.assertEqual(loss.shape, (BATCH,))
        self.assertAllClose(loss, np.zeros(BATCH), atol=1e-7)
        student = {"block1": _features(4, 8, 3), "block2": _features(8, 4, 4)}
        self.assertTrue(np.all(
            losses.attention_transfer_loss(student, teacher).numpy() > 0))

    def test_student_with_fewer_channels_and_gradient(self):
        teacher = {"block1": _features(4, 8, 1), "extra": _features(4, 8, 9)}
        student = {"block1": _features(4, 3, 2)}
        with tf.GradientTape() as tape:
            tape.watch(student["block1"])
            loss = losses.attention_transfer_loss(student, teacher)
        self.assertEqual(loss.shape, (BATCH,))
        manual = np.sum((losses.attention_map(student["block1"])
                         - losses.attention_map(teacher["block1"])) ** 2, 1)
        self.assertAllClose(loss, manual)
        _assert_finite_gradient(self, tape.gradient(loss, student["block1"]))

    def test_layers_and_weights(self):
        teacher = {"a": _features(4, 2, 1), "b": _features(4, 2, 2)}
        student = {"a": _features(4, 2, 3), "b": _features(4, 2, 4)}
        only_a = losses.attention_transfer_loss(student, teacher, ["a"])
        only_b = losses.attention_transfer_loss(student, teacher, ["b"])
        both = losses.attention_transfer_loss(student, teacher,
                                              weights={"a": 2.0})
        self.assertAllClose(both, 2.0 * only_a + only_b)
        with self.assertRaisesRegex(ValueError, "'c'"):
            losses.attention_transfer_loss(student, teacher, ["c"])
        with self.assertRaisesRegex(ValueError, "'c'"):
            losses.attention_transfer_loss(student, teacher, ["a"],
                                           weights={"c": 1.0})
        with self.assertRaisesRegex(ValueError, "No common layers"):
            losses.attention_transfer_loss({"x": teacher["a"]}, teacher)

    @parameterized.parameters(((8, 8), (4, 4)), ((4, 4), (8, 8)),
                              ((6, 6), (4, 4)), ((5, 7), (3, 2)))
    def test_area_resize_matches_tf_image_resize(self, in_size, out_size):
        images = tf.random.stateless_normal((2, *in_size, 3), seed=(5, 0))
        expected = tf.image.resize(images, out_size, method="area")
        self.assertAllClose(losses.area_resize(images, out_size), expected,
                            atol=1e-5)

    def test_different_spatial_sizes_resized_and_differentiable(self):
        teacher = {"block1": _features(4, 8, 1)}
        student = {"block1": _features(8, 4, 2)}
        with tf.GradientTape() as tape:
            tape.watch(student["block1"])
            loss = losses.attention_transfer_loss(student, teacher)
        self.assertEqual(loss.shape, (BATCH,))
        grid = tf.reduce_mean(tf.square(student["block1"]), -1, keepdims=True)
        resized = tf.image.resize(grid, (4, 4), method="area")
        a_s = tf.math.l2_normalize(tf.reshape(resized, (BATCH, -1)), 1)
        manual = tf.reduce_sum(
            tf.square(a_s - losses.attention_map(teacher["block1"])), 1)
        self.assertAllClose(loss, manual, atol=1e-6)
        _assert_finite_gradient(self, tape.gradient(loss, student["block1"]))
        same = losses.attention_transfer_loss(
            {"block1": tf.image.resize(teacher["block1"], (8, 8),
                                       method="nearest")}, teacher)
        self.assertAllClose(same, np.zeros(BATCH), atol=1e-6)

    def test_teacher_gets_no_gradient(self):
        teacher = {"a": _features(4, 2, 1)}
        student = {"a": _features(4, 2, 2)}
        with tf.GradientTape() as tape:
            tape.watch(teacher["a"])
            loss = losses.attention_transfer_loss(student, teacher)
        self.assertIsNone(tape.gradient(loss, teacher["a"]))


class ClassAwareTest(tf.test.TestCase):

    def test_cam_matches_einsum(self):
        phi = _features(4, 5, 1)
        embed = tf.random.stateless_normal((BATCH, 5), seed=(2, 0))
        cam = losses.class_activation_map(phi, embed)
        self.assertEqual(cam.shape, (BATCH, 16))
        manual = np.einsum("bhwc,bc->bhw", phi.numpy(), embed.numpy())
        manual = manual.reshape(BATCH, -1)
        manual /= np.linalg.norm(manual, axis=1, keepdims=True)
        self.assertAllClose(cam, manual, atol=1e-6)
        self.assertTrue(np.any(cam.numpy() < 0))  # Signs are kept.

    def test_loss_zero_when_equal_positive_otherwise_and_gradient(self):
        embed = tf.random.stateless_normal((BATCH, 5), seed=(2, 0))
        teacher_cam = losses.class_activation_map(_features(4, 5, 1), embed)
        self.assertAllClose(losses.class_aware_loss(teacher_cam, teacher_cam),
                            np.zeros(BATCH))
        student_phi = _features(4, 5, 3)
        with tf.GradientTape() as tape:
            tape.watch(student_phi)
            cam = losses.class_activation_map(student_phi, embed)
            loss = losses.class_aware_loss(cam, teacher_cam)
        self.assertEqual(loss.shape, (BATCH,))
        self.assertTrue(np.all(loss.numpy() > 0))
        _assert_finite_gradient(self, tape.gradient(loss, student_phi))


class OutputL1Test(tf.test.TestCase):

    def test_values_and_gradient(self):
        teacher = tf.zeros((BATCH, 4, 4, 3))
        student = tf.concat([tf.zeros((1, 4, 4, 3)),
                             0.5 * tf.ones((BATCH - 1, 4, 4, 3))], 0)
        with tf.GradientTape() as tape:
            tape.watch(student)
            loss = losses.output_l1_loss(student, teacher)
        self.assertAllClose(loss, [0.0] + [0.5] * (BATCH - 1))
        self.assertAllClose(losses.output_l1_loss(teacher, teacher),
                            np.zeros(BATCH))
        grad = tape.gradient(loss, student)
        self.assertIsNotNone(grad)
        self.assertTrue(np.all(np.isfinite(grad.numpy())))

    def test_mixed_precision_inputs(self):
        student = tf.ones((BATCH, 2, 2, 3), tf.float16)
        loss = losses.output_l1_loss(student, tf.zeros((BATCH, 2, 2, 3)))
        self.assertEqual(loss.dtype, tf.float32)
        self.assertAllClose(loss, np.ones(BATCH))


class FeatureMatchingTest(tf.test.TestCase):

    def test_values_sum_over_maps_and_gradient_only_to_student(self):
        teacher = [tf.zeros((BATCH, 4, 4, 2)), tf.zeros((BATCH, 2, 2, 8))]
        student = [tf.fill((BATCH, 4, 4, 2), 0.5),
                   tf.concat([tf.zeros((1, 2, 2, 8)),
                              -2.0 * tf.ones((BATCH - 1, 2, 2, 8))], 0)]
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(student + teacher)
            loss = losses.feature_matching_loss(student, teacher)
        self.assertAllClose(loss, [0.5] + [2.5] * (BATCH - 1))
        self.assertIsNotNone(tape.gradient(loss, student[1]))
        self.assertIsNone(tape.gradient(loss, teacher[0]))
        self.assertAllClose(losses.feature_matching_loss(teacher, teacher),
                            np.zeros(BATCH))

    def test_needs_matching_lists(self):
        with self.assertRaisesRegex(ValueError, "equally many"):
            losses.feature_matching_loss([tf.zeros((1, 2, 2, 1))], [])


class DistillationWeightsTest(tf.test.TestCase):

    def test_defaults_constant(self):
        weights = losses.DistillationWeights()
        self.assertEqual(weights.output_l1_weight(10 ** 6), 1.0)
        self.assertAllClose(weights.output_l1_weight(tf.constant(5)), 1.0)
        self.assertIsNone(weights.attention_layers)

    def test_decay_endpoints(self):
        weights = losses.DistillationWeights(output_l1=2.0,
                                             output_l1_decay_steps=100)
        for step, expected in ((0, 2.0), (50, 1.0), (100, 0.0), (500, 0.0)):
            self.assertAllClose(weights.output_l1_weight(step), expected)
            value = weights.output_l1_weight(tf.constant(step, tf.int64))
            self.assertEqual(value.dtype, tf.float32)
            self.assertAllClose(value, expected)

    def test_validation_and_gin(self):
        with self.assertRaisesRegex(ValueError, "-1"):
            losses.DistillationWeights(attention=-1.0)
        with self.assertRaisesRegex(ValueError, "output_l1_decay_steps"):
            losses.DistillationWeights(output_l1_decay_steps=0)
        gin.parse_config([
            "DistillationWeights.class_aware = 0.0",
            "DistillationWeights.attention_layers = ['block1', 'block2']",
        ])
        weights = losses.DistillationWeights()
        self.assertEqual(weights.class_aware, 0.0)
        self.assertEqual(weights.attention_layers, ("block1", "block2"))
        clone = losses.DistillationWeights.from_config(weights.get_config())
        self.assertEqual(clone.get_config(), weights.get_config())


if __name__ == "__main__":
    tf.test.main()


class _RecordingModel:
    """A stand-in teacher model returning fixed outputs and counting its
    calls (which passes a G step runs is the subject, not their values)."""

    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.outputs


class ObjectivePassesTest(tf.test.TestCase):
    """A term whose weight is 0 runs none of the teacher passes only it
    needs."""

    def _run(self, cam_discriminator="teacher", **weights):
        images = tf.zeros((BATCH, 8, 8, 3))
        features = {"block1": _features(4, 2, 1)}
        d_features = {"features": _features(4, 5, 2),
                      "class_embedding": tf.ones((BATCH, 5)),
                      "blocks": [_features(4, 5, 3)]}
        teacher_g = _RecordingModel((images, features))
        teacher_d = _RecordingModel((tf.zeros((BATCH,)), d_features))
        student_d = _RecordingModel((tf.zeros((BATCH,)), d_features))
        distillation = objective.DistillationObjective(
            losses.DistillationWeights(**weights), teacher_g, teacher_d,
            cam_discriminator)
        terms = distillation.terms(
            tf.zeros((BATCH, 4)), tf.zeros((BATCH,), tf.int32), 0,
            images + 0.5, {"block1": _features(4, 2, 4)}, d_features,
            student_d, lambda values: tf.reduce_sum(values) / BATCH)
        self.assertCountEqual(terms, distillation.term_names)
        return terms, teacher_g.calls, teacher_d.calls, student_d.calls

    def test_no_distillation_runs_no_teacher(self):
        terms, g_calls, d_calls, _ = self._run(
            attention=0.0, class_aware=0.0, output_l1=0.0)
        self.assertEqual((g_calls, d_calls), (0, 0))
        for value in terms.values():
            self.assertEqual(float(value), 0.0)

    def test_teacher_d_only_for_its_terms(self):
        terms, g_calls, d_calls, _ = self._run(class_aware=0.0)
        self.assertEqual((g_calls, d_calls), (1, 0))
        self.assertEqual(float(terms["g_loss_class_aware"]), 0.0)
        self.assertGreater(float(terms["g_loss_output_l1"]), 0.0)
        # The default recipe: CAMs from the teacher D, once per half.
        _, g_calls, d_calls, _ = self._run()
        self.assertEqual((g_calls, d_calls), (1, 2))
        # CAMs from the student's D: the teacher D stays idle, unless the
        # feature term needs it.
        _, _, d_calls, student_calls = self._run(cam_discriminator="student")
        self.assertEqual((d_calls, student_calls), (0, 1))
        terms, _, d_calls, _ = self._run(cam_discriminator="student",
                                         d_features=1.0)
        self.assertEqual(d_calls, 2)
        self.assertIn(objective.FEATURE_MATCHING_TERM, terms)


def _teacher_generator(z, labels, training=False, return_features=False):
    """A per-example stand-in teacher G: images [B, 4, 4, 1] and one
    feature tap [B, 2, 2, 4], both functions of z [B, 16] alone."""
    del labels, training, return_features
    return (tf.reshape(tf.tanh(z), (-1, 4, 4, 1)),
            {"block1": tf.reshape(z * z, (-1, 2, 2, 4))})


def _teacher_discriminator(images, labels, training=False,
                           return_features=False):
    """A per-example stand-in teacher D: CAM features, class embeddings
    and two block outputs of images [B, 4, 4, 1]."""
    del training, return_features
    features = tf.concat([images, images * images], axis=-1)
    return tf.reduce_sum(images, axis=[1, 2, 3]), {
        "features": features,
        "class_embedding": tf.one_hot(labels, 2) + 0.5,
        "blocks": [images, tf.abs(images)]}


class DistilledShareTest(tf.test.TestCase):
    """`terms(..., batch_fraction=f)`: the terms of the first ceil(f * B)
    examples, each an estimate of the same per-example mean."""

    def _terms(self, batch, fraction, teacher_g=_teacher_generator):
        z = tf.random.stateless_normal((4, 16), seed=(5, 1))[:batch]
        labels = tf.constant([0, 1, 1, 0])[:batch]
        fake = tf.reshape(tf.sin(z), (-1, 4, 4, 1))
        student_features = {"block1": tf.reshape(z + 1.0, (-1, 2, 2, 4))}
        distillation = objective.DistillationObjective(
            losses.DistillationWeights(d_features=2.0), teacher_g,
            _teacher_discriminator)
        return distillation.terms(
            z, labels, 0, fake, student_features, None, None,
            lambda values: tf.reduce_sum(values) / batch,
            batch_fraction=fraction)

    def test_half_the_batch_is_the_first_half_alone(self):
        half = self._terms(4, 0.5)
        first_two = self._terms(2, 1.0)
        self.assertCountEqual(half, first_two)
        for name, value in first_two.items():
            self.assertGreater(float(value), 0.0, name)
            self.assertAllClose(half[name], value, rtol=1e-6, atol=0.0)
        # Every example counts once the fraction is 1; the halves differ.
        whole = self._terms(4, 1.0)
        self.assertNotAllClose(whole["g_loss_output_l1"],
                               half["g_loss_output_l1"])

    def test_the_teacher_runs_on_the_share_only(self):
        batches = []

        def recording(z, labels, **kwargs):
            batches.append(int(z.shape[0]))
            return _teacher_generator(z, labels, **kwargs)

        self._terms(4, 0.3, recording)  # ceil(0.3 * 4) = 2
        self._terms(4, 1.0, recording)
        self.assertEqual(batches, [2, 4])
        self.assertEqual(objective.distilled_count(0.01, 64), 1)
        self.assertEqual(objective.distilled_count(0.5, 64), 32)
        for bad in (0.0, 1.5):
            with self.assertRaisesRegex(ValueError, "batch fraction"):
                objective.distilled_count(bad, 64)
