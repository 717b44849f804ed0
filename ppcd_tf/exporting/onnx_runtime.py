"""Runs an exported `generator.onnx` with onnxruntime (no TensorFlow).

This module imports only numpy, json, onnxruntime and ppcd_tf's input
checks (numpy and absl), so a serving process needs neither TensorFlow nor
the rest of ppcd_tf:

  from ppcd_tf.exporting.onnx_runtime import OnnxGenerator
  generator = OnnxGenerator("runs/demo/student_export/generator.onnx")
  images = generator.generate(z, labels)   # z [N, dim_z], labels [N]

Session options that matter on few cores (measured on 2 cores: with
onnxruntime's default thread spinning, throughput halves):
  * `session.intra_op.allow_spinning = 0` (idle threads sleep instead of
    spinning, so they do not steal the core the work needs);
  * `intra_op_num_threads` = the physical cores (onnxruntime's default);
  * graph optimisation level ORT_ENABLE_ALL (the default).
`session_options()` returns these; pass `threads` to pin the count.

Invalid rows (a label outside [0, num_classes), a non-finite z, a batch
above the export's maximum) fail inside the graph with onnxruntime's
`InvalidArgument` naming the check node (see `ppcd_tf.exporting.portable`);
`generate` also checks shapes and labels first (integers in range: a float
or out-of-range label is refused, never truncated or wrapped) and raises
ValueError (BadInputError) naming the argument.
"""

import json

import numpy as np
import onnxruntime

from ppcd_tf.errors import DamagedInputError
from ppcd_tf.models import inputs

METADATA_KEY = "ppcd_tf.metadata"
# Metadata properties the runner reads as positive integers.
SHAPE_FIELDS = ("dim_z", "num_classes", "resolution", "max_batch")


def session_options(threads=None):
    """onnxruntime.SessionOptions for serving on a CPU with few cores."""
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


class OnnxGenerator:
    """An exported generator.onnx and its metadata.

    Attributes: path, metadata (the export's metadata.json), dim_z,
    num_classes, resolution, max_batch, session (InferenceSession).
    """

    def __init__(self, path, threads=None):
        self.path = path
        self.session = onnxruntime.InferenceSession(
            path, session_options(threads),
            providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError(f"{path} was not written by ppcd_tf's "
                             "exporter (no ppcd_tf.metadata).")
        again = "export the run again with --format onnx."
        try:
            self.metadata = json.loads(props[METADATA_KEY])
        except ValueError as error:
            raise DamagedInputError(
                f"{path}: its {METADATA_KEY} is not valid JSON ({error}); "
                f"{again}") from error
        for name in SHAPE_FIELDS:
            value = props.get(name, "")
            if not value.isdigit() or int(value) < 1:
                raise DamagedInputError(
                    f"{path}: metadata field {name!r} must be a positive "
                    f"integer, got {value!r}; {again}")
        self.dim_z = int(props["dim_z"])
        self.num_classes = int(props["num_classes"])
        self.resolution = int(props["resolution"])
        self.max_batch = int(props["max_batch"])

    def generate(self, z, labels):
        """Images float32 [N, H, W, C] in [-1, 1] (numpy) for z float32
        [N, dim_z] and labels int32 [N]; batches above max_batch are split."""
        z = np.asarray(z, np.float32)
        labels = inputs.checked_labels(labels, self.num_classes)
        if z.ndim != 2 or z.shape[1] != self.dim_z:
            raise ValueError(f"z must have shape [batch, {self.dim_z}], got "
                             f"{list(z.shape)}.")
        if labels.shape != (z.shape[0],) or z.shape[0] < 1:
            raise ValueError(
                f"labels must have shape [{z.shape[0]}] (one per row of z, "
                f"at least one), got {list(labels.shape)}.")
        parts = [self.session.run(["images"], {
            "z": z[start:start + self.max_batch],
            "labels": labels[start:start + self.max_batch]})[0]
            for start in range(0, len(labels), self.max_batch)]
        return np.concatenate(parts, axis=0)
