r"""Slims a finished teacher run into a shipped teacher directory.

Keeps only what PPCD, export, sampling and evaluation read (EMA G, D, step)
plus the run's configs, and records how it was trained and measured.

Example (the shipped Fashion-MNIST teacher; the command that trained it is
in README.md):
  python tools/ship_teacher.py --model_dir runs/fmnist_teacher \
      --output ppcd_tf/assets/teacher_fashion_mnist32 \
      --command "python -m ppcd_tf.train ..." --evaluate
"""

import json
import os

from absl import flags
from absl import logging

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
evaluation = lazy.load("ppcd_tf.metrics.evaluation")
teachers = lazy.load("ppcd_tf.workflows.teachers")
trainer_lib = lazy.load("ppcd_tf.training.trainer")

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The teacher run.", required=True)
flags.DEFINE_string("output", None, "Slim teacher directory.", required=True)
flags.DEFINE_integer("step", None, "Checkpoint step (default: newest).")
flags.DEFINE_string("command", None, "The command that trained the run.")
flags.DEFINE_string("note", None, "A remark recorded with the command.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")
flags.DEFINE_bool("evaluate", True, "Measure FID / class accuracy of the "
                  "slim teacher and record them.")
flags.DEFINE_integer("num_samples", 10000, "Samples per seed.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Evaluation seeds.")


def _check_flags():
    """Every flag, checked before anything is written."""
    if not os.path.isdir(FLAGS.model_dir):
        raise teachers.TeacherError(
            f"--model_dir {FLAGS.model_dir} does not exist or is not a "
            "directory; give a finished teacher run.")
    if not os.path.isfile(os.path.join(FLAGS.model_dir,
                                       trainer_lib.MODELS_FILE)):
        raise teachers.TeacherError(
            f"--model_dir {FLAGS.model_dir} has no "
            f"{trainer_lib.MODELS_FILE}; give a teacher run of python -m "
            "ppcd_tf.train.")
    if FLAGS.step is not None and FLAGS.step < 0:
        raise errors.BadInputError(f"--step must be >= 0, got {FLAGS.step}.")
    if FLAGS.evaluate:
        if FLAGS.num_samples < 2:
            raise errors.BadInputError(
                f"--num_samples must be >= 2, got {FLAGS.num_samples}.")
        evaluation.parse_seeds(FLAGS.seeds)
    output = os.path.abspath(FLAGS.output)
    if os.path.exists(output) and not os.path.isdir(output):
        raise errors.BadInputError(
            f"--output {output} is a file, not a directory.")
    if os.path.exists(output) and not FLAGS.overwrite:
        raise errors.OutputExistsError(
            f"--output {FLAGS.output} exists; pass --overwrite to replace "
            "it.")
    # The slim teacher is staged beside --output and renamed into place.
    files.check_output_location("--output", output, directory=True,
                                inputs={"--model_dir": FLAGS.model_dir})


def _ship():
    """Writes the slim teacher and (with --evaluate) its evaluation."""
    record = {"command": FLAGS.command}
    if FLAGS.note:
        record["note"] = FLAGS.note
    path = teachers.write_slim_teacher(FLAGS.model_dir, FLAGS.output,
                                       FLAGS.step, record, FLAGS.overwrite)
    logging.info("Wrote %s", path)
    if FLAGS.evaluate:
        result = evaluation.evaluate_generator(
            model_dir=FLAGS.output, num_samples=FLAGS.num_samples,
            seeds=FLAGS.seeds,
            output=os.path.join(FLAGS.output, "eval.json"))
        record = teachers.read_record(FLAGS.output)
        record["evaluation"] = {
            "summary": result["summary"],
            "computed": {k: result["computed"][k] for k in (
                "num_samples_per_seed", "seeds", "truncation", "labels")},
            "feature_network": result["computed"]["feature_network"][
                "network"],
            "real_images": "fashion_mnist test split (10,000)",
        }
        files.write_json(os.path.join(FLAGS.output, teachers.RECORD_FILE),
                         record)
        print(json.dumps(record["evaluation"]["summary"], indent=2))


def main(argv):
    del argv
    with errors.exit_on_errors():
        _check_flags()
        _ship()


if __name__ == "__main__":
    errors.run(main)
