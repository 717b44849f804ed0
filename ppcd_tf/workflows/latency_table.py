"""Measures a generator's per-layer latency table on this machine.

For every term of `ppcd_tf.models.latency.term_names` the computation that
serving runs (convolutions, conditional BatchNorm in inference form,
upsampling, attention) is built alone with random inputs at the term's
resolution and the chosen batch size, compiled as a `tf.function`, and
timed on a grid of kept widths: the median over `repeats` samples, each the
mean of `calls` calls, minus the measured cost of calling an empty
`tf.function` (the full generator pays it once, not once per term). The
full generator is measured the same way; what it costs beyond the sum of
its terms becomes the table's offset (never negative: on this CPU the terms
measured alone sum to more than the full generator at full width, ~14 %,
but predict thinner generators within a few per cent without an offset,
while a negative offset would shift every prediction down by the same
seconds). `check_prediction` measures compact
generators of other widths and compares them with the table's prediction.
"""

import dataclasses
import platform

import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.models import latency
from ppcd_tf.models import layers
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.workflows import benchmark

# BatchNorm epsilon of the inference-form normalisation (value irrelevant
# to timing; BigGAN's).
_BN_EPSILON = 1e-5


def width_grid(width, step, min_width):
    """Widths measured for an axis of full `width`: multiples of `step`,
    `min_width` (the usual floor) and the full width."""
    grid = set(range(step, width + 1, step)) | {width}
    if min_width < width:
        grid.add(min_width)
    return tuple(sorted(w for w in grid if w >= 1))


def _normal(shape, seed):
    return tf.random.stateless_normal(shape, (seed, 7))


# GBlock's upsampling, so the terms time what the generator runs.
upsample2x = layers.upsample2x


