"""Surgery on BigGAN-deep: the compact generator a hard-masked one defines.

The deep counterpart of `ppcd_tf.pruning.surgery` (whose copy helpers and
equality check it uses; why a compact network computes the same images is
said there). `build_compact(generator, keep)` builds a `DeepGenerator` with
the kept widths (`deep_widths.DeepWidths`): every stream of a stage keeps
the stage mask's channels, each block its three bottleneck widths, the
attention its inner widths, `conv_to_rgb` only the `image_channels` outputs
that the images use. Where a block halves the width, the compact skip takes,
for each kept output channel c, the position of input channel c among the
kept inputs, or -1 (adds zero) where that input was pruned. Weights are
copied slice by slice with a shape check: kernels, biases and spectral-norm
vectors, the conditional BNs' statistics and gain / bias columns, the
per-truncation statistics tables, the linear's units, the output BN.
"""

import numpy as np

from ppcd_tf.models import biggan_deep
from ppcd_tf.models import deep_widths
from ppcd_tf.pruning import surgery


def kept_indices(generator, keep):
    """{mask key: int index array} of a DeepGenerator (`surgery.kept_indices`
    over its mask widths)."""
    return surgery.kept_indices(
        generator, keep,
        deep_widths.mask_widths(generator.widths, generator.stages))


def stream_indices(generator, indices):
    """Kept channel indices of every stream (its stage's)."""
    return [indices[deep_widths.stage_mask_name(stage)]
            for stage in generator.stages]


def skip_index(kept_in, kept_out):
    """A compact block's skip (DeepWidths.skips entry): None when the kept
    outputs are the first kept inputs, else per kept output channel c the
    position of input channel c among the kept inputs, or -1."""
    position = {int(c): p for p, c in enumerate(kept_in)}
    index = [position.get(int(c), -1) for c in kept_out]
    if index == list(range(len(kept_out))):
        return None
    return tuple(index)


def compact_widths(generator, indices):
    """The DeepWidths of the compact generator for kept `indices`."""
    streams = stream_indices(generator, indices)
    inner = [tuple(len(indices[deep_widths.inner_mask_name(block, j)])
                   for j in range(deep_widths.INNER_PER_BLOCK))
             for block in range(1, generator.widths.num_blocks + 1)]
    attention = {}
    for position in generator.widths.attention:
        qk_name, value_name = deep_widths.attention_mask_names(position)
        attention[position] = (len(indices[qk_name]),
                               len(indices[value_name]))
    skips = [skip_index(streams[block - 1], streams[block])
             for block in range(1, generator.widths.num_blocks + 1)]
    return deep_widths.DeepWidths(
        stream=[len(s) for s in streams], inner=inner, attention=attention,
        rgb=generator.image_channels, skips=skips)


def build_compact(generator, keep, name="deep_generator"):
    """The compact DeepGenerator holding the kept slices of `generator`.

    Args:
      generator: a built DeepGenerator (the masked student, or a teacher).
      keep: {mask key: bool [width]} hard masks (missing keys: keep all).
      name: name of the new model.

    Returns:
      A built DeepGenerator with the kept widths and weights.
    """
    indices = kept_indices(generator, keep)
    widths = compact_widths(generator, indices)
    config = dict(generator.get_config(), widths=widths.to_dict(),
                  name=name)
    compact = biggan_deep.DeepGenerator.from_config(config)
    compact.build()
    streams = stream_indices(generator, indices)
    surgery.assign_slice(compact.embedding.embeddings,
                         generator.embedding.embeddings.numpy(), "embedding")
    bottom = biggan_deep.BOTTOM_WIDTH ** 2
    full0 = generator.widths.stream[0]
    units = (np.arange(bottom)[:, None] * full0
             + streams[0][None, :]).reshape(-1)
    surgery.copy_sn(generator.linear, compact.linear, None, units, "linear")
    for block in range(1, generator.widths.num_blocks + 1):
        inner = [indices[deep_widths.inner_mask_name(block, j)]
                 for j in range(deep_widths.INNER_PER_BLOCK)]
        _copy_block(generator.blocks[block - 1], compact.blocks[block - 1],
                    [streams[block - 1]] + inner + [streams[block]],
                    f"block{block}")
    for position in generator.widths.attention:
        qk_name, value_name = deep_widths.attention_mask_names(position)
        _copy_attention(generator.attentions[position],
                        compact.attentions[position], streams[position],
                        indices[qk_name], indices[value_name],
                        f"attention{position}")
    surgery.copy_bn(generator.output_bn, compact.output_bn, streams[-1],
                    "output_bn")
    if generator.output_stats is not None:
        _copy_table(generator.output_stats, compact.output_stats,
                    streams[-1], "output_stats")
    surgery.copy_sn(generator.conv_to_rgb, compact.conv_to_rgb, streams[-1],
                    np.arange(generator.image_channels), "conv_to_rgb")
    return compact


def _copy_block(source, target, channels, what):
    """Block weights; channels: kept indices of [input, a, b, c, output]."""
    for i, (bn, conv) in enumerate(zip(source.bns, source.convs)):
        surgery.copy_cbn(bn, target.bns[i], channels[i], f"{what}/bn{i}")
        surgery.copy_sn(conv, target.convs[i], channels[i], channels[i + 1],
                        f"{what}/conv{i}")
        if source.tables:
            _copy_table(source.tables[i], target.tables[i], channels[i],
                        f"{what}/stats{i}")


def _copy_attention(source, target, stream, qk, value, what):
    surgery.copy_sn(source.theta, target.theta, stream, qk, f"{what}/theta")
    surgery.copy_sn(source.phi, target.phi, stream, qk, f"{what}/phi")
    surgery.copy_sn(source.g, target.g, stream, value, f"{what}/g")
    surgery.copy_sn(source.o, target.o, value, stream, f"{what}/o")
    surgery.assign_slice(target.gamma, source.gamma.numpy(), f"{what}/gamma")


def _copy_table(source, target, index, what):
    """A per-truncation statistics table's columns ([rows, C])."""
    surgery.assign_slice(target.means, source.means.numpy()[:, index],
                         f"{what}/means")
    surgery.assign_slice(target.variances,
                         source.variances.numpy()[:, index],
                         f"{what}/variances")


def tap_kept_channels(generator, keep):
    """{feature tap: kept channel indices} of a DeepGenerator under `keep`
    (for `surgery.compare(..., tap_channels=)`)."""
    streams = stream_indices(generator, kept_indices(generator, keep))
    taps = {f"block{block}": streams[block]
            for block in range(1, generator.widths.num_blocks + 1)}
    taps.update({f"attention{p}": streams[p]
                 for p in generator.widths.attention})
    return taps


def compare(masked, compact, keep, z, labels, tolerance,
            rounding_factor=surgery.DEFAULT_ROUNDING_FACTOR):
    """`surgery.compare` for a masked DeepGenerator and its compact cut."""
    return surgery.compare(masked, compact, keep, z, labels, tolerance,
                           rounding_factor,
                           tap_channels=tap_kept_channels(masked, keep))
