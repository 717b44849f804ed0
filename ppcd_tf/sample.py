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
from ppcd_tf import files
from ppcd_tf import run_dir
from ppcd_tf import sampling
from ppcd_tf import serving
from ppcd_tf import summaries

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

DEFAULT_MAX_CLASSES = 10


class SampleError(errors.BadInputError):
    """Bad arguments (the message says what to change)."""


def _metadata(path):
    return serving.read_metadata(path)


def _parse_floats(values, flag):
    try:
        return [float(v) for v in values]
    except ValueError as error:
        raise SampleError(f"{flag} must be numbers: {error}") from error


def check_modes(interpolate_classes, steps, truncation_sweep, num_classes):
    """((A, B) or None, [truncations] or None) of the grid modes."""
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


def num_classes_of(saved_model=None, model_dir=None):
    if saved_model:
        return int(_metadata(saved_model)["num_classes"])
    return run_dir.read_model_configs(model_dir)["generator"][
        "num_classes"]


def check_args(saved_model, model_dir, classes, n, truncation, out,
               individual=False):
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
    files.check_output_location("--out", out)
    if n < 1:
        raise SampleError(f"--n must be >= 1, got {n}.")
    if not 0.0 < truncation <= 1.0:
        raise SampleError(f"--truncation must be in (0, 1], got {truncation}.")
    num_classes = num_classes_of(saved_model, model_dir)
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
        classes = check_args(FLAGS.saved_model, FLAGS.model_dir,
                             FLAGS.classes, FLAGS.n, FLAGS.truncation,
                             FLAGS.out, FLAGS.individual)
        pair, sweep = check_modes(
            FLAGS.interpolate_classes, FLAGS.steps, FLAGS.truncation_sweep,
            num_classes_of(FLAGS.saved_model, FLAGS.model_dir))
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
