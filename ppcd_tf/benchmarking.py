"""Throughput measurements (medians over repeated runs after warm-up).

Used by `tools/benchmark.py`. This machine is shared and noisy: every figure
is a median over repeated timings, and comparisons are made side by side in
one process.
"""

import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from ppcd_tf import errors
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


def run_config_paths(teacher_dir, ppcd_dir):
    """The two runs' config.gin; MissingInputError if one is absent."""
    paths = [os.path.join(teacher_dir, "config.gin"),
             os.path.join(ppcd_dir, "config.gin")]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise errors.MissingInputError(
            f"{missing} not found: runs started with python -m ppcd_tf.train "
            "write config.gin into their --model_dir.")
    return paths


def measure_train_steps(teacher_config, ppcd_config, repeats=5,
                        warmup=2, extra_bindings=()):
    """Median seconds per G step of the teacher and of PPCD training, built
    from the runs' config.gin files in fresh temporary run directories and
    timed alternately: the teacher, PPCD in its pruning phase (the masked
    full-width student) and, for runs trained compact after the cut, PPCD
    after it (the compact student at the run's budget). Returns
    {"teacher_seconds_per_step", "ppcd_seconds_per_step", "ratio" (PPCD
    pruning phase / teacher), "ppcd_compact_seconds_per_step",
    "compact_ratio"}."""
    # Deferred: only this measurement builds trainers from run configs.
    import gin
    from ppcd_tf import config as config_lib
    from ppcd_tf import ppcd_trainer
    from ppcd_tf import strategy as strategy_lib
    from ppcd_tf import trainer as trainer_lib

    strategy = strategy_lib.get_strategy("one_device")
    timers = {}
    with tempfile.TemporaryDirectory() as root:
        for name, config, cls, cut in (
                ("teacher", teacher_config, trainer_lib.Trainer, False),
                ("ppcd", ppcd_config, ppcd_trainer.PPCDTrainer, False),
                ("ppcd_compact", ppcd_config, ppcd_trainer.PPCDTrainer,
                 True)):
            gin.clear_config()
            config_lib.parse_run_config(config, extra_bindings)
            trainer = cls(model_dir=os.path.join(root, name),
                          strategy=strategy)
            if cut:
                if not (trainer.masks is not None
                        and trainer.train_compact_after_cut):
                    continue
                # The step after the cut: the compact student at the run's
                # budget (the masks cut as at the end of the pruning phase).
                trainer.harden()
                trainer.switch_to_compact(0)
            iterator = trainer.make_iterator(0)
            # Warm-up traces the step while this config is the parsed one.
            median_seconds(
                lambda t=trainer, i=iterator: t.run_steps(i, 1), 1, warmup)
            timers[name] = (trainer, iterator)
        gin.clear_config()
        times = {name: [] for name in timers}
        for _ in range(repeats):
            for name, (trainer, iterator) in timers.items():
                start = time.perf_counter()
                trainer.run_steps(iterator, 1)
                times[name].append(time.perf_counter() - start)
    teacher = float(np.median(times["teacher"]))
    ppcd = float(np.median(times["ppcd"]))
    result = {"teacher_seconds_per_step": teacher,
              "ppcd_seconds_per_step": ppcd, "ratio": ppcd / teacher,
              "repeats": repeats, "step_times": times}
    if "ppcd_compact" in times:
        compact = float(np.median(times["ppcd_compact"]))
        result.update(ppcd_compact_seconds_per_step=compact,
                      compact_ratio=compact / teacher)
    return result


def generation_sweep(teacher_export, student_export, batch_sizes,
                     repeats=10, warmup=3):
    """Teacher vs student exported SavedModels at each batch size, timed
    alternately in one process (`reporting.measure_generation`).

    Returns one row per batch: {"batch_size", "teacher_images_per_sec",
    "student_images_per_sec", "speedup", "mac_ratio" (teacher / student
    MACs per image), "fraction_of_mac_limit" (speedup / mac_ratio),
    "teacher_gmacs_per_sec", "student_gmacs_per_sec",
    "teacher_seconds_per_batch", "student_seconds_per_batch"}.
    """
    from ppcd_tf import reporting  # Deferred: it imports the evaluators.

    macs = {name: reporting.saved_model_facts(path)["macs"]
            for name, path in (("teacher", teacher_export),
                               ("student", student_export))}
    rows = []
    for batch_size in batch_sizes:
        speed = reporting.measure_generation(
            [teacher_export, student_export], batch_size, repeats, warmup)
        row = {"batch_size": int(batch_size)}
        for name, path in (("teacher", teacher_export),
                           ("student", student_export)):
            row[f"{name}_images_per_sec"] = speed[path]["images_per_sec"]
            row[f"{name}_seconds_per_batch"] = speed[path][
                "seconds_per_batch"]
            row[f"{name}_gmacs_per_sec"] = (
                speed[path]["images_per_sec"] * macs[name] / 1e9)
        row["speedup"] = (row["student_images_per_sec"]
                          / row["teacher_images_per_sec"])
        row["mac_ratio"] = macs["teacher"] / macs["student"]
        row["fraction_of_mac_limit"] = row["speedup"] / row["mac_ratio"]
        rows.append(row)
    return rows


def sweep_markdown(rows):
    """The sweep as a markdown table."""
    lines = ["| batch | teacher images/s | student images/s | speed-up | "
             "MAC ratio | fraction of MAC limit | teacher GMAC/s | "
             "student GMAC/s | teacher ms/batch | student ms/batch |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['batch_size']} | {r['teacher_images_per_sec']:,.0f} | "
            f"{r['student_images_per_sec']:,.0f} | {r['speedup']:.2f}x | "
            f"{r['mac_ratio']:.2f}x | {r['fraction_of_mac_limit']:.2f} | "
            f"{r['teacher_gmacs_per_sec']:.1f} | "
            f"{r['student_gmacs_per_sec']:.1f} | "
            f"{1e3 * r['teacher_seconds_per_batch']:.2f} | "
            f"{1e3 * r['student_seconds_per_batch']:.2f} |")
    return "\n".join(lines)
