r"""Exports a run's generator as a compact SavedModel for serving.

Example:

  python -m ppcd_tf.export --model_dir runs/ppcd --output runs/ppcd_export

For a PPCD run the exporter drops the masks and the pruned filters (after
checking that the compact generator equals the hard-masked one); for a teacher
run it exports the EMA generator as it is. The served graph is precomputed
where exact (spectral norms frozen, BatchNorm statistics folded into the
preceding convolutions; --nofold_batch_norm keeps them) and checked again;
--jit_compile compiles it with XLA. It prints a report (channels per
layer, parameters, MACs, SavedModel size) and writes it as JSON next to the
export (`<output>.report.json`). See ppcd_tf/exporting/saved_model.py for the signatures.

--format onnx / --format tflite also write `generator.onnx` (onnxruntime,
`ppcd_tf.exporting.onnx_runtime`) / `generator.tflite` (fixed batch --tflite_batch)
into the export directory, each checked against the compact generator
before anything is written; invalid inputs fail inside those graphs (see
ppcd_tf/exporting/portable.py).
--from_export EXPORT (instead of --model_dir) copies an existing export to
--output with generator.tflite added (batch --tflite_batch, checked against
its SavedModel), for exports whose run is gone, e.g. the shipped students:

  python -m ppcd_tf.export --from_export \
      ppcd_tf/assets/student_fashion_mnist32_16x --tflite_batch 1 \
      --output runs/student_16x_tflite

Exit codes: 0 done, 2 the run cannot be exported as asked.
"""

import os

from absl import app
from absl import flags

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
conversion = lazy.load("ppcd_tf.exporting.conversion")
pipeline = lazy.load("ppcd_tf.exporting.pipeline")
portable = lazy.load("ppcd_tf.exporting.portable")

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "Training run directory to export.")
flags.DEFINE_string("from_export", None, "Instead of --model_dir: an "
                    "existing export, copied to --output with "
                    "generator.tflite (--tflite_batch) added.")
flags.DEFINE_string("output", None, "SavedModel directory to write.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output.")
flags.DEFINE_string("checkpoint", "latest", "Which checkpoint of the run: "
                    "latest, best (the best validation score, in "
                    "<model_dir>/best/) or a checkpoint path prefix.")
flags.DEFINE_float("binarize_threshold", None,
                   "Export a soft-mask (not yet hardened) PPCD checkpoint by "
                   "keeping channels whose mask logit exceeds this value.")
flags.DEFINE_float("tolerance", defaults.EXPORT_TOLERANCE,
                   "Largest allowed |compact - masked| image difference.")
flags.DEFINE_bool("fold_batch_norm", True, "Fold BatchNorm standing "
                  "statistics into the preceding convolution where exact "
                  "(checked within --tolerance).")
flags.DEFINE_bool("jit_compile", False, "Compile the served computation "
                  "with XLA.")
flags.DEFINE_multi_enum("format", [], list(defaults.PORTABLE_FORMATS),
                        "Also write a converted model beside the SavedModel "
                        "(repeatable): onnx (generator.onnx; needs "
                        "ppcd_tf[onnx]), tflite (generator.tflite, fixed "
                        "batch).")
flags.DEFINE_integer("onnx_opset", defaults.ONNX_OPSET,
                     "ONNX opset of --format onnx (13 to 18).")
flags.DEFINE_integer("tflite_batch", 64, "Fixed batch of --format tflite.")
flags.DEFINE_enum("tflite_quantization", "none",
                  list(defaults.TFLITE_QUANTIZATIONS),
                  "Weights of --format tflite: float32 (none), int8 "
                  "(dynamic_range) or float16.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        if (FLAGS.model_dir is None) == (FLAGS.from_export is None):
            raise errors.BadInputError(
                "Give exactly one of --model_dir (a training run) and "
                "--from_export (an existing export to add a TFLite model "
                "to).")
        if FLAGS.from_export is not None:
            _add_tflite()
            return
        files.check_output_location(
            "--output", FLAGS.output, directory=True,
            inputs={"--model_dir": FLAGS.model_dir})
        if FLAGS.tolerance is not None and not FLAGS.tolerance >= 0:
            raise errors.BadInputError(
                f"--tolerance must be >= 0, got {FLAGS.tolerance}.")
        report = pipeline.export_run(
            FLAGS.model_dir, FLAGS.output, overwrite=FLAGS.overwrite,
            binarize_threshold=FLAGS.binarize_threshold,
            tolerance=FLAGS.tolerance, checkpoint=FLAGS.checkpoint,
            fold_batch_norm=FLAGS.fold_batch_norm,
            jit_compile=FLAGS.jit_compile, formats=FLAGS.format,
            onnx_opset=FLAGS.onnx_opset, tflite_batch=FLAGS.tflite_batch,
            tflite_quantization=FLAGS.tflite_quantization)
    print(pipeline.format_report(report))
    files.write_json(FLAGS.output.rstrip("/") + ".report.json", report)


# Flags that choose how a run is exported: --from_export refuses them.
RUN_ONLY_FLAGS = ("checkpoint", "binarize_threshold", "fold_batch_norm",
                  "jit_compile", "onnx_opset")


def _add_tflite():
    """--from_export: the export copied with generator.tflite added."""
    for name in RUN_ONLY_FLAGS:
        if FLAGS[name].present:
            raise errors.BadInputError(
                f"--{name} applies to --model_dir only; --from_export "
                "copies the export's SavedModel as it is.")
    if set(FLAGS.format) - {"tflite"}:
        raise errors.BadInputError(
            "--from_export adds --format tflite only; for ONNX export the "
            "training run with --model_dir.")
    if not saved_model_dir(FLAGS.from_export):
        raise errors.MissingInputError(
            f"--from_export {FLAGS.from_export} is not an export directory "
            "(no saved_model.pb); give one written by python -m "
            "ppcd_tf.export.")
    files.check_output_location(
        "--output", FLAGS.output, directory=True,
        inputs={"--from_export": FLAGS.from_export})
    report = conversion.add_tflite(
        FLAGS.from_export, FLAGS.output, FLAGS.tflite_batch,
        FLAGS.tflite_quantization, overwrite=FLAGS.overwrite)
    print(conversion.format_report(report))


def saved_model_dir(path):
    """Whether `path` is a directory holding a SavedModel."""
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def run_main():
    """Console-script entry point (`ppcd-export`)."""
    flags.mark_flags_as_required(["output"])
    errors.run(main)


if __name__ == "__main__":
    run_main()
