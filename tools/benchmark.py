r"""Benchmarks of ppcd_tf on this machine (results go to BENCHMARKS.md).

Measures, in one process, for the teacher configuration given by gin files
(default: the 32x32 Fashion-MNIST teacher):
  * G and D parameter counts and G MACs per image;
  * teacher training throughput: seconds per G step (median over --repeats
    single steps after --warmup steps), images/s;
  * PPCD training throughput at the same batch (stage/ppcd.gin on top of the
    same config, the teacher being the benchmark's own freshly built one),
    and the ratio PPCD / teacher seconds per step (target: <= 1.7);
  * generation throughput of the (EMA) generator at batch --gen_batch.

With --compare_dir (a finished `make demo` / `python -m ppcd_tf.demo`
output directory) it instead measures the compression side by side in one
process: teacher vs exported student parameters, MACs, SavedModel size,
generation throughput (batch --gen_batch, alternating rounds, median), PPCD
vs teacher training step time (models from the runs' models.json and
pruning.json, recipe from the package's gin files and --gin_param: the
runs' config.gin files are never parsed), FID / KID / intra-FID / class accuracy
(--num_samples per seed, mean +- std over --seeds), and writes the report
directory `<compare_dir>/benchmark_report/` (same files as the demo's).

With --portable EXPORT (an export written with --format onnx / tflite) it
times the SavedModel, generator.onnx (onnxruntime, spinning off) and
generator.tflite alternately at the TFLite model's batch.

With --exports TEACHER,STUDENT (two exported SavedModels) it measures
generation only: images/s of both at every batch size of --batches (default
1, 8, 64, 256), timed alternately in one process, with achieved GMAC/s, the
speed-up, the MAC ratio, the fraction of the MAC limit reached and the
batch-1 latency ratio; and, in the same rounds, the teacher's architecture
thinned uniformly to the student's MACs (--teacher_dir's generator, random
weights, prepared as an export): student / uniform images/s says whether the
learned widths run as fast as the simplest choice of equal cost (wanted:
>= 0.95; --nouniform_reference leaves it out). --runtimes tensorflow,tflite
times every export in both runtimes (TFLite: converted from the SavedModel at
each batch, checked against it within 1e-3, run with XNNPACK) and prints each
generator in its fastest runtime; --floor_width 4 adds the teacher's
architecture at 4 channels everywhere (the floor; its time / the teacher's).

Examples:
  python tools/benchmark.py --exports runs/demo/teacher_export,\
runs/demo/student_export --repeats 20
  python tools/benchmark.py --exports runs/demo/teacher_export,\
runs/demo/student_export --runtimes tensorflow,tflite --batches 1,64 \
      --floor_width 4 --repeats 20
  python tools/benchmark.py --output runs/benchmark.json
  python tools/benchmark.py --gin_param "CH = 16" --repeats 20
  python tools/benchmark.py --compare_dir runs/demo --repeats 20 \
      --output runs/benchmark_compression.json
"""

import json
import os
import platform
import tempfile

import gin
from absl import app
from absl import flags
from absl import logging

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
benchmark = lazy.load("ppcd_tf.workflows.benchmark")
complexity = lazy.load("ppcd_tf.models.complexity")
config_lib = lazy.load("ppcd_tf.config")
generator_lib = lazy.load("ppcd_tf.models.generator")
ppcd_trainer = lazy.load("ppcd_tf.training.ppcd_trainer")
registry = lazy.load("ppcd_tf.training.registry")
report_lib = lazy.load("ppcd_tf.reporting.report")
saved_model = lazy.load("ppcd_tf.exporting.saved_model")
strategy_lib = lazy.load("ppcd_tf.training.strategy")
teachers = lazy.load("ppcd_tf.workflows.teachers")
equal_macs = lazy.load("ppcd_tf.workflows.equal_macs")
trainer_lib = lazy.load("ppcd_tf.training.trainer")

DEFAULT_GIN_FILES = ["data/fashion_mnist32.gin", "model/biggan32.gin",
                     "stage/teacher.gin"]

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", None, "Gin files of the teacher run "
                          f"(default: {' '.join(DEFAULT_GIN_FILES)}).")
