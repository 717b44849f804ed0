r"""The compression-quality curve: PPCD against the two baselines.

For every target compression in --ratios and every method in --methods
(ppcd; uniform_pruning = gin/stage/ablation_uniform_pruning.gin; no_masks =
gin/stage/ablation_no_masks.gin, a thinner student trained from the start
with the same distillation) trains a student of the shipped (or --teacher_dir)
teacher with the demo's recipe and --gin_param, exports it and evaluates it
(--num_samples per seed, --seeds, the report's protocol). Methods compare at
equal wall-clock: a method faster per step than PPCD at the same ratio
(no_masks) is trained on, in the same run directory, until its training
time matches PPCD's (`compression_curve.equal_time_steps`).

--train_seeds trains every (method, ratio) once per training seed (the noise
draws and the data order; run directories <method>_<ratio>x_seed<N>, seed 0
keeping the plain name): the curve's lines then go through the means over the
seeds, with error bars of one standard deviation, and curve.md adds a table
of the means and deviations.

Writes <output_dir>/curve.json (every run's record), curve.md (the table)
and curve.png (FID ratio and accuracy drop over compression, a line per
method). Every stage resumes when rerun: finished runs, exports and
evaluations are read back, an interrupted run continues from its newest
checkpoint.

--earlier_curves adds the runs of earlier sweeps (their curve.json, e.g.
the record kept in docs/data/compression_curve.json, since run directories
do not outlive a machine) to the table and the plot, for every (method,
ratio) this sweep does not run itself; the teacher figures must agree (same
protocol). With --ratios= (empty) and --earlier_curves the tool only redraws
the curve from the earlier records.

Every run follows the demo's recipe (--ppcd_steps 1200, the cut at
--cut_step 300, validation every --validate_every 100 steps keeping the best
student, which is the one exported) and gin/stage/ppcd.gin. The recorded
curve (docs/data/compression_curve.json, 2026-12-02) was measured with the
recipe before G's post-cut rate was tripled; it reruns with --ppcd_steps 1800
--gin_param "RetrainSchedule.g_lr_scale = 1.0".

Example (the issue's sweep, ~18 runs of ~20 min: hours on 2 CPU cores):
  python tools/compression_curve.py --ratios 2,3,4,5.2,8,12 \
      --teacher_eval runs/exp/teacher_eval2k.json
  # Three training seeds of both pruning methods at 8x and 12x:
  python tools/compression_curve.py --ratios 8,12 --train_seeds 0,1,2 \
      --methods ppcd,uniform_pruning --ppcd_steps 1800
  # Two more ratios joined to the recorded curve:
  python tools/compression_curve.py --ratios 2,3 \
      --earlier_curves docs/data/compression_curve.json
"""

import os
import subprocess
import sys
import time

from absl import flags
from absl import logging

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
compression_curve = lazy.load("ppcd_tf.workflows.compression_curve")
demo = lazy.load("ppcd_tf.workflows.demo")
evaluation = lazy.load("ppcd_tf.metrics.evaluation")
generator_lib = lazy.load("ppcd_tf.models.generator")
run_dir = lazy.load("ppcd_tf.runs.run_dir")
saved_model = lazy.load("ppcd_tf.exporting.saved_model")
teachers = lazy.load("ppcd_tf.workflows.teachers")

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher_dir", None, "Teacher (default: shipped).")
flags.DEFINE_string("output_dir", os.path.join("runs", "curve"),
                    "Runs, exports, evaluations and the curve go here.")
flags.DEFINE_list("ratios", ["2", "3", "4", "5.2", "8", "12"],
                  "Target compressions (teacher / student G parameters).")
flags.DEFINE_list("methods", list(defaults.CURVE_METHODS),
                  "Methods: " + ", ".join(defaults.CURVE_METHODS) + ".")
flags.DEFINE_integer("ppcd_steps", 1200, "Steps of a PPCD run (the "
                     "demo's).")
flags.DEFINE_integer("cut_step", 300, "G step of the cut (the demo's); runs "
                     "trained on for equal wall-clock keep it.")
flags.DEFINE_float("prune_end_fraction", None, "Instead of --cut_step: the "
                   "pruning phase's fraction of each run's steps.")
flags.DEFINE_integer("validate_every", 100, "With N > 0 (the demo's): every "
                     "run validates every N steps, keeps its best student "
                     "and exports that one; 0: the last student.")
