"""`Architecture.masked_batch_norms`: the BatchNorms a closed channel feeds
zeros, for BigGAN and BigGAN-deep.

Checked by what training does, not by layer names: one training-mode
forward pass with a single channel of one mask closed, as PPCD trains it
(the mask value 0 and `keep` 0, which zeroes the channel's weights inside
the spectral norms); a BatchNorm whose input carries that channel sees a
constant there (batch variance exactly 0), so its standing variance becomes
`momentum * old`; every other BatchNorm sees a positive variance. The
BatchNorms that behave so must be exactly the ones the architecture lists
for that key (the cut resets their statistics when it reopens such a
channel, `PruningPhase.harden`).
"""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.models import arch
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import architectures
from tests.biggan_deep_pruning_test import _tiny as tiny_deep_generator

BATCH = 8


def _biggan():
    generator = generator_lib.Generator(
        arch.generator_channels(32, 4, "16"), 5, dim_z=16, shared_dim=8,
        image_channels=1)
    generator.build()
    return generator


def _batch_norms(generator):
    return [layer for layer in generator._flatten_layers()  # pylint: disable=protected-access
            if isinstance(layer, keras.layers.BatchNormalization)]


def _collapsed(generator, key, width, channel):
    """The BatchNorms whose standing variance of `channel` becomes
    momentum * old after one training step with that channel of `key`
    closed (mask and keep 0)."""
    norms = _batch_norms(generator)
    before = [n.moving_variance.numpy().copy() for n in norms]
    mask = np.ones(width, np.float32)
    mask[channel] = 0.0
    z = tf.random.stateless_normal((BATCH, generator.dim_z), (1, 2))
    labels = tf.range(BATCH) % generator.num_classes
    closed = {key: tf.constant(mask)}
    generator(z, labels, training=True, masks=closed, keep=closed)
    collapsed = []
    for norm, old in zip(norms, before):
        new = norm.moving_variance.numpy()
        if channel < len(new) and np.isclose(
                new[channel], norm.momentum * old[channel], rtol=1e-5,
                atol=0.0):
            collapsed.append(norm)
        norm.moving_variance.assign(old)
    return collapsed


class MaskedBatchNormsTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(("biggan", _biggan),
                                    ("biggan_deep", tiny_deep_generator))
    def test_lists_exactly_the_batch_norms_a_closed_channel_feeds(
            self, build):
        generator = build()
        architecture = architectures.of(generator)
        listed = architecture.masked_batch_norms(generator)
        widths = architecture.mask_widths(prune_attention=True)
        self.assertNotEmpty(listed)
        for key, width in widths.items():
            for norm in listed.get(key, ()):
                self.assertEqual(int(norm.moving_variance.shape[0]), width,
                                 msg=(key, norm.path))
            channel = width // 2
            got = {id(n) for n in _collapsed(generator, key, width, channel)}
            want = {id(n) for n in listed.get(key, ())}
            self.assertEqual(got, want, msg=key)


if __name__ == "__main__":
    tf.test.main()