class _TermBuilder:
    """Builds (fn, inputs) of one term at given widths."""

    def __init__(self, generator, batch_size):
        channels = generator.channels
        self.batch = int(batch_size)
        self.bottom = channels.bottom_width
        self.cond = generator.shared_dim + (generator.z_chunk_size
                                            if generator.hierarchical else 0)
        self.z_width = (generator.z_chunk_size if generator.hierarchical
                        else generator.dim_z)
        self.image_channels = generator.image_channels
        self.num_blocks = channels.num_blocks

    def _cbn_relu(self, width, seed):
        """Conditional BN in inference form + ReLU on [B, H, W, width]."""
        scale = _normal((width,), seed)
        shift = _normal((width,), seed + 1)
        w_gain = _normal((self.cond, width), seed + 2)
        w_bias = _normal((self.cond, width), seed + 3)

        def fn(x, y):
            normalized = x * scale + shift
            gain = 1.0 + tf.matmul(y, w_gain)
            bias = tf.matmul(y, w_bias)
            return tf.nn.relu(normalized * gain[:, None, None, :]
                              + bias[:, None, None, :])
        return fn

    def build(self, name, widths):
        """(python fn of tensors, list of input tensors) of term `name`."""
        b = self.batch
        if name == "linear":
            (s0,) = widths
            kernel = _normal((self.z_width, self.bottom ** 2 * s0), 1)
            bias = _normal((self.bottom ** 2 * s0,), 2)

            def fn(z):
                return tf.reshape(tf.matmul(z, kernel) + bias,
                                  (-1, self.bottom, self.bottom, s0))
            return fn, [_normal((b, self.z_width), 3)]
        if name == "output":
            (c,) = widths
            size = self.bottom * 2 ** self.num_blocks
            scale, shift = _normal((c,), 4), _normal((c,), 5)
            kernel = _normal((3, 3, c, self.image_channels), 6)
            bias = _normal((self.image_channels,), 7)

            def fn(x):
                h = tf.nn.relu(x * scale + shift)
                conv = (layers.conv_one_output(h, kernel)
                        if self.image_channels == 1
                        else tf.nn.conv2d(h, kernel, 1, "SAME"))
                return tf.tanh(tf.nn.bias_add(conv, bias))
            return fn, [_normal((b, size, size, c), 8)]
        kind, part = name.split(".")
        index = int(kind.replace("block", "").replace("attention", ""))
        size = self.bottom * 2 ** index  # the block's output resolution
        if kind.startswith("block"):
            return self._block_term(part, widths, size)
        return self._attention_term(part, widths, size)

    def _block_term(self, part, widths, size):
        b = self.batch
        y = _normal((b, self.cond), 9)
        if part == "pre":
            (cin,) = widths
            cbn = self._cbn_relu(cin, 10)

            def fn(x, y):
                return upsample2x(cbn(x, y))
            return fn, [_normal((b, size // 2, size // 2, cin), 11), y]
        if part == "mid":
            (hid,) = widths
            cbn = self._cbn_relu(hid, 12)
            return cbn, [_normal((b, size, size, hid), 13), y]
        cin, cout = widths
        kernel_size = 1 if part == "shortcut" else 3
        kernel = _normal((kernel_size, kernel_size, cin, cout), 14)
        bias = _normal((cout,), 15)
        if part == "shortcut":
            # As GBlock: the 1x1 conv on the block's input grid, then the
            # upsampling, then the residual addition.
            def fn(x, h):
                return h + upsample2x(tf.nn.bias_add(
                    tf.nn.conv2d(x, kernel, 1, "SAME"), bias))
            return fn, [_normal((b, size // 2, size // 2, cin), 16),
                        _normal((b, size, size, cout), 17)]

        def conv(x):
            return tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias)
        return conv, [_normal((b, size, size, cin), 18)]

    def _attention_term(self, part, widths, size):
        b = self.batch
        pixels = size * size
        pooled = pixels // 4
        if part == "qk":
            c, qk = widths
            theta_k = _normal((1, 1, c, qk), 20)
            phi_k = _normal((1, 1, c, qk), 21)

            def fn(x):
                theta = tf.nn.conv2d(x, theta_k, 1, "SAME")
                phi = tf.nn.max_pool2d(tf.nn.conv2d(x, phi_k, 1, "SAME"),
                                       2, 2, "VALID")
                return (tf.reshape(theta, (b, -1, qk)),
                        tf.reshape(phi, (b, -1, qk)))
            return fn, [_normal((b, size, size, c), 22)]
        if part == "value":
            c, value = widths
            g_k = _normal((1, 1, c, value), 23)
            o_k = _normal((1, 1, value, c), 24)

            def fn(x, attended):
                g = tf.nn.max_pool2d(tf.nn.conv2d(x, g_k, 1, "SAME"), 2, 2,
                                     "VALID")
                out = tf.nn.conv2d(attended, o_k, 1, "SAME")
                return tf.reshape(g, (b, -1, value)), x + 0.5 * out
            return fn, [_normal((b, size, size, c), 25),
                        _normal((b, size, size, value), 26)]
        if part == "scores":
            (qk,) = widths

            def fn(theta, phi):
                return tf.nn.softmax(tf.matmul(theta, phi, transpose_b=True),
                                     axis=-1)
            return fn, [_normal((b, pixels, qk), 27),
                        _normal((b, pooled, qk), 28)]
        (value,) = widths

        def fn(beta, g):
            return tf.reshape(tf.matmul(beta, g), (b, size, size, value))
        return fn, [tf.nn.softmax(_normal((b, pixels, pooled), 29)),
                    _normal((b, pooled, value), 30)]


def _seconds(fn, inputs, repeats, calls, warmup=2):
    """Median seconds of one call of tf.function(fn)(*inputs)."""
    compiled = tf.function(fn)

    def run():
        for _ in range(calls):
            result = compiled(*inputs)
        tf.nest.map_structure(lambda t: t.numpy(), result)

    seconds, _ = benchmark.median_seconds(run, repeats, warmup)
    return seconds / calls


def call_overhead(repeats=5, calls=20):
    """Seconds of calling an empty compiled function (subtracted from every
    term: serving pays it once for the whole generator)."""
    x = tf.zeros((1,))
    return _seconds(tf.identity, [x], repeats, calls)


def measure_generator(generator, batch_size, repeats, calls=3):
    """Seconds per batch of a generator's inference (tf.function)."""
    z = tf.random.stateless_normal((batch_size, generator.dim_z), (0, 1))
    labels = tf.random.stateless_uniform((batch_size,), (0, 2), 0,
                                         generator.num_classes, tf.int32)
    return _seconds(lambda z, y: generator(z, y, training=False),
                    [z, labels], repeats, calls)


def measure_table(generator, batch_size=64, grid_step=8, min_width=4,
                  repeats=5, calls=3):
    """A `latency.LatencyTable` of `generator` (full widths) measured here.

    Args:
      generator: a built Generator (its weights do not matter).
      batch_size: the serving batch the table is for.
      grid_step, min_width: the widths measured per axis (`width_grid`).
      repeats, calls: timing samples per point and calls per sample.
    """
    channels = generator.channels
    builder = _TermBuilder(generator, batch_size)
    all_widths = dict(channel_masks.mask_widths(channels,
                                                prune_attention=True))
    overhead = call_overhead()
    terms = []
    names = latency.term_names(channels)
    for number, (name, axes) in enumerate(names, 1):
        grid = tuple(width_grid(all_widths[axis], grid_step, min_width)
                     for axis in axes)
        values = np.zeros([len(g) for g in grid])
        for index in np.ndindex(*values.shape):
            widths = [grid[a][i] for a, i in enumerate(index)]
            fn, inputs = builder.build(name, widths)
            values[index] = max(
                0.0, _seconds(fn, inputs, repeats, calls) - overhead)
        terms.append(latency.Term(name, tuple(axes), grid, values.tolist()))
        logging.info("latency table: %d/%d %s (%d points), %.3f ms at full "
                     "width.", number, len(names), name, values.size,
                     1e3 * values[tuple(len(g) - 1 for g in grid)])
    full_seconds = measure_generator(generator, batch_size, repeats)
    table = latency.LatencyTable(
        terms=terms, offset_seconds=0.0, batch_size=int(batch_size),
        generator=latency.generator_record(
            channels, complexity.GeneratorShape.of(generator)),
        measured_full_seconds=full_seconds,
        device=f"{platform.processor() or platform.machine()}, "
               f"{tf.config.threading.get_intra_op_parallelism_threads()} "
               "intra-op threads (0 = all cores)")
    summed = table.predict(all_widths)
    logging.info("latency table: the terms sum to %.2f ms at full width, "
                 "the full generator takes %.2f ms.", 1e3 * summed,
                 1e3 * full_seconds)
    return dataclasses.replace(
        table, offset_seconds=max(0.0, full_seconds - summed))


def compact_generator(generator, counts):
    """A built generator like `generator` with {mask key: kept count}."""
    compact = generator_lib.Generator.from_config(dict(
        generator.get_config(), name="compact",
        channels=budget_lib.kept_channel_config(generator.channels,
                                                counts).to_dict()))
    compact.build()
    return compact


def check_prediction(table, generator, counts_list, repeats=5):
    """[{"counts", "predicted_seconds", "measured_seconds"}] for compact
    generators of each {mask key: kept count} in `counts_list`."""
    all_widths = dict(channel_masks.mask_widths(generator.channels,
                                                prune_attention=True))
    rows = []
    for counts in counts_list:
        compact = compact_generator(generator, counts)
        rows.append({
            "counts": dict(counts),
            "predicted_seconds": float(table.predict(dict(all_widths,
                                                          **counts))),
            "measured_seconds": measure_generator(compact, table.batch_size,
                                                  repeats)})
    return rows
