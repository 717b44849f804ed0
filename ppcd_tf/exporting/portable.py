"""The served generator for runtimes without TensorFlow: ONNX and TFLite.

TensorFlow's `tf.debugging.assert_*` ops do not survive conversion (tf2onnx
and the TFLite converter drop them), so a converted generator would map a
label of -1 silently to the last class (ONNX's Gather wraps negative
indices). `checked_generator_fn` therefore builds the input check out of an
ordinary op that every runtime executes: a Gather into a table of
`num_classes` zeros at index `labels` where the row is valid (label in
[0, num_classes), z finite, batch <= max batch) and at index `num_classes`
(out of bounds) where it is not. The gathered zeros are added to the labels
the generator reads, so the check runs before the generator's own class
embedding lookup. Every runtime refuses an out-of-bounds Gather index:

  * onnxruntime: `InvalidArgument` "... running Gather node. Name:
    '<CHECK_NAME>' Status Message: indices element out of data bounds,
    idx=<num_classes> must be within the inclusive range [...]";
  * TFLite: `RuntimeError` "gather index out of bounds" from the
    interpreter's `invoke`.

A z of the wrong width or labels of another dtype are refused by the
runtimes themselves (the inputs are declared [N, dim_z] float32 and [N]
int32). Both converters start from the graph the SavedModel serves
(spectral norms frozen, BatchNorm folded), and `ppcd_tf.exporting.pipeline` checks
each converted model against the trained generator before writing it.
"""

import json
import os

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf.models import inputs

# The check op's name: the runtime's error message names it.
CHECK_NAME = "invalid_input_label_outside_classes_or_nonfinite_z"
# tf2onnx converts opsets 13 to 18 of this graph (21 is refused).
DEFAULT_ONNX_OPSET = defaults.ONNX_OPSET
SUPPORTED_ONNX_OPSETS = tuple(range(13, 19))
ONNX_FILE = "generator.onnx"
TFLITE_FILE = "generator.tflite"
TFLITE_QUANTIZATIONS = defaults.TFLITE_QUANTIZATIONS


class PortableExportError(errors.BadInputError):
    """A conversion that cannot be done (the message says what to do)."""


def checked_generator_fn(generator, max_batch, batch=None):
    """tf.function (z float32 [batch, dim_z], labels int32 [batch]) ->
    {"images": float32 [batch, H, W, C]}, with the input check described
    above; `batch` None leaves the batch dimension free."""
    return _checked_fn(
        lambda z, labels: generator(z, labels, training=False),
        generator.dim_z, generator.num_classes, max_batch, batch)


def _checked_fn(images_fn, dim_z, num_classes, max_batch, batch):
    """checked_generator_fn around `images_fn(z, labels) -> images`."""

    @tf.function(input_signature=[
        tf.TensorSpec([batch, dim_z], tf.float32, name="z"),
        tf.TensorSpec([batch], tf.int32, name="labels")])
    def generate(z, labels):
        valid = tf.logical_and(
            tf.reduce_all(tf.math.is_finite(z), axis=1),
            tf.logical_and(labels >= 0, labels < num_classes))
        valid = tf.logical_and(valid, tf.shape(labels)[0] <= max_batch)
        index = tf.where(valid, labels,
                         tf.fill(tf.shape(labels), num_classes))
        zeros = tf.gather(tf.zeros([num_classes], tf.int32), index,
                          name=CHECK_NAME)
        return {"images": images_fn(z, labels + zeros)}

    return generate


def _require(module, extra):
    try:
        return __import__(module)
    except ImportError as error:
        raise PortableExportError(
            f"{module} is not installed: install the extra with pip install "
            f"'ppcd_tf[{extra}]' (or pip install {module}).") from error


def check_options(formats, onnx_opset, tflite_batch, tflite_quantization,
                  max_batch):
    """Checks the conversion options before any work (PortableExportError
    naming the flag): the opset, the TFLite batch and quantisation, and
    that tf2onnx and onnxruntime import for 'onnx'."""
    if "onnx" in formats:
        if onnx_opset not in SUPPORTED_ONNX_OPSETS:
            raise PortableExportError(
                f"--onnx_opset {onnx_opset} is not supported; use one of "
                f"{list(SUPPORTED_ONNX_OPSETS)} (default "
                f"{DEFAULT_ONNX_OPSET}).")
        _require("tf2onnx", "onnx")
        _require("onnxruntime", "onnx")
    if "tflite" in formats:
        if not 1 <= tflite_batch <= max_batch:
            raise PortableExportError(
                f"--tflite_batch must be in [1, {max_batch}], got "
                f"{tflite_batch}.")
        if tflite_quantization not in TFLITE_QUANTIZATIONS:
            raise PortableExportError(
                f"--tflite_quantization must be one of "
                f"{TFLITE_QUANTIZATIONS}, got {tflite_quantization!r}.")


def to_onnx(generator, metadata, max_batch, opset=DEFAULT_ONNX_OPSET):
    """The serving generator as ONNX bytes (inputs `z`, `labels`; output
    `images`), with `metadata` as the model's metadata_props: the JSON
    under "ppcd_tf.metadata" and dim_z / num_classes / resolution / max_batch
    as their own entries."""
    check_options(("onnx",), opset, 1, "none", max_batch)
    tf2onnx = _require("tf2onnx", "onnx")
    fn = checked_generator_fn(generator, max_batch)
    model, _ = tf2onnx.convert.from_function(
        fn, input_signature=fn.input_signature, opset=opset)
    props = {"ppcd_tf.metadata": json.dumps(metadata, sort_keys=True)}
    for key in ("dim_z", "num_classes", "resolution", "image_channels"):
        props[key] = str(metadata[key])
    props["max_batch"] = str(max_batch)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "ppcd_tf"
    return model.SerializeToString()