flags.DEFINE_float("ema_decay", 0.99, "EMA decay of the students.")
flags.DEFINE_multi_string("gin_param", [], "Recipe bindings (all runs).")
flags.DEFINE_bool("equal_wall_clock", True, "Train faster methods on until "
                  "their training time matches PPCD's at the same ratio.")
flags.DEFINE_integer("num_samples", 2000, "Samples per seed.")
flags.DEFINE_list("seeds", ["0"], "Evaluation seeds.")
flags.DEFINE_list("train_seeds", ["0"], "Training seeds: every (method, "
                  "ratio) is trained once per seed (noise draws and data "
                  "order); the curve shows their mean and standard "
                  "deviation. Seed 0 is the default run.")
flags.DEFINE_string("teacher_eval", None, "The teacher's evaluation JSON "
                    "with the same samples and seeds (default: evaluate the "
                    "teacher here).")
flags.DEFINE_string("cache_dir", defaults.EVAL_CACHE_DIR,
                    "Real-feature cache.")
flags.DEFINE_list("earlier_curves", [], "curve.json files of earlier sweeps "
                  "(same protocol) whose runs join this sweep's table and "
                  "plot; with --ratios= only these are drawn.")

RECORD_FILE = "curve_record.json"
# What a run's sweep record holds (files.check_fields): steps trained and
# the training seconds of finished and interrupted attempts.
SWEEP_RECORD_SCHEMA = {"steps?": int, "train_seconds?": (int, float),
                       "interrupted_seconds?": (int, float)}
# How often a training run's time so far is saved (so that a run interrupted
# and resumed is charged for all its attempts).
HEARTBEAT_SECONDS = 30
_ABLATION_FILES = {"uniform_pruning": "stage/ablation_uniform_pruning.gin",
                   "no_masks": "stage/ablation_no_masks.gin"}


def _run(argv, directory, heartbeat=None):
    """Runs one stage (its output streamed) and returns its seconds; while it
    runs, `heartbeat(seconds so far)` is called every HEARTBEAT_SECONDS. A
    failed stage ends the tool with the stage's exit status."""
    logging.info("[curve] %s", " ".join(argv))
    start = time.monotonic()
    process = subprocess.Popen(argv)
    while True:
        try:
            status = process.wait(timeout=HEARTBEAT_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if heartbeat is not None:
                heartbeat(time.monotonic() - start)
        except BaseException:
            process.kill()
            process.wait()
            raise
    if status:
        message = (f"[curve] python -m {argv[2]} of {directory} failed "
                   f"with exit status {status} (its output is above); fix "
                   "the cause and rerun: finished stages are kept.")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(status if status > 0 else 1)
    return time.monotonic() - start


def _check_writable(flag, path):
    """Refuses, before any work, an output directory `path` that cannot be
    written: a file, under a file, or under a directory this process cannot
    write to."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise errors.BadInputError(f"{flag} {path} is a file, not a "
                                   "directory.")
    files.check_output_location(flag, path, directory=True)


def _read_teacher_eval(path):
    """The summary of the --teacher_eval JSON."""
    return evaluation.read_result_summary(
        path, "--teacher_eval",
        missing_hint=", or leave it out to evaluate the teacher here",
        again_hint="the teacher ")


def _check_flags():
    """Every flag, checked before any training; returns the ratios, the
    training seeds, the teacher's reference summary (None: evaluate the
    teacher here) and the
    earlier sweeps' (reference, records) pairs."""
    if not FLAGS.methods:
        raise errors.BadInputError(
            f"--methods must name a method: "
            f"{', '.join(defaults.CURVE_METHODS)}.")
    unknown = set(FLAGS.methods) - set(defaults.CURVE_METHODS)
    if unknown:
        raise errors.BadInputError(
            f"Unknown --methods {sorted(unknown)}; choose from "
            f"{list(defaults.CURVE_METHODS)}.")
    try:
        ratios = [float(r) for r in FLAGS.ratios]
    except ValueError as error:
        raise errors.BadInputError(
            f"--ratios must be numbers: {error}") from error
    earlier = [compression_curve.read_curve(path, "--earlier_curves")
               for path in FLAGS.earlier_curves]
    if not ratios and not earlier:
        raise errors.BadInputError(
            "--ratios must name a target compression, e.g. 2,4,8 (or give "
            "--earlier_curves to redraw their curve).")
    if any(not r > 1.0 for r in ratios):
        raise errors.BadInputError("--ratios must all be > 1.")
    train_seeds = _train_seeds(FLAGS.train_seeds)
    demo.check_sweep_flags(
        FLAGS.ppcd_steps, FLAGS.cut_step, FLAGS.validate_every,
        FLAGS.prune_end_fraction, FLAGS.num_samples, FLAGS.ema_decay,
        FLAGS.seeds, FLAGS.teacher_dir)
    _check_writable("--output_dir", FLAGS.output_dir)
    _check_writable("--cache_dir", FLAGS.cache_dir)
    reference = (_read_teacher_eval(FLAGS.teacher_eval)
                 if FLAGS.teacher_eval else None)
    if earlier:
        _check_earlier_references(reference or earlier[0][0], earlier)
    return ratios, train_seeds, reference, earlier


