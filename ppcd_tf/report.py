r"""Writes the teacher-vs-student report of a PPCD compression.

Example (what `make demo` runs last):

  python -m ppcd_tf.report \
      --teacher_dir ppcd_tf/assets/teacher_fashion_mnist32 \
      --ppcd_dir runs/demo/ppcd --teacher_export runs/demo/teacher_export \
      --student_export runs/demo/student_export --output_dir runs/demo/report

Evaluates both exported SavedModels with the same feature network, real
statistics, seeds and sample counts (see `ppcd_tf.evaluate`), times their
generation alternately, includes the training step times measured by
`python -m ppcd_tf.time_training` when `--train_steps` names its JSON (the
report itself only reads artefacts: exports, the PPCD run's pruning history
and that file), draws sample grids with the same z and the pruning plot,
and writes report.md,
report.json and the images to `--output_dir` (see `ppcd_tf.reporting.report`).
Exit status 2 on bad arguments, 3 when data or weights are missing.
"""

import os

from absl import app
from absl import flags

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
benchmark = lazy.load("ppcd_tf.workflows.benchmark")
evaluation = lazy.load("ppcd_tf.metrics.evaluation")
feature_networks = lazy.load("ppcd_tf.metrics.feature_networks")
report_lib = lazy.load("ppcd_tf.reporting.report")
run_dir = lazy.load("ppcd_tf.runs.run_dir")
saved_model = lazy.load("ppcd_tf.exporting.saved_model")

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher_dir", None, "The teacher run (its config.gin is"
                    " used to time teacher training steps).")
flags.DEFINE_string("ppcd_dir", None, "The PPCD run.")
flags.DEFINE_string("teacher_export", None, "The teacher's SavedModel.")
flags.DEFINE_string("student_export", None, "The student's SavedModel.")
flags.DEFINE_string("output_dir", None, "Report directory.")
flags.DEFINE_enum("feature_network", None, list(defaults.FEATURE_NETWORKS),
                  "Feature network (default: by dataset, as in "
                  "ppcd_tf.evaluate).")
flags.DEFINE_string("feature_weights", None, "Its weights file, if needed.")
flags.DEFINE_string("split", None, "Real-image split (default as in "
                    "ppcd_tf.evaluate).")
flags.DEFINE_integer("num_real", None, "Use only the split's first N real "
                     "images (default: all).")
flags.DEFINE_integer("num_samples", defaults.EVAL_NUM_SAMPLES,
                     "Generated samples per seed and generator.")
flags.DEFINE_list("seeds", [str(s) for s in defaults.EVAL_SEEDS],
                  "Seeds (figures are mean +- std over them).")
flags.DEFINE_integer("gen_batch", defaults.REPORT_GEN_BATCH,
                     "Batch size of the throughput measurement.")
flags.DEFINE_integer("repeats", defaults.REPORT_REPEATS,
                     "Timed generation rounds (median reported).")
flags.DEFINE_string("train_steps", None, "JSON written by python -m "
                    "ppcd_tf.time_training (optional).")
flags.DEFINE_string("cache_dir", defaults.EVAL_CACHE_DIR,
                    "Where real-image features are cached.")
flags.DEFINE_bool("overwrite", False, "Replace an existing non-empty "
                  "--output_dir.")

_REQUIRED = ("teacher_dir", "ppcd_dir", "teacher_export", "student_export",
             "output_dir")


def check_flags():
    missing = [f"--{name}" for name in _REQUIRED if not getattr(FLAGS, name)]
    if missing:
        raise evaluation.EvaluationError(f"Missing {', '.join(missing)}.")
    for name in _REQUIRED[:-1]:
        if not os.path.isdir(getattr(FLAGS, name)):
            raise evaluation.EvaluationError(
                f"--{name} {getattr(FLAGS, name)} is not a directory.")
    output = FLAGS.output_dir
    if os.path.exists(output) and not os.path.isdir(output):
        raise evaluation.EvaluationError(
            f"--output_dir {output} is a file, not a directory.")
    if os.path.isdir(output) and os.listdir(output) and not FLAGS.overwrite:
        raise errors.OutputExistsError(
            f"--output_dir {output} exists and is not empty; choose another "
            "one or pass --overwrite to replace it.")
    files.check_output_location(
        "--output_dir", output, directory=True,
        inputs={f"--{name}": getattr(FLAGS, name) for name in (
            "teacher_dir", "ppcd_dir", "teacher_export", "student_export",
            "train_steps", "feature_weights", "cache_dir")})
    for name in ("repeats", "gen_batch"):
        if getattr(FLAGS, name) < 1:
            raise evaluation.EvaluationError(
                f"--{name} must be >= 1, got {getattr(FLAGS, name)}.")
    evaluation.check_arguments(num_real=FLAGS.num_real,
                               num_samples=FLAGS.num_samples,
                               cache_dir=FLAGS.cache_dir)
    evaluation.parse_seeds(FLAGS.seeds)
    # The artefacts the report reads, before any work: exports (metadata),
    # the PPCD run's pruning history.
    for name in ("teacher_export", "student_export"):
        saved_model.read_metadata(getattr(FLAGS, name))
    if run_dir.read_pruning_structure(FLAGS.ppcd_dir) is None:
        raise errors.BadInputError(
            f"--ppcd_dir {FLAGS.ppcd_dir} is not a PPCD run (no "
            f"{run_dir.PRUNING_FILE}); give the --model_dir of a run of "
            "stage/ppcd.gin.")


def read_train_steps(path):
    """The training step timing JSON, or None without `path`."""
    if not path:
        return None
    again = "write it again with python -m ppcd_tf.time_training."
    content = files.read_json(
        path, "--train_steps",
        missing_fix=("write it with python -m ppcd_tf.time_training, or "
                     "leave the flag out."),
        damaged_fix=again)
    files.check_fields(content, path, benchmark.TRAIN_STEPS_SCHEMA, again)
    return content


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        check_flags()
        report = report_lib.run_comparison(
            FLAGS.teacher_dir, FLAGS.ppcd_dir, FLAGS.teacher_export,
            FLAGS.student_export, FLAGS.output_dir,
            feature_network=FLAGS.feature_network,
            feature_weights=FLAGS.feature_weights, split=FLAGS.split,
            num_real=FLAGS.num_real, num_samples=FLAGS.num_samples,
            seeds=evaluation.parse_seeds(FLAGS.seeds),
            gen_batch=FLAGS.gen_batch, repeats=FLAGS.repeats,
            train_steps=read_train_steps(FLAGS.train_steps),
            cache_dir=FLAGS.cache_dir, overwrite=FLAGS.overwrite)
    print(report_lib.render_markdown(report).split("\n## How")[0])
    print(f"Report written to {FLAGS.output_dir}/report.md")


def run_main():
    """Console-script entry point (`ppcd-report`)."""
    errors.run(main)


if __name__ == "__main__":
    run_main()
