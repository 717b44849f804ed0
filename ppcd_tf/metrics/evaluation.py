"""Evaluation of a class-conditional generator against a dataset's images.

Pieces, each usable alone:
  * `GeneratorSource`: an exported SavedModel (`from_saved_model`) or a
    training run's newest checkpoint (`from_run`, EMA generator, masks
    applied) behind one `generate(z, labels)` call.
  * `real_features`: features of a dataset split's real images under a
    feature network, cached to an `.npz` file next to a JSON record of how
    they were computed.
  * `evaluate`: FID, KID, IS, intra-FID and class accuracy of generated
    samples (balanced labels) for several seeds, with mean and std, and the
    record of how every figure was computed.
"""

import dataclasses
import json
import os
import time
import zipfile

import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.data import pipeline
from ppcd_tf.data import sources
from ppcd_tf.exporting import saved_model as saved_model_lib
from ppcd_tf.metrics import feature_networks
from ppcd_tf.metrics import gan_metrics
from ppcd_tf.runs import run_dir

DEFAULT_NUM_SAMPLES = defaults.EVAL_NUM_SAMPLES
DEFAULT_SEEDS = defaults.EVAL_SEEDS
DEFAULT_BATCH_SIZE = defaults.EVAL_BATCH_SIZE
# z of the `sample` signature and the sample tool: a normal truncated at
# +-TRUNCATION_BOUND, scaled by the truncation factor.
TRUNCATION_BOUND = saved_model_lib.TRUNCATION_BOUND
# Order of the real and fake sets is shuffled with this seed before KID
# (tensorflow-gan's block estimator assumes random order).
_KID_SHUFFLE_SEED = 1234
_CACHE_VERSION = 1
DEFAULT_CACHE_DIR = defaults.EVAL_CACHE_DIR
METRIC_NAMES = ("fid", "kid", "inception_score", "intra_fid",
                "class_accuracy")


class EvaluationError(errors.BadInputError):
    """Bad evaluation input (the message says what to change)."""


@dataclasses.dataclass
class GeneratorSource:
    """A generator behind `generate(z [N, dim_z], labels [N]) -> images`.

    Attributes:
      generate: callable returning float32 numpy [N, H, W, C] in [-1, 1].
      dim_z, num_classes, resolution: the generator's shape facts.
      dataset: name of the dataset it was trained on (or None).
      description: dict recorded with every figure (kind, path, step).
    """
    generate: object
    dim_z: int
    num_classes: int
    resolution: int
    dataset: object
    description: dict

    @classmethod
    def from_saved_model(cls, path):
        # A missing or damaged export: ExportNotFoundError (exit 3).
        export = saved_model_lib.load_export(path)
        metadata = export.metadata

        def generate(z, labels):
            return export.generate(z, labels).numpy()

        return cls(generate, export.dim_z, export.num_classes,
                   export.resolution, metadata.get("dataset"),
                   {"kind": "saved_model", "path": export.path,
                    "params": metadata.get("params"),
                    "step": metadata.get("source", {}).get("step")})

    @classmethod
    def from_portable(cls, path):
        """A converted model of an export (`generator.onnx`, run with
        onnxruntime, or `generator.tflite`, fixed batch: requests are cut
        into batches and the last one padded)."""
        metadata = saved_model_lib.read_metadata(os.path.dirname(
            os.path.abspath(path)))
        if not os.path.isfile(path):
            raise saved_model_lib.ExportNotFoundError(
                f"{path} not found: export with --format onnx / --format "
                "tflite.")
        if path.endswith(".onnx"):
            # deferred: needs onnxruntime
            from ppcd_tf.exporting import onnx_runtime
            runner = onnx_runtime.OnnxGenerator(path)
            generate, kind = runner.generate, "onnx"
        elif path.endswith(".tflite"):
            from ppcd_tf.exporting import portable as portable_lib
            runner = portable_lib.TFLiteGenerator.from_file(path)
            generate = runner.generate_any
            kind = "tflite"
        else:
            raise EvaluationError(
                f"--portable {path}: expected a generator.onnx or "
                "generator.tflite file of an export.")
        portable = metadata.get("portable", {}).get(kind, {})
        return cls(generate, int(metadata["dim_z"]),
                   int(metadata["num_classes"]), int(metadata["resolution"]),
                   metadata.get("dataset"),
                   {"kind": kind, "path": os.path.abspath(path),
                    "params": metadata.get("params"),
                    "quantization": portable.get("quantization"),
                    "step": metadata.get("source", {}).get("step")})

    @classmethod
    def from_run(cls, model_dir, checkpoint=None):
        """The run's EMA generator of its newest (or the given) checkpoint."""
        restored = run_dir.restore_generator(model_dir, checkpoint)
        generator = restored.generator
        call = tf.function(restored.generate, reduce_retracing=True)

        def generate(z, labels):
            return call(tf.constant(z, tf.float32),
                        tf.constant(labels, tf.int32)).numpy()

        weights = "EMA generator"
        if restored.keep is not None:
            weights += " (hard masks)"
        elif restored.masks is not None:
            weights += " (soft masks)"
        elif restored.kind == "ppcd":
            weights += " (compact student)"
        return cls(generate, generator.dim_z, generator.num_classes,
                   generator.resolution,
                   restored.configs.get("dataset", {}).get("name"),
                   {"kind": "checkpoint", "path": restored.checkpoint,
                    "step": restored.step, "weights": weights})


