"""Sample grids of a generator: an export or a training run.

The library behind `python -m ppcd_tf.sample` (its argument checks too) and
the report's figures (no flags here). Every grid draws z with
`saved_model_lib.truncated_z` from a stateless seed, so an export and the run it came
from give the same images.
"""

import os

import numpy as np
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.exporting import saved_model as saved_model_lib
from ppcd_tf.runs import run_dir

DEFAULT_MAX_CLASSES = 10


class SampleError(errors.BadInputError):
    """Bad arguments (the message says what to change)."""


def _parse_floats(values, flag):
    try:
        return [float(v) for v in values]
    except ValueError as error:
        raise SampleError(f"{flag} must be numbers: {error}") from error


def check_modes(interpolate_classes, steps, truncation_sweep, num_classes):
    """((A, B) or None, [truncations] or None) of the grid modes (the
    sample tool's --interpolate_classes, --steps, --truncation_sweep;
    raises SampleError)."""
    if interpolate_classes is not None and truncation_sweep is not None:
        raise SampleError("Give at most one of --interpolate_classes and "
                          "--truncation_sweep.")
    pair = None
    if interpolate_classes is not None:
        try:
            pair = tuple(int(c) for c in interpolate_classes)
        except ValueError as error:
            raise SampleError(f"--interpolate_classes must be two class "
                              f"ids A,B: {error}") from error
        if len(pair) != 2:
            raise SampleError("--interpolate_classes takes two class ids "
                              f"A,B, got {len(pair)}.")
        bad = [c for c in pair if not 0 <= c < num_classes]
        if bad:
            raise SampleError(
                f"--interpolate_classes {bad} outside [0, {num_classes}).")
        if steps < 2:
            raise SampleError(f"--steps must be >= 2, got {steps}.")
    sweep = None
    if truncation_sweep is not None:
        sweep = _parse_floats(truncation_sweep, "--truncation_sweep")
        bad = [t for t in sweep if not 0.0 < t <= 1.0]
        if not sweep or bad:
            raise SampleError(f"--truncation_sweep values must be in (0, 1],"
                              f" got {truncation_sweep}.")
    return pair, sweep


# The channels assumed for an export that does not record them (RGB: the
# most an image has, so a memory estimate errs on the safe side).
_MOST_CHANNELS = 3


def source_facts(saved_model=None, model_dir=None):
    """(classes, values of one image H x W x C) of an export (its
    metadata) or of a run (models.json), each read once."""
    if saved_model:
        metadata = saved_model_lib.read_metadata(saved_model)
        size = metadata["resolution"]
        channels = metadata.get("image_channels", _MOST_CHANNELS)
        return int(metadata["num_classes"]), int(size) ** 2 * int(channels)
    configs = run_dir.read_model_configs(model_dir)
    dataset = configs["dataset"]
    return (int(configs["generator"]["num_classes"]),
            int(dataset["resolution"]) ** 2 * int(dataset["image_channels"]))


def num_classes_of(saved_model=None, model_dir=None):
    """Classes of an export (its metadata) or of a run (models.json)."""
    return source_facts(saved_model, model_dir)[0]


