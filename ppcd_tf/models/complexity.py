"""Analytic parameter and MAC counts of a BigGAN generator from its widths.

These closed forms are the basis of the pruning budget (a differentiable
function of the mask values, see `ppcd_tf.pruning.budget`) and of every
reported MACs figure. Tests check `generator_parameters` against the
variables of the built model.

MACs count multiply-accumulates of convolutions, linear layers and the two
attention matmuls per generated image; normalisation, activations, additions
and upsampling are not counted (they are O(activations), not O(weights)).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class GeneratorShape:
    """What besides the ChannelConfig fixes a generator's size."""

    num_classes: int
    shared_dim: int
    z_chunk_size: int
    image_channels: int
    hierarchical: bool = True

    @classmethod
    def of(cls, generator):
        return cls(num_classes=generator.num_classes,
                   shared_dim=generator.shared_dim,
                   z_chunk_size=generator.z_chunk_size,
                   image_channels=generator.image_channels,
                   hierarchical=generator.hierarchical)

    def cond_dim(self):
        return self.shared_dim + (self.z_chunk_size if self.hierarchical
                                  else 0)

    def linear_in(self):
        """Input width of the first linear: one z chunk (all of z when the
        generator is not hierarchical, where the single chunk is dim_z)."""
        return self.z_chunk_size


KERNEL = 3 * 3  # BigGAN's 3x3 convolutions


def generator_parameters(channels, shape, stream=None, hidden=None,
                         attention=None):
    """Trainable parameters of a generator.

    `stream`, `hidden` and `attention` (same structure as the ChannelConfig's
    fields) may be given as real-valued "kept widths" (e.g. sums of soft
    masks, possibly tensors); by default the config's integer widths are used.
    """
    s = list(channels.stream) if stream is None else list(stream)
    h = list(channels.hidden) if hidden is None else list(hidden)
    att = dict(channels.attention) if attention is None else dict(attention)
    bw2 = channels.bottom_width ** 2
    cond = shape.cond_dim()
    total = shape.num_classes * shape.shared_dim
    total += (shape.linear_in() + 1) * s[0] * bw2
    for i in range(1, channels.num_blocks + 1):
        cin, hid, cout = s[i - 1], h[i - 1], s[i]
        total += 2 * cond * cin                  # bn1 gain, bias
        total += KERNEL * cin * hid + hid        # conv1
        total += 2 * cond * hid                  # bn2 gain, bias
        total += KERNEL * hid * cout + cout      # conv2
        total += cin * cout + cout               # conv_sc (always: upsample)
        if i in att:
            qk, value = att[i]
            total += cout * (2 * qk + value) + value * cout + 1
    total += 2 * s[-1]                           # output BN gain, bias
    total += KERNEL * s[-1] * shape.image_channels + shape.image_channels
    return total


def generator_macs(channels, shape, stream=None, hidden=None,
                   attention=None):
    """Multiply-accumulates per generated image (see the module docstring)."""
    s = list(channels.stream) if stream is None else list(stream)
    h = list(channels.hidden) if hidden is None else list(hidden)
    att = dict(channels.attention) if attention is None else dict(attention)
    bw = channels.bottom_width
    cond = shape.cond_dim()
    total = shape.linear_in() * s[0] * bw * bw
    for i in range(1, channels.num_blocks + 1):
        cin, hid, cout = s[i - 1], h[i - 1], s[i]
        pixels = (bw * 2 ** i) ** 2
        total += 2 * cond * (cin + hid)          # CBN linears
        total += pixels * KERNEL * cin * hid     # conv1
        total += pixels * KERNEL * hid * cout    # conv2
        total += pixels // 4 * cin * cout        # conv_sc, before upsampling
        if i in att:
            qk, value = att[i]
            pooled = pixels // 4
            total += pixels * cout * (2 * qk + value)   # theta, phi, g
            total += pixels * pooled * (qk + value)     # two matmuls
            total += pixels * value * cout              # o
    pixels = channels.resolution ** 2
    total += pixels * KERNEL * s[-1] * shape.image_channels
    return total
