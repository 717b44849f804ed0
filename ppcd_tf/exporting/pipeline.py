"""From a training run's checkpoint to a compact, served generator.

`export_run(model_dir, output_dir)`:
  1. restores the run's EMA generator from its newest checkpoint
     (`run_dir.restore_generator`: with its channel masks for a PPCD run in
     its masked phase, compact for a PPCD run trained compact after the
     cut);
  2. decides the kept channels: the hard masks of a hardened PPCD run (a
     run still in its soft phase is refused unless `binarize_threshold` is
     given); a teacher or an already compact student is exported as it is;
  3. builds the compact generator (`pruning.surgery.build_compact`) and checks
     compact(z, y) == hard-masked generator(z, y) on a batch (max abs diff
     <= `tolerance`), refusing to export otherwise;
  4. prepares the inference-time graph (`graph`: spectral norms
     frozen, BatchNorm statistics folded where exact) and checks it against
     the hard-masked generator again (same tolerance);
  5. optionally converts that graph to ONNX and / or a fixed-batch TFLite
     model (`portable`) and checks each against the compact
     generator (ONNX with onnxruntime within `tolerance`, float32 TFLite
     within TFLITE_TOLERANCE; quantised TFLite is measured, not refused);
  6. writes the SavedModel (optionally XLA-compiled), its assets and the
     converted models atomically, in one directory (`serving`);
  7. returns a report: per mask layer original vs kept channels, parameters
     and MACs of the full and compact generators, SavedModel size.
"""

import os

import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf.exporting import conversion
from ppcd_tf.exporting import graph
from ppcd_tf.exporting import portable as portable_lib
from ppcd_tf.exporting import saved_model
from ppcd_tf.models import builders
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import architectures
from ppcd_tf.pruning import surgery
from ppcd_tf.runs import run_dir

DEFAULT_TOLERANCE = defaults.EXPORT_TOLERANCE
# float32 TFLite against the compact generator (its kernels sum in another
# order than TensorFlow's).
TFLITE_TOLERANCE = defaults.TFLITE_TOLERANCE
FORMATS = defaults.PORTABLE_FORMATS
VERIFY_BATCH = 16
# A truncation between two statistics rows, where the serving copy of a
# generator with per-truncation statistics is checked too.
TABLE_CHECK_TRUNCATION = 0.43
METRICS_FILE = "metrics.json"


class ExportError(errors.BadInputError):
    """The run cannot be exported as asked (message says why and what to do)."""


def load_run(model_dir, checkpoint=None):
    """The run's EMA generator as `run_dir.RestoredGenerator`, from
    `checkpoint` ('latest' by default, 'best' or a path prefix); a missing
    or damaged run raises run_dir.RunDirError (exit status 3)."""
    return run_dir.restore_generator(model_dir, checkpoint)


def decide_keep(restored, binarize_threshold=None):
    """{mask key: bool [width]} of the channels to export, or None when the
    restored generator is already compact (a teacher, or a PPCD student
    trained compact after its cut)."""
    if restored.masks is None:
        return restored.keep
    if not restored.hardened and binarize_threshold is None:
        raise ExportError(
            "This PPCD checkpoint is still in its soft-mask phase (masks not "
            "yet hardened to the budget); its compact network would not "
            "equal the trained one. Train past "
            "PruningPhase.prune_end_fraction, or pass --binarize_threshold T "
            "to keep the channels whose mask logit exceeds T.")
    threshold = 0.0 if binarize_threshold is None else binarize_threshold
    keep = run_dir.hard_keep(restored.generator, restored.masks, threshold)
    for key in restored.masks.logits:
        if not keep[key].any():
            raise ExportError(f"Mask {key!r} keeps no channel at threshold "
                              f"{threshold}; lower --binarize_threshold.")
    return keep


