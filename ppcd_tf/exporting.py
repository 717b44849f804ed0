"""From a training run's checkpoint to a compact, served generator.

`export_run(model_dir, output_dir)`:
  1. rebuilds the run's generator from `models.json` and restores its EMA
     weights (and, for a PPCD run, its channel masks) from the newest
     checkpoint;
  2. decides the kept channels: the hard masks of a hardened PPCD run (a
     run still in its soft phase is refused unless `binarize_threshold` is
     given), every channel for a teacher run;
  3. builds the compact generator (`pruning.surgery.build_compact`) and checks
     compact(z, y) == hard-masked generator(z, y) on a batch (max abs diff
     <= `tolerance`), refusing to export otherwise;
  4. writes the SavedModel and its assets atomically (`serving`);
  5. returns a report: per mask layer original vs kept channels, parameters
     and MACs of the full and compact generators, SavedModel size.
"""

import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import serving
from ppcd_tf import trainer as trainer_lib
from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import surgery

DEFAULT_TOLERANCE = 1e-4
VERIFY_BATCH = 16
METRICS_FILE = "metrics.json"
_MASKS_PREFIX = "channel_masks/"


class ExportError(ValueError):
    """The run cannot be exported as asked (message says why and what to do)."""


def _read_json(path):
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _read_text(path):
    if not tf.io.gfile.exists(path):
        return ""
    with tf.io.gfile.GFile(path) as f:
        return f.read()


def _checkpoint_keys(path):
    return {name for name, _ in tf.train.list_variables(path)}


def load_run(model_dir):
    """(EMA generator, keep masks or None, hardened, step, checkpoint path)."""
    models_path = os.path.join(model_dir, trainer_lib.MODELS_FILE)
    if not tf.io.gfile.exists(models_path):
        raise ExportError(
            f"{models_path} not found: --model_dir must be the directory of "
            "a training run (python -m ppcd_tf.train --model_dir ...).")
    checkpoint = tf.train.latest_checkpoint(
        os.path.join(model_dir, "checkpoints"))
    if checkpoint is None:
        raise ExportError(f"No checkpoint in {model_dir}/checkpoints.")
    configs = _read_json(models_path)
    generator = generator_lib.Generator.from_config(
        dict(configs["generator"], name="generator_ema"))
    generator.build()
    keys = _checkpoint_keys(checkpoint)
    mask_keys = sorted({k.split("/")[1][len("logit_"):] for k in keys
                        if k.startswith(_MASKS_PREFIX)
                        and k.split("/")[1].startswith("logit_")})
    items = {"generator_ema": generator}
    step = tf.Variable(0, dtype=tf.int64)
    items["step"] = step
    masks = hardened = None
    if mask_keys:
        widths = channel_masks.mask_widths(generator.channels,
                                           prune_attention=True)
        widths = {k: w for k, w in widths.items() if k in mask_keys}
        masks = channel_masks.ChannelMasks(widths, name="channel_masks")
        hardened = tf.Variable(False)
        items.update(channel_masks=masks, hardened=hardened)
    tf.train.Checkpoint(**items).restore(checkpoint).expect_partial() \
        .assert_existing_objects_matched()
    return generator, masks, (None if hardened is None
                              else bool(hardened.numpy())), \
        int(step.numpy()), checkpoint


def decide_keep(generator, masks, hardened, binarize_threshold=None):
    """{mask key: bool [width]} of the channels to export."""
    widths = channel_masks.mask_widths(generator.channels,
                                       prune_attention=True)
    if masks is None:
        return {k: np.ones(w, bool) for k, w in widths.items()}
    if not hardened and binarize_threshold is None:
        raise ExportError(
            "This PPCD checkpoint is still in its soft-mask phase (masks not "
            "yet hardened to the budget); its compact network would not "
            "equal the trained one. Train past "
            "PPCDTrainer.prune_end_fraction, or pass --binarize_threshold T "
            "to keep the channels whose mask logit exceeds T.")
    threshold = 0.0 if binarize_threshold is None else binarize_threshold
    keep = {k: np.ones(w, bool) for k, w in widths.items()}
    for key, logit in masks.logits.items():
        keep[key] = logit.numpy() > threshold
        if not keep[key].any():
            raise ExportError(f"Mask {key!r} keeps no channel at threshold "
                              f"{threshold}; lower --binarize_threshold.")
    return keep


