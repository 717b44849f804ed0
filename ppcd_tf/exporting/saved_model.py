"""SavedModel export of a (compact) generator, ready for serving.

Signatures (Keras 3 `ExportArchive`, loadable with `tf.saved_model.load` in a
process without ppcd_tf and runnable with `saved_model_cli run`):

  * `serving_default(z: float32 [N, dim_z], labels: int32 [N])
      -> {'images': float32 [N, H, W, C] in [-1, 1]}`
  * `sample(labels: int32 [N], truncation: float32 [], seed: int32 [2])
      -> {'images': ...}`: the truncation trick, z drawn inside the graph from
    a normal truncated at +-2 and scaled by `truncation` (stateless, so the
    same seed gives the same images).
  * `interpolate(z: float32 [N, dim_z], labels_a: int32 [N], labels_b:
      int32 [N], alpha: float32 [N]) -> {'images': ...}`: class
    interpolation, the shared class embedding mixed as (1 - alpha) *
    e(labels_a) + alpha * e(labels_b) (alpha in [0, 1]; 0 gives
    serving_default's image of labels_a, 1 that of labels_b).

Bad inputs (labels outside [0, num_classes), a z of the wrong width, a batch
mismatch, a truncation outside (0, 1]) raise `InvalidArgumentError` with a
message saying what was expected.

The export directory also carries `assets.extra/` (the SavedModel place for
files the graph does not read): `metadata.json` (resolution, dim_z, classes,
class names, output range, parameters, MACs, metrics, how it was made),
`channel_config.json` and `operative_config.gin`.
"""

import json
import os

import keras
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.models import inputs

ASSETS_DIR = "assets.extra"
# z ~ N(0, 1) truncated at +-2 (tf.random.stateless_truncated_normal's
# bound), times `truncation`: the sample endpoint's, the sample tool's and the
# evaluation's truncated draws all come from `truncated_z`.
TRUNCATION_BOUND = 2.0
# Largest batch one call of a signature accepts (32x32 images: ~50 MB of
# activations per 1,000 images in the teacher); LoadedExport.generate splits
# larger requests.
MAX_BATCH = 4096


def truncated_z(shape, seed, truncation):
    """float32 z of `shape`: a normal truncated at +-TRUNCATION_BOUND, times
    `truncation` (scalar in (0, 1]); `seed` a stateless seed [2]."""
    return tf.random.stateless_truncated_normal(shape, seed) * truncation


