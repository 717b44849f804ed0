"""Architecture fidelity: BigGAN-PyTorch parameter counts, tables, names."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.models import arch
from ppcd_tf.models import discriminator
from ppcd_tf.models import generator

# sum(p.numel() for p in model.parameters()) of BigGAN-PyTorch's Generator /
# Discriminator (hier=True, G_shared=True, shared_dim=128, dim_z=120),
# obtained by instantiating the original code.
BIGGAN_PYTORCH_COUNTS = [
    # resolution, ch, classes, attention, G params, D params
    (128, 96, 1000, "64", 70_433_988, 87_982_370),
    (256, 96, 1000, "128", 81_970_308, 99_191_330),
    (64, 64, 1000, "32", 31_969_540, 20_571_842),
    (32, 64, 10, "", 4_358_915, 4_207_361),
    (32, 32, 10, "16", 1_266_692, 1_137_029),
]


def _count(model):
    return generator.count_trainable_parameters(model)


class ParameterCountTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*BIGGAN_PYTORCH_COUNTS)
    def test_counts_match_biggan_pytorch(self, resolution, ch, classes,
                                         attention, g_params, d_params):
        # Zero init: the count does not depend on values, and orthogonal
        # init of the 128/256 models takes ~30 s on a CPU.
        g = generator.Generator(
            arch.generator_channels(resolution, ch, attention), classes,
            dim_z=120, shared_dim=128, kernel_initializer="zeros")
        g.build()
        d = discriminator.Discriminator(
            arch.discriminator_channels(resolution, ch, attention), classes,
            kernel_initializer="zeros")
        d.build()
        self.assertEqual(_count(g), g_params)
        self.assertEqual(_count(d), d_params)

    def test_reference_128_layer_shapes(self):
        g = generator.Generator(arch.generator_channels(128, 96, "64"), 1000,
                                kernel_initializer="zeros")
        g.build()
        shapes = {w.path: tuple(w.shape) for w in g.trainable_weights}
        self.assertEqual(shapes["generator/linear/kernel"], (20, 24576))
        self.assertEqual(shapes["generator/shared/embeddings"], (1000, 128))
        self.assertEqual(shapes["generator/block1/bn1/gain/kernel"],
                         (148, 1536))
        self.assertEqual(shapes["generator/block4/conv1/kernel"],
                         (3, 3, 384, 192))
        self.assertEqual(shapes["generator/attention4/theta/kernel"],
                         (1, 1, 192, 24))
        self.assertEqual(shapes["generator/attention4/g/kernel"],
                         (1, 1, 192, 96))
        self.assertEqual(shapes["generator/attention4/gamma"], ())
        self.assertEqual(shapes["generator/output_conv/kernel"],
                         (3, 3, 96, 3))
        self.assertEqual(g.dim_z, 120)
        self.assertEqual(g.z_chunk_size, 20)


class ArchitectureTableTest(tf.test.TestCase):

    def test_128_widths_and_attention(self):
        config = arch.generator_channels(128, 96, "64")
        self.assertEqual(config.stream, (1536, 1536, 768, 384, 192, 96))
        self.assertEqual(config.hidden, (1536, 768, 384, 192, 96))
        self.assertEqual(config.attention, {4: (24, 96)})
        self.assertEqual(config.bottom_width, 4)
        d = arch.discriminator_channels(128, 96, "64")
        self.assertEqual(d.out, (96, 192, 384, 768, 1536, 1536))
        self.assertEqual(d.attention, {1: (12, 48)})

    def test_256_effective_dim_z(self):
        g = generator.Generator(arch.generator_channels(256, 4, ""), 5)
        self.assertEqual(g.dim_z, 119)

    def test_bad_attention_resolution(self):
        with self.assertRaisesRegex(ValueError, "do not exist"):
            arch.generator_channels(32, 4, "64")
        with self.assertRaisesRegex(ValueError, "Unsupported resolution"):
            arch.generator_channels(48, 4, "")

    def test_channel_config_json_and_id_roundtrip(self):
        config = arch.generator_channels(64, 8, "32")
        again = arch.ChannelConfig.from_json(config.to_json())
        self.assertEqual(config, again)
        self.assertEqual(config.to_id(),
                         "r64_s128-128-64-32-16_h128-64-32-16_a3:4:16")

    def test_channel_config_validation(self):
        with self.assertRaisesRegex(ValueError, "num_blocks \\+ 1"):
            arch.ChannelConfig(resolution=32, stream=(4, 4), hidden=(4, 4, 4))
        with self.assertRaisesRegex(ValueError, ">= 1"):
            arch.ChannelConfig(resolution=32, stream=(4, 0, 4, 4),
                               hidden=(4, 4, 4))
        with self.assertRaisesRegex(ValueError, "resolution"):
            arch.ChannelConfig(resolution=64, stream=(4, 4, 4, 4),
                               hidden=(4, 4, 4))


class GeneratorTest(tf.test.TestCase):

    def _small(self, **kwargs):
        channels = arch.generator_channels(32, 4, "16")
        return generator.Generator(channels, 5, dim_z=16, shared_dim=8,
                                   image_channels=1, **kwargs)

    def test_output_shape_range_and_features(self):
        g = self._small()
        z = tf.random.normal((3, 16))
        images, features = g(z, tf.constant([0, 1, 4]), training=True,
                             return_features=True)
        self.assertEqual(images.shape, (3, 32, 32, 1))
        self.assertAllInRange(images, -1.0, 1.0)
        self.assertEqual(sorted(features),
                         ["attention2", "block1", "block2", "block3"])
        self.assertEqual(features["block2"].shape, (3, 16, 16, 16))

    def test_variable_names_contain_block_names(self):
        g = self._small()
        g.build()
        paths = [w.path for w in g.weights]
        for name in ("block1", "block2", "block3", "attention2", "linear",
                     "shared", "output_bn", "output_conv"):
            self.assertTrue(any(f"/{name}/" in p for p in paths), name)

    def test_labels_change_output(self):
        g = self._small()
        z = tf.random.normal((2, 16))
        a = g(z, tf.constant([0, 0]))
        b = g(z, tf.constant([3, 3]))
        self.assertNotAllClose(a, b)

    def test_config_roundtrip_builds_same_structure(self):
        g = self._small()
        g.build()
        clone = generator.Generator.from_config(g.get_config())
        clone.build()
        self.assertEqual([tuple(w.shape) for w in g.weights],
                         [tuple(w.shape) for w in clone.weights])
        self.assertEqual(clone.channels, g.channels)

    def test_stream_mask_zero_channel_is_dead(self):
        g = self._small()
        z = tf.random.normal((2, 16))
        labels = tf.constant([1, 2])
        mask = np.ones(16, np.float32)
        mask[3] = 0.0
        _, features = g(z, labels, masks={"stream1": tf.constant(mask)},
                        return_features=True)
        self.assertAllEqual(features["block1"][..., 3],
                            tf.zeros_like(features["block1"][..., 3]))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "num_classes"):
            generator.Generator(arch.generator_channels(32, 4, ""), 0)
        with self.assertRaisesRegex(ValueError, "chunks"):
            generator.Generator(arch.generator_channels(32, 4, ""), 3,
                                dim_z=3)


class DiscriminatorTest(tf.test.TestCase):

    def test_logits_and_features(self):
        d = discriminator.Discriminator(
            arch.discriminator_channels(32, 4, ""), 5, image_channels=1)
        images = tf.random.uniform((3, 32, 32, 1), -1.0, 1.0)
        logits, feats = d(images, tf.constant([0, 2, 4]), training=True,
                          return_features=True)
        self.assertEqual(logits.shape, (3,))
        self.assertEqual(feats["features"].shape, (3, 8, 8, 16))
        self.assertEqual(feats["class_embedding"].shape, (3, 16))
        # Projection: logit = linear(sum h) + <embed(y), sum h>.
        pooled = tf.reduce_sum(feats["features"], axis=[1, 2])
        expected = (d.linear(pooled)[:, 0]
                    + tf.reduce_sum(feats["class_embedding"] * pooled, 1))
        self.assertAllClose(logits, expected, atol=1e-5)
