r"""SIGKILLs a training run at random moments, then checks that it recovers.

  python tools/kill_probe.py --model_dir runs/probe/ppcd \
      --gin_file debug.gin --gin_file stage/ppcd.gin \
      --gin_param "TEACHER_DIR = 'ppcd_tf/assets/teacher_fashion_mnist32'" \
      --num_steps 40 --kills 5 --kill_during_saves 2 --seed 0 \
      --min_delay_s 10 --max_delay_s 90

Starts `python -m ppcd_tf.train` with the given gin files and bindings (plus
`TrainLoop.num_steps = --num_steps`), kills it with SIGKILL after a random
delay drawn from [--min_delay_s, --max_delay_s] (seeded; with --by_step at
a random step instead), restarts it, --kills times; then --kill_during_saves times at the moment a checkpoint
save is in progress; then runs it to the end. Passes (exit 0) when the last
run finishes at --num_steps with every checkpoint readable; prints each kill
with the phase it hit (startup, training, saving, after_cut, finished) and
writes them to --output (JSON) when given. Exit 1 when the run did not
recover (the log of every start is <model_dir>.probe.log), 2 on bad flags.
"""

import dataclasses
import os
import sys

from absl import app
from absl import flags

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
kill_probe = lazy.load("ppcd_tf.workflows.kill_probe")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Run directory (must not exist).")
flags.DEFINE_multi_string("gin_file", [], "Gin files of the run.")
flags.DEFINE_multi_string("gin_param", [], "Gin bindings of the run.")
flags.DEFINE_integer("num_steps", 40, "Steps of the run.")
flags.DEFINE_integer("kills", 3, "Kills after random delays.")
flags.DEFINE_integer("kill_during_saves", 1, "Kills while a save is in "
                     "progress.")
flags.DEFINE_integer("seed", 0, "Seed of the delays.")
flags.DEFINE_float("min_delay_s", 10.0, "Shortest delay before a kill.")
flags.DEFINE_float("max_delay_s", 60.0, "Longest delay before a kill.")
flags.DEFINE_bool("by_step", False, "Kill at random steps (as soon as a "
                  "checkpoint of a step drawn between the newest one and "
                  "--num_steps exists) instead of after random delays: every "
                  "kill lands in training, whatever the machine's speed.")
flags.DEFINE_integer("timeout_s", 1800, "Limit of the final run.")
flags.DEFINE_string("output", None, "JSON record of the kills (optional).")


def _check_flags():
    if not FLAGS.model_dir or not FLAGS.gin_file:
        raise errors.BadInputError("Give --model_dir and at least one "
                                   "--gin_file.")
    if os.path.exists(FLAGS.model_dir):
        raise errors.OutputExistsError(
            f"{FLAGS.model_dir} exists; the probe needs a fresh run "
            "directory.")
    if FLAGS.num_steps < 1 or FLAGS.kills < 0 or FLAGS.kill_during_saves < 0:
        raise errors.BadInputError("--num_steps must be >= 1, --kills and "
                                   "--kill_during_saves >= 0.")
    if not 0 <= FLAGS.min_delay_s <= FLAGS.max_delay_s:
        raise errors.BadInputError("Need 0 <= --min_delay_s <= "
                                   "--max_delay_s.")


def train_argv(model_dir, gin_files, gin_params, num_steps):
    """argv of the training command the probe kills."""
    argv = [sys.executable, "-m", "ppcd_tf.train", "--model_dir", model_dir]
    for name in gin_files:
        argv += ["--gin_file", name]
    for binding in list(gin_params) + [f"TrainLoop.num_steps = {num_steps}"]:
        argv += ["--gin_param", binding]
    return argv


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        _check_flags()
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    command = train_argv(os.path.abspath(FLAGS.model_dir), FLAGS.gin_file,
                         FLAGS.gin_param, FLAGS.num_steps)
    try:
        result = kill_probe.probe(
            command, os.path.abspath(FLAGS.model_dir), FLAGS.num_steps,
            FLAGS.kills, FLAGS.seed, FLAGS.min_delay_s, FLAGS.max_delay_s,
            kill_during_saves=FLAGS.kill_during_saves, cwd=REPO_ROOT,
            env=env, final_timeout_seconds=FLAGS.timeout_s,
            by_step=FLAGS.by_step)
    except kill_probe.ProbeError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        sys.exit(1)
    for number, kill in enumerate(result.kills, 1):
        print(f"kill {number}: after {kill.delay_seconds:.1f} s, "
              f"{kill.phase} (newest checkpoint step "
              f"{kill.newest_checkpoint_step})")
    print(f"recovered: final step {result.final_step}, "
          f"{len(result.checkpoint_steps)} checkpoints readable")
    if FLAGS.output:
        files.write_json(FLAGS.output, {
            "kills": [dataclasses.asdict(k) for k in result.kills],
            "final_step": result.final_step,
            "checkpoints": result.checkpoint_steps})


if __name__ == "__main__":
    errors.run(main)