def _train_seeds(values):
    """--train_seeds as distinct non-negative integers, in the given
    order."""
    try:
        seeds = [int(value) for value in values]
    except ValueError as error:
        raise errors.BadInputError(
            f"--train_seeds must be integers, e.g. 0,1,2: {error}") from error
    if not seeds or any(seed < 0 for seed in seeds):
        raise errors.BadInputError(
            f"--train_seeds must be integers >= 0, e.g. 0,1,2; got "
            f"{','.join(values) or '(empty)'}.")
    if len(set(seeds)) != len(seeds):
        raise errors.BadInputError(
            f"--train_seeds names a seed twice: {','.join(values)}.")
    return seeds


def _check_earlier_references(reference, earlier):
    """Every earlier sweep's teacher figures agree with `reference`."""
    for (other, _), path in zip(earlier, FLAGS.earlier_curves):
        compression_curve.check_same_reference(
            reference, other, f"--earlier_curves {path}")


def _train(directory, teacher_dir, ratio, method, steps, seed=0):
    """Trains (or resumes) one run to `steps`; returns (the steps it has
    trained, which may be more when an earlier call trained it on, its train
    seconds added up over every call that trained it)."""
    record_path = os.path.join(directory, RECORD_FILE)
    record = {}
    if os.path.isfile(record_path):
        again = f"remove {directory} to train that run again."
        record = files.read_json(record_path, "the run's sweep record",
                                 missing_fix="", damaged_fix=again)
        files.check_fields(record, record_path, SWEEP_RECORD_SCHEMA, again)
    if record.get("steps", 0) >= steps:
        return record["steps"], record.get("train_seconds", 0.0)
    # Time of attempts that were interrupted (the tool killed mid-run) counts
    # too: the heartbeat below keeps it in the record while a run trains.
    done_seconds = (record.get("train_seconds", 0.0)
                    + record.get("interrupted_seconds", 0.0))
    extra = [_ABLATION_FILES[method]] if method in _ABLATION_FILES else []
    argv = demo.train_command(
        directory, teacher_dir, 1.0 / ratio, steps, 50,
        gin_params=(list(FLAGS.gin_param)
                    + compression_curve.seed_bindings(seed)),
        ema_decay=FLAGS.ema_decay,
        extra_gin_files=extra,
        prune_end_fraction=demo.recipe_fraction(
            steps, FLAGS.cut_step, FLAGS.prune_end_fraction),
        validate_every=FLAGS.validate_every)

    def heartbeat(elapsed):
        files.write_json(record_path, {
            "steps": record.get("steps", 0),
            "train_seconds": record.get("train_seconds", 0.0),
            "interrupted_seconds": (record.get("interrupted_seconds", 0.0)
                                    + elapsed),
            "training_to": steps})

    elapsed = _run(argv, directory, heartbeat)
    seconds = done_seconds + elapsed
    files.write_json(record_path, {"steps": steps, "train_seconds": seconds})
    return steps, seconds


def _evaluate_export(directory, export, checkpoint=None):
    if not os.path.isdir(export):
        _run(demo.export_command(directory, export, checkpoint),
             directory)
    output = export + ".eval.json"
    result = evaluation.read_current_result(
        output, export, FLAGS.num_samples, FLAGS.seeds,
        fields=evaluation.SWEEP_RESULT_FIELDS)
    if result is not None:
        return result
    return evaluation.evaluate_generator(
        saved_model=export, num_samples=FLAGS.num_samples, seeds=FLAGS.seeds,
        cache_dir=FLAGS.cache_dir, output=output)