def _read_text(path):
    if not tf.io.gfile.exists(path):
        return ""
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def verify(generator, compact, keep, tolerance=DEFAULT_TOLERANCE,
           batch=VERIFY_BATCH, seed=0):
    """Max |compact - masked| on a batch; raises ExportError past tolerance."""
    z = tf.random.stateless_normal((batch, generator.dim_z), (seed, 0))
    labels = tf.range(batch, dtype=tf.int32) % generator.num_classes
    result = architectures.of(generator).compare(generator, compact, keep, z,
                                                 labels, tolerance)
    if result.worst > result.allowed:
        first = result.first
        where = (f"; it first appears at {first[0]} (max abs diff "
                 f"{first[1]:.3g})" if first else "")
        raise ExportError(
            f"The compact generator differs from the hard-masked one by "
            f"{result.worst:.3g} > {result.allowed:.3g} (--tolerance "
            f"{tolerance:g}, or float32 rounding at the largest activation, "
            f"{result.activation_scale:.3g}){where}. Refusing to export.")
    logging.info("Compact generator verified: max |difference| %.3g <= %.3g "
                 "(largest activation %.3g).", result.worst, result.allowed,
                 result.activation_scale)
    return result.worst


def _layer_report(full, compact):
    architecture = architectures.of(full)
    widths = architecture.mask_widths(prune_attention=True)
    kept = architecture.kept_widths(compact)
    return [{"layer": key, "original": width, "kept": int(kept[key])}
            for key, width in widths.items()]


def check_export_options(output_dir, overwrite, formats, onnx_opset,
                         tflite_batch, tflite_quantization):
    """Refuses, before any work, an existing output without `overwrite`
    and unknown or invalid conversion options; returns the formats."""
    if os.path.exists(output_dir) and not overwrite:
        raise errors.OutputExistsError(
            f"{output_dir} exists; choose another --output or pass "
            "--overwrite to replace it.")
    formats = tuple(formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"Unknown export format(s) {unknown}; choose from "
                          f"{list(FORMATS)}.")
    portable_lib.check_options(formats, onnx_opset, tflite_batch,
                               tflite_quantization, saved_model.MAX_BATCH)
    return formats


def export_run(model_dir, output_dir, overwrite=False,
               binarize_threshold=None, tolerance=DEFAULT_TOLERANCE,
               checkpoint=None, fold_batch_norm=True, jit_compile=False,
               formats=(), onnx_opset=portable_lib.DEFAULT_ONNX_OPSET,
               tflite_batch=64, tflite_quantization="none"):
    """Exports a run's compact EMA generator (of its newest checkpoint, or
    of `checkpoint`: 'best' or a path prefix); returns the report dict.
    `fold_batch_norm` folds BatchNorm statistics into convolutions where
    exact; `jit_compile` compiles the served computation with XLA.
    `formats` adds converted models beside the SavedModel: 'onnx'
    (generator.onnx, opset `onnx_opset`) and 'tflite' (generator.tflite,
    batch `tflite_batch`, `tflite_quantization`)."""
    formats = check_export_options(output_dir, overwrite, formats,
                                   onnx_opset, tflite_batch,
                                   tflite_quantization)
    restored = load_run(model_dir, checkpoint)
    if formats and saved_model.has_truncation_tables(restored.generator):
        raise ExportError(
            f"{model_dir} holds a generator with per-truncation BN "
            "statistics (an imported BigGAN-deep); its ONNX and TFLite "
            "models (inputs z and labels only) are not built: export the "
            "SavedModel alone (its `truncated` and `sample` signatures "
            "select the statistics).")
    keep = decide_keep(restored, binarize_threshold)
    if keep is None:
        compact, difference = restored.generator, 0.0
    else:
        compact = architectures.of(restored.generator).build_compact(
            restored.generator, keep)
        difference = verify(restored.generator, compact, keep, tolerance)
    trained_compact = compact  # the reference of the converted models
    compact, serving_record = prepare_serving(
        restored.generator, compact, keep, tolerance, fold_batch_norm)
    serving_record["jit_compile"] = bool(jit_compile)
    full = builders.generator_from_config(
        dict(restored.full_config, name="full_generator"))
    full.build()
    sizes = _sizes(full, compact)
    metadata = _metadata(model_dir, restored, compact, sizes,
                         serving_record, binarize_threshold, difference)
    assets = {
        "metadata.json": metadata,
        "channel_config.json": architectures.of(full).widths_config(compact),
        "operative_config.gin": _read_text(
            os.path.join(model_dir, "operative_config.gin")),
    }
    portable, portable_files = convert_portable(
        compact, trained_compact, metadata, formats, tolerance, onnx_opset,
        tflite_batch, tflite_quantization)
    if portable:
        metadata["portable"] = portable
    size = saved_model.write_saved_model(compact, output_dir, assets,
                                         overwrite=overwrite,
                                         jit_compile=jit_compile,
                                         extra_files=portable_files)
    logging.info("Exported %s", output_dir)
    return dict(sizes, output=os.path.abspath(output_dir),
                layers=_layer_report(full, compact),
                compression=sizes["source_params"] / sizes["params"],
                saved_model_bytes=size, verified_max_abs_diff=difference,
                serving_graph=serving_record, portable=portable,
                step=restored.step, checkpoint=restored.checkpoint)


