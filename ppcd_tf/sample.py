r"""Writes sample images of a trained generator (grid or individual PNGs).

Examples:

  python -m ppcd_tf.sample --saved_model runs/demo/student_export \
      --classes 3,7 --n 16 --truncation 0.5 --out grid.png
  python -m ppcd_tf.sample --model_dir runs/demo/ppcd --n 8 --out grid.png
  python -m ppcd_tf.sample --saved_model runs/demo/student_export --classes 0 \
      --n 4 --individual --out samples/

  python -m ppcd_tf.sample --saved_model runs/demo/student_export \
      --interpolate_classes 0,9 --steps 8 --n 4 --out interpolation.png
  python -m ppcd_tf.sample --saved_model runs/demo/student_export \
      --truncation_sweep 0.2,0.5,1.0 --classes 3 --n 8 --out sweep.png

A grid has one row per class and `--n` columns; column j uses the same z in
every row. With `--interpolate_classes A,B --steps K` each of the `--n` rows
keeps one z while the shared class embedding moves from A to B in K steps
((1 - alpha) e(A) + alpha e(B), alpha = 0 ... 1; the export's `interpolate`
signature). With `--truncation_sweep T1,T2,...` there is one row per
truncation and column j uses the same direction of z in every row (the
same draw scaled by each T) and class `--classes[j mod len]`.

z is drawn from a normal truncated at +-2 and scaled by
`--truncation` (the BigGAN truncation trick), from `--seed`, identically for
both sources: an exported SavedModel (its `sample` signature) and a training
run's EMA generator (with its current masks for a PPCD run) give the same
images for the same seed.
"""

import os

from absl import app
from absl import flags

from ppcd_tf import errors
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
sampling = lazy.load("ppcd_tf.reporting.sampling")
summaries = lazy.load("ppcd_tf.training.summaries")

FLAGS = flags.FLAGS
flags.DEFINE_string("saved_model", None, "An exported SavedModel directory.")
flags.DEFINE_string("model_dir", None, "A training run directory (EMA G).")
flags.DEFINE_string("checkpoint", "latest", "Which checkpoint of --model_dir:"
                    " latest, best or a checkpoint path prefix.")
flags.DEFINE_list("classes", None, "Class ids, e.g. 3,7 (default: the "
                  "first min(classes, 10)).")
flags.DEFINE_integer("n", 8, "Images per class.")
flags.DEFINE_float("truncation", 1.0, "Truncation in (0, 1].")
flags.DEFINE_integer("seed", 0, "Seed of z.")
flags.DEFINE_string("out", None, "Output PNG (or directory with "
                    "--individual).")
flags.DEFINE_bool("individual", False, "One PNG per image in --out.")
flags.DEFINE_list("interpolate_classes", None, "A,B: one row per z (--n "
                  "rows), the class embedding moved from A to B over --steps "
                  "columns.")
flags.DEFINE_integer("steps", 8, "Columns of --interpolate_classes.")
flags.DEFINE_list("truncation_sweep", None, "Truncations, e.g. 0.2,0.5,1.0: "
                  "one row each, the same z directions in every row.")

def write(images, row_names, out, individual):
    """Writes a grid PNG (one row per entry of `row_names`) or one PNG per
    image (`<row name>_<column>.png`)."""
    if not individual:
        summaries.write_png(summaries.image_grid(images, rows=len(row_names)),
                            out)
        return [out]
    os.makedirs(out, exist_ok=True)
    columns = len(images) // len(row_names)
    paths = []
    for index, image in enumerate(images):
        name, column = row_names[index // columns], index % columns
        path = os.path.join(out, f"{name}_{column:03d}.png")
        summaries.write_png(summaries.image_grid(image[None], rows=1), path)
        paths.append(path)
    return paths


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        classes = sampling.check_args(
            FLAGS.saved_model, FLAGS.model_dir, FLAGS.classes, FLAGS.n,
            FLAGS.truncation, FLAGS.out, FLAGS.individual)
        pair, sweep = sampling.check_modes(
            FLAGS.interpolate_classes, FLAGS.steps, FLAGS.truncation_sweep,
            sampling.num_classes_of(FLAGS.saved_model, FLAGS.model_dir))
        if pair or sweep:
            source = sampling.source(FLAGS.saved_model, FLAGS.model_dir,
                                     FLAGS.checkpoint)
        if pair:
            images = sampling.interpolation_grid(
                source, pair[0], pair[1], FLAGS.n, FLAGS.steps,
                FLAGS.truncation, FLAGS.seed)
            row_names = [f"class{pair[0]}to{pair[1]}_z{i}"
                         for i in range(FLAGS.n)]
        elif sweep:
            images = sampling.truncation_grid(source, classes, FLAGS.n,
                                              sweep, FLAGS.seed)
            row_names = [f"truncation{t:g}" for t in sweep]
        elif FLAGS.saved_model:
            images = sampling.sample_saved_model(
                FLAGS.saved_model, classes, FLAGS.n, FLAGS.truncation,
                FLAGS.seed)
            row_names = [f"class{c}" for c in classes]
        else:
            images = sampling.sample_run(
                FLAGS.model_dir, classes, FLAGS.n, FLAGS.truncation,
                FLAGS.seed, FLAGS.checkpoint)
            row_names = [f"class{c}" for c in classes]
    paths = write(images, row_names, FLAGS.out, FLAGS.individual)
    print(f"Wrote {len(paths)} file(s): {paths[0]}"
          + (" ..." if len(paths) > 1 else ""))


def run_main():
    """Console-script entry point (`ppcd-sample`)."""
    errors.run(main)


if __name__ == "__main__":
    run_main()
