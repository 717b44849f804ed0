r"""Trains a BigGAN teacher (or, with gin/stage/ppcd.gin, a PPCD student).

Example (the demo teacher on the offline Fashion-MNIST, one CPU):

  python -m ppcd_tf.train \
      --gin_file gin/data/fashion_mnist32.gin \
      --gin_file gin/model/biggan32.gin \
      --gin_file gin/stage/teacher.gin \
      --gin_param "Trainer.num_steps = 2000" \
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
"""

import os
import sys
import tokenize

import gin
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from ppcd_tf import configurables  # noqa: F401  (registers Keras symbols)
from ppcd_tf import losses  # noqa: F401  (gin configurables)
from ppcd_tf import strategy as strategy_lib
from ppcd_tf import trainer as trainer_lib
from ppcd_tf.data import pipeline  # noqa: F401  (gin configurables)
from ppcd_tf.data import sources
from ppcd_tf.models import builders  # noqa: F401  (gin configurables)

DEFAULT_GIN_SEARCH_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin config files (in order).")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings, applied last.")
flags.DEFINE_string("model_dir", None, "Output directory (checkpoints, "
                    "summaries, configs, samples). Re-running resumes.")
flags.DEFINE_string("strategy", None, "Overrides get_strategy.name: "
                    + ", ".join(strategy_lib.STRATEGY_NAMES) + ".")
flags.DEFINE_integer("logical_cpus", 0, "Split the CPU into this many "
                     "logical devices before TensorFlow starts (0: off).")
flags.DEFINE_list("gin_search_path", [DEFAULT_GIN_SEARCH_PATH],
                  "Directories searched for gin files and includes.")
flags.DEFINE_bool("run_functions_eagerly", False,
                  "Run tf.functions eagerly (debugging).")


class ConfigError(ValueError):
    """A gin file or binding that cannot be used."""


def parse_gin(gin_files, gin_params, search_path=(DEFAULT_GIN_SEARCH_PATH,)):
    """Parses gin files and bindings; raises ConfigError with a clear message."""
    for path in search_path:
        gin.add_config_file_search_path(path)
    resolved = []
    for name in gin_files:
        candidates = [name] + [os.path.join(p, name) for p in search_path]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise ConfigError(
                f"Gin file {name!r} not found (looked in the working "
                f"directory and {list(search_path)}). Available files are "
                f"under {DEFAULT_GIN_SEARCH_PATH}.")
        resolved.append(found)
    try:
        gin.parse_config_files_and_bindings(resolved, gin_params)
    except (SyntaxError, tokenize.TokenError) as error:
        raise ConfigError(f"Malformed gin binding or file: {error}. "
                          "Bindings look like "
                          "\"Trainer.num_steps = 100\".") from error
    except (ValueError, KeyError, ImportError, AttributeError) as error:
        raise ConfigError(f"Invalid gin configuration: {error}") from error
    return resolved


def configure_logical_cpus(count):
    """Splits the first physical CPU into `count` logical devices."""
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)


def write_config(model_dir, gin_files, gin_params):
    """Writes the parsed config as <model_dir>/config.gin (atomically)."""
    tf.io.gfile.makedirs(model_dir)
    path = os.path.join(model_dir, "config.gin")
    header = ["# Config of this run (files in order, then bindings).",
              "# Files: " + ", ".join(gin_files)]
    header += [f"# Binding: {p}" for p in gin_params]
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
        f.write("\n".join(header) + "\n\n" + gin.config_str())
    tf.io.gfile.rename(tmp, path, overwrite=True)


@gin.configurable(denylist=["model_dir", "strategy"])
def run(model_dir, strategy, trainer_cls=trainer_lib.Trainer):
    """Builds the trainer named in gin and trains it."""
    trainer = trainer_cls(model_dir=model_dir, strategy=strategy)
    return trainer.train()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.model_dir:
        raise app.UsageError("--model_dir is required.")
    if FLAGS.logical_cpus:
        configure_logical_cpus(FLAGS.logical_cpus)
    if FLAGS.run_functions_eagerly:
        tf.config.run_functions_eagerly(True)
    try:
        files = parse_gin(FLAGS.gin_file, FLAGS.gin_param,
                          FLAGS.gin_search_path)
        if FLAGS.strategy:
            strategy = strategy_lib.get_strategy(name=FLAGS.strategy)
        else:
            strategy = strategy_lib.get_strategy()
        if strategy_lib.is_chief(strategy):
            write_config(FLAGS.model_dir, files, FLAGS.gin_param)
        logging.info("Gin config:\n%s", gin.config_str())
        run(FLAGS.model_dir, strategy)
    except (ConfigError, sources.DataNotFoundError) as error:
        logging.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2 if isinstance(error, ConfigError) else 3)
    except (ValueError, FloatingPointError) as error:
        logging.error("%s", error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


def run_main():
    """Console-script entry point (`ppcd-train`)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
