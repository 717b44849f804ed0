r"""Measures the effect of PPCD's parts: one PPCD run per ablation config.

For every name in --ablations, trains PPCD from the same teacher with
gin/stage/ablation_<name>.gin added after stage/ppcd.gin (same steps, budget
and seed as the full method), exports the student and evaluates it
(FID / KID / intra-FID / class accuracy, --num_samples per seed, mean +- std
over --seeds, the same real statistics). 'no_retraining' runs only as
many steps as the full method's pruning phase, so its students are cut at
the same point and not trained afterwards (see its gin file). The full method
itself is read from --baseline_export when given (e.g. the demo's student),
else trained here as 'ppcd'. Writes <output_dir>/ablations.json and
ablations.md. Every stage resumes when rerun.

Every run follows the demo's recipe (--ppcd_steps 1200, the cut at
--cut_step 300, validation every --validate_every 100 steps keeping the best
student, which is the one exported) and gin/stage/ppcd.gin; --gin_param adds
bindings to every run. The ablation table in BENCHMARKS.md (2026-12-02) was
measured with the recipe before G's post-cut rate was tripled; it reruns with
--ppcd_steps 1800 --gin_param "RetrainSchedule.g_lr_scale = 1.0".

Example:
  python tools/ablations.py --baseline_export runs/demo/student_export \
      --ablations no_class_aware,no_retraining,no_distillation
"""

import glob
import os
import subprocess
import sys

from absl import flags
from absl import logging

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
config_lib = lazy.load("ppcd_tf.config")
demo = lazy.load("ppcd_tf.workflows.demo")
evaluation = lazy.load("ppcd_tf.metrics.evaluation")
run_dir_lib = lazy.load("ppcd_tf.runs.run_dir")
saved_model = lazy.load("ppcd_tf.exporting.saved_model")
teachers = lazy.load("ppcd_tf.workflows.teachers")

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher_dir", None, "Teacher (default: shipped).")
flags.DEFINE_string("output_dir", os.path.join("runs", "ablations"),
                    "Runs, exports and the table go here.")
flags.DEFINE_list("ablations", ["no_class_aware", "no_retraining"],
                  "Names of gin/stage/ablation_<name>.gin.")
flags.DEFINE_string("baseline_export", None, "Export of the full method "
                    "trained with the same settings (default: train it).")
flags.DEFINE_float("target_ratio", 0.19, "Kept parameter fraction.")
flags.DEFINE_integer("ppcd_steps", 1200, "PPCD steps of every run (the "
                     "demo's).")
flags.DEFINE_integer("cut_step", 300, "G step of the full method's cut (the "
                     "demo's).")
flags.DEFINE_float("prune_end_fraction", None, "Instead of --cut_step: the "
                   "full method's pruning-phase fraction.")
flags.DEFINE_integer("validate_every", 100, "With N > 0 (the demo's): every "
                     "run validates every N steps after its cut and keeps "
                     "its best student, the one exported ('no_retraining' "
                     "exports its last); 0: the last student.")
flags.DEFINE_float("ema_decay", 0.99, "EMA decay of the students.")
flags.DEFINE_multi_string("gin_param", [], "Recipe bindings (every run).")
flags.DEFINE_integer("num_samples", 10000, "Samples per seed.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Evaluation seeds.")
flags.DEFINE_string("cache_dir", defaults.EVAL_CACHE_DIR,
                    "Real-feature cache.")

_PRUNING_PHASE_ONLY = ("no_retraining",)


def _run(argv, directory):
    """Runs one stage (its output streamed); a failed stage ends the tool
    with the stage's exit status."""
    logging.info("[ablations] %s", " ".join(argv))
    status = subprocess.call(argv)
    if status:
        message = (f"[ablations] python -m {argv[2]} of {directory} "
                   f"failed with exit status {status} (its output is "
                   "above); fix the cause and rerun: finished stages are "
                   "kept.")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(status if status > 0 else 1)


def _available_ablations():
    """Names of the gin/stage/ablation_<name>.gin files."""
    pattern = os.path.join(config_lib.DEFAULT_GIN_SEARCH_PATH, "stage",
                           "ablation_*.gin")
    return sorted(os.path.basename(path)[len("ablation_"):-len(".gin")]
                  for path in glob.glob(pattern))


def _check_writable(flag, path):
    """Refuses, before any work, an output directory `path` that cannot be
    written: a file, under a file, or under a directory this process cannot
    write to."""
    path = os.path.abspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise errors.BadInputError(f"{flag} {path} is a file, not a "
                                   "directory.")
    files.check_output_location(flag, path, directory=True)