def verify(generator, compact, keep, tolerance=DEFAULT_TOLERANCE,
           batch=VERIFY_BATCH, seed=0):
    """Max |compact - masked| on a batch; raises ExportError past tolerance."""
    z = tf.random.stateless_normal((batch, generator.dim_z), (seed, 0))
    labels = tf.range(batch, dtype=tf.int32) % generator.num_classes
    worst, first = surgery.max_abs_difference(generator, compact, keep, z,
                                              labels, tolerance)
    if worst > tolerance:
        where = (f"; it first appears at {first[0]} (max abs diff "
                 f"{first[1]:.3g})" if first else "")
        raise ExportError(
            f"The compact generator differs from the hard-masked one by "
            f"{worst:.3g} > {tolerance:g}{where}. Refusing to export.")
    return worst


def _layer_report(generator, keep):
    widths = channel_masks.mask_widths(generator.channels,
                                       prune_attention=True)
    return [{"layer": key, "original": width, "kept": int(np.sum(keep[key]))}
            for key, width in widths.items()]


def export_run(model_dir, output_dir, overwrite=False,
               binarize_threshold=None, tolerance=DEFAULT_TOLERANCE):
    """Exports a run's compact EMA generator; returns the report dict."""
    if os.path.exists(output_dir) and not overwrite:
        raise FileExistsError(
            f"{output_dir} exists; choose another --output or pass "
            "--overwrite to replace it.")
    generator, masks, hardened, step, checkpoint = load_run(model_dir)
    keep = decide_keep(generator, masks, hardened, binarize_threshold)
    compact = surgery.build_compact(generator, keep)
    difference = verify(generator, compact, keep, tolerance)
    shape = complexity.GeneratorShape.of(generator)
    full_params = generator_lib.count_trainable_parameters(generator)
    compact_params = generator_lib.count_trainable_parameters(compact)
    full_macs = complexity.generator_macs(generator.channels, shape)
    compact_macs = complexity.generator_macs(compact.channels, shape)
    configs = _read_json(os.path.join(model_dir, trainer_lib.MODELS_FILE))
    dataset = configs.get("dataset", {})
    metrics_path = os.path.join(model_dir, METRICS_FILE)
    metrics = (_read_json(metrics_path) if tf.io.gfile.exists(metrics_path)
               else {})
    metadata = {
        "resolution": compact.channels.resolution,
        "dim_z": compact.dim_z,
        "num_classes": compact.num_classes,
        "image_channels": compact.image_channels,
        "class_names": dataset.get("class_names"),
        "dataset": dataset.get("name"),
        "output_range": [-1.0, 1.0],
        "params": compact_params,
        "macs_per_image": compact_macs,
        "source_params": full_params,
        "source_macs_per_image": full_macs,
        "metrics": metrics,
        "source": {"model_dir": os.path.abspath(model_dir),
                   "checkpoint": checkpoint, "step": step,
                   "weights": "EMA generator",
                   "kind": "ppcd" if masks is not None else "teacher",
                   "binarize_threshold": binarize_threshold,
                   "verified_max_abs_diff": difference},
        "signatures": {
            "serving_default": "z float32 [N, dim_z], labels int32 [N] -> "
                               "images float32 [N, H, W, C] in [-1, 1]",
            "sample": "labels int32 [N], truncation float32 [] in (0, 1], "
                      "seed int32 [2] -> images (z: normal truncated at "
                      f"+-{serving.TRUNCATION_BOUND} x truncation)"},
    }
    assets = {
        "metadata.json": metadata,
        "channel_config.json": compact.channels.to_dict(),
        "operative_config.gin": _read_text(
            os.path.join(model_dir, "operative_config.gin")),
    }
    size = serving.write_saved_model(compact, output_dir, assets,
                                     overwrite=overwrite)
    report = {
        "output": os.path.abspath(output_dir),
        "layers": _layer_report(generator, keep),
        "source_params": full_params, "params": compact_params,
        "source_macs_per_image": full_macs, "macs_per_image": compact_macs,
        "compression": full_params / compact_params,
        "saved_model_bytes": size, "verified_max_abs_diff": difference,
        "step": step,
    }
    logging.info("Exported %s", output_dir)
    return report


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
    return "\n".join(lines)
