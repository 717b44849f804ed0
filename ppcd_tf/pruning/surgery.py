"""Surgery: the compact generator that a hard-masked student defines.

`build_compact(generator, keep)` builds an ordinary `Generator` from the kept
widths (`budget.kept_channel_config`) and copies, by stable layer name and
with a shape check on every tensor, the surviving slices of each weight:
conv filters and input slices, conditional-BN gain/bias linear columns, BN
moving statistics, self-attention convs, the first linear's units, the output
BN and the output conv's inputs, and the spectral-norm `u` vectors of each.

Why this is exact: in the masked student (`Generator.call(keep=...)`) removed
channels' weights are zeroed before each spectral norm, and zero rows/columns
change neither a matrix's singular values nor the power iteration on the
kept part; so the compact network's own spectral norms compute the same
sigmas (up to float summation order). `compare` checks it.

"Equal" means within float32 rounding: the two networks sum the same terms
in other orders, so they differ by a few units in the last place of the
largest activation they carry. A trained generator's streams can reach
magnitudes of ~10^3, where one ulp is ~10^-4, so the check allows
`rounding_factor` x float32 epsilon x that magnitude when this exceeds the
absolute tolerance (`allowed_difference`); a surgery error (a wrong channel,
a missed slice) moves images by 10^-1 or more and is still refused.
"""

import collections

import numpy as np
import tensorflow as tf

from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks


class SurgeryError(ValueError):
    """A weight whose shape does not fit the channel config."""


def kept_index(keep):
    """The positions of the True entries of a bool [C] keep vector."""
    return np.flatnonzero(np.asarray(keep, bool))


def assign_slice(target, value, what):
    """Assigns `value` to the compact weight `target`, refusing another
    shape (SurgeryError naming `what`)."""
    value = np.asarray(value)
    if tuple(target.shape) != value.shape:
        raise SurgeryError(f"{what}: compact weight {target.path} has shape "
                           f"{tuple(target.shape)}, the kept slice has "
                           f"{value.shape}.")
    target.assign(value)


def copy_sn(source, target, in_index, out_index, what):
    """Copies an SNDense/SNConv2D: kernel [..., in, out], bias, u [1, out]."""
    kernel = source.kernel.numpy()
    if in_index is not None:
        kernel = np.take(kernel, in_index, axis=-2)
    if out_index is not None:
        kernel = np.take(kernel, out_index, axis=-1)
    assign_slice(target.kernel, kernel, f"{what}/kernel")
    out = slice(None) if out_index is None else out_index
    if source.bias is not None:
        assign_slice(target.bias, source.bias.numpy()[out], f"{what}/bias")
    assign_slice(target.sn_u, source.sn_u.numpy()[:, out], f"{what}/sn_u")


def copy_bn(source, target, index, what):
    """Copies a BatchNormalization's per-channel weights (gamma, beta, stats)."""
    for s, t in zip(source.weights, target.weights):
        assign_slice(t, s.numpy()[index], f"{what}/{s.name}")


def copy_cbn(source, target, index, what):
    """Copies a ConditionalBatchNorm's channels `index`: BN statistics and
    the gain / bias linears' columns."""
    copy_bn(source.bn, target.bn, index, f"{what}/bn")
    copy_sn(source.gain, target.gain, None, index, f"{what}/gain")
    copy_sn(source.bias, target.bias, None, index, f"{what}/bias")


def kept_indices(generator, keep, widths=None):
    """{mask key: int index array}; missing keys keep every channel.
    `widths`: {mask key: full width} (default: a BigGAN generator's); a
    wrong shape or an empty mask raises SurgeryError."""
    if widths is None:
        widths = channel_masks.mask_widths(generator.channels,
                                           prune_attention=True)
    indices = {}
    for key, width in widths.items():
        if key in keep:
            mask = np.asarray(keep[key], bool)
            if mask.shape != (width,):
                raise SurgeryError(f"Mask {key!r} has shape {mask.shape}, "
                                   f"the generator's width is {width}.")
            if not mask.any():
                raise SurgeryError(f"Mask {key!r} removes every channel.")
            indices[key] = kept_index(mask)
        else:
            indices[key] = np.arange(width)
    return indices


def build_compact(generator, keep, name="generator"):
    """The compact Generator holding the kept slices of `generator`.

    Args:
      generator: a built (masked) Generator, e.g. the student's EMA copy.
      keep: {mask key: bool [width]} hard masks (missing keys: keep all).
      name: name of the new model.

    Returns:
      A built Generator whose ChannelConfig holds the kept widths.
    """
    idx = kept_indices(generator, keep)
    counts = {key: len(i) for key, i in idx.items()}
    channels = budget_lib.kept_channel_config(generator.channels, counts)
    config = dict(generator.get_config(), channels=channels.to_dict(),
                  name=name)
    compact = generator_lib.Generator.from_config(config)
    compact.build()
    stream = [idx[generator_lib.stream_mask_name(i)]
              for i in range(generator.channels.num_blocks + 1)]

    assign_slice(compact.shared.embeddings, generator.shared.embeddings.numpy(),
            "shared")
    # First linear: unit u of the [bw, bw, C] map is channel u % C.
    bw2 = generator.channels.bottom_width ** 2
    c0 = generator.channels.stream[0]
    units = (np.arange(bw2)[:, None] * c0 + stream[0][None, :]).reshape(-1)
    copy_sn(generator.linear, compact.linear, None, units, "linear")
    for i, (src, dst) in enumerate(zip(generator.blocks, compact.blocks),
                                   start=1):
        hidden = idx[generator_lib.hidden_mask_name(i)]
        what = f"block{i}"
        copy_cbn(src.bn1, dst.bn1, stream[i - 1], f"{what}/bn1")
        copy_sn(src.conv1, dst.conv1, stream[i - 1], hidden,
                 f"{what}/conv1")
        copy_cbn(src.bn2, dst.bn2, hidden, f"{what}/bn2")
        copy_sn(src.conv2, dst.conv2, hidden, stream[i], f"{what}/conv2")
        if src.conv_sc is not None:
            copy_sn(src.conv_sc, dst.conv_sc, stream[i - 1], stream[i],
                     f"{what}/conv_sc")
        if i in generator.attentions:
            qk_name, value_name = generator_lib.attention_mask_names(i)
            qk, value = idx[qk_name], idx[value_name]
            a_src, a_dst = generator.attentions[i], compact.attentions[i]
            what = f"attention{i}"
            copy_sn(a_src.theta, a_dst.theta, stream[i], qk, f"{what}/theta")
            copy_sn(a_src.phi, a_dst.phi, stream[i], qk, f"{what}/phi")
            copy_sn(a_src.g, a_dst.g, stream[i], value, f"{what}/g")
            copy_sn(a_src.o, a_dst.o, value, stream[i], f"{what}/o")
            assign_slice(a_dst.gamma, a_src.gamma.numpy(), f"{what}/gamma")
    copy_bn(generator.output_bn, compact.output_bn, stream[-1], "output_bn")
    copy_sn(generator.output_conv, compact.output_conv, stream[-1], None,
             "output_conv")
    return compact


