"""Gin-configurable factories of the BigGAN generator and discriminator.

The trainer supplies what the data determines (resolution, number of
classes, image channels); gin supplies the rest. Layers themselves are not
gin-configurable (see STYLE.md), only these factories are.
"""

import gin

from ppcd_tf import errors
from ppcd_tf.models import arch
from ppcd_tf.models import discriminator
from ppcd_tf.models import generator


@gin.configurable(denylist=["resolution", "num_classes", "image_channels",
                            "name"])
def build_generator(resolution, num_classes, image_channels, ch=gin.REQUIRED,
                    attention="64", dim_z=120, shared_dim=128,
                    stream_multipliers=None, hidden_multipliers=None,
                    channels=None, hierarchical=True, bn_epsilon=1e-5,
                    bn_momentum=0.9, sn_eps=1e-6,
                    kernel_initializer="orthogonal", name="generator"):
    """A BigGAN Generator.

    Args:
      resolution, num_classes, image_channels: from the dataset.
      ch: base width (BigGAN's G_ch).
      attention: output resolutions followed by self-attention ('64', '').
      dim_z, shared_dim: latent and shared-embedding sizes.
      stream_multipliers, hidden_multipliers: optional width overrides.
      channels: optional full ChannelConfig (or its dict); overrides ch.
      hierarchical: split z across blocks (BigGAN's `hier`).
      bn_epsilon, bn_momentum: BN settings (Keras momentum convention).
      sn_eps: spectral-norm epsilon.
      kernel_initializer: Keras initializer name for all kernels.
      name: model name.
    """
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
                        ch=gin.REQUIRED, attention="64", wide=True,
                        sn_eps=1e-6, kernel_initializer="orthogonal",
                        name="discriminator"):
    """A BigGAN projection Discriminator (arguments as `build_generator`)."""
    config = arch.discriminator_channels(resolution, ch, attention)
    return discriminator.Discriminator(
        config, num_classes, image_channels=image_channels, wide=wide,
        sn_eps=sn_eps, kernel_initializer=kernel_initializer, name=name)
