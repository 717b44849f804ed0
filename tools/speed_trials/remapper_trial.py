r"""Does grappler's remapper failure cost PPCD training time?

Every compiled PPCD step logs "remapper failed: INVALID_ARGUMENT:
Mutation::Apply error: fanout ... exist for missing node ...
teacher_discriminator_1/block4_1/add": grappler's remapper (which fuses
e.g. Conv2D + BiasAdd + Add + ReLU into one kernel) gives up on the whole
function graph. This trial builds two PPCD trainers in one process, one
compiled with the remapper on (the default) and one with it off
(`tf.config.optimizer.set_experimental_options({"remapping": False})` while
its step is first traced and instantiated), and times single G steps of
both alternately (median). Equal times mean the failure costs nothing: the
fusions it would do are not done either way.

  python tools/speed_trials/remapper_trial.py --repeats 15 \
      --output runs/exp/remapper_trial.json
"""

import json
import os
import sys
import tempfile
import time

import gin
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from ppcd_tf import config as config_lib  # noqa: E402
from ppcd_tf import ppcd_trainer  # noqa: E402
from ppcd_tf import strategy as strategy_lib  # noqa: E402
from ppcd_tf import teachers  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 15, "Timed steps of each kind (median).")
flags.DEFINE_integer("warmup", 2, "Untimed steps of each kind.")
flags.DEFINE_string("output", None, "Result JSON path.")

GIN_FILES = ["data/fashion_mnist32.gin", "stage/teacher.gin",
             "stage/ppcd.gin"]


def build(root, name, remapping):
    """A PPCD trainer whose step is compiled with `remapping` on or off."""
    gin.clear_config()
    config_lib.parse_gin(GIN_FILES, [])
    tf.config.optimizer.set_experimental_options({"remapping": remapping})
    trainer = ppcd_trainer.PPCDTrainer(
        model_dir=os.path.join(root, name),
        strategy=strategy_lib.get_strategy("one_device"),
        teacher_dir=teachers.shipped_teacher_dir())
    iterator = trainer.make_iterator(0)
    for _ in range(FLAGS.warmup):
        trainer.run_steps(iterator, 1)
    return trainer, iterator


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as root:
        runs = {"remapper on": build(root, "on", True),
                "remapper off": build(root, "off", False)}
        times = {name: [] for name in runs}
        for _ in range(FLAGS.repeats):
            for name, (trainer, iterator) in runs.items():
                start = time.perf_counter()
                trainer.run_steps(iterator, 1)
                times[name].append(time.perf_counter() - start)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    result = {"seconds_per_step": medians,
              "off_over_on": medians["remapper off"] / medians["remapper on"],
              "repeats": FLAGS.repeats, "step_times": times}
    print(json.dumps({k: v for k, v in result.items()
                      if k != "step_times"}, indent=2))
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main)