def to_tflite(generator, batch, max_batch, quantization="none"):
    """The serving generator as TFLite flatbuffer bytes with a fixed batch
    (inputs `z` [batch, dim_z], `labels` [batch]). `quantization`: 'none'
    (float32), 'dynamic_range' (int8 weights) or 'float16' (fp16
    weights). Built-in TFLite ops only; a graph that would need Flex ops
    raises PortableExportError naming them."""
    check_options(("tflite",), None, batch, quantization, max_batch)
    return _convert_tflite(
        checked_generator_fn(generator, max_batch, batch=batch),
        quantization)


def export_to_tflite(export, batch, quantization="none"):
    """The serving_default signature of `export` (a
    `saved_model.LoadedExport`) as TFLite bytes with a fixed `batch`, the
    input check of `checked_generator_fn` in front (the SavedModel's own
    assert ops do not survive conversion). No training run is needed: this
    converts shipped or older exports too. `conversion.checked_tflite`
    converts and checks the result against the export."""
    check_options(("tflite",), None, batch, quantization, export.max_batch)
    serve = export.signature()
    fn = _checked_fn(lambda z, labels: serve(z=z, labels=labels)["images"],
                     export.dim_z, export.num_classes, export.max_batch,
                     batch)
    return _convert_tflite(fn, quantization)


def max_tflite_difference(model, export, seed=0):
    """Max |TFLite(model) - the serving_default of `export` (a
    LoadedExport)| over one batch of the model's size (z ~ N(0, 1), labels
    cycling over the classes)."""
    runner = TFLiteGenerator(model)
    rng = np.random.RandomState(seed)
    z = rng.randn(runner.batch, runner.dim_z).astype(np.float32)
    labels = (np.arange(runner.batch) % export.num_classes).astype(np.int32)
    expected = export.generate(z, labels).numpy()
    return float(np.max(np.abs(runner.generate(z, labels) - expected)))


def _convert_tflite(fn, quantization):
    """TFLite bytes of the fixed-shape tf.function `fn`."""
    try:
        # Weights as constants: the converter would otherwise keep resource
        # variables (READ_VARIABLE ops the interpreter cannot initialise).
        frozen = convert_to_constants.convert_variables_to_constants_v2(
            fn.get_concrete_function())
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantization != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()
    except Exception as error:  # The converter's own error types vary.
        raise PortableExportError(
            "The generator cannot be converted to TFLite with built-in ops "
            f"only: {(str(error).strip().splitlines() or [repr(error)])[-1]}"
        ) from error


class TFLiteGenerator:
    """A fixed-batch TFLite generator (tf.lite.Interpreter, one thread per
    CPU core unless `num_threads` says otherwise).

    `generate(z, labels)` -> images float32 [batch, H, W, C]; an invalid
    row raises RuntimeError ("gather index out of bounds").
    """

    def __init__(self, model, num_threads=None):
        # The interpreter's own default is one thread; a CPU's cores make
        # the 5.3x student 1.9x faster on 2 cores (BENCHMARKS.md).
        self.interpreter = tf.lite.Interpreter(
            model_content=model, num_threads=num_threads or os.cpu_count())
        self.interpreter.allocate_tensors()
        # Inputs told apart by dtype (the converter renames them).
        self._inputs = {}
        for detail in self.interpreter.get_input_details():
            kind = "labels" if detail["dtype"] == np.int32 else "z"
            self._inputs[kind] = detail
        self._output = self.interpreter.get_output_details()[0]["index"]
        self.batch, self.dim_z = (int(s) for s in
                                  self._inputs["z"]["shape"])

    @classmethod
    def from_file(cls, path, num_threads=None):
        """The runner of an export's generator.tflite."""
        with open(path, "rb") as f:
            return cls(f.read(), num_threads)

    def generate(self, z, labels):
        z = np.asarray(z, np.float32)
        labels = inputs.checked_labels(labels)
        if z.shape != (self.batch, self.dim_z) or labels.shape != (
                self.batch,):
            raise errors.BadInputError(
                f"This TFLite generator takes z [{self.batch}, {self.dim_z}]"
                f" and labels [{self.batch}], got {list(z.shape)} and "
                f"{list(labels.shape)}.")
        self.interpreter.set_tensor(self._inputs["z"]["index"], z)
        self.interpreter.set_tensor(self._inputs["labels"]["index"], labels)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output)

    def generate_any(self, z, labels):
        """Images for any number N >= 1 of rows: cut into the model's fixed
        batches, the last one padded with class-0 rows that are dropped."""
        batch, parts = self.batch, []
        for start in range(0, len(labels), batch):
            part_z = np.asarray(z[start:start + batch], np.float32)
            part_labels = inputs.checked_labels(labels[start:start + batch])
            pad = batch - len(part_labels)
            images = self.generate(np.pad(part_z, ((0, pad), (0, 0))),
                                   np.pad(part_labels, (0, pad)))
            parts.append(images[:batch - pad])
        return np.concatenate(parts, axis=0)
