"""An existing export, copied with a TFLite model of its generator added.

`add_tflite(export_dir, output_dir, batch)` needs no training run: it
converts the export's own serving graph (`portable.export_to_tflite`), so a
shipped student (`ppcd_tf/assets/student_*`) or an export whose run is gone
can be served by the TFLite interpreter, the fastest runtime measured for
these generators on a CPU (BENCHMARKS.md, "Speed in TFLite"). The copy is written
atomically (`files.staged_directory`): the SavedModel and its assets as they
were, `generator.tflite` beside them, and the `portable.tflite` record in
`assets.extra/metadata.json`. The source is never modified. The model
serves what serving_default serves (z and labels; for an imported
BigGAN-deep, its truncation-1.0 statistics).
"""

import json
import os
import shutil

from absl import logging

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.exporting import portable
from ppcd_tf.exporting import saved_model

TFLITE_TOLERANCE = defaults.TFLITE_TOLERANCE


class ConversionError(errors.BadInputError):
    """A converted model that does not match its export."""


def tflite_record(batch, quantization, model, difference, against):
    """The `portable.tflite` metadata record of a converted model."""
    return {
        "file": portable.TFLITE_FILE, "batch": batch,
        "quantization": quantization, "bytes": len(model),
        "max_abs_diff": difference, "checked_against": against,
        "tolerance": (TFLITE_TOLERANCE if quantization == "none" else None),
        "invalid_input": "RuntimeError from the interpreter's invoke "
                         "(gather index out of bounds)"}


def checked_tflite(export, batch, quantization="none"):
    """(TFLite bytes, max |TFLite - SavedModel|) of `export` (a
    saved_model.LoadedExport) at a fixed `batch`; a float32 model that
    differs by more than TFLITE_TOLERANCE on one batch raises
    ConversionError (quantised ones are measured, not refused)."""
    model = portable.export_to_tflite(export, batch, quantization)
    difference = portable.max_tflite_difference(model, export)
    if quantization == "none" and not difference <= TFLITE_TOLERANCE:
        raise ConversionError(
            f"The TFLite model of {export.path} at batch {batch} differs "
            f"from its SavedModel by {difference:.3g} > "
            f"{TFLITE_TOLERANCE:g}.")
    return model, difference


def add_tflite(export_dir, output_dir, batch, quantization="none",
               overwrite=False):
    """Writes a copy of the export `export_dir` to `output_dir` with
    `generator.tflite` (fixed `batch`, weights per `quantization`) added.

    The model is checked first (`checked_tflite`): nothing is written for
    one that differs from the export's serving_default.

    Returns:
      {"output", "source_export", "portable": {"tflite": record}}.
    """
    export_dir, output_dir = (os.path.abspath(export_dir),
                              os.path.abspath(output_dir))
    export = saved_model.load_export(export_dir)
    model, difference = checked_tflite(export, batch, quantization)
    metadata = dict(export.metadata)
    record = tflite_record(batch, quantization, model, difference,
                           "the export's serving_default")
    metadata["portable"] = dict(metadata.get("portable") or {},
                                tflite=record)
    with files.staged_directory(output_dir, overwrite=overwrite) as staging:
        shutil.copytree(export_dir, staging, dirs_exist_ok=True)
        with open(os.path.join(staging, portable.TFLITE_FILE), "wb") as f:
            f.write(model)
        with open(os.path.join(staging, saved_model.ASSETS_DIR,
                               "metadata.json"), "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
    logging.info("TFLite (batch %d, %s): %d bytes, max |TFLite - "
                 "SavedModel| %.2e.", batch, quantization, len(model),
                 difference)
    return {"output": output_dir, "source_export": export_dir,
            "portable": {"tflite": record}}


def format_report(report):
    """The printed lines of add_tflite's report."""
    tflite = report["portable"]["tflite"]
    return "\n".join([
        f"copied {report['source_export']} -> {report['output']}",
        f"TFLite: {tflite['file']} (batch {tflite['batch']}, quantization "
        f"{tflite['quantization']}, {tflite['bytes'] / 1e6:.2f} MB), vs the "
        f"SavedModel max abs diff {tflite['max_abs_diff']:.2e}"])
