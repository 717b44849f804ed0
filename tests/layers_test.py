"""Tests of the BigGAN layers: shapes, configs, numerics."""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.models import layers


def _roundtrip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    return config, clone.get_config()


class SpectralNormTest(tf.test.TestCase, parameterized.TestCase):

    def test_dense_shapes_and_weights(self):
        layer = layers.SNDense(7, name="d")
        out = layer(tf.ones((3, 5)))
        self.assertEqual(out.shape, (3, 7))
        self.assertEqual(out.dtype, tf.float32)
        self.assertLen(layer.trainable_weights, 2)  # kernel, bias
        self.assertLen(layer.non_trainable_weights, 1)  # u
        self.assertEqual(tuple(layer.sn_u.shape), (1, 7))

    def test_conv_shapes_and_weights(self):
        layer = layers.SNConv2D(6, 3, use_bias=False)
        out = layer(tf.ones((2, 8, 8, 4)))
        self.assertEqual(out.shape, (2, 8, 8, 6))
        self.assertLen(layer.trainable_weights, 1)
        self.assertEqual(tuple(layer.kernel.shape), (3, 3, 4, 6))

    def test_embedding_is_float_with_gradient(self):
        layer = layers.SNEmbedding(10, 4)
        labels = tf.constant([0, 3, 9])
        with tf.GradientTape() as tape:
            out = layer(labels, training=True)
            loss = tf.reduce_sum(out)
        self.assertEqual(out.dtype, tf.float32)
        self.assertEqual(out.shape, (3, 4))
        self.assertEqual(tuple(layer.sn_u.shape), (1, 10))
        grad = tape.gradient(loss, layer.embeddings)
        self.assertIsNotNone(grad)
        self.assertGreater(float(tf.reduce_sum(tf.abs(
            tf.convert_to_tensor(grad)))), 0.0)

    def test_sigma_of_known_matrix(self):
        # diag(3, 1) has sigma 3; starting from u = e1 one iteration is exact.
        layer = layers.SNDense(2, use_bias=False)
        layer.build((None, 2))
        layer.kernel.assign([[3.0, 0.0], [0.0, 1.0]])
        layer.sn_u.assign([[1.0, 0.0]])
        out = layer(tf.constant([[1.0, 1.0]]), training=True)
        self.assertAllClose(out, [[1.0, 1.0 / 3.0]])

    def test_power_iteration_converges_to_largest_singular_value(self):
        rng = np.random.default_rng(0)
        matrix = rng.normal(size=(6, 4)).astype(np.float32)
        layer = layers.SNDense(4, use_bias=False)
        layer.build((None, 6))
        layer.kernel.assign(matrix)
        for _ in range(50):
            layer(tf.ones((1, 6)), training=True)
        eye = tf.eye(6)
        normalized = layer(eye, training=False)  # rows of kernel / sigma
        sigma = np.linalg.svd(matrix, compute_uv=False)[0]
        self.assertAllClose(normalized, matrix / sigma, atol=1e-5)

    def test_u_updates_only_in_training(self):
        layer = layers.SNConv2D(3, 1)
        x = tf.random.normal((2, 4, 4, 3))
        layer(x)
        before = layer.sn_u.numpy().copy()
        layer(x, training=False)
        self.assertAllEqual(before, layer.sn_u.numpy())
        layer(x, training=True)
        self.assertNotAllClose(before, layer.sn_u.numpy())

    def test_kernel_variable_is_not_overwritten(self):
        layer = layers.SNDense(3)
        layer(tf.ones((1, 3)))
        before = layer.kernel.numpy().copy()
        layer(tf.ones((1, 3)), training=True)
        self.assertAllEqual(before, layer.kernel.numpy())

    @parameterized.parameters(
        (layers.SNDense, dict(units=3, use_bias=False, sn_eps=1e-4)),
        (layers.SNConv2D, dict(filters=5, kernel_size=1)),
        (layers.SNEmbedding, dict(input_dim=4, output_dim=2)),
        (layers.ConditionalBatchNorm, dict(epsilon=1e-4, momentum=0.8)),
        (layers.SelfAttention, dict(qk_width=2, value_width=3)),
        (layers.GBlock, dict(out_channels=4, hidden_channels=3,
                             upsample=False)),
        (layers.DBlock, dict(out_channels=4, downsample=False,
                             preactivation=False, wide=False)),
    )
    def test_config_roundtrip(self, cls, kwargs):
        config, again = _roundtrip(cls(**kwargs))
        self.assertEqual(config, again)
        for key, value in kwargs.items():
            self.assertEqual(config[key], value)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "positive"):
            layers.SNDense(0)
        with self.assertRaisesRegex(ValueError, "odd"):
            layers.SNConv2D(3, kernel_size=2)
        with self.assertRaisesRegex(ValueError, "widths must be positive"):
            layers.SelfAttention(0, 2)


class OneOutputConvTest(tf.test.TestCase, parameterized.TestCase):
    """The single-output-channel convolution as a matmul to the kernel taps
    and their shifted sum equals tf.nn.conv2d ('SAME', stride 1)."""

    @parameterized.product(size=[1, 3, 5], channels=[1, 7, 64])
    def test_equals_conv2d(self, size, channels):
        x = tf.random.stateless_normal((2, 9, 7, channels), (size, channels))
        kernel = 0.1 * tf.random.stateless_normal(
            (size, size, channels, 1), (channels, size))
        self.assertAllClose(layers.conv_one_output(x, kernel),
                            tf.nn.conv2d(x, kernel, 1, "SAME"), atol=1e-5,
                            rtol=1e-5)

    def test_sn_conv_with_one_filter_uses_it_and_matches_conv2d(self):
        conv = layers.SNConv2D(1, 3, name="to_gray")
        x = tf.random.stateless_normal((3, 8, 8, 5), (1, 2))
        out = conv(x, training=False)
        kernel = conv._normalized(  # pylint: disable=protected-access
            conv.kernel, False)
        self.assertAllClose(out, tf.nn.bias_add(
            tf.nn.conv2d(x, kernel, 1, "SAME"), conv.bias), atol=1e-6)
        # Gradients flow to the kernel as through a convolution.
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(conv(x, training=False) ** 2)
        self.assertEqual(tape.gradient(loss, conv.kernel).shape,
                         (3, 3, 5, 1))