def _validated(generator, z, labels):
    dim_z = generator.dim_z
    num_classes = generator.num_classes
    batch = tf.shape(labels)[0]
    checks = [
        tf.debugging.assert_positive(
            batch, message="the batch must hold at least one example"),
        tf.debugging.assert_less_equal(
            batch, MAX_BATCH,
            message=f"the batch must hold at most {MAX_BATCH} examples; "
                    "split larger requests"),
        tf.debugging.assert_equal(
            tf.shape(z)[1], dim_z,
            message=f"z must have shape [batch, {dim_z}]"),
        tf.debugging.assert_all_finite(
            z, message="z must be finite (no NaN or Inf)"),
        tf.debugging.assert_equal(
            tf.shape(z)[0], tf.shape(labels)[0],
            message="z and labels must have the same batch size"),
        tf.debugging.assert_non_negative(
            labels, message=f"labels must be in [0, {num_classes})"),
        tf.debugging.assert_less(
            labels, tf.constant(num_classes, tf.int32),
            message=f"labels must be in [0, {num_classes})"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(z), tf.identity(labels)


def has_truncation_tables(generator):
    """Whether `generator` reads per-truncation BN statistics (an imported
    BigGAN-deep): its `sample` endpoint's truncation selects them and it has
    a `truncated` endpoint."""
    return bool(getattr(generator, "truncation_rows", 0))


def truncation_dtype(generator):
    """dtype of the endpoints' truncation: float64 where it selects
    statistics rows (the rows are read from t / step in float64, as the
    BigGAN-deep port reads them from a Python float; a float32 0.3 would
    read another row), else float32."""
    return tf.float64 if has_truncation_tables(generator) else tf.float32


def _checked_truncation(truncation):
    check = tf.debugging.assert_equal(
        tf.logical_and(truncation > 0.0, truncation <= 1.0), True,
        message="truncation must be in (0, 1]")
    with tf.control_dependencies([check]):
        return tf.identity(truncation)


def make_archive(generator, jit_compile=False):
    """An ExportArchive with the generator's serving endpoints; with
    `jit_compile` the generator's computation is compiled by XLA. A
    generator with per-truncation statistics also gets `truncated` (z,
    labels, truncation), and its `sample` reads the statistics of its
    truncation."""
    archive = keras.export.ExportArchive()
    archive.track(generator)
    dim_z = generator.dim_z
    tables = has_truncation_tables(generator)

    def run(z, labels, class_embedding=None, truncation=None):
        options = {} if truncation is None else {"truncation": truncation}
        return generator(z, labels, training=False,
                         class_embedding=class_embedding, **options)

    if jit_compile:
        run = tf.function(run, jit_compile=True, autograph=False)

    def serve(z, labels):
        z, labels = _validated(generator, z, labels)
        z = tf.reshape(z, (-1, dim_z))
        return {"images": run(z, labels)}

    def sample(labels, truncation, seed):
        truncation = _checked_truncation(truncation)
        z = truncated_z((tf.shape(labels)[0], dim_z), seed,
                        tf.cast(truncation, tf.float32))
        z, labels = _validated(generator, z, labels)
        return {"images": run(z, labels,
                              truncation=truncation if tables else None)}

    def truncated(z, labels, truncation):
        truncation = _checked_truncation(truncation)
        z, labels = _validated(generator, z, labels)
        return {"images": run(z, labels, truncation=truncation)}

    def interpolate(z, labels_a, labels_b, alpha):
        checks = [
            tf.debugging.assert_equal(
                tf.shape(alpha)[0], tf.shape(labels_a)[0],
                message="alpha must have one value per row"),
            tf.debugging.assert_all_finite(
                alpha, message="alpha must be finite"),
            tf.debugging.assert_equal(
                tf.logical_and(tf.reduce_all(alpha >= 0.0),
                               tf.reduce_all(alpha <= 1.0)), True,
                message="alpha must be in [0, 1]"),
        ]
        with tf.control_dependencies(checks):
            z, labels_a = _validated(generator, z, labels_a)
        _, labels_b = _validated(generator, z, labels_b)
        embedding = generator.mixed_embedding(labels_a, labels_b, alpha)
        return {"images": run(z, labels_a, embedding)}

    endpoints = {"serving_default": serve, "sample": sample,
                 "interpolate": interpolate}
    if tables:
        endpoints["truncated"] = truncated
    for name, signature in endpoint_signatures(generator).items():
        archive.add_endpoint(name=name, fn=endpoints[name],
                             input_signature=signature)
    return archive


def endpoint_signatures(generator):
    """{endpoint name: input signature} of `generator`'s export (the
    `truncated` endpoint only where truncations select statistics)."""
    dim_z = generator.dim_z
    z = tf.TensorSpec([None, dim_z], tf.float32, name="z")
    labels = tf.TensorSpec([None], tf.int32, name="labels")
    truncation = tf.TensorSpec([], truncation_dtype(generator),
                               name="truncation")
    signatures = {
        "serving_default": [z, labels],
        "sample": [labels, truncation,
                   tf.TensorSpec([2], tf.int32, name="seed")],
        "interpolate": [z, tf.TensorSpec([None], tf.int32, name="labels_a"),
                        tf.TensorSpec([None], tf.int32, name="labels_b"),
                        tf.TensorSpec([None], tf.float32, name="alpha")]}
    if has_truncation_tables(generator):
        signatures["truncated"] = [z, labels, truncation]
    return signatures


def directory_bytes(path):
    """Total size of the files under `path`."""
    total = 0
    for root, _, names in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in names)
    return total


def write_saved_model(generator, output_dir, assets, overwrite=False,
                      jit_compile=False, extra_files=None):
    """Writes the SavedModel atomically; returns its size in bytes (without
    `extra_files`).

    The model and its assets are written to a temporary directory next to
    `output_dir`, which is then renamed into place: an interrupted export
    leaves no partial `output_dir`.

    Args:
      generator: the Generator to serve (built).
      output_dir: destination; must not exist unless `overwrite`.
      assets: {file name: str or JSON-serialisable value} for assets.extra/.
      overwrite: replace an existing `output_dir`.
      jit_compile: compile the served computation with XLA.
      extra_files: {file name: bytes} written beside saved_model.pb (the
        converted ONNX / TFLite models).
    """
    output_dir = os.path.abspath(output_dir)
    if os.path.exists(output_dir) and not overwrite:
        raise errors.OutputExistsError(
            f"{output_dir} exists; choose another --output or pass "
            "--overwrite to replace it.")
    with files.staged_directory(output_dir, overwrite=overwrite) as staging:
        make_archive(generator, jit_compile).write_out(staging,
                                                       verbose=False)
        extra = os.path.join(staging, ASSETS_DIR)
        os.makedirs(extra, exist_ok=True)
        for name, content in assets.items():
            if not isinstance(content, str):
                content = json.dumps(content, indent=2, sort_keys=True)
            with open(os.path.join(extra, name), "w") as f:
                f.write(content)
        for name, content in (extra_files or {}).items():
            with open(os.path.join(staging, name), "wb") as f:
                f.write(content)
    # The SavedModel's own size: the converted models are counted apart.
    return directory_bytes(output_dir) - sum(
        len(content) for content in (extra_files or {}).values())


def saved_model_bytes(path):
    """Size of an export's SavedModel: the directory without the converted
    models its metadata lists (generator.onnx, generator.tflite)."""
    converted = read_metadata(path).get("portable") or {}
    return directory_bytes(path) - sum(
        os.path.getsize(os.path.join(path, record["file"]))
        for record in converted.values()
        if os.path.isfile(os.path.join(path, record["file"])))


class ExportNotFoundError(errors.MissingInputError):
    """A path that is not (or no longer) an export of ppcd_tf."""


def _read_asset_json(path, name):
    """assets.extra/<name> of an export (ExportNotFoundError if the
    directory is not one, or the file is damaged)."""
    return files.read_json(
        os.path.join(path, ASSETS_DIR, name), "",
        missing_fix=("--saved_model must be a directory written by python "
                     "-m ppcd_tf.export."),
        damaged_fix="the export is damaged; export the run again.",
        missing_error=ExportNotFoundError, damaged_error=ExportNotFoundError)


METADATA_SCHEMA = {
    "dim_z": int, "num_classes": int, "resolution": int,
    "image_channels?": int, "max_batch?": int, "params?": int,
    "class_names?": (list, type(None)), "metrics?": dict, "source?": dict,
}


def read_metadata(path):
    """assets.extra/metadata.json of an export, its fields checked
    (ExportNotFoundError naming the field)."""
    metadata = _read_asset_json(path, "metadata.json")
    files.check_fields(
        metadata, os.path.join(path, ASSETS_DIR, "metadata.json"),
        METADATA_SCHEMA, "the export is damaged; export the run again.",
        error=ExportNotFoundError)
    return metadata


def read_channel_config(path):
    """assets.extra/channel_config.json of an export (a ChannelConfig
    dict: the kept widths per layer)."""
    return _read_asset_json(path, "channel_config.json")


class LoadedExport:
    """An exported generator: its metadata and its two signatures.

    Attributes:
      path: the export directory; metadata: its metadata.json.
      dim_z, num_classes, resolution: shape facts from the metadata.
    """

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.metadata = read_metadata(path)
        self.dim_z = int(self.metadata["dim_z"])
        self.num_classes = int(self.metadata["num_classes"])
        self.resolution = int(self.metadata["resolution"])
        self.max_batch = int(self.metadata.get("max_batch", MAX_BATCH))
        try:
            # The loaded object owns the variables the signatures read: a
            # function that wraps a signature fails once it is collected.
            self._loaded = tf.saved_model.load(path)
            self._signatures = self._loaded.signatures
        except (OSError, tf.errors.OpError, ValueError) as error:
            raise ExportNotFoundError(
                f"{path} has ppcd_tf metadata but no loadable SavedModel "
                f"({str(error).splitlines()[0]}); export the run again."
            ) from error

    @property
    def signature_names(self):
        """Names of the export's signatures."""
        return list(self._signatures.keys())

    def signature(self, name="serving_default"):
        """The concrete function of a signature ('serving_default',
        'sample'), for callers that time or trace it themselves."""
        return self._signatures[name]

    def generate(self, z, labels):
        """Images float32 [N, H, W, C] (tensor) for z [N, dim_z], labels [N]
        (requests above the export's maximum batch are split)."""
        z = tf.convert_to_tensor(z, tf.float32)
        labels = tf.constant(inputs.checked_labels(labels, self.num_classes))
        if z.shape.rank != 2 or z.shape[-1] != self.dim_z:
            raise errors.BadInputError(
                f"z must have shape [batch, {self.dim_z}], got "
                f"{z.shape.as_list()}.")
        call = self._signatures["serving_default"]
        total = int(labels.shape[0])
        if total <= self.max_batch:
            return call(z=z, labels=labels)["images"]
        return tf.concat([
            call(z=z[start:start + self.max_batch],
                 labels=labels[start:start + self.max_batch])["images"]
            for start in range(0, total, self.max_batch)], axis=0)

    def interpolate(self, z, labels_a, labels_b, alpha):
        """Images of the `interpolate` signature (ExportNotFoundError for
        an export written before it existed)."""
        if "interpolate" not in self._signatures:
            raise ExportNotFoundError(
                f"{self.path} has no interpolate signature (exported by an "
                "older ppcd_tf); export the run again.")
        return self._signatures["interpolate"](
            z=tf.convert_to_tensor(z, tf.float32),
            labels_a=tf.constant(inputs.checked_labels(
                labels_a, self.num_classes, "labels_a")),
            labels_b=tf.constant(inputs.checked_labels(
                labels_b, self.num_classes, "labels_b")),
            alpha=tf.convert_to_tensor(alpha, tf.float32))["images"]

    def sample(self, labels, truncation, seed):
        """Images of the `sample` signature: z drawn inside the model."""
        signature = self._signatures["sample"]
        dtype = signature.structured_input_signature[1]["truncation"].dtype
        return signature(
            labels=tf.constant(inputs.checked_labels(labels,
                                                     self.num_classes)),
            truncation=tf.constant(truncation, dtype),
            seed=tf.convert_to_tensor(seed, tf.int32))["images"]

    def truncated(self, z, labels, truncation):
        """Images of the `truncated` signature (z drawn by the caller at
        `truncation`, the statistics of `truncation`); exports of imported
        BigGAN-deep generators only (ExportNotFoundError otherwise)."""
        if "truncated" not in self._signatures:
            raise ExportNotFoundError(
                f"{self.path} has no truncated signature: only exports of "
                "generators with per-truncation statistics (imported "
                "BigGAN-deep) have one.")
        return self._signatures["truncated"](
            z=tf.convert_to_tensor(z, tf.float32),
            labels=tf.constant(inputs.checked_labels(labels,
                                                     self.num_classes)),
            truncation=tf.constant(truncation, tf.float64))["images"]


def load_export(path):
    """`LoadedExport` of an export directory."""
    return LoadedExport(path)
