"""The sample grids a run writes: fixed z and labels, one row per class.

`SampleGrid` (gin-configurable) holds which classes and how many columns;
the trainer draws the grid from its EMA generator at the loop's
`sample_every` and writes it as a TensorBoard image and a PNG under
`<model_dir>/samples/` (`samples_<step>.png` and `latest.png`).
"""

import os

import gin
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.training import summaries

_SAMPLE_SEED_OFFSET = 7919


@gin.configurable(denylist=["num_classes", "dim_z", "seed"])
class SampleGrid:
    """The fixed inputs of the sample grid.

    Args:
      num_classes, dim_z, seed: the run's (given by the trainer).
      sample_classes: classes shown (one row each; default the first
        min(num_classes, max_sample_classes)).
      max_sample_classes: cap of the default sample classes.
      samples_per_class: columns of the grid.
    """

    def __init__(self, num_classes, dim_z, seed, sample_classes=None,
                 max_sample_classes=10, samples_per_class=8):
        if sample_classes is None:
            sample_classes = list(range(min(num_classes,
                                            max_sample_classes)))
        bad = [c for c in sample_classes if not 0 <= c < num_classes]
        if bad:
            raise errors.BadInputError(
                f"SampleGrid.sample_classes {bad} outside [0, "
                f"{num_classes}).")
        self.classes = list(sample_classes)
        self.columns = int(samples_per_class)
        self.dim_z, self.seed = dim_z, int(seed)

    @property
    def rows(self):
        return len(self.classes)

    def inputs(self):
        """z [rows * columns, dim_z] (the same z in every row) and labels
        [rows * columns] (each class repeated `columns` times)."""
        z = tf.random.stateless_normal(
            (self.columns, self.dim_z), (self.seed, _SAMPLE_SEED_OFFSET))
        z = tf.tile(z, (self.rows, 1))
        labels = tf.repeat(tf.constant(self.classes, tf.int32), self.columns)
        return z, labels

    def row_labels(self, class_names=None):
        """The grid's row labels: the class names of `classes` (from the
        dataset's `class_names`, else "class <index>")."""
        return [class_names[c] if class_names and c < len(class_names)
                else f"class {c}" for c in self.classes]

    def write(self, images, step, model_dir, name="ema", row_labels=None,
              headers=None):
        """Writes images [rows * columns, H, W, C] in [-1, 1] as a grid:
        TensorBoard `samples/<name>` and, for the EMA grid,
        samples/samples_<step>.png and samples/latest.png (other names:
        samples/<name>_<step>.png). With `row_labels` and/or `headers` the
        grid is labelled (`summaries.label_grid`)."""
        grid = summaries.image_grid(images, rows=self.rows)
        if row_labels or headers:
            grid = summaries.label_grid(grid, self.rows, row_labels, headers)
        tf.summary.image(f"samples/{name}", grid, step=step)
        directory = os.path.join(model_dir, "samples")
        if name == "ema":
            summaries.write_png(grid, os.path.join(
                directory, f"samples_{step:08d}.png"))
            summaries.write_png(grid, os.path.join(directory, "latest.png"))
        else:
            summaries.write_png(grid, os.path.join(
                directory, f"{name}_{step:08d}.png"))
        return grid
