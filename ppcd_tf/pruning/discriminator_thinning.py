"""A lighter training D after PPCD's cut: the discriminator cut to a fraction
of its widths, started from the trained D's strongest filters.

The full-width training D is about two thirds of a compact PPCD step (its
own update and G's adversarial pass through it; BENCHMARKS.md, "What a
compact step spends"), though the student it judges is 8-16x smaller; GAN
compression work (Li et al., "Revisiting Discriminator in GAN
Compression", NeurIPS 2021) finds a D matched to the compressed G trains it
as well. `thin(discriminator, fraction)` keeps, in every block, the output
filters with the largest L2 norm of conv2 + shortcut kernels (the block's
residual stream; an identity shortcut keeps its input's channels) and the
hidden filters with the largest conv1 norm, and slices every kernel, bias,
the linear head and the class embedding to them. The thin D is a warm start,
not an equal network (its spectral norms are those of the sliced
matrices); it is then trained with the student. Attention inside D is not
supported yet (the shipped 32x32 D has none): such a D is refused.
"""

import numpy as np

from ppcd_tf import errors
from ppcd_tf.models import arch
from ppcd_tf.models import discriminator as discriminator_lib


def thinned_config(config, fraction):
    """The DiscriminatorConfig with every block's width cut to
    max(1, round(fraction * width))."""
    if not 0.0 < fraction <= 1.0:
        raise errors.BadInputError(
            f"The discriminator width fraction must be in (0, 1], got "
            f"{fraction!r}.")
    if config.attention:
        raise errors.BadInputError(
            "Thinning a discriminator with self-attention is not supported "
            "yet: keep CompactPhase.discriminator_width = 1.0 for this D.")
    return arch.DiscriminatorConfig(
        resolution=config.resolution,
        out=tuple(max(1, int(round(fraction * w))) for w in config.out),
        downsample=config.downsample)


def _strongest(kernel, count):
    """Sorted indices of the `count` output filters (last axis) of largest
    L2 norm."""
    kernel = np.asarray(kernel)
    norms = np.sqrt(np.square(kernel.reshape(-1, kernel.shape[-1])).sum(0))
    return np.sort(np.argsort(-norms, kind="stable")[:count])


def kept_channels(discriminator, config):
    """[(hidden indices, output indices)] per block of `discriminator` for
    the thinner `config` (input channels: the previous block's output)."""
    kept, previous = [], None
    for block, width in zip(discriminator.blocks, config.out):
        conv2 = block.conv2.kernel.numpy()
        if block.conv_sc is None:  # identity shortcut: same channels
            out = previous
        else:
            sc = block.conv_sc.kernel.numpy()
            scores = (np.sqrt(np.square(conv2.reshape(-1, conv2.shape[-1]))
                              .sum(0))
                      + np.sqrt(np.square(sc.reshape(-1, sc.shape[-1]))
                                .sum(0)))
            out = np.sort(np.argsort(-scores, kind="stable")[:width])
        hidden = _strongest(block.conv1.kernel.numpy(),
                            width if block.wide else block.conv1.filters)
        kept.append((hidden, out))
        previous = out
    return kept


def _slice(layer, target, inputs, outputs):
    """target.kernel/bias/sn_u := layer's sliced to input / output channel
    indices (None: all)."""
    kernel = layer.kernel.numpy()
    if inputs is not None:
        kernel = np.take(kernel, inputs, axis=-2)
    if outputs is not None:
        kernel = np.take(kernel, outputs, axis=-1)
    target.kernel.assign(kernel)
    if getattr(layer, "bias", None) is not None:
        bias = layer.bias.numpy()
        target.bias.assign(bias if outputs is None else bias[outputs])
    u = layer.sn_u.numpy()
    if outputs is not None:
        u = u[:, outputs]
    target.sn_u.assign(u / max(float(np.linalg.norm(u)), 1e-12))


def thin(discriminator, fraction, name=None):
    """(thin Discriminator built with `discriminator`'s strongest filters,
    its DiscriminatorConfig). Call inside the strategy scope."""
    if not hasattr(discriminator, "config"):
        raise errors.BadInputError(
            "CompactPhase.discriminator_width thins BigGAN discriminators "
            f"only; this run's D is a {type(discriminator).__name__}: leave "
            "the width at 1.0.")
    config = thinned_config(discriminator.config, fraction)
    thin_d = discriminator_lib.Discriminator.from_config(dict(
        discriminator.get_config(), config=config.to_dict(),
        name=name or discriminator.name))
    thin_d.build()
    kept = kept_channels(discriminator, config)
    previous = None
    for block, new, (hidden, out) in zip(discriminator.blocks,
                                         thin_d.blocks, kept):
        if block.wide:
            _slice(block.conv1, new.conv1, previous, hidden)
            _slice(block.conv2, new.conv2, hidden, out)
        else:  # conv1 keeps its input width: the input channels
            _slice(block.conv1, new.conv1, previous, previous)
            _slice(block.conv2, new.conv2, previous, out)
        if block.conv_sc is not None:
            _slice(block.conv_sc, new.conv_sc, previous, out)
        previous = out
    _slice(discriminator.linear, thin_d.linear, previous, None)
    table = discriminator.embed.embeddings.numpy()
    thin_d.embed.embeddings.assign(table[:, previous])
    thin_d.embed.sn_u.assign(discriminator.embed.sn_u.numpy())
    return thin_d, config


def parameter_count(discriminator):
    """Trainable parameters of a built discriminator."""
    return int(sum(np.prod(v.shape) for v in
                   discriminator.trainable_variables))