def sample_inputs(num_samples, dim_z, num_classes, seed, truncation=None):
    """Balanced labels `i % num_classes` and z for one evaluation seed.

    Returns:
      (z float32 [N, dim_z], labels int32 [N]): z ~ N(0, I) as in training
      when `truncation` is None, else a normal truncated at
      +-TRUNCATION_BOUND times `truncation` (the sample tool's z).
    """
    key = tf.constant([seed, 0], tf.int64)
    if truncation is None:
        z = tf.random.stateless_normal((num_samples, dim_z), key)
    else:
        z = saved_model_lib.truncated_z((num_samples, dim_z), key, truncation)
    labels = np.arange(num_samples, dtype=np.int32) % num_classes
    return z.numpy(), labels


def check_memory(num_samples, dim_z, network):
    """Refuses, before any real feature is computed, a --num_samples whose
    z, features and logits (float32, one seed at a time) cannot fit in this
    machine's memory."""
    per_sample = 4 * (dim_z + network.feature_dim + network.num_classes)
    errors.check_fits_in_memory(
        num_samples * per_sample, f"--num_samples {num_samples:,}",
        f"ask for at most {errors.machine_memory_bytes() // per_sample:,} "
        "(FID is usually reported on 10,000 to 50,000 samples).")


def generated_features(source, network, num_samples, seed, truncation=None,
                       batch_size=DEFAULT_BATCH_SIZE):
    """(features [N, D], logits [N, K], labels [N]) of generated samples."""
    z, labels = sample_inputs(num_samples, source.dim_z, source.num_classes,
                              seed, truncation)
    features, logits = [], []
    for start in range(0, num_samples, batch_size):
        images = source.generate(z[start:start + batch_size],
                                 labels[start:start + batch_size])
        f, l = network.features_and_logits(images)
        features.append(f)
        logits.append(l)
    return np.concatenate(features), np.concatenate(logits), labels


@dataclasses.dataclass
class RealFeatures:
    """Features of real images: `features` [N, D], `labels` [N], `record`."""
    features: np.ndarray
    labels: np.ndarray
    record: dict


def _cache_paths(cache_dir, dataset, split, resolution, network_name,
                 max_examples):
    count = "all" if max_examples is None else str(max_examples)
    safe_split = split.replace("[", "_").replace("]", "").replace(":", "-") \
        .replace("%", "pct")
    stem = (f"real_{dataset}_{safe_split}_{resolution}px_{network_name}_"
            f"{count}")
    base = os.path.join(cache_dir, stem)
    return base + ".npz", base + ".json"