def _sizes(full, compact):
    """Parameters and MACs per image of the full and the compact G."""
    architecture = architectures.of(full)
    return {"source_params": generator_lib.count_trainable_parameters(full),
            "params": generator_lib.count_trainable_parameters(compact),
            "source_macs_per_image": architecture.macs(full),
            "macs_per_image": architecture.macs(compact)}


SIGNATURE_DOCS = {
    "serving_default": "z float32 [N, dim_z] (finite), labels int32 "
                       "[N], 1 <= N <= max_batch -> images float32 "
                       "[N, H, W, C] in [-1, 1]",
    "sample": "labels int32 [N], truncation float32 [] in (0, 1], "
              "seed int32 [2] -> images (z: normal truncated at "
              f"+-{saved_model.TRUNCATION_BOUND} x truncation)",
    "interpolate": "z float32 [N, dim_z], labels_a int32 [N], "
                   "labels_b int32 [N], alpha float32 [N] in [0, 1] "
                   "-> images of the class embedding (1 - alpha) * "
                   "e(labels_a) + alpha * e(labels_b)"}
TRUNCATED_DOC = ("z float32 [N, dim_z] (drawn by the caller at the "
                 "truncation), labels int32 [N], truncation float64 [] in "
                 "(0, 1] -> images with the BN statistics of the truncation")


def _metadata(model_dir, restored, compact, sizes, serving_record,
              binarize_threshold, difference):
    """The export's metadata.json: shapes, sizes, the run's metrics, the
    source checkpoint, the serving graph and the signatures."""
    dataset = restored.configs.get("dataset", {})
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    metrics = (run_dir.read_run_json(metrics_path, "run's metrics record")
               if tf.io.gfile.exists(metrics_path) else {})
    return {
        "resolution": compact.resolution,
        "dim_z": compact.dim_z,
        "num_classes": compact.num_classes,
        "image_channels": compact.image_channels,
        "class_names": dataset.get("class_names"),
        "dataset": dataset.get("name"),
        "output_range": [-1.0, 1.0],
        "max_batch": saved_model.MAX_BATCH,
        **sizes,
        "metrics": metrics,
        "source": {"model_dir": os.path.abspath(model_dir),
                   "checkpoint": restored.checkpoint, "step": restored.step,
                   "weights": "EMA generator",
                   "kind": restored.kind,
                   "trained_compact": (restored.kind == "ppcd"
                                       and restored.masks is None),
                   "validation": _best_record(model_dir,
                                              restored.checkpoint),
                   "binarize_threshold": binarize_threshold,
                   "verified_max_abs_diff": difference},
        "serving_graph": serving_record,
        "signatures": signature_docs(compact),
        **_truncation_record(compact),
    }


def signature_docs(generator):
    """{signature: what it takes and returns} of `generator`'s export."""
    docs = dict(SIGNATURE_DOCS)
    if saved_model.has_truncation_tables(generator):
        docs["sample"] = docs["sample"].replace(
            "truncation float32", "truncation float64")
        docs["truncated"] = TRUNCATED_DOC
    return docs


