"""Throughput measurements (medians over repeated runs after warm-up).

Used by `tools/benchmark.py`. This machine is shared and noisy: every figure
is a median over repeated timings, and comparisons are made side by side in
one process.
"""

import os
import re
import tempfile
import time

import numpy as np
import tensorflow as tf

from ppcd_tf import config as config_lib
from ppcd_tf import errors
from ppcd_tf.models import builders
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import architectures
from ppcd_tf.runs import run_dir

TEACHER_STAGE = "stage/teacher.gin"
PPCD_STAGE = "stage/ppcd.gin"


# The fields of measure_train_steps' result that its readers (the report)
# use, checked when it is read back from a file (files.check_fields).
TRAIN_STEPS_SCHEMA = {
    "teacher_seconds_per_step": float, "ppcd_seconds_per_step": float,
    "ratio": float, "repeats": int,
    "ppcd_compact_seconds_per_step?": float, "compact_ratio?": float,
}


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
    images = trainer.steps.global_batch_size * trainer.steps.d_steps
    return {
        "seconds_per_step": seconds,
        "steps_per_sec": 1.0 / seconds,
        "images_per_sec": images / seconds,
        "global_batch_size": trainer.steps.global_batch_size,
        "d_steps_per_g_step": trainer.steps.d_steps,
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
    macs = architectures.of(generator).macs(generator)
    return {
        "batch_size": batch_size,
        "seconds_per_batch": seconds,
        "images_per_sec": batch_size / seconds,
        "macs_per_image": macs,
        "gmacs_per_sec": batch_size * macs / seconds / 1e9,
        "params": generator_lib.count_trainable_parameters(generator),
        "batch_times": times,
    }


def _data_gin_file(dataset_name):
    """The package's data gin file of a dataset (by `ImageDataset.name`)."""
    pattern = re.compile(r"^ImageDataset\.name\s*=\s*['\"]([^'\"]+)['\"]",
                         re.MULTILINE)
    directory = os.path.join(config_lib.DEFAULT_GIN_SEARCH_PATH, "data")
    for name in sorted(os.listdir(directory)):
        with open(os.path.join(directory, name)) as f:
            match = pattern.search(f.read())
        if match and match.group(1) == dataset_name:
            return f"data/{name}"
    raise errors.BadInputError(
        f"No data gin file under {directory} trains on {dataset_name!r} (the "
        "teacher's models.json): give one with --gin_file.")


def train_step_gin_files(teacher_dir):
    """The tool's own gin files for timing a teacher's training steps: the
    package's data file of the teacher's dataset (models.json) and
    stage/teacher.gin; stage/ppcd.gin is added for the PPCD steps."""
    dataset = run_dir.read_model_configs(teacher_dir).get("dataset") or {}
    if "name" not in dataset:
        raise errors.BadInputError(
            f"{teacher_dir}'s models.json names no dataset: give the data gin "
            "file with --gin_file.")
    return [_data_gin_file(dataset["name"]), TEACHER_STAGE]


def _models_from_json(configs):
    """{"generator_fn", "discriminator_fn"}: factories of the run's G and D
    as models.json describes them (BigGAN or BigGAN-deep); a run without a
    D (an imported generator) leaves the D to the parsed configuration."""
    def generator_fn(**unused_kwargs):
        return builders.generator_from_config(
            dict(configs["generator"], name="generator"))

    def discriminator_fn(**unused_kwargs):
        return builders.discriminator_from_config(
            dict(configs["discriminator"], name="discriminator"))
    factories = {"generator_fn": generator_fn}
    if configs.get("discriminator") is not None:
        factories["discriminator_fn"] = discriminator_fn
    return factories


def _cut_like_the_run(trainer, structure):
    """Hardens the timing trainer's masks as the PPCD run was cut (its
    pruning.json kept indices) or, before the run's cut, to the budget of
    the parsed configuration; then switches to the compact student."""
    kept = (structure or {}).get("kept_indices")
    if kept:
        keep = {}
        for key, variable in trainer.pruning.masks.logits.items():
            keep[key] = np.zeros(variable.shape, bool)
            keep[key][np.asarray(kept.get(key, range(keep[key].size)),
                                 int)] = True
        trainer.pruning.set_hard_masks(keep)
    else:
        trainer.pruning.harden()
    trainer.compact.switch_to_compact(0)
    # The timed steps lie after the cut: the D schedule of the recipe
    # (CompactPhase.discriminator_interval) applies from step 0.
    trainer.steps.set_discriminator_schedule(
        0, trainer.compact.discriminator_interval)


def measure_train_steps(teacher_dir, ppcd_dir, gin_files=None, gin_params=(),
                        repeats=5, warmup=2, parts=False,
                        extra_gin_files=()):
    """Median seconds per G step of the teacher and of PPCD training, timed
    alternately in fresh temporary run directories: the teacher, PPCD in its
    pruning phase (the masked full-width student) and, when the recipe
    trains the compact student after the cut, PPCD after it (the compact
    student, cut as `ppcd_dir`'s pruning.json records, else to the budget).
    With `parts`, the pieces of the compact step (`step_parts`) are timed in
    the same rounds.

    No file of either run is parsed by gin (a downloaded run could make gin
    run code): the models come from the teacher's models.json, the cut from
    the PPCD run's pruning.json, and the recipe from the package's own gin
    files (`gin_files`, default `train_step_gin_files`) and `gin_params`,
    which should carry the run's bindings that change a step's cost (batch
    size, distillation terms). `extra_gin_files` (the run's experiment
    files, e.g. the demo's `--gin_file`) are read after the stage file of
    every timed recipe, as the run read them.

    Returns {"teacher_seconds_per_step", "ppcd_seconds_per_step", "ratio"
    (PPCD pruning phase / teacher), "ppcd_compact_seconds_per_step",
    "compact_ratio", "ppcd_compact_channels" (the timed compact student's
    ChannelConfig dict), "gin_files", "extra_gin_files", "gin_params",
    "repeats",
    "step_times"}; with `parts` also "compact_parts" ({part: median
    seconds}).
    """
    # Deferred: only this measurement parses configurations and builds
    # trainers; the trainers' modules register the configurables the gin
    # files and bindings name.
    import gin

    from ppcd_tf.training import ppcd_trainer  # noqa: F401
    from ppcd_tf.training import strategy as strategy_lib

    gin_files = list(gin_files or train_step_gin_files(teacher_dir))
    strategy = strategy_lib.get_strategy("one_device")
    timers, compact_channels = {}, None
    with tempfile.TemporaryDirectory() as root:
        for name, stage, cut in (("teacher", [], False),
                                 ("ppcd", [PPCD_STAGE], False),
                                 ("ppcd_compact", [PPCD_STAGE], True)):
            gin.clear_config()
            config_lib.parse_gin(gin_files + stage + list(extra_gin_files),
                                 list(gin_params))
            built = _step_timers(name, os.path.join(root, name), strategy,
                                 teacher_dir, ppcd_dir, cut, parts)
            if built is None:
                continue
            new_timers, channels = built
            compact_channels = channels or compact_channels
            # Warm-up traces each step while its config is the parsed one.
            for timer, _ in new_timers.values():
                median_seconds(timer, 1, warmup)
            timers.update(new_timers)
        gin.clear_config()
        times = {name: [] for name in timers}
        for _ in range(repeats):
            for name, (timer, steps) in timers.items():
                start = time.perf_counter()
                timer()
                times[name].append((time.perf_counter() - start) / steps)
    return _step_results(times, compact_channels, gin_files,
                         extra_gin_files, gin_params, repeats)


def _step_timers(name, model_dir, strategy, teacher_dir, ppcd_dir, cut,
                 parts):
    """({timer name: (callable, G steps per call)}, the compact
    ChannelConfig dict or None) of one trainer of the parsed configuration on `strategy` (the one all the
    timed trainers share); None when the recipe has no compact phase to
    time."""
    # Deferred: only this measurement builds trainers.
    from ppcd_tf.training import ppcd_trainer
    from ppcd_tf.training import trainer as trainer_lib
    from ppcd_tf.workflows import step_parts

    if name == "teacher":
        trainer = trainer_lib.Trainer(
            model_dir=model_dir, strategy=strategy,
            **_models_from_json(run_dir.read_model_configs(teacher_dir)))
    else:
        trainer = ppcd_trainer.PPCDTrainer(
            model_dir=model_dir, strategy=strategy, teacher_dir=teacher_dir)
    channels = None
    if cut:
        if not (trainer.pruning.masks is not None
                and trainer.compact.train_compact_after_cut):
            return None
        _cut_like_the_run(trainer, run_dir.read_pruning_structure(ppcd_dir))
        channels = architectures.of(trainer.generator).widths_config(
            trainer.generator)
    iterator = trainer.make_iterator(0)
    # After the cut with D updated every k-th step, one timing covers k
    # steps (one with D, k - 1 without) and counts as their mean.
    steps = max(1, trainer.steps.d_schedule.interval) if cut else 1
    timers = {name: (lambda: trainer.run_steps(iterator, steps), steps)}
    if cut and parts:
        timers.update({f"part_{part}": (fn, 1) for part, fn in
                       step_parts.compact_step_parts(trainer).items()})
    return timers, channels


def _step_results(times, compact_channels, gin_files, extra_gin_files,
                  gin_params, repeats):
    """measure_train_steps' result of the timings {timer: [seconds]}."""
    teacher = float(np.median(times["teacher"]))
    ppcd = float(np.median(times["ppcd"]))
    result = {"teacher_seconds_per_step": teacher,
              "ppcd_seconds_per_step": ppcd, "ratio": ppcd / teacher,
              "gin_files": gin_files,
              "extra_gin_files": list(extra_gin_files),
              "gin_params": list(gin_params),
              "repeats": repeats, "step_times": times}
    if "ppcd_compact" in times:
        compact = float(np.median(times["ppcd_compact"]))
        result.update(ppcd_compact_seconds_per_step=compact,
                      compact_ratio=compact / teacher,
                      ppcd_compact_channels=compact_channels)
    parts = {name[len("part_"):]: float(np.median(values))
             for name, values in times.items() if name.startswith("part_")}
    if parts:
        result["compact_parts"] = parts
    return result


def generation_sweep(teacher_export, student_export, batch_sizes,
                     repeats=10, warmup=3, reference_export=None,
                     runtimes=("tensorflow",), floor_export=None,
                     threads=None):
    """Teacher vs student exported SavedModels at each batch size and in
    each runtime of `runtimes` ('tensorflow': the SavedModel; 'tflite':
    converted at that batch and run by the TFLite interpreter, see
    `report.measure_generation`), timed alternately in one process, with
    `reference_export` (the teacher thinned uniformly to the student's MACs,
    `workflows.equal_macs`) and `floor_export` (the teacher's architecture
    at a few channels) in the same rounds when given.

    Returns one row per (runtime, batch): {"runtime", "batch_size",
    "teacher_images_per_sec", "student_images_per_sec", "speedup",
    "mac_ratio" (teacher / student MACs per image), "fraction_of_mac_limit"
    (speedup / mac_ratio), "teacher_gmacs_per_sec", "student_gmacs_per_sec",
    "teacher_seconds_per_batch", "student_seconds_per_batch"}; with a
    reference also "reference_images_per_sec", "reference_seconds_per_batch",
    "reference_gmacs_per_sec" and "student_vs_reference" (student images/s
    / the reference's: at least 0.95 says the learned widths cost no speed);
    with a floor "floor_..." and "floor_time_fraction" (the floor's time per
    batch / the teacher's).
    """
    from ppcd_tf.reporting import report  # Deferred: it imports the evaluators.

    sides = [("teacher", teacher_export), ("student", student_export)]
    for name, path in (("reference", reference_export),
                       ("floor", floor_export)):
        if path is not None:
            sides.append((name, path))
    macs = {name: report.saved_model_facts(path)["macs"]
            for name, path in sides}
    rows = []
    for runtime in runtimes:
        for batch_size in batch_sizes:
            speed = report.measure_generation(
                [path for _, path in sides], batch_size, repeats, warmup,
                runtime=runtime, threads=threads)
            rows.append(_sweep_row(runtime, batch_size, sides, speed, macs))
    return rows


def _sweep_row(runtime, batch_size, sides, speed, macs):
    """One row of generation_sweep from measure_generation's `speed`."""
    row = {"runtime": runtime, "batch_size": int(batch_size)}
    for name, path in sides:
        row[f"{name}_images_per_sec"] = speed[path]["images_per_sec"]
        row[f"{name}_seconds_per_batch"] = speed[path]["seconds_per_batch"]
        row[f"{name}_gmacs_per_sec"] = (
            speed[path]["images_per_sec"] * macs[name] / 1e9)
    row["speedup"] = (row["student_images_per_sec"]
                      / row["teacher_images_per_sec"])
    row["mac_ratio"] = macs["teacher"] / macs["student"]
    row["fraction_of_mac_limit"] = row["speedup"] / row["mac_ratio"]
    if "reference_images_per_sec" in row:
        row["student_vs_reference"] = (row["student_images_per_sec"]
                                       / row["reference_images_per_sec"])
    if "floor_images_per_sec" in row:
        row["floor_time_fraction"] = (row["floor_seconds_per_batch"]
                                      / row["teacher_seconds_per_batch"])
    return row


def best_runtime_speedups(rows):
    """Per batch size, the student in its fastest runtime against the
    teacher in its own fastest one: [{"batch_size", "teacher_runtime",
    "student_runtime", "teacher_seconds_per_batch",
    "student_seconds_per_batch", "speedup"}] (a lever that speeds up the
    teacher as well counts for both)."""
    best = []
    for batch_size in sorted({r["batch_size"] for r in rows}):
        at_batch = [r for r in rows if r["batch_size"] == batch_size]
        entry = {"batch_size": batch_size}
        for side in ("teacher", "student"):
            fastest = min(at_batch,
                          key=lambda r: r[f"{side}_seconds_per_batch"])
            entry[f"{side}_runtime"] = fastest["runtime"]
            entry[f"{side}_seconds_per_batch"] = fastest[
                f"{side}_seconds_per_batch"]
        entry["speedup"] = (entry["teacher_seconds_per_batch"]
                            / entry["student_seconds_per_batch"])
        best.append(entry)
    return best


def sweep_markdown(rows):
    """The sweep as a markdown table (with the equal-MAC reference's and the
    floor's columns when the rows have them)."""
    reference = all("reference_images_per_sec" in r for r in rows)
    floor = all("floor_images_per_sec" in r for r in rows)
    header = ("| runtime | batch | teacher images/s | student images/s | "
              "speed-up | MAC ratio | fraction of MAC limit | teacher GMAC/s "
              "| student GMAC/s | teacher ms/batch | student ms/batch |")
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if reference:
        header += " uniform, equal MACs: images/s | student / uniform |"
        rule += "---:|---:|"
    if floor:
        header += " floor ms/batch | floor / teacher time |"
        rule += "---:|---:|"
    lines = [header, rule]
    for r in rows:
        line = (
            f"| {r['runtime']} | {r['batch_size']} | "
            f"{r['teacher_images_per_sec']:,.0f} | "
            f"{r['student_images_per_sec']:,.0f} | {r['speedup']:.2f}x | "
            f"{r['mac_ratio']:.2f}x | {r['fraction_of_mac_limit']:.2f} | "
            f"{r['teacher_gmacs_per_sec']:.1f} | "
            f"{r['student_gmacs_per_sec']:.1f} | "
            f"{1e3 * r['teacher_seconds_per_batch']:.3f} | "
            f"{1e3 * r['student_seconds_per_batch']:.3f} |")
        if reference:
            line += (f" {r['reference_images_per_sec']:,.0f} | "
                     f"{r['student_vs_reference']:.2f} |")
        if floor:
            line += (f" {1e3 * r['floor_seconds_per_batch']:.3f} | "
                     f"{r['floor_time_fraction']:.3f} |")
        lines.append(line)
    return "\n".join(lines)


def portable_throughput(export_dir, repeats=10, warmup=3, threads=None):
    """Images/s of an export's SavedModel (serving_default) and of its
    converted models (generator.onnx with onnxruntime, generator.tflite with
    the TFLite interpreter) at the TFLite model's fixed batch (64 without
    one), timed alternately in one process. onnxruntime runs with the
    session options of `onnx_runtime.session_options(threads)`; TFLite with
    `threads` threads (default: its own).

    Returns {"batch_size", "rows": [{"runtime", "file", "bytes",
    "seconds_per_batch", "images_per_sec", "vs_saved_model"}]}."""
    from ppcd_tf.exporting import portable
    from ppcd_tf.exporting import saved_model
    export = saved_model.load_export(export_dir)
    runners = {"SavedModel (TensorFlow)": (
        None, lambda z, y: export.signature()(
            z=tf.constant(z), labels=tf.constant(y))["images"].numpy())}
    batch = 64
    tflite_path = os.path.join(export_dir, portable.TFLITE_FILE)
    if os.path.isfile(tflite_path):
        tflite = portable.TFLiteGenerator.from_file(tflite_path,
                                                          threads)
        batch = tflite.batch
        runners["TFLite"] = (tflite_path, tflite.generate)
    onnx_path = os.path.join(export_dir, portable.ONNX_FILE)
    if os.path.isfile(onnx_path):
        # deferred: needs onnxruntime
        from ppcd_tf.exporting import onnx_runtime
        onnx = onnx_runtime.OnnxGenerator(onnx_path, threads)
        runners["ONNX (onnxruntime)"] = (onnx_path, onnx.generate)
    rng = np.random.RandomState(0)
    z = rng.randn(batch, export.dim_z).astype(np.float32)
    labels = (np.arange(batch) % export.num_classes).astype(np.int32)
    times = {name: [] for name in runners}
    for round_index in range(warmup + repeats):
        for name, (_, run) in runners.items():
            start = time.perf_counter()
            run(z, labels)
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    saved_model_bytes = saved_model.saved_model_bytes(export_dir)
    base = float(np.median(times["SavedModel (TensorFlow)"]))
    rows = []
    for name, (path, _) in runners.items():
        seconds = float(np.median(times[name]))
        rows.append({
            "runtime": name, "file": path,
            "bytes": (os.path.getsize(path) if path
                      else saved_model_bytes),
            "seconds_per_batch": seconds, "images_per_sec": batch / seconds,
            "vs_saved_model": base / seconds})
    return {"batch_size": batch, "rows": rows}


def portable_markdown(result):
    """portable_throughput's result as a markdown table."""
    lines = [f"| runtime (batch {result['batch_size']}) | images/s | "
             "vs SavedModel | file size |", "|---|---:|---:|---:|"]
    for row in result["rows"]:
        size = (f"{row['bytes'] / 1e6:.2f} MB" if row["bytes"] else "")
        lines.append(f"| {row['runtime']} | {row['images_per_sec']:,.0f} | "
                     f"{row['vs_saved_model']:.2f}x | {size} |")
    return "\n".join(lines)