def _read_cached_real_features(npz_path, json_path, network):
    """RealFeatures from the cache files, or None when there is no usable
    cache: absent, made by another version or feature network, or unreadable
    (then it is computed again and rewritten, with a warning)."""
    if not (os.path.isfile(npz_path) and os.path.isfile(json_path)):
        return None
    try:
        with open(json_path, "rb") as f:
            record = json.loads(f.read().decode("utf-8"))
        if not (isinstance(record, dict) and
                record.get("version") == _CACHE_VERSION and
                record.get("feature_network") == network.description):
            return None
        with np.load(npz_path) as data:
            features, labels = data["features"], data["labels"]
    except (ValueError, OSError, KeyError, EOFError,
            zipfile.BadZipFile) as error:
        logging.warning("The real-feature cache %s is unreadable (%s); "
                        "computing the features again.", npz_path, error)
        return None
    logging.info("Real features from cache %s", npz_path)
    return RealFeatures(features, labels, dict(record, cache=npz_path))


def real_features(network, dataset, split, resolution, cache_dir,
                  max_examples=None, data_dir=None,
                  batch_size=DEFAULT_BATCH_SIZE):
    """Features of a split's real images (project preprocessing), cached.

    The cache holds features and labels (for KID and intra-FID, which need
    more than mean and covariance) in `<cache_dir>/real_...npz`, its record
    in the `.json` beside it; both are written atomically. A cache made
    with another network weights file is not reused.
    """
    npz_path, json_path = _cache_paths(cache_dir, dataset, split, resolution,
                                       network.name, max_examples)
    cached = _read_cached_real_features(npz_path, json_path, network)
    if cached is not None:
        return cached
    data = pipeline.ImageDataset(name=dataset, split=split,
                                 resolution=resolution, data_dir=data_dir,
                                 cache=False)
    start = time.time()
    features, labels, logits = [], [], []
    for images, batch_labels in data.one_pass(batch_size, max_examples):
        f, l = network.features_and_logits(images.numpy())
        features.append(f)
        logits.append(l)
        labels.append(batch_labels.numpy())
    features = np.concatenate(features).astype(np.float32)
    labels = np.concatenate(labels).astype(np.int32)
    logits = np.concatenate(logits)
    accuracy = None
    if logits.shape[1] == data.num_classes and (
            getattr(network, "dataset", None) == dataset):
        accuracy = gan_metrics.class_accuracy(logits, labels)
    record = {
        "version": _CACHE_VERSION,
        "dataset": dataset, "split": split, "resolution": resolution,
        "num_examples": int(len(features)),
        "preprocessing": "ppcd_tf.data.pipeline.ImageDataset.preprocess",
        "feature_network": network.description,
        "class_accuracy_of_real_images": accuracy,
        "seconds": round(time.time() - start, 1),
    }
    os.makedirs(cache_dir, exist_ok=True)
    files.write_with(npz_path, lambda p: _save_npz(
        p, features=features, labels=labels))
    write_json(record, json_path)
    logging.info("Real features of %d %s/%s images cached in %s (%.1f s)",
                 len(features), dataset, split, npz_path, record["seconds"])
    return RealFeatures(features, labels, dict(record, cache=npz_path))


def _save_npz(path, **arrays):
    with open(path, "wb") as f:  # A file object: savez adds no suffix.
        np.savez(f, **arrays)


def write_json(obj, path):
    """Writes `obj` as indented JSON to `path` atomically."""
    files.write_with(path, lambda p: _dump_json(obj, p))


def _dump_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True,
                  default=gan_metrics._json_default)
        f.write("\n")


def _shuffled(x, seed):
    return x[np.random.default_rng(seed).permutation(len(x))]


def metrics_of(real, fake_features, fake_logits, fake_labels,
               judge_classes):
    """One seed's figures: fid, kid (+ std), inception_score, intra_fid,
    class_accuracy (None when the network's classes are not the
    generator's)."""
    kid = gan_metrics.kid_from_activations(
        _shuffled(real.features, _KID_SHUFFLE_SEED),
        _shuffled(fake_features, _KID_SHUFFLE_SEED))
    intra = gan_metrics.intra_fid(real.features, real.labels, fake_features,
                                  fake_labels)
    result = {
        "fid": gan_metrics.fid_from_activations(real.features, fake_features),
        "kid": kid.mean,
        "kid_block_std": kid.std,
        "inception_score": gan_metrics.inception_score_from_logits(
            fake_logits).mean,
        "intra_fid": intra.mean,
        "class_accuracy": (gan_metrics.class_accuracy(fake_logits,
                                                      fake_labels)
                           if judge_classes else None),
    }
    return {k: (None if v is None else float(v)) for k, v in result.items()}


