"""The compression-quality curve: rows, table and plot of a sweep.

A sweep (`tools/compression_curve.py`) trains one student per (method,
target ratio) from the same teacher, exports and evaluates it, and records
`{method, target_compression, params, teacher_params, steps, train_seconds,
fid, class_accuracy}` per run, and `train_seed` for runs trained with a
training seed other than 0 (noise draws and data order: `Trainer.seed`,
`ImageDataset.seed`). This module turns those records and the teacher's
evaluation (same protocol) into the curve: FID ratio and class accuracy drop
against the compression actually reached, one line per method; where a
(method, ratio) was trained with several seeds, the line goes through their
mean and the error bars span one standard deviation (`seed_summary`).

Equal wall-clock: methods whose steps are cheaper than PPCD's (a thinner
student trained from the start) are given more steps, `equal_time_steps`.
"""

import math

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.metrics import evaluation
from ppcd_tf.training import summaries

METHODS = defaults.CURVE_METHODS


# What every run record holds (see the module docstring); a record may hold
# more (e.g. `source`: where a record transcribed from an earlier sweep came
# from).
RECORD_KEYS = ("method", "target_compression", "params", "teacher_params",
               "steps", "train_seconds", "fid", "class_accuracy")
# Training seed of a record that names none (every sweep before seeds).
DEFAULT_TRAIN_SEED = 0
# Two sweeps are one curve only when their teacher figures (same protocol:
# samples, seeds, real statistics) agree this closely.
REFERENCE_TOLERANCE = 1e-3


def equal_time_steps(steps, seconds, reference_seconds, max_factor=4.0):
    """Steps a run of `steps` that took `seconds` needs to take
    `reference_seconds` at the same speed (never fewer than `steps`, at most
    `max_factor` x `steps`)."""
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}.")
    wanted = steps * reference_seconds / seconds
    return int(min(max(steps, math.floor(wanted)), max_factor * steps))


def train_seed(record):
    """The training seed a run record was trained with."""
    return int(record.get("train_seed", DEFAULT_TRAIN_SEED))


def run_name(method, ratio, seed=DEFAULT_TRAIN_SEED):
    """Run directory name of (method, target ratio, training seed); seed 0
    keeps the name of sweeps before training seeds, so they resume."""
    name = f"{method}_{ratio:g}x"
    return name if seed == DEFAULT_TRAIN_SEED else f"{name}_seed{seed}"


def seed_bindings(seed):
    """Gin bindings that train a run with training seed `seed` (the noise
    draws and sample grids, and the data order); none for the default."""
    if seed == DEFAULT_TRAIN_SEED:
        return []
    return [f"Trainer.seed = {seed}", f"ImageDataset.seed = {seed}"]


def curve_rows(records, reference):
    """Rows sorted by method and compression.

    Args:
      records: list of run records (see the module docstring).
      reference: the teacher's evaluation summary with the same protocol,
        {"fid": {"mean"}, "class_accuracy": {"mean"}}.

    Returns:
      list of dicts: the record plus compression, fid_ratio and
      accuracy_drop_points.
    """
    teacher_fid = reference["fid"]["mean"]
    teacher_accuracy = reference["class_accuracy"]["mean"]
    rows = []
    for record in records:
        row = dict(record)
        row["compression"] = record["teacher_params"] / record["params"]
        row["fid_ratio"] = record["fid"] / teacher_fid
        row["accuracy_drop_points"] = 100.0 * (
            teacher_accuracy - record["class_accuracy"])
        rows.append(row)
    order = list(METHODS)
    return sorted(rows, key=lambda r: (order.index(r["method"])
                                       if r["method"] in order else 99,
                                       float(r["target_compression"]),
                                       train_seed(r)))