class ConditionalBatchNormTest(tf.test.TestCase):

    def test_class_conditioning_changes_output(self):
        x = tf.random.normal((4, 2, 2, 3))
        cbn = layers.ConditionalBatchNorm()
        out_a = cbn((x, tf.ones((4, 6))), training=True)
        out_b = cbn((x, -tf.ones((4, 6))), training=True)
        self.assertEqual(out_a.shape, (4, 2, 2, 3))
        self.assertNotAllClose(out_a, out_b)

    def test_weights(self):
        cbn = layers.ConditionalBatchNorm()
        cbn.build(((None, 4, 4, 5), (None, 7)))
        # gain and bias kernels [7, 5]; BN has no affine parameters.
        self.assertLen(cbn.trainable_weights, 2)
        self.assertEqual(sum(int(np.prod(w.shape))
                             for w in cbn.trainable_weights), 2 * 7 * 5)
        self.assertTrue(cbn.bn.synchronized)


class ConditionalBatchNormZeroTest(tf.test.TestCase):

    def test_exact_plain_bn_when_linears_output_zero(self):
        # y = 0 makes both linears output exactly 0: gain 1, bias 0.
        x = tf.random.normal((6, 3, 3, 4)) * 2.0 - 1.0
        cbn = layers.ConditionalBatchNorm(epsilon=1e-3)
        got = cbn((x, tf.zeros((6, 5))), training=True)
        bn = keras.layers.BatchNormalization(epsilon=1e-3, momentum=0.9,
                                             center=False,
                                             scale=False)
        self.assertAllClose(got, bn(x, training=True), atol=1e-5)
        # Inference uses the moving statistics, like plain BN.
        bn_inf = bn(x, training=False)
        cbn_inf = cbn((x, tf.zeros((6, 5))), training=False)
        self.assertAllClose(cbn_inf, bn_inf, atol=1e-5)


class SelfAttentionTest(tf.test.TestCase):

    def test_identity_at_init(self):
        x = tf.random.normal((2, 8, 8, 16))
        layer = layers.SelfAttention(2, 8)
        self.assertAllClose(layer(x), x)
        self.assertEqual(float(layer.gamma.numpy()), 0.0)

    def test_shapes_weights_and_effect(self):
        x = tf.random.normal((2, 4, 4, 16))
        layer = layers.SelfAttention(2, 8)
        layer(x)
        shapes = {w.path.split("/")[-2] + "/" + w.path.split("/")[-1]:
                  tuple(w.shape) for w in layer.trainable_weights}
        self.assertEqual(shapes["theta/kernel"], (1, 1, 16, 2))
        self.assertEqual(shapes["g/kernel"], (1, 1, 16, 8))
        self.assertEqual(shapes["o/kernel"], (1, 1, 8, 16))
        layer.gamma.assign(1.0)
        self.assertNotAllClose(layer(x), x)

    def test_value_mask_zero_removes_attention_output(self):
        x = tf.random.normal((2, 4, 4, 16))
        layer = layers.SelfAttention(2, 8)
        layer(x)
        layer.gamma.assign(1.0)
        out = layer(x, value_mask=tf.zeros(8))
        self.assertAllClose(out, x)


class BlockTest(tf.test.TestCase):

    def test_gblock_shapes(self):
        block = layers.GBlock(6, hidden_channels=5)
        out = block((tf.random.normal((2, 4, 4, 3)), tf.random.normal((2, 7))),
                    training=True)
        self.assertEqual(out.shape, (2, 8, 8, 6))
        self.assertEqual(tuple(block.conv1.kernel.shape), (3, 3, 3, 5))
        self.assertEqual(tuple(block.conv2.kernel.shape), (3, 3, 5, 6))
        self.assertEqual(tuple(block.conv_sc.kernel.shape), (1, 1, 3, 6))
        self.assertEqual(tuple(block.bn1.gain.kernel.shape), (7, 3))
        self.assertEqual(tuple(block.bn2.gain.kernel.shape), (7, 5))

    def test_gblock_out_mask_zeroes_channels(self):
        block = layers.GBlock(4)
        mask = tf.constant([1.0, 0.0, 1.0, 0.0])
        out = block((tf.random.normal((2, 4, 4, 3)), tf.random.normal((2, 5))),
                    out_mask=mask)
        self.assertAllEqual(out[..., 1], tf.zeros_like(out[..., 1]))
        self.assertGreater(float(tf.reduce_max(tf.abs(out[..., 0]))), 0.0)

    def test_dblock_shapes_and_shortcut(self):
        first = layers.DBlock(8, downsample=True, preactivation=False)
        out = first(tf.random.normal((2, 8, 8, 3)))
        self.assertEqual(out.shape, (2, 4, 4, 8))
        same = layers.DBlock(8, downsample=False)
        same(out)
        self.assertIsNone(same.conv_sc)  # in == out, no downsampling

    def test_outputs_of_dblock_are_finite_and_differ_from_input(self):
        block = layers.DBlock(3, downsample=False)
        x = tf.random.normal((1, 4, 4, 3))
        out = block(x, training=True)
        self.assertTrue(np.all(np.isfinite(out.numpy())))
        self.assertNotAllClose(out, x)
