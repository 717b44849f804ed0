"""Analytic parameter and MAC counts of a BigGAN-deep generator from its widths.

The deep counterpart of `ppcd_tf.models.complexity`: closed forms in the
widths (`deep_widths.DeepWidths`) that the pruning budget can evaluate on
real-valued kept widths (sums of soft masks, possibly tensors) and that
tests check against the variables of the built `DeepGenerator`.

MACs count the multiply-accumulates of convolutions, linear layers and the
two attention matmuls per generated image; normalisation, activations,
additions, the skip and upsampling are not counted.
"""

import dataclasses

# BigGAN-deep's 3x3 convolutions (conv1, conv2, conv_to_rgb).
KERNEL = 3 * 3
# Side of the first linear's output map.
BOTTOM_WIDTH = 4


@dataclasses.dataclass(frozen=True)
class DeepShape:
    """What besides the widths fixes a BigGAN-deep generator's size."""

    num_classes: int
    embed_dim: int
    dim_z: int
    upsample: tuple  # per block: whether it doubles the resolution

    @classmethod
    def of(cls, generator, layer_table):
        """The shape of a built `DeepGenerator` whose blocks follow
        `layer_table` ((upsample, in, out) rows)."""
        return cls(num_classes=generator.num_classes,
                   embed_dim=generator.embed_dim, dim_z=generator.dim_z,
                   upsample=tuple(bool(row[0]) for row in layer_table))

    def cond_dim(self):
        return self.dim_z + self.embed_dim


def _widths(widths, stream, inner, attention, rgb):
    return (list(widths.stream) if stream is None else list(stream),
            list(widths.inner) if inner is None else list(inner),
            dict(widths.attention) if attention is None else dict(attention),
            widths.rgb if rgb is None else rgb)


def _attention_parameters(channels, qk, value):
    """theta, phi, g (C -> qk, qk, value), o (value -> C), gamma."""
    return channels * (2 * qk + value) + value * channels + 1


def deep_generator_parameters(widths, shape, stream=None, inner=None,
                              attention=None, rgb=None):
    """Trainable parameters of a DeepGenerator (class embedding included).

    `stream` (per stream), `inner` ((a, b, c) per block), `attention`
    ({p: (qk, value)}) and `rgb` may be real-valued kept widths; by default
    `widths`' integers are used.
    """
    s, h, att, rgb = _widths(widths, stream, inner, attention, rgb)
    cond = shape.cond_dim()
    total = shape.num_classes * shape.embed_dim
    total += (cond + 1) * s[0] * BOTTOM_WIDTH ** 2      # linear
    for block, (a, b, c) in enumerate(h, start=1):
        cin, cout = s[block - 1], s[block]
        total += 2 * cond * (cin + a + b + c)             # 4 CBN linears
        total += cin * a + a                              # conv0, 1x1
        total += KERNEL * a * b + b                       # conv1
        total += KERNEL * b * c + c                       # conv2
        total += c * cout + cout                          # conv3, 1x1
    for position, (qk, value) in att.items():
        total += _attention_parameters(s[position], qk, value)
    total += 2 * s[-1]                                    # output BN
    total += KERNEL * s[-1] * rgb + rgb                   # conv_to_rgb
    return total


def deep_generator_macs(widths, shape, stream=None, inner=None,
                        attention=None, rgb=None):
    """Multiply-accumulates per generated image (module docstring); `rgb`
    defaults to the widths' (all of conv_to_rgb's outputs are computed)."""
    s, h, att, rgb = _widths(widths, stream, inner, attention, rgb)
    cond = shape.cond_dim()
    total = cond * s[0] * BOTTOM_WIDTH ** 2
    size = BOTTOM_WIDTH
    for block, (a, b, c) in enumerate(h, start=1):
        if block - 1 in att:
            total += _attention_macs(s[block - 1], size, *att[block - 1])
        cin, cout = s[block - 1], s[block]
        pixels_in = size * size
        size *= 2 if shape.upsample[block - 1] else 1
        pixels = size * size
        total += 2 * cond * (cin + a + b + c)             # CBN linears
        total += pixels_in * cin * a                      # conv0
        total += pixels * KERNEL * (a * b + b * c)        # conv1, conv2
        total += pixels * c * cout                        # conv3
    total += size * size * KERNEL * s[-1] * rgb
    return total


def _attention_macs(channels, size, qk, value):
    pixels = size * size
    pooled = pixels // 4
    return (pixels * channels * (2 * qk + value)          # theta, phi, g
            + pixels * pooled * (qk + value)              # two matmuls
            + pixels * value * channels)                  # o
