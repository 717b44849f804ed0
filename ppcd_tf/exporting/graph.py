"""The inference-time graph: what can be precomputed before serving, is.

`prepare(generator, fold_batch_norm)` turns a built generator (in place; use
it on the copy that is exported) into its serving form:

  * spectral norms frozen: every SN kernel is replaced by kernel / sigma
    (sigma from the stored power-iteration vector, as the trained network
    computes it at inference) and used as it is, so no power iteration or
    sigma runs at serving time;
  * BatchNorm standing statistics folded into the preceding convolution
    where that is exact: each block's bn2 (its input is conv1's output
    alone) into conv1, and the output BatchNorm (scale and shift included)
    into the last block's conv2 and shortcut conv when no self-attention
    follows the last block (its input is then their sum alone). The bn1 of
    each block and the output BN after an attention layer read a stream that
    also feeds a shortcut or the attention itself, so they stay;
  * the standing statistics of each block's bn1 merged into its
    class-conditional gain and bias (`merge_batch_norm_statistics`):
    ((x - mean) * s) * g + b = x * (s g) + (b - mean s g), per sample and
    channel, so normalisation and conditioning are one pass over x.

`check(reference, prepared)` measures max |prepared - reference| on a batch;
the exporter refuses a prepared graph that differs by more than its tolerance.
"""

import tensorflow as tf

from ppcd_tf.models import layers as layers_lib

VERIFY_BATCH = 16


def _standing_scale(bn):
    """(1 / sqrt(var + eps), mean) of a Keras BatchNormalization [C]."""
    inverse = tf.math.rsqrt(tf.cast(bn.moving_variance, tf.float32)
                            + bn.epsilon)
    return inverse, tf.cast(bn.moving_mean, tf.float32)


def _scale_conv(conv, scale, shift):
    """conv(x) -> scale * conv(x) + shift, per output channel (in place)."""
    conv.kernel.assign(tf.cast(conv.kernel, tf.float32) * scale)
    conv.bias.assign(tf.cast(conv.bias, tf.float32) * scale + shift)


def fold_batch_norms(generator):
    """Folds the BatchNorms that follow a convolution alone (see the module
    docstring). Needs frozen spectral norms. Returns the names folded."""
    if not all(layer.serving_frozen
               for layer in layers_lib.spectral_norm_layers(generator)):
        raise ValueError("Freeze the spectral norms before folding "
                         "BatchNorms (the folded scale goes into the "
                         "normalised kernel).")
    folded = []
    for block in generator.blocks:
        if block.bn2.normalization_folded:
            continue
        inverse, mean = _standing_scale(block.bn2.bn)
        _scale_conv(block.conv1, inverse, -mean * inverse)
        block.bn2.normalization_folded = True
        folded.append(f"{block.name}.bn2")
    last = generator.channels.num_blocks
    block = generator.blocks[-1]
    if (last not in generator.attentions and block.conv_sc is not None
            and not generator.output_bn_folded):
        bn = generator.output_bn
        inverse, mean = _standing_scale(bn)
        gamma = tf.cast(bn.gamma, tf.float32) if bn.scale else 1.0
        beta = tf.cast(bn.beta, tf.float32) if bn.center else 0.0
        scale = gamma * inverse
        _scale_conv(block.conv2, scale, beta - mean * scale)
        _scale_conv(block.conv_sc, scale, 0.0)
        generator.output_bn_folded = True
        folded.append("output_bn")
    return folded


def merge_batch_norm_statistics(generator):
    """Merges the standing statistics of every block's bn1 (not foldable
    into a convolution) into its conditional gain and bias. Returns the
    names merged."""
    merged = []
    for block in generator.blocks:
        cbn = block.bn1
        if cbn.normalization_folded or cbn.merged_statistics is not None:
            continue
        inverse, mean = _standing_scale(cbn.bn)
        # numpy, so each traced graph holds them as constants (a captured
        # tensor would be an extra input to the ONNX converter).
        cbn.merged_statistics = (inverse.numpy(), (-mean * inverse).numpy())
        merged.append(f"{block.name}.bn1")
    return merged


def prepare(generator, fold_batch_norm=True):
    """The serving form of `generator` (in place). Returns a record:
    {"spectral_norms_frozen": n, "batch_norms_folded": [names],
    "batch_norm_statistics_merged": [names]}."""
    record = {"spectral_norms_frozen":
              layers_lib.freeze_spectral_norms(generator),
              "batch_norms_folded": [], "batch_norm_statistics_merged": []}
    # BatchNorm folding knows BigGAN's blocks (bn2 after conv1, the output
    # BN after the last block); BigGAN-deep's are served unfolded.
    if fold_batch_norm and hasattr(generator, "channels"):
        record["batch_norms_folded"] = fold_batch_norms(generator)
        record["batch_norm_statistics_merged"] = (
            merge_batch_norm_statistics(generator))
    return record


def reference_batch(generator, batch=VERIFY_BATCH, seed=0):
    """(z, labels) of the equality check."""
    z = tf.random.stateless_normal((batch, generator.dim_z), (seed, 3))
    labels = tf.range(batch, dtype=tf.int32) % generator.num_classes
    return z, labels


def max_difference(reference_images, prepared, z, labels, **options):
    """max |prepared(z, labels) - reference_images| (inference mode;
    `options`: further call arguments such as a truncation)."""
    images = prepared(z, labels, training=False, **options)
    return float(tf.reduce_max(tf.abs(images - reference_images)))
