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
import sys

from absl import flags
from absl import logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from ppcd_tf import errors  # noqa: E402
from ppcd_tf import evaluation  # noqa: E402
from ppcd_tf import teachers  # noqa: E402

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


def main(argv):
    del argv
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
        with open(os.path.join(FLAGS.output, teachers.RECORD_FILE),
                  "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        print(json.dumps(record["evaluation"]["summary"], indent=2))


if __name__ == "__main__":
    errors.run(main)