def masks_from_keep(keep):
    """{key: float32 0/1 tensor} for `Generator.call(masks=, keep=)`."""
    return {key: tf.constant(np.asarray(k, np.float32))
            for key, k in keep.items()}


# float32 machine epsilon (2^-23).
FLOAT32_EPSILON = float(np.finfo(np.float32).eps)
# Ulps of the largest activation two float32 networks that sum the same
# terms in other orders may differ by (measured: ~5 on a student whose
# streams reach ~2,000; ~40 on the images of an 8x student whose largest
# activation was 42.3, 2026-12-06, which the earlier 16 refused at its cut).
# A surgery error moves activations by a sizeable fraction of their scale,
# millions of ulps.
DEFAULT_ROUNDING_FACTOR = 128.0

Comparison = collections.namedtuple(
    "Comparison", ["worst", "first", "allowed", "activation_scale"])


def allowed_difference(tolerance, activation_scale,
                       rounding_factor=DEFAULT_ROUNDING_FACTOR):
    """The larger of `tolerance` and float32 rounding at `activation_scale`
    (`rounding_factor` ulps of it)."""
    return max(float(tolerance), float(rounding_factor) * FLOAT32_EPSILON
               * float(activation_scale))


def compare(masked, compact, keep, z, labels, tolerance,
            rounding_factor=DEFAULT_ROUNDING_FACTOR, tap_channels=None):
    """Comparison(worst, first, allowed, activation_scale) of the compact
    and the hard-masked generator on (z [B, dim_z], labels [B]).

    worst: max |images_compact - images_masked|; activation_scale: the
    largest |activation| of the masked network's feature taps (block and
    attention outputs, kept channels); allowed: `allowed_difference` of
    `tolerance` at that scale; first: (tap name, max abs diff) of the first
    tap differing by more than its own allowance, or None.
    `tap_channels` ({tap name: kept channel indices}; default: a BigGAN
    generator's, `tap_kept_channels`) says which channels of each masked
    tap the compact one holds.
    """
    masks = masks_from_keep(keep)
    images_m, feats_m = masked(z, labels, training=False, masks=masks,
                               keep=masks, return_features=True)
    images_c, feats_c = compact(z, labels, training=False,
                                return_features=True)
    worst = float(tf.reduce_max(tf.abs(images_m - images_c)))
    if tap_channels is None:
        tap_channels = tap_kept_channels(masked, keep)
    first, scale = None, 0.0
    for name in feats_m:  # insertion order: the network's order
        reference = tf.gather(feats_m[name], tap_channels[name], axis=-1)
        tap_scale = float(tf.reduce_max(tf.abs(reference)))
        scale = max(scale, tap_scale)
        diff = float(tf.reduce_max(tf.abs(reference - feats_c[name])))
        if (diff > allowed_difference(tolerance, tap_scale, rounding_factor)
                and first is None):
            first = (name, diff)
    return Comparison(worst, first,
                      allowed_difference(tolerance, scale, rounding_factor),
                      scale)


def tap_kept_channels(generator, keep):
    """{feature tap ('block{i}', 'attention{i}'): kept stream channels} of
    a BigGAN generator under `keep`."""
    idx = kept_indices(generator, keep)
    taps = {}
    for i in range(1, generator.channels.num_blocks + 1):
        kept = idx[generator_lib.stream_mask_name(i)]
        taps[f"block{i}"] = kept
        taps[f"attention{i}"] = kept
    return taps


def activation_scale(generator, z, labels):
    """The largest |activation| of `generator`'s feature taps on (z,
    labels), inference mode."""
    _, features = generator(z, labels, training=False, return_features=True)
    return max(float(tf.reduce_max(tf.abs(f))) for f in features.values())


def max_abs_difference(masked, compact, keep, z, labels, tolerance=0.0):
    """(max |compact - masked|, first layer differing by more than tolerance).

    `compare` with an absolute tolerance only (no rounding allowance): the
    largest image difference and, for diagnosis, (name, difference) of the
    first feature tap (block / attention output, on kept stream channels)
    whose difference exceeds `tolerance`, or None.
    """
    result = compare(masked, compact, keep, z, labels, tolerance,
                     rounding_factor=0.0)
    return result.worst, result.first