def summarize(per_seed):
    """{metric: {"mean", "std"}} over seeds (std with ddof=0; None if the
    metric was not computed)."""
    summary = {}
    for name in METRIC_NAMES:
        values = [s[name] for s in per_seed if s[name] is not None]
        if values:
            summary[name] = {"mean": float(np.mean(values)),
                             "std": float(np.std(values))}
        else:
            summary[name] = None
    return summary


def evaluate(source, network, real, num_samples=DEFAULT_NUM_SAMPLES,
             seeds=DEFAULT_SEEDS, truncation=None,
             batch_size=DEFAULT_BATCH_SIZE):
    """All figures of `source` against `real` under `network`.

    Returns:
      dict: "per_seed" (list of metrics_of dicts with their "seed"),
      "summary" (mean/std over seeds), "computed" (how: feature network,
      resize, samples, real-statistics source, truncation, label scheme),
      "generator" (source.description).
    """
    if num_samples < 2:
        raise EvaluationError(f"num_samples must be >= 2, got {num_samples}.")
    if truncation is not None and not 0.0 < truncation <= 1.0:
        raise EvaluationError(
            f"truncation must be in (0, 1] or None, got {truncation}.")
    judge = (getattr(network, "num_classes", None) == source.num_classes and
             getattr(network, "dataset", None) == real.record["dataset"])
    per_seed = []
    for seed in seeds:
        start = time.time()
        f, l, labels = generated_features(source, network, num_samples,
                                          int(seed), truncation, batch_size)
        figures = metrics_of(real, f, l, labels, judge)
        figures["seed"] = int(seed)
        per_seed.append(figures)
        logging.info("seed %d: %s (%.1f s)", seed, ", ".join(
            f"{k} {v:.4g}" for k, v in figures.items()
            if k != "seed" and v is not None), time.time() - start)
    real_record = {k: v for k, v in real.record.items()
                   if k != "feature_network"}
    computed = {
        "feature_network": network.description,
        "num_samples_per_seed": int(num_samples),
        "seeds": [int(s) for s in seeds],
        "labels": f"balanced: sample i has class i % {source.num_classes}",
        "truncation": ("none: z ~ N(0, I) as in training"
                       if truncation is None else
                       f"{truncation} x normal truncated at "
                       f"+-{TRUNCATION_BOUND}"),
        "real_statistics": real_record,
        "kid": "tensorflow-gan block estimator (blocks of <= "
               f"{gan_metrics.KID_MAX_BLOCK_SIZE}) on shuffled sets",
        "inception_score": "one split, from the feature network's logits",
        "intra_fid": "mean over classes of per-class FID (real split "
                     "images of the class vs samples conditioned on it)",
        "class_accuracy": ("argmax of the feature network's logits == the "
                           "class asked for" if judge else
                           "not computed: the network's classes are not "
                           "the generator's"),
    }
    return {"generator": source.description,
            "num_classes": source.num_classes, "computed": computed,
            "per_seed": per_seed, "summary": summarize(per_seed)}


def format_summary(result):
    """Human-readable lines: metric  mean +- std (n seeds)."""
    lines = [f"generator: {result['generator'].get('path')}",
             "feature network: "
             f"{result['computed']['feature_network']['network']}"
             f", {result['computed']['num_samples_per_seed']} samples x "
             f"{len(result['computed']['seeds'])} seeds, truncation "
             f"{result['computed']['truncation']}"]
    for name in METRIC_NAMES:
        value = result["summary"][name]
        if value is None:
            lines.append(f"  {name:16s} n/a")
        else:
            lines.append(f"  {name:16s} {value['mean']:.4f} +- "
                         f"{value['std']:.4f}")
    return "\n".join(lines)


