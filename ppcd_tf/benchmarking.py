"""Throughput measurements (medians over repeated runs after warm-up).

Used by `tools/benchmark.py`. This machine is shared and noisy: every figure
is a median over repeated timings, and comparisons are made side by side in
one process.
"""

import time

import numpy as np
import tensorflow as tf

from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib


def median_seconds(fn, repeats, warmup):
    """Median wall time of fn() over `repeats` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def measure_training(trainer, repeats=10, warmup=3):
    """Seconds per G step of a built Trainer (one compiled step per call)."""
    iterator = trainer.make_iterator(int(trainer.step.numpy()))
    seconds, times = median_seconds(
        lambda: trainer.run_steps(iterator, 1), repeats, warmup)
    images = trainer.global_batch_size * trainer.d_steps
    return {
        "seconds_per_step": seconds,
        "steps_per_sec": 1.0 / seconds,
        "images_per_sec": images / seconds,
        "global_batch_size": trainer.global_batch_size,
        "d_steps_per_g_step": trainer.d_steps,
        "step_times": times,
    }


def measure_generation(generator, batch_size=64, repeats=10, warmup=3,
                       seed=0):
    """Inference throughput of a generator at a fixed batch (tf.function)."""
    z = tf.random.stateless_normal((batch_size, generator.dim_z), (seed, 1))
    labels = tf.random.stateless_uniform((batch_size,), (seed, 2), 0,
                                         generator.num_classes, tf.int32)
    fn = tf.function(lambda z, y: generator(z, y, training=False))
    seconds, times = median_seconds(lambda: fn(z, labels).numpy(), repeats,
                                    warmup)
    macs = complexity.generator_macs(generator.channels,
                                     complexity.GeneratorShape.of(generator))
    return {
        "batch_size": batch_size,
        "seconds_per_batch": seconds,
        "images_per_sec": batch_size / seconds,
        "macs_per_image": macs,
        "gmacs_per_sec": batch_size * macs / seconds / 1e9,
        "params": generator_lib.count_trainable_parameters(generator),
        "batch_times": times,
    }