def _mean_and_deviation(values):
    """(mean, sample standard deviation; 0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance)


def seed_summary(rows):
    """One entry per (method, target compression) over its training seeds.

    Args:
      rows: `curve_rows` output.

    Returns:
      list of dicts in the rows' order: method, target_compression,
      train_seeds (sorted), and {"mean", "std"} (sample standard deviation
      over the seeds; 0 for one seed) of compression, fid_ratio and
      accuracy_drop_points.
    """
    groups = {}
    for row in rows:
        key = (row["method"], float(row["target_compression"]))
        groups.setdefault(key, []).append(row)
    summary = []
    for (method, target), runs in groups.items():
        entry = {"method": method, "target_compression": target,
                 "train_seeds": sorted(train_seed(r) for r in runs)}
        for figure in ("compression", "fid_ratio", "accuracy_drop_points"):
            mean, deviation = _mean_and_deviation([r[figure] for r in runs])
            entry[figure] = {"mean": mean, "std": deviation}
        summary.append(entry)
    return summary


def read_curve(path, flag):
    """The teacher reference and the run records of a curve JSON written by
    tools/compression_curve.py (its `curve.json`), given as `flag`.

    Returns:
      (reference, records): reference as in `curve_rows`; records the rows
      with the RECORD_KEYS (and any extra keys) they hold.
    """
    curve = files.read_json(
        path, flag,
        missing_fix=("give the curve.json of an earlier run of "
                     "tools/compression_curve.py."),
        damaged_fix=("rerun that sweep's command: it rewrites curve.json "
                     "from its runs' records."))
    try:
        reference = curve["reference"]
        evaluation.check_summary_figures(reference)
        records = []
        for row in curve["rows"]:
            missing = [key for key in RECORD_KEYS if key not in row]
            if missing:
                raise KeyError(f"a row without {missing}")
            records.append(dict(row))
    except (KeyError, TypeError, ValueError) as error:
        raise errors.DamagedInputError(
            f"{flag} {path} is not a curve.json of "
            f"tools/compression_curve.py ({error}).") from error
    return reference, records


def check_same_reference(reference, other, what):
    """Raises BadInputError unless the two teacher references (FID and class
    accuracy means) agree within REFERENCE_TOLERANCE: the sweeps then used
    the same evaluation protocol and can share one curve."""
    for key in ("fid", "class_accuracy"):
        mine, theirs = reference[key]["mean"], other[key]["mean"]
        if abs(mine - theirs) > REFERENCE_TOLERANCE:
            raise errors.BadInputError(
                f"{what}: its teacher {key} {theirs:.4f} differs from this "
                f"sweep's {mine:.4f}; the sweeps were evaluated with "
                "different protocols (samples, seeds or teacher) and cannot "
                "share one curve.")


def merge_records(earlier, current):
    """`earlier` records (from earlier sweeps, oldest first) and this
    sweep's `current` ones; for one (method, target compression, training
    seed) the later record wins."""
    merged = {}
    for record in list(earlier) + list(current):
        key = (record["method"], float(record["target_compression"]),
               train_seed(record))
        merged[key] = record
    return list(merged.values())


def render_markdown(rows, reference):
    """The sweep's table (one line per run) with the teacher's figures and,
    when a (method, ratio) has several training seeds, a second table of
    their means and standard deviations."""
    lines = [
        f"Teacher (same protocol): FID {reference['fid']['mean']:.3f}, "
        f"class accuracy {reference['class_accuracy']['mean']:.4f}.",
        "",
        "| method | target | train seed | compression | G params | steps |"
        " train min | FID | FID ratio | class acc. | drop (points) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['target_compression']:g}x | "
            f"{train_seed(row)} | "
            f"{row['compression']:.2f}x | {row['params']:,} | "
            f"{row['steps']:,} | {row['train_seconds'] / 60:.1f} | "
            f"{row['fid']:.3f} | {row['fid_ratio']:.2f} | "
            f"{row['class_accuracy']:.4f} | "
            f"{row['accuracy_drop_points']:.1f} |")
    summary = seed_summary(rows)
    if any(len(entry["train_seeds"]) > 1 for entry in summary):
        lines += ["", "Over training seeds (mean ± standard deviation):", "",
                  "| method | target | seeds | compression | FID ratio |"
                  " drop (points) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for entry in summary:
            lines.append(
                f"| {entry['method']} | {entry['target_compression']:g}x | "
                f"{len(entry['train_seeds'])} | "
                f"{entry['compression']['mean']:.2f}x | "
                f"{_plus_minus(entry['fid_ratio'], '.2f')} | "
                f"{_plus_minus(entry['accuracy_drop_points'], '.1f')} |")
    return "\n".join(lines) + "\n"


def _plus_minus(figure, spec):
    return f"{figure['mean']:{spec}} ± {figure['std']:{spec}}"


def plot(rows, path, fid_target=1.10, drop_target=2.0):
    """Two panels (FID ratio, accuracy drop) over compression, one line per
    method through the means over training seeds, error bars one standard
    deviation (`seed_summary`), the targets dashed; written atomically as
    PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (fid_axis, drop_axis) = plt.subplots(1, 2, figsize=(11, 4))
    summary = seed_summary(rows)
    for method in dict.fromkeys(entry["method"] for entry in summary):
        mine = [e for e in summary if e["method"] == method]
        x = [e["compression"]["mean"] for e in mine]
        for axis, key in ((fid_axis, "fid_ratio"),
                          (drop_axis, "accuracy_drop_points")):
            axis.errorbar(x, [e[key]["mean"] for e in mine],
                          yerr=[e[key]["std"] for e in mine], fmt="o-",
                          capsize=3, label=METHODS.get(method, method))
    fid_axis.axhline(fid_target, color="gray", linestyle="--",
                     label=f"target {fid_target}")
    drop_axis.axhline(drop_target, color="gray", linestyle="--",
                      label=f"target {drop_target}")
    # Log scale: the thin student from scratch is several times further
    # from the teacher than the pruned ones, which differ by tenths.
    fid_axis.set_yscale("log")
    fid_axis.set_ylabel("student FID / teacher FID (log scale)")
    drop_axis.set_ylabel("class accuracy drop (points)")
    for axis in (fid_axis, drop_axis):
        axis.set_xlabel("compression (teacher / student G parameters)")
        axis.legend(fontsize=7)
    figure.tight_layout()
    summaries.write_figure(figure, path)
