"""Sample grids of a generator: an export or a training run.

The library behind `python -m ppcd_tf.sample` and the report's figures (no
flags here). Every grid draws z with `serving.truncated_z` from a stateless
seed, so an export and the run it came from give the same images.
"""

import numpy as np
import tensorflow as tf

from ppcd_tf import run_dir
from ppcd_tf import serving


def grid_labels(classes, n):
    """labels [len(classes) * n]: each class repeated n times (one row)."""
    labels = np.repeat(np.asarray(classes, np.int32), n)
    return tf.constant(labels)


def column_z(dim_z, n, rows, truncation, seed):
    """z [rows * n, dim_z]: the same n vectors repeated for every row."""
    z = serving.truncated_z((n, dim_z), (seed, 0), truncation)
    return tf.tile(z, (rows, 1))


def sample_saved_model(path, classes, n, truncation, seed):
    """Images [len(classes) * n, H, W, C] from an exported SavedModel."""
    export = serving.load_export(path)
    z = column_z(export.dim_z, n, len(classes), truncation, seed)
    return export.generate(z, grid_labels(classes, n)).numpy()


def sample_run(model_dir, classes, n, truncation, seed, checkpoint=None):
    """Images from a training run's EMA generator (masks applied if any) of
    its newest checkpoint or `checkpoint` ('best', a path prefix)."""
    restored = run_dir.restore_generator(model_dir, checkpoint)
    z = column_z(restored.generator.dim_z, n, len(classes), truncation,
                 seed)
    return restored.generate(z, grid_labels(classes, n)).numpy()


def source(saved_model, model_dir, checkpoint=None):
    """The export (LoadedExport) or the run (RestoredGenerator) to sample."""
    if saved_model:
        return serving.load_export(saved_model)
    return run_dir.restore_generator(model_dir, checkpoint)


def _dim_z(source):
    if isinstance(source, serving.LoadedExport):
        return source.dim_z
    return source.generator.dim_z


def interpolation_grid(source, class_a, class_b, rows, steps, truncation,
                       seed):
    """Images [rows * steps, H, W, C]: row i keeps one z, column j mixes
    the class embedding with alpha = j / (steps - 1) from class_a to
    class_b. `source`: a LoadedExport or a RestoredGenerator."""
    z = serving.truncated_z((rows, _dim_z(source)), (seed, 0), truncation)
    z = tf.repeat(z, steps, axis=0)
    alpha = tf.tile(tf.linspace(0.0, 1.0, steps), [rows])
    labels_a = tf.fill([rows * steps], int(class_a))
    labels_b = tf.fill([rows * steps], int(class_b))
    return np.asarray(source.interpolate(z, labels_a, labels_b, alpha))


def truncation_grid(source, classes, n, truncations, seed):
    """Images [len(truncations) * n, H, W, C]: one row per truncation,
    column j the same draw of z (scaled by the row's truncation) and class
    classes[j % len(classes)]."""
    base = serving.truncated_z((n, _dim_z(source)), (seed, 0), 1.0)
    z = tf.concat([base * float(t) for t in truncations], axis=0)
    labels = np.asarray([classes[j % len(classes)] for j in range(n)],
                        np.int32)
    labels = tf.constant(np.tile(labels, len(truncations)))
    return np.asarray(source.generate(z, labels))
