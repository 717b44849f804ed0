r"""The end-to-end demo: shipped teacher -> PPCD -> export -> report.

  python -m ppcd_tf.demo                    # what `make demo` runs
  python -m ppcd_tf.demo --ppcd_steps 50 --num_samples 1000 --seeds 0

Stages (each a subprocess of the project's own command, output streamed, so
progress is visible; each resumable: rerunning continues the PPCD run from
its newest checkpoint and redoes the cheap stages):
  1. PPCD compression of the teacher (default: the shipped Fashion-MNIST
     32x32 teacher) to `--target_ratio` of its generator parameters:
     `python -m ppcd_tf.train ... stage/ppcd.gin` -> <output_dir>/ppcd
  2. export of the teacher and of the compact student as SavedModels:
     <output_dir>/teacher_export, <output_dir>/student_export
  3. training step timing (`python -m ppcd_tf.time_training`, skipped with
     `--train_repeats 0`): <output_dir>/train_steps.json
  4. the report (`python -m ppcd_tf.report`): <output_dir>/report/
     report.md, report.json, sample grids, pruning plot.
"""

import os
import time

from absl import app
from absl import flags
from absl import logging

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
config_lib = lazy.load("ppcd_tf.config")
demo = lazy.load("ppcd_tf.workflows.demo")
evaluation = lazy.load("ppcd_tf.metrics.evaluation")
teachers = lazy.load("ppcd_tf.workflows.teachers")

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", os.path.join("runs", "demo"),
                    "Everything goes under this directory.")
flags.DEFINE_string("teacher_dir", None, "Teacher run (default: the shipped "
                    "Fashion-MNIST 32x32 teacher).")
flags.DEFINE_float("target_ratio", 0.19, "Kept fraction of the generator's "
                   "parameters (0.19: 5.26x smaller).")
flags.DEFINE_integer("ppcd_steps", 1200, "PPCD training steps.")
flags.DEFINE_integer("validate_every", 0, "With N > 0: validate the student "
                     "every N steps after the cut on a held-out slice of "
                     "the training split (extras/validation.gin) and export"
                     " the best one (0: export the last).")
flags.DEFINE_integer("cut_step", 300, "G step at which the masks are hardened "
                     "and the compact student takes over (the pruning phase "
                     "is the steps before it; runs of at most this many "
                     "steps cut at a sixth of their steps). The compact "
                     "student trains for the rest: that retraining is what "
                     "closes the gap to the teacher.")
flags.DEFINE_float("prune_end_fraction", None, "Instead of --cut_step: the "
                   "fraction of the steps in the pruning phase.")
flags.DEFINE_float("ema_decay", 0.99, "EMA decay of the student (its EMA "
                   "starts when the masks are hardened; a short run needs a "
                   "short EMA).")
flags.DEFINE_integer("log_every", 25, "Steps between progress lines.")
flags.DEFINE_multi_string("gin_file", [], "Extra gin files of the PPCD run "
                          "(package-relative, e.g. experiments/fashion_mnist32"
                          "_deep_ppcd_5x.gin, or paths), read after the "
                          "package's data, model and stage files; the demo's "
                          "flags are bound after them and win.")
flags.DEFINE_multi_string("gin_param", [], "Extra bindings of the PPCD run.")
flags.DEFINE_integer("num_samples", 10000, "Evaluation samples per seed.")
flags.DEFINE_integer("num_real", None, "Real test images used (default: "
                     "all).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Evaluation seeds.")
flags.DEFINE_integer("train_repeats", 5, "Timed training steps per kind in "
                     "the report (0: skip the step-time ratio).")
flags.DEFINE_integer("repeats", 10, "Timed generation rounds.")
flags.DEFINE_string("cache_dir", None, "Real-feature cache (default: "
                    "<output_dir>/cache).")


def _check_flags():
    """Every stage's flags, before the first stage starts."""
    files.check_output_location(
        "--output_dir", FLAGS.output_dir, directory=True,
        inputs={"--teacher_dir": FLAGS.teacher_dir})
    if os.path.exists(FLAGS.output_dir) and not os.path.isdir(
            FLAGS.output_dir):
        raise errors.BadInputError(
            f"--output_dir {FLAGS.output_dir} is a file; give a directory.")
    if not 0.0 < FLAGS.target_ratio <= 1.0:
        raise errors.BadInputError(
            f"--target_ratio must be in (0, 1], got {FLAGS.target_ratio}.")
    if FLAGS.prune_end_fraction is not None and not (
            0.0 < FLAGS.prune_end_fraction < 1.0):
        raise errors.BadInputError("--prune_end_fraction must be in (0, 1), "
                                   f"got {FLAGS.prune_end_fraction}.")
    if not 0.0 <= FLAGS.ema_decay < 1.0:
        raise errors.BadInputError(
            f"--ema_decay must be in [0, 1), got {FLAGS.ema_decay}.")
    for name in ("log_every", "repeats"):
        if getattr(FLAGS, name) < 1:
            raise errors.BadInputError(
                f"--{name} must be >= 1, got {getattr(FLAGS, name)}.")
    for name in ("validate_every", "train_repeats"):
        if getattr(FLAGS, name) < 0:
            raise errors.BadInputError(
                f"--{name} must be >= 0, got {getattr(FLAGS, name)}.")
    evaluation.check_arguments(num_real=FLAGS.num_real,
                               num_samples=FLAGS.num_samples)
    evaluation.parse_seeds(FLAGS.seeds)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        teacher_dir = FLAGS.teacher_dir or teachers.shipped_teacher_dir()
        if not os.path.isdir(teacher_dir):
            raise errors.BadInputError(
                f"--teacher_dir {teacher_dir} is not a directory.")
        _check_flags()
        prune_end_fraction = demo.recipe_fraction(
            FLAGS.ppcd_steps, FLAGS.cut_step, FLAGS.prune_end_fraction)
        config_lib.resolve_gin_files(FLAGS.gin_file)  # ConfigError if absent
        stages = demo.commands(
            FLAGS.output_dir, teacher_dir, FLAGS.target_ratio,
            FLAGS.ppcd_steps, FLAGS.log_every, FLAGS.gin_param,
            FLAGS.num_samples, FLAGS.seeds, FLAGS.train_repeats,
            FLAGS.repeats, FLAGS.cache_dir, FLAGS.num_real, FLAGS.ema_decay,
            prune_end_fraction, FLAGS.validate_every, FLAGS.gin_file)
    start = time.time()
    for index, (stage, command) in enumerate(stages, 1):
        logging.info("[demo] stage %d/%d: %s", index, len(stages), stage)
        demo.run_stage(stage, command)
    report = os.path.join(FLAGS.output_dir, "report", "report.md")
    print(f"Demo done in {(time.time() - start) / 60:.1f} min. Report: "
          f"{report}; TensorBoard: tensorboard --logdir "
          f"{FLAGS.output_dir}")


def run_main():
    """Console-script entry point (`ppcd-demo`)."""
    errors.run(main)


if __name__ == "__main__":
    run_main()
