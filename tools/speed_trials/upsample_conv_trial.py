"""Serving-graph trial on the generator block's upsampling path.

(a) The 3x3 convolution that follows a 2x nearest upsample, computed at the
    low resolution with 4x the output channels and a depth-to-space (exact:
    each of the four output phases is a 3x3 kernel with summed taps), and the
    1x1 shortcut convolution moved before the upsample (1x1 convolutions
    commute with nearest upsampling). Reference: upsample, then both convs.
(b) Four implementations of the 2x nearest upsample itself.

One process, alternating rounds, batch 64; prints the max difference to the
reference and the median ms of each variant.

  python tools/speed_trials/upsample_conv_trial.py [--rounds 15]
"""

import argparse
import time

import numpy as np
import tensorflow as tf


def up_repeat(x):
    """The model's upsample: tf.repeat along H, then W."""
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


def up_broadcast(x):
    """[B, H, W, C] -> [B, H, 1, W, 1, C] -> broadcast -> [B, 2H, 2W, C]."""
    shape = tf.shape(x)
    b, h, w, c = shape[0], shape[1], shape[2], x.shape[-1]
    y = tf.broadcast_to(tf.reshape(x, [b, h, 1, w, 1, c]),
                        [b, h, 2, w, 2, c])
    return tf.reshape(y, [b, 2 * h, 2 * w, c])


def up_depth_to_space(x):
    return tf.nn.depth_to_space(tf.tile(x, [1, 1, 1, 4]), 2)


def up_resize(x):
    return tf.image.resize(x, [2 * x.shape[1], 2 * x.shape[2]],
                           method="nearest")


def subpixel_kernel(kernel):
    """[3, 3, cin, cout] -> [3, 3, cin, 4 * cout], phase-major channels."""
    def combine(w, axis, phase):
        taps = [tf.gather(w, [i], axis=axis) for i in range(3)]
        zero = tf.zeros_like(taps[0])
        if phase == 0:   # low-res offsets -1: w[0]; 0: w[1] + w[2]
            parts = [taps[0], taps[1] + taps[2], zero]
        else:            # 0: w[0] + w[1]; +1: w[2]
            parts = [zero, taps[0] + taps[1], taps[2]]
        return tf.concat(parts, axis=axis)
    phases = [combine(combine(kernel, 0, a), 1, b)
              for a in (0, 1) for b in (0, 1)]
    stacked = tf.stack(phases, axis=-2)          # [3, 3, cin, 4, cout]
    return tf.reshape(stacked, [3, 3, kernel.shape[2], 4 * kernel.shape[3]])


def phases_to_space(y, cout):
    """[B, H, W, 4 * cout] (phase-major) -> [B, 2H, 2W, cout]."""
    shape = tf.shape(y)
    b, h, w = shape[0], shape[1], shape[2]
    y = tf.transpose(tf.reshape(y, [b, h, w, 2, 2, cout]),
                     [0, 1, 3, 2, 4, 5])
    return tf.reshape(y, [b, 2 * h, 2 * w, cout])


def _time(functions, x, rounds, calls):
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, function in functions.items():
            start = time.perf_counter()
            for _ in range(calls):
                function(x)
            times[name].append((time.perf_counter() - start) / calls * 1e3)
    return {name: float(np.median(v)) for name, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    def conv(t, k):
        return tf.nn.conv2d(t, k, 1, "SAME")

    print("(a) block path: cin hidden cout H | max diff | ms: reference, "
          "broadcast upsample, low-res convs")
    for cin, hidden, cout, size in [(16, 16, 64, 16), (16, 16, 16, 8),
                                    (24, 24, 24, 8), (64, 64, 64, 16),
                                    (64, 64, 64, 8)]:
        x = tf.constant(rng.standard_normal((args.batch, size, size, cin)),
                        tf.float32)
        k1 = tf.constant(rng.standard_normal((3, 3, cin, hidden)) * 0.1,
                         tf.float32)
        ksc = tf.constant(rng.standard_normal((1, 1, cin, cout)) * 0.1,
                          tf.float32)
        ksp = subpixel_kernel(k1)
        variants = {
            "reference": tf.function(lambda t: (conv(up_repeat(t), k1),
                                                conv(up_repeat(t), ksc))),
            "broadcast": tf.function(lambda t: (conv(up_broadcast(t), k1),
                                                conv(up_broadcast(t), ksc))),
            "low_res": tf.function(lambda t: (
                phases_to_space(conv(t, ksp), hidden),
                up_broadcast(conv(t, ksc)))),
        }
        reference = variants["reference"](x)
        low_res = variants["low_res"](x)
        diff = max(float(tf.reduce_max(tf.abs(a - b)))
                   for a, b in zip(reference, low_res))
        ms = _time(variants, x, args.rounds, 5)
        print(cin, hidden, cout, size, f"{diff:.1e}",
              " ".join(f"{n} {v:.2f}" for n, v in ms.items()), flush=True)

    print("(b) upsample alone: C H | ms: repeat, broadcast, depth_to_space, "
          "resize")
    ups = {"repeat": up_repeat, "broadcast": up_broadcast,
           "depth_to_space": up_depth_to_space, "resize": up_resize}
    for channels, size in [(16, 8), (16, 16), (64, 8), (64, 16)]:
        x = tf.constant(rng.standard_normal((args.batch, size, size,
                                             channels)), tf.float32)
        compiled = {n: tf.function(f) for n, f in ups.items()}
        reference = up_repeat(x)
        assert all(float(tf.reduce_max(tf.abs(f(x) - reference))) == 0.0
                   for f in compiled.values())
        ms = _time(compiled, x, args.rounds, 20)
        print(channels, size, " ".join(f"{n} {v:.3f}"
                                       for n, v in ms.items()), flush=True)


if __name__ == "__main__":
    main()
