r"""Times teacher and PPCD training steps side by side; writes a JSON file.

  python -m ppcd_tf.time_training \
      --teacher_dir ppcd_tf/assets/teacher_fashion_mnist32 \
      --ppcd_dir runs/demo/ppcd --output runs/demo/train_steps.json

Builds a teacher trainer and PPCD trainers in fresh temporary directories
(the runs themselves are not touched) and times single compiled G steps
alternately (median of `--repeats` after `--warmup`): the teacher, PPCD in
its pruning phase (the masked full-width student) and PPCD after the cut
(the compact student, cut as the PPCD run's pruning.json records). The
report (`python -m ppcd_tf.report --train_steps FILE`) and
`tools/benchmark.py --compare_dir` show the result.

No file of either run is parsed by gin: a downloaded run's config.gin could
make gin import modules and call functions. The models come from the
teacher's models.json, the cut from the PPCD run's pruning.json, and the
recipe from the package's own gin files (the data file of the teacher's
dataset, stage/teacher.gin, stage/ppcd.gin; `--gin_file` replaces the first
two), then `--extra_gin_file` (the experiment files the PPCD run read after
its stage file, which the demo passes on from its `--gin_file`; files the user
names, not the run's own copies), plus `--gin_param`: give the run's bindings
that change a step's cost, e.g. `--gin_param "GLOBAL_BATCH_SIZE = 32"` or
`--gin_param "DistillationWeights.d_features = 0.0"`.

With `--parts` the pieces of the compact step are timed in the same rounds
(the D step, the G step, the frozen teacher G and D, the student G's forward
and backward, the training D's forward and backward to its input;
`ppcd_tf/workflows/step_parts.py`) and printed as a table of shares.
Exit status 2 on bad arguments, 3 when a run's models.json is missing.
"""


from absl import app
from absl import flags
from absl import logging

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
benchmark = lazy.load("ppcd_tf.workflows.benchmark")
run_dir = lazy.load("ppcd_tf.runs.run_dir")
step_parts = lazy.load("ppcd_tf.workflows.step_parts")
config_lib = lazy.load("ppcd_tf.config")

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher_dir", None, "The teacher run.")
flags.DEFINE_string("ppcd_dir", None, "The PPCD run.")
flags.DEFINE_string("output", None, "Result JSON path.")
flags.DEFINE_integer("repeats", 5, "Timed steps of each kind (median).")
flags.DEFINE_integer("warmup", 2, "Untimed steps of each kind.")
flags.DEFINE_multi_string(
    "gin_file", None, "The package's gin files of the teacher's recipe (a "
    "data file and a stage file; default: the data file of the teacher's "
    "dataset and stage/teacher.gin). stage/ppcd.gin is added for PPCD.")
flags.DEFINE_multi_string(
    "extra_gin_file", [], "Gin files of the PPCD run read after the stage "
    "file (the experiment files it was trained with, e.g. the demo's "
    "--gin_file; repeatable).")
flags.DEFINE_multi_string("gin_param", [], "Bindings of the timed recipe "
                          "(the runs' bindings that change a step's cost).")
flags.DEFINE_bool("parts", False, "Also time the pieces of the compact step "
                  "(teacher G and D, training D, student G, D and G steps).")


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
        files.check_output_location(
            "--output", FLAGS.output,
            inputs={"--teacher_dir": FLAGS.teacher_dir,
                    "--ppcd_dir": FLAGS.ppcd_dir})
        for name in ("teacher_dir", "ppcd_dir"):
            run_dir.read_model_configs(getattr(FLAGS, name))
        # ConfigError (exit 2) for a missing file before any model is built.
        config_lib.resolve_gin_files(FLAGS.extra_gin_file)
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
        result = benchmark.measure_train_steps(
            FLAGS.teacher_dir, FLAGS.ppcd_dir, gin_files=FLAGS.gin_file,
            gin_params=FLAGS.gin_param, repeats=FLAGS.repeats,
            warmup=FLAGS.warmup, parts=FLAGS.parts,
            extra_gin_files=FLAGS.extra_gin_file)
        files.write_json(FLAGS.output, result)
    line = (f"teacher {result['teacher_seconds_per_step']:.3f} s/step, PPCD "
            f"(pruning phase) {result['ppcd_seconds_per_step']:.3f} s "
            f"({result['ratio']:.2f}x)")
    if "compact_ratio" in result:
        compact = result["ppcd_compact_seconds_per_step"]
        line += (f", PPCD after the cut {compact:.3f} s "
                 f"({result['compact_ratio']:.2f}x)")
    print(line)
    if "compact_parts" in result:
        print(step_parts.markdown(result["compact_parts"],
                                  result["ppcd_compact_seconds_per_step"],
                                  result["teacher_seconds_per_step"]))
    print(f"Wrote {FLAGS.output}")


def run_main():
    """Console-script entry point (`ppcd-time-training`)."""
    errors.run(main)


if __name__ == "__main__":
    run_main()
