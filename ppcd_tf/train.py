r"""Trains a BigGAN teacher (or, with gin/stage/ppcd.gin, a PPCD student).

Example (the demo teacher on the offline Fashion-MNIST, one CPU):

  python -m ppcd_tf.train \
      --gin_file gin/data/fashion_mnist32.gin \
      --gin_file gin/model/biggan32.gin \
      --gin_file gin/stage/teacher.gin \
      --gin_param "TrainLoop.num_steps = 2000" \
      --model_dir runs/teacher

Running the same command again resumes from the newest checkpoint in
`--model_dir`. `tensorboard --logdir runs/teacher` shows losses, learning
rates, speed and sample grids.

Strategies (`--strategy` or the gin binding `get_strategy.name`): auto,
one_device, mirrored, multi_worker (cluster from TF_CONFIG), tpu, default.
`--logical_cpus N` splits the CPU into N logical devices (to try the
mirrored strategy on one machine).

Gin files are looked up relative to the working directory and to the
repository's `gin/` directory (`--gin_search_path`).

Exit status (ppcd_tf.errors): 2 for a wrong flag or binding, 3 for missing
or damaged data, weights or run files, 1 when the losses diverge; anything
else ends in a traceback (a bug).
"""

import os

import gin
from absl import app
from absl import flags
from absl import logging

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files as files_lib
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without TensorFlow
# (ppcd_tf/lazy.py); main registers the gin configurables before it parses
# the configuration (training/registry.py).
config_lib = lazy.load("ppcd_tf.config")
registry = lazy.load("ppcd_tf.training.registry")
run_dir = lazy.load("ppcd_tf.runs.run_dir")
strategy_lib = lazy.load("ppcd_tf.training.strategy")
tf = lazy.load("tensorflow")
trainer_lib = lazy.load("ppcd_tf.training.trainer")

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin config files (in order).")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, applied last.")
flags.DEFINE_string("model_dir", None, "Output directory (checkpoints, "
                    "summaries, configs, samples). Re-running resumes.")
flags.DEFINE_string("strategy", None, "Overrides get_strategy.name: "
                    + ", ".join(defaults.STRATEGY_NAMES) + ".")
flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many "
                     "logical devices before TensorFlow starts (0: off).")
flags.DEFINE_list("gin_search_path", [defaults.GIN_SEARCH_PATH],
                  "Directories searched for gin files and includes.")
flags.DEFINE_bool("run_functions_eagerly", False,
                  "Run tf.functions eagerly (debugging).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        if FLAGS.logical_cpus < 0:
            raise errors.BadInputError(
                f"--logical_cpus must be >= 0, got {FLAGS.logical_cpus}.")
    if FLAGS.logical_cpus:
        config_lib.configure_logical_cpus(FLAGS.logical_cpus)
    if FLAGS.run_functions_eagerly:
        tf.config.run_functions_eagerly(True)
    with errors.exit_on_errors():
        if not FLAGS.gin_file:
            raise errors.BadInputError(
                "Give at least one --gin_file (e.g. --gin_file "
                "data/fashion_mnist32.gin --gin_file model/biggan32.gin "
                "--gin_file stage/teacher.gin).")
        if os.path.exists(FLAGS.model_dir) and not os.path.isdir(
                FLAGS.model_dir):
            raise errors.BadInputError(
                f"--model_dir {FLAGS.model_dir} is a file; give a directory.")
        files_lib.check_output_location("--model_dir", FLAGS.model_dir)
        registry.register()
        files = config_lib.parse_gin(FLAGS.gin_file, FLAGS.gin_param,
                                     FLAGS.gin_search_path)
        if FLAGS.strategy:
            strategy = strategy_lib.get_strategy(name=FLAGS.strategy)
        else:
            strategy = strategy_lib.get_strategy()
        if not strategy_lib.is_chief(strategy):
            logging.info("Gin config:\n%s", gin.config_str())
            trainer_lib.run(FLAGS.model_dir, strategy)
            return
        # The lock comes first: a second trainer refused here must not
        # have rewritten the running run's config.gin.
        with run_dir.locked(FLAGS.model_dir):
            config_lib.write_config(FLAGS.model_dir, files, FLAGS.gin_param)
            logging.info("Gin config:\n%s", gin.config_str())
            trainer_lib.run(FLAGS.model_dir, strategy)


def run_main():
    """Console-script entry point (`ppcd-train`)."""
    flags.mark_flag_as_required("model_dir")
    errors.run(main)


if __name__ == "__main__":
    run_main()
