"""The compression-quality curve: rows, table and plot of a sweep.

A sweep (`tools/compression_curve.py`) trains one student per (method,
target ratio) from the same teacher, exports and evaluates it, and records
`{method, target_compression, params, teacher_params, steps, train_seconds,
fid, class_accuracy}` per run. This module turns those records and the
teacher's evaluation (same protocol) into the curve: FID ratio and class
accuracy drop against the compression actually reached, one line per method.

Equal wall-clock: methods whose steps are cheaper than PPCD's (a thinner
student trained from the start) are given more steps, `equal_time_steps`.
"""

import math

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.metrics import evaluation
from ppcd_tf.training import summaries

METHODS = {
    "ppcd": "PPCD (masks + class-aware distillation)",
    "uniform_pruning": "uniform pruning (same widths fraction everywhere)",
    "no_masks": "thinner student from scratch (same distillation)",
}


# What every run record holds (see the module docstring); a record may hold
# more (e.g. `source`: where a record transcribed from an earlier sweep came
# from).
RECORD_KEYS = ("method", "target_compression", "params", "teacher_params",
               "steps", "train_seconds", "fid", "class_accuracy")
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
                                       r["compression"]))


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
    sweep's `current` ones; for one (method, target compression) the later
    record wins."""
    merged = {}
    for record in list(earlier) + list(current):
        key = (record["method"], float(record["target_compression"]))
        merged[key] = record
    return list(merged.values())


def render_markdown(rows, reference):
    """The sweep's table (one line per run) with the teacher's figures."""
    lines = [
        f"Teacher (same protocol): FID {reference['fid']['mean']:.3f}, "
        f"class accuracy {reference['class_accuracy']['mean']:.4f}.",
        "",
        "| method | target | compression | G params | steps | train min |"
        " FID | FID ratio | class acc. | drop (points) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['method']} | {row['target_compression']:g}x | "
            f"{row['compression']:.2f}x | {row['params']:,} | "
            f"{row['steps']:,} | {row['train_seconds'] / 60:.1f} | "
            f"{row['fid']:.3f} | {row['fid_ratio']:.2f} | "
            f"{row['class_accuracy']:.4f} | "
            f"{row['accuracy_drop_points']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows, path, fid_target=1.10, drop_target=2.0):
    """Two panels (FID ratio, accuracy drop) over compression, one line per
    method, the targets dashed; written atomically as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (fid_axis, drop_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [r for r in rows if r["method"] == method]
        x = [r["compression"] for r in mine]
        fid_axis.plot(x, [r["fid_ratio"] for r in mine], "o-",
                      label=METHODS.get(method, method))
        drop_axis.plot(x, [r["accuracy_drop_points"] for r in mine], "o-",
                       label=METHODS.get(method, method))
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