def _check_flags():
    """Every flag, checked before any training."""
    available = _available_ablations()
    unknown = [name for name in FLAGS.ablations if name not in available]
    if unknown:
        raise errors.BadInputError(
            f"Unknown --ablations {unknown}; choose from {available} "
            "(gin/stage/ablation_<name>.gin).")
    demo.check_sweep_flags(
        FLAGS.ppcd_steps, FLAGS.cut_step, FLAGS.validate_every,
        FLAGS.prune_end_fraction, FLAGS.num_samples, FLAGS.ema_decay,
        FLAGS.seeds, FLAGS.teacher_dir)
    if not 0.0 < FLAGS.target_ratio <= 1.0:
        raise errors.BadInputError(
            f"--target_ratio (the kept parameter fraction) must be in "
            f"(0, 1], got {FLAGS.target_ratio}.")
    if FLAGS.baseline_export:
        path = FLAGS.baseline_export
        if not os.path.isdir(path):
            raise errors.MissingInputError(
                f"--baseline_export {path} does not exist or is not a "
                "directory; give an export of python -m ppcd_tf.export, or "
                "leave it out to train the full method here.")
        if not os.path.isfile(os.path.join(path, saved_model.ASSETS_DIR,
                                           "metadata.json")):
            raise errors.MissingInputError(
                f"--baseline_export {path} is not an export of ppcd_tf (no "
                f"{saved_model.ASSETS_DIR}/metadata.json); give a directory "
                "written by python -m ppcd_tf.export.")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.access(parent, os.W_OK | os.X_OK):
            raise errors.BadInputError(
                f"--baseline_export: its evaluation {path}.eval.json cannot "
                f"be written: {parent} is not writable.")
    _check_writable("--output_dir", FLAGS.output_dir)
    _check_writable("--cache_dir", FLAGS.cache_dir)


def _prune_end_fraction():
    """The full method's pruning-phase fraction (from --cut_step unless
    --prune_end_fraction is given)."""
    return demo.recipe_fraction(FLAGS.ppcd_steps, FLAGS.cut_step,
                                         FLAGS.prune_end_fraction)


def _student(name, teacher_dir):
    """Trains and exports one variant; returns its export directory."""
    run_dir = os.path.join(FLAGS.output_dir, name)
    export = run_dir + "_export"
    steps = FLAGS.ppcd_steps
    extra = []
    pruning_phase_only = name in _PRUNING_PHASE_ONLY
    if name != "ppcd":
        extra = [f"stage/ablation_{name}.gin"]
        if pruning_phase_only:
            # Its pruning phase then equals the full method's.
            steps = int(round(_prune_end_fraction() * FLAGS.ppcd_steps
                              / 0.99))
    validate_every = 0 if pruning_phase_only else FLAGS.validate_every
    _run(demo.train_command(
        run_dir, teacher_dir, FLAGS.target_ratio, steps, 50,
        gin_params=FLAGS.gin_param, ema_decay=FLAGS.ema_decay,
        extra_gin_files=extra,
        prune_end_fraction=(None if pruning_phase_only
                            else _prune_end_fraction()),
        validate_every=validate_every), run_dir)
    if not _export_is_current(run_dir, export):
        _run(demo.export_command(
            run_dir, export, "best" if validate_every else None), run_dir)
    return export


def _mtime(path):
    return os.path.getmtime(path) if os.path.exists(path) else None


def _export_is_current(model_dir, export):
    """True when `export` was written after the run's newest checkpoint and
    its best-student record (a rerun then skips the export)."""
    written = _mtime(os.path.join(export, saved_model.ASSETS_DIR,
                                  "metadata.json"))
    if written is None:
        return False
    try:
        checkpoint = run_dir_lib.latest_checkpoint(model_dir)
    except run_dir_lib.RunDirError:
        return False
    sources = [_mtime(checkpoint + ".index"),
               _mtime(os.path.join(model_dir, "best", "best.json"))]
    return all(written > t for t in sources if t is not None)


def _evaluate(export):
    """The evaluation of `export` with --num_samples and --seeds, read back
    when a rerun finds a current one."""
    output = export + ".eval.json"
    result = evaluation.read_current_result(
        output, export, FLAGS.num_samples, FLAGS.seeds,
        fields=evaluation.SWEEP_RESULT_FIELDS)
    if result is not None:
        logging.info("[ablations] read back %s", output)
        return result
    return evaluation.evaluate_generator(
        saved_model=export, num_samples=FLAGS.num_samples,
        seeds=FLAGS.seeds, cache_dir=FLAGS.cache_dir, output=output)


def _row(name, result, params):
    s = result["summary"]

    def pm(key, spec):
        return f"{s[key]['mean']:{spec}} +- {s[key]['std']:{spec}}"

    return (f"| {name} | {params:,} | {pm('fid', '.2f')} | "
            f"{pm('intra_fid', '.2f')} | {pm('class_accuracy', '.4f')} |")


def main(argv):
    del argv
    with errors.exit_on_errors():
        _check_flags()
        teacher_dir = FLAGS.teacher_dir or teachers.shipped_teacher_dir()
        os.makedirs(FLAGS.output_dir, exist_ok=True)
        exports = {"ppcd": FLAGS.baseline_export or _student("ppcd",
                                                             teacher_dir)}
        for name in FLAGS.ablations:
            exports[name] = _student(name, teacher_dir)
        results, lines = {}, [
            "| variant | G params | FID | intra-FID | class accuracy |",
            "|---|---|---|---|---|"]
        for name, export in exports.items():
            result = _evaluate(export)
            results[name] = {"export": export, "summary": result["summary"],
                             "params": result["generator"]["params"]}
            lines.append(_row(name, result, result["generator"]["params"]))
        table = "\n".join(lines)
        files.write_json(os.path.join(FLAGS.output_dir, "ablations.json"),
                         {"steps": FLAGS.ppcd_steps,
                          "prune_end_fraction": _prune_end_fraction(),
                          "gin_param": FLAGS.gin_param,
                          "validate_every": FLAGS.validate_every,
                          "seeds": FLAGS.seeds,
                          "num_samples": FLAGS.num_samples,
                          "results": results, "table": table})
        files.write_text(os.path.join(FLAGS.output_dir, "ablations.md"),
                         table + "\n")
        print(table)


if __name__ == "__main__":
    errors.run(main)