flags.DEFINE_multi_string("gin_param", [], "Extra gin bindings.")
flags.DEFINE_integer("repeats", 10, "Timed repetitions (median reported).")
flags.DEFINE_integer("warmup", 3, "Untimed warm-up repetitions.")
flags.DEFINE_integer("gen_batch", 64, "Batch size of the generation test.")
flags.DEFINE_string("output", None, "Write the results as JSON here.")
flags.DEFINE_bool("ppcd", True, "Also time PPCD training steps.")
flags.DEFINE_string("compare_dir", None, "Compare teacher and student of "
                    "this demo output directory instead.")
flags.DEFINE_string("teacher_dir", None, "Teacher run of --compare_dir, "
                    "and of --exports' equal-MAC reference (default: the "
                    "shipped Fashion-MNIST teacher).")
flags.DEFINE_bool("uniform_reference", True, "With --exports: also time "
                  "the teacher's architecture thinned uniformly to the "
                  "student's MACs (random weights, prepared as an export) "
                  "in the same rounds, and report student / uniform "
                  "images/s.")
flags.DEFINE_integer("num_samples", 10000, "Evaluation samples per seed "
                     "(--compare_dir).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Evaluation seeds "
                  "(--compare_dir).")
flags.DEFINE_list("exports", None, "TEACHER_EXPORT,STUDENT_EXPORT: measure "
                  "generation of these two SavedModels at --batches only.")
flags.DEFINE_list("batches", ["1", "8", "64", "256"], "Batch sizes of "
                  "--exports.")
flags.DEFINE_string("portable", None, "An export written with --format onnx "
                    "and/or --format tflite: time its SavedModel, ONNX and "
                    "TFLite generators side by side.")
flags.DEFINE_integer("threads", None, "Threads of onnxruntime and TFLite "
                     "(--portable: default their own; --exports: one per "
                     "core).")
flags.DEFINE_list("runtimes", ["tensorflow"], "Runtimes of --exports, each "
                  "timed at every batch: tensorflow (the SavedModel) and/or "
                  "tflite (each export converted at that batch, run by the "
                  "TFLite interpreter with XNNPACK; checked against its "
                  "SavedModel first).")
flags.DEFINE_integer("floor_width", 0, "With --exports: also time the "
                     "teacher's architecture (--teacher_dir's) with every "
                     "prunable layer at this many channels (random weights): "
                     "the floor no choice of widths removes; 0: not timed.")
flags.DEFINE_integer("train_repeats", 10, "Timed training steps of each "
                     "kind (--compare_dir).")

def _table(results):
    train = results["teacher_training"]
    gen = results["teacher_generation"]
    rows = [
        ("G parameters", f"{results['g_params']:,}"),
        ("D parameters", f"{results['d_params']:,}"),
        ("G MACs / image", f"{results['g_macs_per_image'] / 1e6:.1f} M"),
        ("train: s / G step (median)", f"{train['seconds_per_step']:.3f}"),
        ("train: images / s", f"{train['images_per_sec']:.1f}"),
        (f"generate: images / s (batch {gen['batch_size']})",
         f"{gen['images_per_sec']:.1f}"),
        ("generate: GMAC / s", f"{gen['gmacs_per_sec']:.1f}"),
    ]
    if "ppcd_training" in results:
        ppcd = results["ppcd_training"]
        rows += [
            ("PPCD train: s / G step (median)",
             f"{ppcd['seconds_per_step']:.3f}"),
            ("PPCD / teacher step time", f"{results['train_step_ratio']:.2f}"),
        ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def compare(compare_dir):
    """The side-by-side compression benchmark of a demo directory."""
    teacher_dir = FLAGS.teacher_dir or teachers.shipped_teacher_dir()
    ppcd_dir = os.path.join(compare_dir, "ppcd")
    train_steps = None
    if FLAGS.train_repeats > 0:
        logging.info("Timing teacher and PPCD training steps ...")
        # From models.json and pruning.json with the package's own gin
        # files (and --gin_param): the runs' config.gin is never parsed.
        train_steps = benchmark.measure_train_steps(
            teacher_dir, ppcd_dir, gin_params=FLAGS.gin_param,
            repeats=FLAGS.train_repeats)
    report = report_lib.run_comparison(
        teacher_dir, ppcd_dir,
        os.path.join(compare_dir, "teacher_export"),
        os.path.join(compare_dir, "student_export"),
        os.path.join(compare_dir, "benchmark_report"),
        num_samples=FLAGS.num_samples, seeds=[int(s) for s in FLAGS.seeds],
        gen_batch=FLAGS.gen_batch, repeats=FLAGS.repeats,
        train_steps=train_steps,
        cache_dir=os.path.join(compare_dir, "cache"))
    text = report_lib.render_markdown(report).split("\n## Samples")[0]
    print(text)
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)),
                    exist_ok=True)
        with open(FLAGS.output, "w") as f:
            json.dump(dict(report, machine={
                "cpus": os.cpu_count(), "platform": platform.platform()},
                table=text), f, indent=2)
        logging.info("Wrote %s", FLAGS.output)


