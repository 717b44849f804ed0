"""Defaults and choices that the commands' flags show, free of TensorFlow.

The libraries that own these values bind their names to them (e.g.
`evaluation.DEFAULT_NUM_SAMPLES`); the commands read them from here, so that
defining their flags, `--help` and a flag error do not import TensorFlow
(see `ppcd_tf.lazy`).
"""

import os

# ppcd_tf.metrics.evaluation: the report's protocol and the real-feature
# cache.
EVAL_NUM_SAMPLES = 10000
EVAL_SEEDS = (0, 1, 2)
EVAL_BATCH_SIZE = 500
EVAL_CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "ppcd_tf")
# ppcd_tf.metrics.feature_networks: the networks metrics can be computed on.
FEATURE_NETWORKS = ("fmnist_classifier", "inception_v3", "efficientnet_lite0")
# ppcd_tf.exporting.pipeline: largest |masked - compact| an export accepts,
# and the portable formats beside the SavedModel.
EXPORT_TOLERANCE = 1e-4
PORTABLE_FORMATS = ("onnx", "tflite")
# ppcd_tf.exporting.portable.
ONNX_OPSET = 15
TFLITE_QUANTIZATIONS = ("none", "dynamic_range", "float16")
# Largest |float32 TFLite - SavedModel| the exporter and the TFLite timing
# accept.
TFLITE_TOLERANCE = 1e-3
# ppcd_tf.reporting.report / tools/benchmark.py: the runtimes generation is
# timed in.
GENERATION_RUNTIMES = ("tensorflow", "tflite")
# ppcd_tf.reporting.report: the speed measurement.
REPORT_GEN_BATCH = 64
REPORT_REPEATS = 10
# ppcd_tf.config: where gin files are looked up.
GIN_SEARCH_PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")
# ppcd_tf.training.strategy: the tf.distribute strategies by name.
STRATEGY_NAMES = ("auto", "one_device", "mirrored", "multi_worker", "tpu",
                  "default")
# ppcd_tf.workflows.compression_curve: the methods a curve compares.
CURVE_METHODS = {
    "ppcd": "PPCD (masks + class-aware distillation)",
    "uniform_pruning": "uniform pruning (same widths fraction everywhere)",
    "no_masks": "thinner student from scratch (same distillation)",
}