def _truncation_record(generator):
    """metadata's "truncation_statistics" of a generator with
    per-truncation statistics (none otherwise)."""
    if not saved_model.has_truncation_tables(generator):
        return {}
    return {"truncation_statistics": {
        "rows": generator.truncation_rows,
        "rule": "rows for truncations 0, 1/(rows-1), ..., 1, read as the "
                "BigGAN-deep port reads them (ppcd_tf/models/truncation.py)"
                "; serving_default and interpolate use the truncation-1.0 "
                "row"}}


def _portable_check_batch(generator, batch, seed=0):
    """(z, labels) numpy of the converted models' equality check."""
    z = tf.random.stateless_normal((batch, generator.dim_z), (seed, 4))
    labels = tf.range(batch, dtype=tf.int32) % generator.num_classes
    return z.numpy(), labels.numpy()


def check_onnx(model, reference, tolerance):
    """Max |onnxruntime(model) - reference| on a batch; ExportError past
    `tolerance`."""
    # deferred: needs onnxruntime
    import onnxruntime

    from ppcd_tf.exporting import onnx_runtime
    session = onnxruntime.InferenceSession(
        model, onnx_runtime.session_options(),
        providers=["CPUExecutionProvider"])
    z, labels = _portable_check_batch(reference, VERIFY_BATCH)
    images = session.run(["images"], {"z": z, "labels": labels})[0]
    expected = reference(z, labels, training=False).numpy()
    difference = float(np.max(np.abs(images - expected)))
    if difference > tolerance:
        raise ExportError(
            f"The ONNX generator (onnxruntime) differs from the compact one "
            f"by {difference:.3g} > {tolerance:g}. Refusing to export; try "
            "another --onnx_opset.")
    return difference


def check_tflite(model, reference, quantization):
    """Max |TFLite(model) - reference| on one fixed batch; float32 models
    past TFLITE_TOLERANCE raise ExportError (quantised ones are measured
    only)."""
    runner = portable_lib.TFLiteGenerator(model)
    z, labels = _portable_check_batch(reference, runner.batch)
    images = runner.generate(z, labels)
    expected = reference(z, labels, training=False).numpy()
    difference = float(np.max(np.abs(images - expected)))
    if quantization == "none" and difference > TFLITE_TOLERANCE:
        raise ExportError(
            f"The TFLite generator differs from the compact one by "
            f"{difference:.3g} > {TFLITE_TOLERANCE:g}. Refusing to export.")
    return difference


def convert_portable(served, reference, metadata, formats, tolerance,
                     onnx_opset, tflite_batch, tflite_quantization):
    """({format: record}, {file name: bytes}) of the converted models of
    the serving generator `served`, each checked against `reference` (the
    compact generator before the serving-graph changes)."""
    records, contents = {}, {}
    if "onnx" in formats:
        model = portable_lib.to_onnx(served, metadata, saved_model.MAX_BATCH,
                                        onnx_opset)
        difference = check_onnx(model, reference, tolerance)
        contents[portable_lib.ONNX_FILE] = model
        records["onnx"] = {
            "file": portable_lib.ONNX_FILE, "opset": onnx_opset,
            "bytes": len(model), "verified_max_abs_diff": difference,
            "inputs": {"z": "float32 [N, dim_z]", "labels": "int32 [N]"},
            "outputs": {"images": "float32 [N, H, W, C] in [-1, 1]"},
            "invalid_input": "onnxruntime InvalidArgument from Gather node "
                             f"{portable_lib.CHECK_NAME!r} (label outside "
                             "[0, num_classes), non-finite z, batch above "
                             "max_batch)",
            "session_options": {"session.intra_op.allow_spinning": "0"}}
        logging.info("ONNX (opset %d): %d bytes, max |onnxruntime - "
                     "compact| %.2e.", onnx_opset, len(model), difference)
    if "tflite" in formats:
        model = portable_lib.to_tflite(served, tflite_batch,
                                          saved_model.MAX_BATCH,
                                          tflite_quantization)
        difference = check_tflite(model, reference, tflite_quantization)
        contents[portable_lib.TFLITE_FILE] = model
        records["tflite"] = conversion.tflite_record(
            tflite_batch, tflite_quantization, model, difference,
            "the compact generator")
        logging.info("TFLite (batch %d, %s): %d bytes, max |TFLite - "
                     "compact| %.2e.", tflite_batch, tflite_quantization,
                     len(model), difference)
    return records, contents