def _positive_batches():
    try:
        batches = [int(b) for b in FLAGS.batches]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise errors.BadInputError(
            f"--batches takes positive integers, got {FLAGS.batches}.")
    return batches


def _check_writable(flag, path, directory=False):
    """Refuses, before any work, an output `path` (a file, or a directory
    with `directory`) that cannot be written: under a file, or under a
    directory this process cannot write to."""
    path = os.path.abspath(path)
    if os.path.exists(path) and os.path.isdir(path) != directory:
        raise errors.BadInputError(
            f"{flag} {path} is " + ("a file, not a directory." if directory
                                    else "a directory; give a file path."))
    files.check_output_location(flag, path, directory=directory)


def _check_export(path, flag="--exports"):
    """A clear error, before any timing, for an --exports entry that is
    not a loadable export of ppcd_tf."""
    if not os.path.isdir(path):
        raise errors.MissingInputError(
            f"{flag}: {path} does not exist or is not a directory.")
    if not any(os.path.isfile(os.path.join(path, name))
               for name in ("saved_model.pb", "saved_model.pbtxt")):
        raise errors.MissingInputError(
            f"{flag}: {path} holds no saved_model.pb; export the run "
            "again with python -m ppcd_tf.export.")
    if not os.path.isfile(os.path.join(path, saved_model.ASSETS_DIR,
                                       "metadata.json")):
        raise errors.MissingInputError(
            f"{flag}: {path} is not an export of ppcd_tf (no "
            f"{saved_model.ASSETS_DIR}/metadata.json); export the run with "
            "python -m ppcd_tf.export.")
    try:
        saved_model.read_metadata(path)
    except errors.MissingInputError as error:
        raise errors.DamagedInputError(f"{flag}: {error}") from error


def _check_flags():
    """Every flag, checked before any measuring."""
    for name in ("repeats", "gen_batch"):
        if getattr(FLAGS, name) < 1:
            raise errors.BadInputError(
                f"--{name} must be >= 1, got {getattr(FLAGS, name)}.")
    for name in ("warmup", "train_repeats"):
        if getattr(FLAGS, name) < 0:
            raise errors.BadInputError(
                f"--{name} must be >= 0, got {getattr(FLAGS, name)}.")
    if FLAGS.num_samples < 2:
        raise errors.BadInputError(
            f"--num_samples must be >= 2, got {FLAGS.num_samples}.")
    try:
        seeds = [int(s) for s in FLAGS.seeds]
    except ValueError:
        seeds = []
    if not seeds:
        raise errors.BadInputError(
            f"--seeds takes integers, e.g. 0,1,2; got {FLAGS.seeds}.")
    _positive_batches()
    if FLAGS.output:
        _check_writable("--output", FLAGS.output)
    if FLAGS.portable:
        _check_export(FLAGS.portable, "--portable")
    elif FLAGS.exports:
        if len(FLAGS.exports) != 2:
            raise errors.BadInputError(
                "--exports takes two SavedModel directories: "
                "TEACHER_EXPORT,STUDENT_EXPORT.")
        for path in FLAGS.exports:
            _check_export(path)
        _check_runtimes_and_floor()
        if ((FLAGS.uniform_reference or FLAGS.floor_width)
                and FLAGS.teacher_dir
                and not os.path.isdir(FLAGS.teacher_dir)):
            raise errors.MissingInputError(
                f"--teacher_dir {FLAGS.teacher_dir} does not exist or is "
                "not a directory; give the teacher run the --exports "
                "teacher came from, or --nouniform_reference.")
    elif FLAGS.compare_dir:
        if not os.path.isdir(FLAGS.compare_dir):
            raise errors.MissingInputError(
                f"--compare_dir {FLAGS.compare_dir} does not exist or is "
                "not a directory.")
        if FLAGS.teacher_dir and not os.path.isdir(FLAGS.teacher_dir):
            raise errors.MissingInputError(
                f"--teacher_dir {FLAGS.teacher_dir} does not exist or is "
                "not a directory.")
        _check_writable("--compare_dir", os.path.join(
            FLAGS.compare_dir, "benchmark_report"), directory=True)