_DEFAULT_SPLITS = {"fashion_mnist": "test", "cifar10": "test",
                   "imagenet2012": "validation"}


def default_split(dataset):
    """The split generated images are compared with by default."""
    return _DEFAULT_SPLITS.get(dataset, "test")


def default_output(saved_model, model_dir, portable=None):
    if portable:
        return os.path.normpath(portable) + ".eval.json"
    if saved_model:
        return os.path.normpath(saved_model) + ".eval.json"
    return os.path.join(model_dir, "eval.json")


def load_source(saved_model, model_dir, checkpoint=None, portable=None):
    if sum(bool(x) for x in (saved_model, model_dir, portable)) != 1:
        raise EvaluationError(
            "Give exactly one of --saved_model, --model_dir and --portable.")
    if portable:
        return GeneratorSource.from_portable(portable)
    path = saved_model or model_dir
    if not os.path.isdir(path):
        raise EvaluationError(f"{path} is not a directory.")
    if saved_model:
        return GeneratorSource.from_saved_model(saved_model)
    return GeneratorSource.from_run(model_dir, checkpoint)


def parse_seeds(values):
    try:
        seeds = [int(s) for s in values]
    except ValueError as error:
        raise EvaluationError(
            f"--seeds must be integers: {error}") from error
    if not seeds:
        raise EvaluationError("--seeds must name a seed.")
    return seeds


def _check_writable_dir(flag, path):
    """Refuses, before any work, an output path that cannot be written."""
    try:
        files.check_output_location(flag, os.path.join(path, "x"))
    except errors.BadInputError as error:
        raise EvaluationError(str(error)) from error


# The figures every reader of an evaluation's summary uses.
SUMMARY_FIGURES = ("fid", "class_accuracy")


def check_summary_figures(summary):
    """Raises KeyError, TypeError or ValueError unless `summary` (the
    `summary` of a result JSON, or a curve's teacher reference) holds a
    numeric `mean` of each of SUMMARY_FIGURES."""
    for key in SUMMARY_FIGURES:
        float(summary[key]["mean"])


def read_result_summary(path, flag, missing_hint="", again_hint=""):
    """The `summary` of a result JSON written by python -m ppcd_tf.evaluate
    and given as `flag`: MissingInputError when absent, DamagedInputError
    when not JSON or without the FID / class-accuracy means. The hints end
    the messages (what to do instead)."""
    result = files.read_json(
        path, flag,
        missing_fix=("give the result JSON of python -m ppcd_tf.evaluate"
                     f"{missing_hint}."),
        damaged_fix=(f"evaluate {again_hint}again with python -m "
                     "ppcd_tf.evaluate."))
    try:
        summary = result["summary"]
        check_summary_figures(summary)
    except (KeyError, TypeError, ValueError) as error:
        raise errors.DamagedInputError(
            f"{flag} {path} is not a result of python -m ppcd_tf.evaluate "
            f"(it lacks summary {error}).") from error
    return summary


# What every reader of a stored result needs (files.check_fields): how it
# was computed and the FID's mean. Readers that use more figures pass them as
# `fields` of read_current_result.
RESULT_SCHEMA = {"computed": dict, "computed.num_samples_per_seed": int,
                 "computed.seeds": list, "summary": dict, "summary.fid": dict,
                 "summary.fid.mean": (int, float)}
# The figures the sweep tools (compression curve, ablations) read back.
SWEEP_RESULT_FIELDS = {
    "summary.class_accuracy": dict,
    "summary.class_accuracy.mean": (int, float),
    "summary.class_accuracy.std": (int, float),
    "summary.fid.std": (int, float),
    "summary.intra_fid": dict,
    "summary.intra_fid.mean": (int, float),
    "summary.intra_fid.std": (int, float),
    "generator": dict, "generator.params": int}