def _teacher_reference(teacher_dir):
    export = os.path.join(FLAGS.output_dir, "teacher_export")
    return _evaluate_export(teacher_dir, export)["summary"]


def _teacher_params(teacher_dir):
    generator = run_dir.restore_generator(teacher_dir).generator
    return generator_lib.count_trainable_parameters(generator)


def _one(teacher_dir, ratio, method, ppcd_seconds, teacher_params, seed):
    """Trains, exports and evaluates one run; returns its record. With
    equal wall-clock, `ppcd_seconds` is PPCD's time at this ratio and
    training seed."""
    name = compression_curve.run_name(method, ratio, seed)
    directory = os.path.join(FLAGS.output_dir, name)
    steps, seconds = _train(directory, teacher_dir, ratio, method,
                            FLAGS.ppcd_steps, seed)
    if (FLAGS.equal_wall_clock and ppcd_seconds
            and seconds < 0.95 * ppcd_seconds):
        target = compression_curve.equal_time_steps(steps, seconds,
                                                    ppcd_seconds)
        logging.info("[curve] %s: %.0f s vs PPCD's %.0f s -> trained on to "
                     "%d steps", name, seconds, ppcd_seconds, target)
        steps, seconds = _train(directory, teacher_dir, ratio, method,
                                target, seed)
    export = os.path.join(FLAGS.output_dir, name + "_export")
    summary = _evaluate_export(
        directory, export,
        "best" if FLAGS.validate_every else None)["summary"]
    metadata = saved_model.read_metadata(export)
    return {"method": method, "target_compression": ratio,
            "train_seed": seed, "params": metadata["params"],
            "teacher_params": teacher_params, "steps": steps,
            "train_seconds": seconds,
            "fid": summary["fid"]["mean"],
            "class_accuracy": summary["class_accuracy"]["mean"]}


def _write_curve(earlier_records, records, reference):
    """curve.json, curve.md and curve.png of the earlier sweeps' records and
    this sweep's so far (no files while there is no record)."""
    merged = compression_curve.merge_records(earlier_records, records)
    if not merged:
        return
    rows = compression_curve.curve_rows(merged, reference)
    files.write_json(os.path.join(FLAGS.output_dir, "curve.json"),
                     {"reference": reference, "rows": rows,
                      "seed_summary": compression_curve.seed_summary(rows),
                      "settings": _settings()})
    files.write_text(os.path.join(FLAGS.output_dir, "curve.md"),
                     compression_curve.render_markdown(rows, reference))
    compression_curve.plot(rows, os.path.join(FLAGS.output_dir, "curve.png"))


def _settings():
    names = ("ratios", "methods", "ppcd_steps", "cut_step",
             "prune_end_fraction", "validate_every", "ema_decay", "gin_param", "equal_wall_clock", "num_samples",
             "seeds", "train_seeds", "teacher_dir", "teacher_eval",
             "earlier_curves")
    return {name: FLAGS[name].value for name in names}


def main(argv):
    del argv
    with errors.exit_on_errors():
        ratios, train_seeds, reference, earlier = _check_flags()
        teacher_dir = FLAGS.teacher_dir or teachers.shipped_teacher_dir()
        os.makedirs(FLAGS.output_dir, exist_ok=True)
        if reference is None and not ratios:
            reference = earlier[0][0]
        if reference is None:
            reference = _teacher_reference(teacher_dir)
            _check_earlier_references(reference, earlier)
        earlier_records = [record for _, records in earlier
                           for record in records]
        records = []
        _write_curve(earlier_records, records, reference)
        teacher_params = _teacher_params(teacher_dir) if ratios else None
        for ratio in ratios:
            for seed in train_seeds:
                ppcd_seconds = None
                for method in sorted(FLAGS.methods,
                                     key=lambda m: m != "ppcd"):
                    record = _one(teacher_dir, ratio, method, ppcd_seconds,
                                  teacher_params, seed)
                    if method == "ppcd":
                        ppcd_seconds = record["train_seconds"]
                    records.append(record)
                    _write_curve(earlier_records, records, reference)
        rows = compression_curve.curve_rows(
            compression_curve.merge_records(earlier_records, records),
            reference)
    print(compression_curve.render_markdown(rows, reference))


if __name__ == "__main__":
    errors.run(main)
