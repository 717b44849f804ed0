"""BigGAN-deep's generator (ppcd_tf.models.biggan_deep): parameter-exact to
the pretrained configurations, the bottleneck block's skip, shapes and
ranges."""

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import biggan_deep
from ppcd_tf.models import generator as generator_lib

# The port's BigGAN module (huggingface/pytorch-pretrained-BigGAN: generator
# and class embedding), the sum of its nn.Parameters for each released
# configuration (ch 128, 1,000 classes, z and embedding 128); 128: the
# 50.4 M parameters published for BigGAN-deep 128.
PORT_PARAMETERS = {128: 50_388_609, 256: 55_880_833, 512: 56_163_905}


@pytest.mark.parametrize("resolution", sorted(PORT_PARAMETERS))
def test_parameter_count_equals_the_released_configuration(resolution):
    # Zero initial weights: only the shapes matter here (and orthogonal
    # initialisation of 56 M parameters takes seconds).
    generator = biggan_deep.DeepGenerator(resolution=resolution,
                                          kernel_initializer="zeros")
    generator.build()
    assert generator_lib.count_trainable_parameters(generator) == \
        PORT_PARAMETERS[resolution]
    # The port's structure: one attention before the block at 64x64, a
    # bottleneck block per layer, the output conv of ch channels.
    assert list(generator.attentions) == [8]
    assert len(generator.blocks) == len(biggan_deep.DEEP_LAYERS[resolution])
    assert generator.conv_to_rgb.kernel.shape == (3, 3, 128, 128)


def _tiny(**kwargs):
    generator = biggan_deep.DeepGenerator(
        resolution=32, ch=8, num_classes=5, dim_z=6, embed_dim=4,
        image_channels=1, **kwargs)
    generator.build()
    return generator


def test_images_have_the_resolution_and_tanh_range():
    generator = _tiny()
    z = tf.random.stateless_normal((3, 6), (0, 1))
    images = generator(z, tf.constant([0, 4, 2]), training=False)
    assert images.shape == (3, 32, 32, 1)
    assert float(tf.reduce_max(tf.abs(images))) <= 1.0
    # Training mode runs too (batch statistics, power iterations).
    assert generator(z, tf.constant([0, 1, 2]), training=True).shape == \
        (3, 32, 32, 1)
    # Labels change the images (the class embedding conditions every BN).
    other = generator(z, tf.constant([1, 1, 1]), training=False)
    assert float(tf.reduce_max(tf.abs(images - other))) > 0.0


def test_skip_keeps_the_first_half_of_the_channels_and_upsamples():
    """With the last 1x1 conv zeroed the block is its skip: the input's
    first out_channels channels, nearest-upsampled."""
    block = biggan_deep.DeepGBlock(4, upsample=True)
    x = tf.random.stateless_normal((2, 3, 3, 8), (2, 3))
    cond = tf.random.stateless_normal((2, 5), (4, 5))
    block((x, cond))
    block.convs[3].kernel.assign(tf.zeros_like(block.convs[3].kernel))
    out = block((x, cond), training=False)
    expected = np.repeat(np.repeat(x.numpy()[..., :4], 2, 1), 2, 2)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)
    assert block.middle_channels == 2  # 8 / 4


def test_a_block_that_neither_keeps_nor_halves_its_width_is_refused():
    block = biggan_deep.DeepGBlock(3)
    with pytest.raises(errors.BadInputError, match="keeps or halves"):
        block((tf.zeros((1, 4, 4, 8)), tf.zeros((1, 5))))


def test_unknown_resolution_is_refused():
    with pytest.raises(errors.BadInputError, match="choose from"):
        biggan_deep.DeepGenerator(resolution=64)


def test_config_round_trip_builds_the_same_shapes():
    generator = _tiny(attention=False)
    clone = biggan_deep.DeepGenerator.from_config(generator.get_config())
    clone.build()
    assert [w.shape for w in clone.weights] == \
        [w.shape for w in generator.weights]
    assert clone.attentions == {}


# BigGAN-PyTorch's BigGANdeep.Discriminator (ch 128, depth 2, attention at
# 64, 1,000 classes), the sum of its parameters; 128: the 34.6 M published
# for BigGAN-deep's discriminator.
DEEP_D_PARAMETERS = {128: 34_590_210, 256: 38_247_426}


@pytest.mark.parametrize("resolution", sorted(DEEP_D_PARAMETERS))
def test_discriminator_parameter_count(resolution):
    from ppcd_tf.models import biggan_deep_discriminator as deep_d
    discriminator = deep_d.DeepDiscriminator(
        resolution=resolution, ch=128, kernel_initializer="zeros")
    discriminator.build()
    assert generator_lib.count_trainable_parameters(discriminator) == \
        DEEP_D_PARAMETERS[resolution]
    assert len(discriminator.blocks) == 2 * len(
        deep_d.DEEP_D_STAGES[resolution])
    assert len(discriminator.attentions) == 1


def test_small_discriminator_scores_and_features():
    from ppcd_tf.models import biggan_deep_discriminator as deep_d
    discriminator = deep_d.DeepDiscriminator(
        resolution=32, ch=8, num_classes=5, image_channels=1,
        attention=(16,))
    images = tf.random.stateless_uniform((3, 32, 32, 1), (6, 7), -1.0, 1.0)
    labels = tf.constant([0, 3, 4])
    logits, features = discriminator(images, labels, training=True,
                                     return_features=True)
    assert logits.shape == (3,) and logits.dtype == tf.float32
    assert features["features"].shape == (3, 8, 8, 32)
    assert features["class_embedding"].shape == (3, 32)
    assert len(features["blocks"]) == 6
    assert list(discriminator.attentions) == [2]  # after the 16x16 stage
    # The projection: another class changes the score.
    other = discriminator(images, tf.constant([1, 1, 1]), training=False)
    assert float(tf.reduce_max(tf.abs(other - discriminator(
        images, labels, training=False)))) > 0.0


def test_discriminator_block_skip_pools_and_adds_learned_channels():
    """With conv4 zeroed the block is its skip: the pooled input, then the
    learnable 1x1 conv's channels for the added width."""
    from ppcd_tf.models import biggan_deep_discriminator as deep_d
    block = deep_d.DeepDBlock(12, downsample=True)
    x = tf.random.stateless_normal((2, 4, 4, 8), (8, 9))
    block(x)
    block.conv4.kernel.assign(tf.zeros_like(block.conv4.kernel))
    out = block(x, training=False).numpy()
    pooled = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    np.testing.assert_allclose(out[..., :8], pooled.numpy(), atol=1e-6)
    added = block.conv_sc(pooled, training=False).numpy()
    np.testing.assert_allclose(out[..., 8:], added, atol=1e-5)
    with pytest.raises(errors.BadInputError, match="cannot narrow"):
        deep_d.DeepDBlock(4)(x)
