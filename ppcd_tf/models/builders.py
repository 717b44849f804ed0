"""Gin-configurable factories of the generators and discriminators.

The trainer supplies what the data determines (resolution, number of
classes, image channels); gin supplies the rest. Layers themselves are not
gin-configurable (see STYLE.md), only these factories are.
`build_generator.architecture` / `build_discriminator.architecture` pick
BigGAN (default) or BigGAN-deep (`build_deep_generator`,
`build_deep_discriminator`, with their own bindings; `gin/model/
biggan_deep32.gin`). `generator_from_config` / `discriminator_from_config`
rebuild either family from the config a run recorded.
"""

import gin

from ppcd_tf import errors
from ppcd_tf.models import arch
from ppcd_tf.models import biggan_deep
from ppcd_tf.models import biggan_deep_discriminator
from ppcd_tf.models import discriminator
from ppcd_tf.models import generator

BIGGAN = "biggan"
BIGGAN_DEEP = "biggan_deep"
ARCHITECTURES = (BIGGAN, BIGGAN_DEEP)


def _check_architecture(architecture, what):
    if architecture not in ARCHITECTURES:
        raise errors.BadInputError(
            f"{what}.architecture = {architecture!r} is not known; choose "
            f"one of {list(ARCHITECTURES)}.")


@gin.configurable(denylist=["resolution", "num_classes", "image_channels",
                            "name"])
def build_generator(resolution, num_classes, image_channels, ch=None,
                    attention="64", dim_z=120, shared_dim=128,
                    stream_multipliers=None, hidden_multipliers=None,
                    channels=None, hierarchical=True, bn_epsilon=1e-5,
                    bn_momentum=0.9, sn_eps=1e-6,
                    kernel_initializer="orthogonal", architecture=BIGGAN,
                    name="generator"):
    """A BigGAN Generator (or, with `architecture` 'biggan_deep', the
    `build_deep_generator` of its own bindings).

    Args:
      resolution, num_classes, image_channels: from the dataset.
      ch: base width (BigGAN's G_ch); required unless `channels` is given.
      attention: output resolutions followed by self-attention ('64', '').
      dim_z, shared_dim: latent and shared-embedding sizes.
      stream_multipliers, hidden_multipliers: optional width overrides.
      channels: optional full ChannelConfig (or its dict); overrides ch.
      hierarchical: split z across blocks (BigGAN's `hier`).
      bn_epsilon, bn_momentum: BN settings (Keras momentum convention).
      sn_eps: spectral-norm epsilon.
      kernel_initializer: Keras initializer name for all kernels.
      architecture: 'biggan' or 'biggan_deep'.
      name: model name.
    """
    _check_architecture(architecture, "build_generator")
    if architecture == BIGGAN_DEEP:
        return build_deep_generator(resolution, num_classes, image_channels,
                                    name=name)
    if channels is None and ch is None:
        raise errors.BadInputError(
            "build_generator.ch is not bound: a model gin file "
            "(gin/model/*.gin) sets it.")
    if channels is None:
        channels = arch.generator_channels(
            resolution, ch, attention, stream_multipliers=stream_multipliers,
            hidden_multipliers=hidden_multipliers)
    elif isinstance(channels, dict):
        channels = arch.ChannelConfig.from_dict(channels)
    if channels.resolution != resolution:
        raise errors.BadInputError(
            f"Generator channel config is for resolution "
            f"{channels.resolution}, data is {resolution}.")
    return generator.Generator(
        channels, num_classes, dim_z=dim_z, shared_dim=shared_dim,
        image_channels=image_channels, hierarchical=hierarchical,
        bn_epsilon=bn_epsilon, bn_momentum=bn_momentum, sn_eps=sn_eps,
        kernel_initializer=kernel_initializer, name=name)


@gin.configurable(denylist=["resolution", "num_classes", "image_channels",
                            "name"])
def build_discriminator(resolution, num_classes, image_channels,
                        ch=None, attention="64", wide=True,
                        sn_eps=1e-6, kernel_initializer="orthogonal",
                        architecture=BIGGAN, name="discriminator"):
    """A BigGAN projection Discriminator (arguments as `build_generator`;
    with `architecture` 'biggan_deep', `build_deep_discriminator`)."""
    _check_architecture(architecture, "build_discriminator")
    if architecture == BIGGAN_DEEP:
        return build_deep_discriminator(resolution, num_classes,
                                        image_channels, name=name)
    if ch is None:
        raise errors.BadInputError(
            "build_discriminator.ch is not bound: a model gin file "
            "(gin/model/*.gin) sets it.")
    config = arch.discriminator_channels(resolution, ch, attention)
    return discriminator.Discriminator(
        config, num_classes, image_channels=image_channels, wide=wide,
        sn_eps=sn_eps, kernel_initializer=kernel_initializer, name=name)


@gin.configurable(denylist=["resolution", "num_classes", "image_channels",
                            "name"])
def build_deep_generator(resolution, num_classes, image_channels,
                         ch=gin.REQUIRED, attention=True, dim_z=128,
                         embed_dim=128, bn_epsilon=1e-4, bn_momentum=0.9,
                         sn_eps=1e-4, kernel_initializer="orthogonal",
                         name="generator"):
    """A BigGAN-deep `DeepGenerator` (its layer table and attention position
    follow the resolution: `biggan_deep.DEEP_LAYERS`)."""
    return biggan_deep.DeepGenerator(
        resolution=resolution, ch=ch, num_classes=num_classes, dim_z=dim_z,
        embed_dim=embed_dim, image_channels=image_channels,
        attention=attention, bn_epsilon=bn_epsilon, bn_momentum=bn_momentum,
        sn_eps=sn_eps, kernel_initializer=kernel_initializer, name=name)


@gin.configurable(denylist=["resolution", "num_classes", "image_channels",
                            "name"])
def build_deep_discriminator(resolution, num_classes, image_channels,
                             ch=gin.REQUIRED, depth=2, attention=(),
                             sn_eps=1e-6, kernel_initializer="orthogonal",
                             name="discriminator"):
    """A BigGAN-deep `DeepDiscriminator` (`attention`: the resolutions
    followed by self-attention)."""
    return biggan_deep_discriminator.DeepDiscriminator(
        resolution=resolution, ch=ch, num_classes=num_classes,
        image_channels=image_channels, depth=depth,
        attention=tuple(attention), sn_eps=sn_eps,
        kernel_initializer=kernel_initializer, name=name)


def architecture_of(model):
    """'biggan_deep' for a BigGAN-deep generator or discriminator, else
    'biggan'."""
    deep = (biggan_deep.DeepGenerator,
            biggan_deep_discriminator.DeepDiscriminator)
    return BIGGAN_DEEP if isinstance(model, deep) else BIGGAN


def generator_from_config(config):
    """The generator a recorded config describes (either family: a
    BigGAN config holds `channels`, a BigGAN-deep one does not)."""
    if "channels" in config:
        return generator.Generator.from_config(config)
    return biggan_deep.DeepGenerator.from_config(config)


def discriminator_from_config(config):
    """The discriminator a recorded config describes (a BigGAN-deep one
    holds `depth`)."""
    if "depth" in config:
        return biggan_deep_discriminator.DeepDiscriminator.from_config(
            config)
    return discriminator.Discriminator.from_config(config)