def _check_runtimes_and_floor():
    unknown = sorted(set(FLAGS.runtimes) - set(defaults.GENERATION_RUNTIMES))
    if unknown or not FLAGS.runtimes:
        raise errors.BadInputError(
            f"--runtimes takes {','.join(defaults.GENERATION_RUNTIMES)} (one or "
            f"both), got {','.join(FLAGS.runtimes) or 'nothing'}.")
    if FLAGS.floor_width < 0:
        raise errors.BadInputError(
            f"--floor_width must be >= 0 (0: no floor), got "
            f"{FLAGS.floor_width}.")


def portable(export_dir):
    """SavedModel vs ONNX vs TFLite images/s of one export."""
    result = benchmark.portable_throughput(
        export_dir, FLAGS.repeats, FLAGS.warmup, FLAGS.threads)
    print(benchmark.portable_markdown(result))
    if FLAGS.output:
        files.write_json(FLAGS.output, dict(
            result, export=os.path.abspath(export_dir),
            repeats=FLAGS.repeats, machine={
                "cpus": os.cpu_count(), "platform": platform.platform()}))
        logging.info("Wrote %s", FLAGS.output)


def _teacher_generator(exports):
    """The --teacher_dir generator (random weights), refused unless it is
    the architecture of the teacher export."""
    teacher = equal_macs.teacher_generator(
        FLAGS.teacher_dir or teachers.shipped_teacher_dir())
    equal_macs.check_same_architecture(teacher, exports[0])
    return teacher


def _floor(teacher, directory):
    """Writes the teacher's architecture at --floor_width channels into
    `directory`; returns its record (workflows.equal_macs)."""
    record = equal_macs.write_width_export(
        teacher, FLAGS.floor_width, os.path.join(directory, "floor"))
    logging.info("Floor: every prunable layer at %d channels (%s MACs per "
                 "image).", FLAGS.floor_width,
                 f"{record['macs_per_image']:,}")
    return record


def _uniform_reference(teacher, exports, directory):
    """Writes the equal-MAC uniform thinning of the teacher (--teacher_dir)
    into `directory`; returns its record (workflows.equal_macs)."""
    target = saved_model.read_metadata(exports[1]).get("macs_per_image")
    if not isinstance(target, int):
        raise errors.DamagedInputError(
            f"--exports: {exports[1]} records no macs_per_image; export the "
            "run again with python -m ppcd_tf.export.")
    record = equal_macs.write_uniform_export(
        teacher, target, os.path.join(directory, "uniform_equal_macs"))
    logging.info("Equal-MAC reference: every layer at %.3f of its width "
                 "(%s MACs per image, the student's %s).", record["fraction"],
                 f"{record['macs_per_image']:,}", f"{target:,}")
    return record


def sweep(exports):
    """Teacher vs student generation at every batch size of --batches."""
    with tempfile.TemporaryDirectory(prefix="ppcd_benchmark_") as scratch:
        teacher = (_teacher_generator(exports)
                   if FLAGS.uniform_reference or FLAGS.floor_width else None)
        reference = (_uniform_reference(teacher, exports, scratch)
                     if FLAGS.uniform_reference else None)
        floor = _floor(teacher, scratch) if FLAGS.floor_width else None
        rows = _timed_sweep(exports, reference, floor)
    _print_and_write_sweep(exports, rows, reference, floor)


def _timed_sweep(exports, reference, floor):
    try:
        return benchmark.generation_sweep(
            exports[0], exports[1], _positive_batches(), FLAGS.repeats,
            FLAGS.warmup, reference and reference["path"],
            runtimes=FLAGS.runtimes, floor_export=floor and floor["path"],
            threads=FLAGS.threads)
    except OSError as error:
        if isinstance(error, errors.PPCDError):
            raise
        # tf.saved_model.load: a SavedModel that cannot be read.
        raise errors.DamagedInputError(
            f"--exports: cannot load {' or '.join(exports)} ({error}); "
            "export the run again with python -m ppcd_tf.export.") from error


