r"""Times teacher and PPCD training steps side by side; writes a JSON file.

  python -m ppcd_tf.time_training \
      --teacher_dir ppcd_tf/assets/teacher_fashion_mnist32 \
      --ppcd_dir runs/demo/ppcd --output runs/demo/train_steps.json

Builds a teacher trainer and PPCD trainers from the two runs' `config.gin`
(in fresh temporary directories: the runs themselves are not touched) and
times single compiled G steps alternately (median of `--repeats` after
`--warmup`): the teacher, PPCD in its pruning phase (the masked full-width
student) and PPCD after the cut (the compact student at the run's budget).
The report (`python -m ppcd_tf.report --train_steps FILE`) and
`tools/benchmark.py --compare_dir` show the result.

A run's config.gin is checked before gin reads it
(`config.check_run_config`): only `import ppcd_tf...` lines and bindings of
registered configurables are accepted, so a downloaded run cannot make gin
import other modules or call other functions (exit 2 names the line).
Exit status 2 on bad arguments, 3 when a run's config.gin is missing.
"""


from absl import app
from absl import flags
from absl import logging

from ppcd_tf import benchmarking
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import run_dir

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher_dir", None, "The teacher run.")
flags.DEFINE_string("ppcd_dir", None, "The PPCD run.")
flags.DEFINE_string("output", None, "Result JSON path.")
flags.DEFINE_integer("repeats", 5, "Timed steps of each kind (median).")
flags.DEFINE_integer("warmup", 2, "Untimed steps of each kind.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        for name in ("teacher_dir", "ppcd_dir", "output"):
            if not getattr(FLAGS, name):
                raise errors.BadInputError(f"Missing --{name}.")
        if FLAGS.repeats < 1 or FLAGS.warmup < 0:
            raise errors.BadInputError("--repeats must be >= 1 and --warmup "
                                       ">= 0.")
        files.check_output_location("--output", FLAGS.output)
        teacher_config, ppcd_config = benchmarking.run_config_paths(
            FLAGS.teacher_dir, FLAGS.ppcd_dir)
        if run_dir.read_pruning_structure(FLAGS.ppcd_dir) is None:
            raise errors.BadInputError(
                f"--ppcd_dir {FLAGS.ppcd_dir} is not a PPCD run (no "
                f"{run_dir.PRUNING_FILE}); give the --model_dir of a run of "
                "stage/ppcd.gin.")
        if run_dir.read_pruning_structure(FLAGS.teacher_dir) is not None:
            raise errors.BadInputError(
                f"--teacher_dir {FLAGS.teacher_dir} is a PPCD run; give the "
                "teacher's run.")
        logging.info("Timing teacher and PPCD training steps ...")
        result = benchmarking.measure_train_steps(
            teacher_config, ppcd_config, repeats=FLAGS.repeats,
            warmup=FLAGS.warmup)
        files.write_json(FLAGS.output, result)
    line = (f"teacher {result['teacher_seconds_per_step']:.3f} s/step, PPCD "
            f"(pruning phase) {result['ppcd_seconds_per_step']:.3f} s "
            f"({result['ratio']:.2f}x)")
    if "compact_ratio" in result:
        compact = result["ppcd_compact_seconds_per_step"]
        line += (f", PPCD after the cut {compact:.3f} s "
                 f"({result['compact_ratio']:.2f}x)")
    print(line)
    print(f"Wrote {FLAGS.output}")


def run_main():
    """Console-script entry point (`ppcd-time-training`)."""
    errors.run(main)


if __name__ == "__main__":
    run_main()