def check_args(saved_model, model_dir, classes, n, truncation, out,
               individual=False):
    """The sample tool's source, output and grid arguments checked (raises
    SampleError naming the flag); returns the class ids of the rows (the
    first DEFAULT_MAX_CLASSES classes when `classes` is None)."""
    if bool(saved_model) == bool(model_dir):
        raise SampleError("Give exactly one of --saved_model and --model_dir.")
    source = saved_model or model_dir
    if not os.path.isdir(source):
        raise SampleError(f"{source} is not a directory.")
    if not out:
        raise SampleError("--out is required.")
    if os.path.isdir(out) and not individual:
        raise SampleError(f"--out {out} is a directory; give a PNG path (or "
                          "pass --individual to write one PNG per image "
                          "there).")
    if individual and os.path.exists(out) and not os.path.isdir(out):
        raise SampleError(f"--out {out} is a file; with --individual give a "
                          "directory.")
    files.check_output_location(
        "--out", out, directory=individual,
        inputs={"--saved_model" if saved_model else "--model_dir": source})
    if n < 1:
        raise SampleError(f"--n must be >= 1, got {n}.")
    if not 0.0 < truncation <= 1.0:
        raise SampleError(f"--truncation must be in (0, 1], got {truncation}.")
    num_classes, image_values = source_facts(saved_model, model_dir)
    rows = len(classes) if classes else min(num_classes,
                                            DEFAULT_MAX_CLASSES)
    per_row_image = 4 * rows * image_values
    most = errors.machine_memory_bytes() // per_row_image
    errors.check_fits_in_memory(
        n * per_row_image, f"--n {n:,} x {rows} class rows",
        f"ask for at most {most:,} images per class.")
    if classes is None:
        return list(range(min(num_classes, DEFAULT_MAX_CLASSES)))
    try:
        classes = [int(c) for c in classes]
    except ValueError as error:
        raise SampleError(f"--classes must be integers: {error}") from error
    if not classes:
        raise SampleError("--classes is empty; name at least one class (or "
                          "leave the flag out for the first classes).")
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise SampleError(f"Classes {bad} are outside [0, {num_classes}).")
    return classes


def grid_labels(classes, n):
    """labels [len(classes) * n]: each class repeated n times (one row)."""
    labels = np.repeat(np.asarray(classes, np.int32), n)
    return tf.constant(labels)


def column_z(dim_z, n, rows, truncation, seed):
    """z [rows * n, dim_z]: the same n vectors repeated for every row."""
    z = saved_model_lib.truncated_z((n, dim_z), (seed, 0), truncation)
    return tf.tile(z, (rows, 1))


def sample_saved_model(path, classes, n, truncation, seed):
    """Images [len(classes) * n, H, W, C] from an exported SavedModel."""
    export = saved_model_lib.load_export(path)
    z = column_z(export.dim_z, n, len(classes), truncation, seed)
    return export.generate(z, grid_labels(classes, n)).numpy()


def sample_run(model_dir, classes, n, truncation, seed, checkpoint=None):
    """Images from a training run's EMA generator (masks applied if any) of
    its newest checkpoint or `checkpoint` ('best', a path prefix)."""
    restored = run_dir.restore_generator(model_dir, checkpoint)
    z = column_z(restored.generator.dim_z, n, len(classes), truncation,
                 seed)
    return restored.generate(z, grid_labels(classes, n),
                             truncation=truncation).numpy()


def source(saved_model, model_dir, checkpoint=None):
    """The export (LoadedExport) or the run (RestoredGenerator) to sample."""
    if saved_model:
        return saved_model_lib.load_export(saved_model)
    return run_dir.restore_generator(model_dir, checkpoint)


def _dim_z(source):
    if isinstance(source, saved_model_lib.LoadedExport):
        return source.dim_z
    return source.generator.dim_z


def interpolation_grid(source, class_a, class_b, rows, steps, truncation,
                       seed):
    """Images [rows * steps, H, W, C]: row i keeps one z, column j mixes
    the class embedding with alpha = j / (steps - 1) from class_a to
    class_b. `source`: a LoadedExport or a RestoredGenerator."""
    z = saved_model_lib.truncated_z((rows, _dim_z(source)), (seed, 0), truncation)
    z = tf.repeat(z, steps, axis=0)
    alpha = tf.tile(tf.linspace(0.0, 1.0, steps), [rows])
    labels_a = tf.fill([rows * steps], int(class_a))
    labels_b = tf.fill([rows * steps], int(class_b))
    return np.asarray(source.interpolate(z, labels_a, labels_b, alpha))


def truncation_grid(source, classes, n, truncations, seed):
    """Images [len(truncations) * n, H, W, C]: one row per truncation,
    column j the same draw of z (scaled by the row's truncation) and class
    classes[j % len(classes)]."""
    base = saved_model_lib.truncated_z((n, _dim_z(source)), (seed, 0), 1.0)
    z = tf.concat([base * float(t) for t in truncations], axis=0)
    labels = np.asarray([classes[j % len(classes)] for j in range(n)],
                        np.int32)
    labels = tf.constant(np.tile(labels, len(truncations)))
    return np.asarray(source.generate(z, labels))