def prepare_serving(source, compact, keep, tolerance, fold_batch_norm):
    """(serving copy of `compact`, record): spectral norms frozen and, with
    `fold_batch_norm`, BatchNorms folded (`graph.prepare`) on a copy,
    checked against `source` (the hard-masked generator when `keep` is
    given, else `compact` itself) within `tolerance`."""
    served = type(compact).from_config(
        dict(compact.get_config(), name=compact.name))
    served.build()
    served.set_weights(compact.get_weights())
    record = graph.prepare(served, fold_batch_norm)
    z, labels = graph.reference_batch(compact)
    if keep is None:
        difference = max(
            graph.max_difference(compact(z, labels, training=False,
                                         **options), served, z, labels,
                                 **options)
            for options in _truncation_options(compact))
    else:
        masks = surgery.masks_from_keep(keep)
        reference = source(z, labels, training=False, masks=masks,
                           keep=masks)
        difference = graph.max_difference(reference, served, z, labels)
    allowed = surgery.allowed_difference(
        tolerance, surgery.activation_scale(compact, z, labels))
    if difference > allowed:
        raise ExportError(
            f"The serving graph (spectral norms frozen, BatchNorms folded: "
            f"{record['batch_norms_folded']}) differs from the trained "
            f"generator by {difference:.3g} > {allowed:.3g} (--tolerance "
            f"{tolerance:g}, or float32 rounding at the largest "
            "activation). Refusing to export; pass --nofold_batch_norm to "
            "keep the BatchNorms.")
    record["verified_max_abs_diff"] = difference
    return served, record


def _truncation_options(generator):
    """The call options the serving copy is checked at: the standing
    statistics, and for a generator with per-truncation statistics also
    those of TABLE_CHECK_TRUNCATION."""
    options = [{}]
    if saved_model.has_truncation_tables(generator):
        options.append({"truncation": tf.constant(TABLE_CHECK_TRUNCATION,
                                                  tf.float64)})
    return options


def _best_record(model_dir, checkpoint):
    """best.json when `checkpoint` is the run's best checkpoint (its
    validation figures go into the export's metadata), else None."""
    record = run_dir.read_best(model_dir)
    if record is None:
        return None
    best = os.path.join(model_dir, run_dir.BEST_DIR, record["checkpoint"])
    same = os.path.abspath(best) == os.path.abspath(checkpoint)
    return record if same else None


def format_report(report):
    """The exporter's printed report (a Markdown table and totals)."""
    lines = ["| layer | original | kept |", "|---|---:|---:|"]
    lines += [f"| {row['layer']} | {row['original']} | {row['kept']} |"
              for row in report["layers"]]
    lines += [
        "",
        f"parameters: {report['source_params']:,} -> {report['params']:,} "
        f"({report['compression']:.2f}x fewer)",
        f"MACs / image: {report['source_macs_per_image'] / 1e6:.1f} M -> "
        f"{report['macs_per_image'] / 1e6:.1f} M",
        f"SavedModel: {report['output']} "
        f"({report['saved_model_bytes'] / 1e6:.2f} MB)",
        f"compact vs hard-masked generator: max abs diff "
        f"{report['verified_max_abs_diff']:.2e}",
    ]
    portable = report.get("portable") or {}
    if "onnx" in portable:
        onnx = portable["onnx"]
        lines.append(
            f"ONNX: {onnx['file']} (opset {onnx['opset']}, "
            f"{onnx['bytes'] / 1e6:.2f} MB), onnxruntime vs compact max abs "
            f"diff {onnx['verified_max_abs_diff']:.2e}")
    if "tflite" in portable:
        tflite = portable["tflite"]
        lines.append(
            f"TFLite: {tflite['file']} (batch {tflite['batch']}, "
            f"quantization {tflite['quantization']}, "
            f"{tflite['bytes'] / 1e6:.2f} MB), vs compact max abs diff "
            f"{tflite['max_abs_diff']:.2e}")
    return "\n".join(lines)