def read_current_result(output, saved_model, num_samples, seeds,
                        fields=None):
    """The result JSON `output` of evaluating the export `saved_model`, when
    it is current: written after the export's metadata, with `num_samples`
    per seed and `seeds`, and holding RESULT_SCHEMA's fields and `fields`
    ({dotted name: type}, as files.check_fields); else None (evaluate
    again; a damaged or hand-edited file is named in a warning). What the
    sweep tools read back on a rerun."""
    metadata = os.path.join(saved_model, saved_model_lib.ASSETS_DIR,
                            "metadata.json")
    if not (os.path.isfile(output) and os.path.isfile(metadata)):
        return None
    if os.path.getmtime(output) <= os.path.getmtime(metadata):
        return None
    again = "evaluating the export again."
    try:
        with open(output, "rb") as f:
            result = json.loads(f.read().decode("utf-8"))
        files.check_fields(result, output,
                           dict(RESULT_SCHEMA, **(fields or {})), again)
    except errors.DamagedInputError as error:  # before ValueError: a kind
        logging.warning("%s", error)
        return None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        logging.warning("%s is not valid JSON (%s); %s", output, error, again)
        return None
    computed = result["computed"]
    current = (computed["num_samples_per_seed"] == num_samples
               and computed["seeds"] == parse_seeds(seeds))
    return result if current else None


def check_arguments(dataset=None, num_real=None, num_samples=2,
                    batch_size=1, output=None, cache_dir=None,
                    truncation=None):
    """The evaluation's arguments, checked before anything is loaded."""
    if truncation is not None and not 0.0 < truncation <= 1.0:
        raise EvaluationError(
            f"--truncation must be in (0, 1], got {truncation}.")
    if dataset is not None and dataset not in sources.VALID_NAMES:
        raise EvaluationError(
            f"Unknown --dataset {dataset!r}; choose one of "
            f"{', '.join(sources.VALID_NAMES)}.")
    if num_real is not None and num_real < 1:
        raise EvaluationError(f"--num_real must be >= 1, got {num_real}.")
    if num_samples < 2:
        raise EvaluationError(
            f"--num_samples must be >= 2, got {num_samples}.")
    if batch_size < 1:
        raise EvaluationError(f"--batch_size must be >= 1, got {batch_size}.")
    if output:
        if os.path.isdir(output):
            raise EvaluationError(f"--output {output} is a directory; give "
                                  "a file path.")
        _check_writable_dir("--output", os.path.dirname(
            os.path.abspath(output)))
    if cache_dir:
        _check_writable_dir("--cache_dir", cache_dir)


def evaluate_generator(saved_model=None, model_dir=None, dataset=None,
                       split=None, num_real=None, data_dir=None,
                       feature_network=None, feature_weights=None,
                       num_samples=DEFAULT_NUM_SAMPLES, seeds=DEFAULT_SEEDS,
                       truncation=None, batch_size=DEFAULT_BATCH_SIZE,
                       cache_dir=None, output=None, checkpoint=None,
                       portable=None):
    """Evaluates one generator and writes the result JSON; returns it.
    `checkpoint` picks a run's checkpoint ('latest', 'best', a path);
    `portable` names an export's generator.onnx / generator.tflite
    instead of a SavedModel or a run."""
    seeds = parse_seeds(seeds)
    check_arguments(dataset, num_real, num_samples, batch_size, output,
                    cache_dir, truncation)
    # An explicitly named network is built first: missing weights fail at
    # once, before the generator is loaded.
    network = (feature_networks.build(feature_network, feature_weights)
               if feature_network else None)
    source = load_source(saved_model, model_dir, checkpoint, portable)
    dataset = dataset or source.dataset
    if not dataset:
        raise EvaluationError(
            "The generator does not record its dataset; pass --dataset.")
    split = split or default_split(dataset)
    if network is None:
        network = feature_networks.build(
            feature_networks.default_for_dataset(dataset), feature_weights)
    check_memory(num_samples, source.dim_z, network)
    real = real_features(
        network, dataset, split, source.resolution,
        cache_dir or DEFAULT_CACHE_DIR,
        max_examples=num_real, data_dir=data_dir)
    result = evaluate(source, network, real, num_samples, seeds, truncation,
                      batch_size)
    output = output or default_output(saved_model, model_dir, portable)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    write_json(result, output)
    result["output"] = output
    return result
