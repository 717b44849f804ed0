r"""Where a served generator's time goes, op by op (TensorFlow's profiler).

  python tools/profile_generation.py \
      --exports runs/demo/teacher_export,runs/demo/student_export \
      --batches 1,64 --output runs/profile.json

For every export and batch size it calls the export's `serving_default`
signature --calls times under TensorFlow's profiler, sums the self-time of
every op into the parts of a BigGAN generator (attention, block convs,
conditional BN + ReLU, upsampling, output, linear and embedding, input
checks, other; `ppcd_tf.workflows.generation_profile`) and sets them against
the median wall time of the same calls without the profiler: what no op
accounts for (dispatch, thread hand-offs, the call itself) is the row
"outside ops". Prints one markdown table (ms per call and share of the wall
time) and, with --output, writes it with the 15 costliest ops of each
profile as JSON. Nothing else should run on the machine meanwhile.
"""

import os

from absl import app
from absl import flags

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
generation_profile = lazy.load("ppcd_tf.workflows.generation_profile")
saved_model = lazy.load("ppcd_tf.exporting.saved_model")

FLAGS = flags.FLAGS
flags.DEFINE_list("exports", None, "Exported generators (directories "
                  "written by python -m ppcd_tf.export).")
flags.DEFINE_list("batches", ["1", "64"], "Batch sizes profiled.")
flags.DEFINE_integer("calls", 50, "Profiled (and, apart, timed) calls per "
                     "export and batch.")
flags.DEFINE_integer("warmup", 10, "Untimed calls first.")
flags.DEFINE_string("output", None, "Write the profiles here (JSON).")


def _batches():
    try:
        batches = [int(b) for b in FLAGS.batches]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise errors.BadInputError(
            f"--batches takes positive integers, e.g. 1,64; got "
            f"{FLAGS.batches}.")
    return batches


def _check_flags():
    """Every flag, checked before TensorFlow is imported."""
    if not FLAGS.exports:
        raise errors.BadInputError(
            "--exports is required: one or more directories written by "
            "python -m ppcd_tf.export.")
    _batches()
    for name in ("calls", "warmup"):
        if getattr(FLAGS, name) < (1 if name == "calls" else 0):
            raise errors.BadInputError(
                f"--{name} must be >= {1 if name == 'calls' else 0}, got "
                f"{getattr(FLAGS, name)}.")
    for path in FLAGS.exports:
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise errors.MissingInputError(
                f"--exports: {path} holds no saved_model.pb; give a "
                "directory written by python -m ppcd_tf.export.")
    if FLAGS.output:
        files.check_output_location(
            "--output", FLAGS.output,
            inputs={f"--exports {path}": path for path in FLAGS.exports})


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        _check_flags()
        for path in FLAGS.exports:
            saved_model.read_metadata(path)  # exit 3 naming a bad field
        results = [generation_profile.profile_export(
                       path, batch, FLAGS.calls, FLAGS.warmup)
                   for batch in _batches() for path in FLAGS.exports]
        table = generation_profile.markdown(results)
        print(table)
        if FLAGS.output:
            files.write_json(FLAGS.output, {"profiles": results,
                                            "table": table})


if __name__ == "__main__":
    app.run(main)
