r"""Measures a teacher generator's per-layer latency table on this machine.

  python tools/latency_table.py \
      --teacher_dir ppcd_tf/assets/teacher_fashion_mnist32 \
      --batch_size 64 --output runs/latency_table_b64.json

Run it on the machine that will serve the compressed generator, at the batch
size it will serve. The table (JSON, `ppcd_tf.models.latency`) gives, per
term of the generator (each convolution, normalisation and attention part),
its seconds per batch on a grid of kept widths; a PPCD run then budgets the
predicted latency as it budgets parameters:

  python -m ppcd_tf.train ... --gin_file stage/ppcd.gin \
      --gin_param "TARGET_LATENCY_RATIO = 0.2" \
      --gin_param "LATENCY_TABLE = 'runs/latency_table_b64.json'"

With --check_fractions the tool also measures compact generators whose every
width is that fraction of the full one and prints predicted vs measured
seconds, which says how far to trust the table. Nothing else should run on
the machine meanwhile.
"""

import os

from absl import app
from absl import flags

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
arch = lazy.load("ppcd_tf.models.arch")
channel_masks = lazy.load("ppcd_tf.pruning.channel_masks")
generator_lib = lazy.load("ppcd_tf.models.generator")
latency_table = lazy.load("ppcd_tf.workflows.latency_table")
run_dir = lazy.load("ppcd_tf.runs.run_dir")
saved_model = lazy.load("ppcd_tf.exporting.saved_model")

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher_dir", None, "The teacher run (its models.json "
                    "gives the generator's shape; weights are not needed).")
flags.DEFINE_string("output", None, "Where to write the table (JSON).")
flags.DEFINE_integer("batch_size", 64, "Serving batch size measured.")
flags.DEFINE_integer("grid_step", 8, "Widths measured per axis: multiples "
                     "of this, --min_width and the full width (8 follows "
                     "the fast widths of AVX CPUs; 16 is faster to "
                     "measure).")
flags.DEFINE_integer("min_width", 4, "Smallest width measured (the usual "
                     "per-layer floor, PruningBudget.min_channels).")
flags.DEFINE_integer("repeats", 5, "Timing samples per point (median).")
flags.DEFINE_integer("calls", 3, "Calls per timing sample.")
flags.DEFINE_list("check_fractions", ["0.25", "0.5"], "Uniform width "
                  "fractions whose compact generators are measured against "
                  "the prediction (empty: none).")
flags.DEFINE_list("check_exports", [], "Exported students whose channel "
                  "configurations are measured against the prediction.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")


def _check_writable(flag, path):
    """Refuses, before any work, an output file `path` that cannot be
    written: a directory, under a file, or under a directory this process
    cannot write to."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        raise errors.BadInputError(
            f"{flag} {path} is a directory; give a file path.")
    files.check_output_location(flag, path, directory=False)


def _check_export_channels(path):
    """The ChannelConfig of a --check_exports entry, read before any
    measuring."""
    if not os.path.isdir(path):
        raise errors.MissingInputError(
            f"--check_exports: {path} does not exist or is not a "
            "directory; give exports written by python -m ppcd_tf.export.")
    config = os.path.join(path, saved_model.ASSETS_DIR, "channel_config.json")
    if not os.path.isfile(config):
        raise errors.MissingInputError(
            f"--check_exports: {path} is not an export of ppcd_tf (no "
            f"{saved_model.ASSETS_DIR}/channel_config.json); give exports "
            "written by python -m ppcd_tf.export.")
    try:
        return arch.ChannelConfig.from_dict(saved_model.read_channel_config(path))
    except (errors.MissingInputError, ValueError, KeyError, TypeError,
            AttributeError) as error:
        raise errors.DamagedInputError(
            f"--check_exports: {config} cannot be read ({error}); export "
            "the run again.") from error


def _check_flags():
    for name in ("batch_size", "grid_step", "min_width", "repeats", "calls"):
        if getattr(FLAGS, name) < 1:
            raise errors.BadInputError(f"--{name} must be >= 1.")
    _check_writable("--output", FLAGS.output)
    if os.path.exists(FLAGS.output) and not FLAGS.overwrite:
        raise errors.OutputExistsError(
            f"{FLAGS.output} exists; pass --overwrite to replace it.")
    fractions = []
    for text in FLAGS.check_fractions:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0.0 < value <= 1.0:
            raise errors.BadInputError(
                f"--check_fractions takes numbers in (0, 1], got {text!r}.")
        fractions.append(value)
    exports = [(os.path.basename(path.rstrip("/")),
                _check_export_channels(path))
               for path in FLAGS.check_exports]
    return fractions, exports


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        fractions, exports = _check_flags()
        config = run_dir.read_model_configs(FLAGS.teacher_dir)["generator"]
        generator = generator_lib.Generator.from_config(config)
        generator.build()
        table = latency_table.measure_table(
            generator, FLAGS.batch_size, FLAGS.grid_step, FLAGS.min_width,
            FLAGS.repeats, FLAGS.calls)
        table.write(FLAGS.output)
        print(f"Wrote {FLAGS.output}: {len(table.terms)} terms, batch "
              f"{table.batch_size}, full generator "
              f"{1e3 * table.measured_full_seconds:.2f} ms measured, offset "
              f"{1e3 * table.offset_seconds:+.2f} ms.")
        widths = channel_masks.mask_widths(generator.channels,
                                           prune_attention=True)
        counts_list = [{key: max(1, int(round(f * w)))
                        for key, w in widths.items()} for f in fractions]
        names = [f"widths x{f:g}" for f in fractions]
        for name, channels in exports:
            counts_list.append(dict(channel_masks.mask_widths(
                channels, prune_attention=True)))
            names.append(name)
        for name, row in zip(names, latency_table.check_prediction(
                table, generator, counts_list, FLAGS.repeats)):
            print(f"{name}: predicted "
                  f"{1e3 * row['predicted_seconds']:.2f} ms, measured "
                  f"{1e3 * row['measured_seconds']:.2f} ms (ratio "
                  f"{row['predicted_seconds'] / row['measured_seconds']:.2f})")


if __name__ == "__main__":
    flags.mark_flags_as_required(["teacher_dir", "output"])
    errors.run(main)
