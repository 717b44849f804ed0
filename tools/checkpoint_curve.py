r"""Quality of a run's EMA generator at each of its checkpoints.

  python tools/checkpoint_curve.py --model_dir runs/exp/B \
      --num_samples 2000 --seeds 0 --reference runs/exp/teacher_eval2k.json

Evaluates every checkpoint from `--min_step` on (shipped classifier features
against the test split by default, as `python -m ppcd_tf.evaluate`), prints
one line per step (FID, class accuracy and, with `--reference`, the ratios to
a reference evaluation such as the teacher's with the same samples and
seeds) and appends them to `<model_dir>/checkpoint_curve.jsonl`. Used to
screen retraining recipes (BENCHMARKS.md): one run gives the whole curve.
"""

import json
import os

from absl import app
from absl import flags

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
Checkpointer = lazy.load("ppcd_tf.runs.checkpointing.Checkpointer")
evaluation = lazy.load("ppcd_tf.metrics.evaluation")
feature_networks = lazy.load("ppcd_tf.metrics.feature_networks")
run_dir = lazy.load("ppcd_tf.runs.run_dir")

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The run directory.")
flags.DEFINE_integer("min_step", 0, "First checkpoint step evaluated.")
flags.DEFINE_integer("num_samples", 2000, "Samples per seed.")
flags.DEFINE_list("seeds", ["0"], "Evaluation seeds.")
flags.DEFINE_string("reference", None, "Result JSON of python -m "
                    "ppcd_tf.evaluate to divide by (same samples and seeds).")
flags.DEFINE_string("cache_dir", defaults.EVAL_CACHE_DIR,
                    "Real-feature cache.")


def _check_writable(flag, path):
    """Refuses, before any work, an output directory `path` that cannot be
    written: under a file, or under a directory this process cannot write
    to."""
    path = os.path.abspath(path)
    files.check_output_location(flag, path, directory=True)


def _read_reference(path):
    """The summary of the --reference JSON."""
    return evaluation.read_result_summary(path, "--reference")


def _check_flags():
    """Every flag, checked before any feature extraction; returns the
    reference summary (or None)."""
    if FLAGS.num_samples < 2:
        raise errors.BadInputError(
            f"--num_samples must be >= 2, got {FLAGS.num_samples}.")
    evaluation.parse_seeds(FLAGS.seeds)
    if not os.path.isdir(FLAGS.model_dir):
        raise errors.MissingInputError(
            f"--model_dir {FLAGS.model_dir} does not exist or is not a "
            "directory.")
    _check_writable("--model_dir", FLAGS.model_dir)
    _check_writable("--cache_dir", FLAGS.cache_dir)
    return _read_reference(FLAGS.reference) if FLAGS.reference else None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        reference = _check_flags()
        checkpoints = Checkpointer(
            run_dir.checkpoint_dir(FLAGS.model_dir)).candidates()
        if not checkpoints:
            raise errors.MissingInputError(
                f"--model_dir {FLAGS.model_dir} holds no checkpoint (in "
                f"{run_dir.checkpoint_dir(FLAGS.model_dir)}); give a run "
                "directory of python -m ppcd_tf.train.")
        steps = {path: run_dir.checkpoint_step(path) for path in checkpoints}
        chosen = sorted((p for p in checkpoints
                         if steps[p] >= FLAGS.min_step), key=steps.get)
        if not chosen:
            raise evaluation.EvaluationError(
                f"No checkpoint of step >= {FLAGS.min_step} in "
                f"{FLAGS.model_dir}; lower --min_step.")
        dataset = run_dir.read_model_configs(FLAGS.model_dir)["dataset"]
        network = feature_networks.build(
            feature_networks.default_for_dataset(dataset["name"]))
        real = evaluation.real_features(
            network, dataset["name"], evaluation.default_split(
                dataset["name"]), dataset["resolution"], FLAGS.cache_dir)
        seeds = evaluation.parse_seeds(FLAGS.seeds)
        out = os.path.join(FLAGS.model_dir, "checkpoint_curve.jsonl")
        for path in chosen:
            source = evaluation.GeneratorSource.from_run(FLAGS.model_dir,
                                                         path)
            result = evaluation.evaluate(source, network, real,
                                         FLAGS.num_samples, seeds)
            metrics = result["summary"]
            line = {"step": steps[path], "num_samples": FLAGS.num_samples,
                    "seeds": seeds,
                    "fid": metrics["fid"]["mean"],
                    "class_accuracy": metrics["class_accuracy"]["mean"]}
            text = (f"step {line['step']}: FID {line['fid']:.3f}, class "
                    f"accuracy {line['class_accuracy']:.4f}")
            if reference:
                line["fid_ratio"] = line["fid"] / reference["fid"]["mean"]
                line["accuracy_drop_points"] = 100.0 * (
                    reference["class_accuracy"]["mean"]
                    - line["class_accuracy"])
                text += (f" | FID ratio {line['fid_ratio']:.3f}, accuracy "
                         f"drop {line['accuracy_drop_points']:.2f} points")
            print(text, flush=True)
            with open(out, "a") as f:
                f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    flags.mark_flag_as_required("model_dir")
    errors.run(main)