def _print_and_write_sweep(exports, rows, reference, floor):
    table = benchmark.sweep_markdown(rows)
    print(table)
    for row in rows:
        if row["batch_size"] == 1:
            print(f"batch-1 latency ({row['runtime']}): teacher "
                  f"{1e3 * row['teacher_seconds_per_batch']:.3f} ms, student "
                  f"{1e3 * row['student_seconds_per_batch']:.3f} ms "
                  f"({row['speedup']:.2f}x lower)")
    best = benchmark.best_runtime_speedups(rows)
    if len(FLAGS.runtimes) > 1:
        for entry in best:
            print(f"batch {entry['batch_size']}, each in its fastest "
                  f"runtime: teacher {entry['teacher_runtime']} "
                  f"{1e3 * entry['teacher_seconds_per_batch']:.3f} ms, "
                  f"student {entry['student_runtime']} "
                  f"{1e3 * entry['student_seconds_per_batch']:.3f} ms: "
                  f"{entry['speedup']:.2f}x")
    if FLAGS.output:
        files.write_json(FLAGS.output, {
            "teacher_export": os.path.abspath(exports[0]),
            "student_export": os.path.abspath(exports[1]),
            "repeats": FLAGS.repeats, "runtimes": FLAGS.runtimes,
            "threads": FLAGS.threads, "rows": rows, "table": table,
            "best_runtime": best,
            "uniform_reference": None if reference is None else {
                key: reference[key] for key in (
                    "counts", "macs_per_image", "params", "fraction")},
            "floor": None if floor is None else {
                key: floor[key] for key in (
                    "width", "counts", "macs_per_image", "params")},
            "machine": {"cpus": os.cpu_count(),
                        "platform": platform.platform()}})
        logging.info("Wrote %s", FLAGS.output)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        _check_flags()
        if FLAGS.portable:
            portable(FLAGS.portable)
            return
        if FLAGS.exports:
            sweep(FLAGS.exports)
            return
        if FLAGS.compare_dir:
            compare(FLAGS.compare_dir)
            return
        measure_configs()


def measure_configs():
    """Training and generation throughput of the configured teacher (and of
    PPCD training on top of it)."""
    gin_files = FLAGS.gin_file or DEFAULT_GIN_FILES
    registry.register()
    parsed_files = config_lib.parse_gin(gin_files, FLAGS.gin_param)
    strategy = strategy_lib.get_strategy()
    with tempfile.TemporaryDirectory() as model_dir:
        teacher_dir = os.path.join(model_dir, "teacher")
        trainer = trainer_lib.Trainer(model_dir=teacher_dir,
                                      strategy=strategy)
        logging.info("Timing teacher training steps ...")
        training = benchmark.measure_training(
            trainer, repeats=FLAGS.repeats, warmup=FLAGS.warmup)
        logging.info("Timing generation ...")
        generation = benchmark.measure_generation(
            trainer.generator_ema, batch_size=FLAGS.gen_batch,
            repeats=FLAGS.repeats, warmup=FLAGS.warmup)
        ppcd = None
        if FLAGS.ppcd:
            # The benchmark's teacher becomes the PPCD run's teacher.
            trainer.write_model_configs()
            trainer.checkpointer.save(int(trainer.step.numpy()))
            gin.clear_config()
            config_lib.parse_gin(
                list(gin_files) + [benchmark.PPCD_STAGE],
                list(FLAGS.gin_param) + [f"TEACHER_DIR = '{teacher_dir}'"])
            student = ppcd_trainer.PPCDTrainer(
                model_dir=os.path.join(model_dir, "ppcd"), strategy=strategy)
            logging.info("Timing PPCD training steps ...")
            ppcd = benchmark.measure_training(
                student, repeats=FLAGS.repeats, warmup=FLAGS.warmup)
    g = trainer.generator
    results = {
        "gin_files": parsed_files,
        "gin_params": FLAGS.gin_param,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "channels": g.channels.to_id(),
        "g_params": generator_lib.count_trainable_parameters(g),
        "d_params": generator_lib.count_trainable_parameters(
            trainer.discriminator),
        "g_macs_per_image": complexity.generator_macs(
            g.channels, complexity.GeneratorShape.of(g)),
        "teacher_training": training,
        "teacher_generation": generation,
    }
    if ppcd is not None:
        results["ppcd_training"] = ppcd
        results["train_step_ratio"] = (ppcd["seconds_per_step"]
                                       / training["seconds_per_step"])
    table = _table(results)
    print(table)
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)),
                    exist_ok=True)
        with open(FLAGS.output, "w") as f:
            json.dump(dict(results, table=table), f, indent=2)
        logging.info("Wrote %s", FLAGS.output)


if __name__ == "__main__":
    errors.run(main)
