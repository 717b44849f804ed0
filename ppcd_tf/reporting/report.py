"""Teacher vs compressed student, side by side: figures, grids, plots.

Builds the report of a PPCD compression (what `make demo` and
`tools/benchmark.py` write): for the teacher's and the student's exported
SavedModels, parameters, MACs per image, SavedModel size, CPU generation
throughput (timed alternately, median), FID / KID / intra-FID / IS / class
accuracy (mean +- std over seeds, same samples counts and real statistics);
the PPCD / teacher training-step time ratio; sample grids with the same z
for both; a plot of the live parameter count and per-layer kept channels
over the PPCD run; and the targets of the method with pass / miss.

Output directory (written through a temporary directory renamed into place):
  report.json, report.md, teacher_samples.png, student_samples.png,
  samples_side_by_side.png, pruning.png, evaluation_teacher.json,
  evaluation_student.json.
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

from ppcd_tf import defaults
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.exporting import conversion
from ppcd_tf.exporting import portable
from ppcd_tf.exporting import saved_model
from ppcd_tf.metrics import evaluation
from ppcd_tf.metrics import feature_networks
from ppcd_tf.reporting import sampling
from ppcd_tf.runs import run_dir
from ppcd_tf.training import run_summaries
from ppcd_tf.training import summaries

DEFAULT_GEN_BATCH = defaults.REPORT_GEN_BATCH
DEFAULT_REPEATS = defaults.REPORT_REPEATS
DEFAULT_WARMUP = 3
# Runtimes the generation timing serves an export with.
RUNTIMES = defaults.GENERATION_RUNTIMES
RUNTIME_TENSORFLOW, RUNTIME_TFLITE = RUNTIMES
# The TFLite rows' and targets' names end with this.
TFLITE_SUFFIX = ", TFLite"
DEFAULT_GRID_COLUMNS = 8
MAX_GRID_ROWS = 10  # Classes shown in the sample grids.
# Targets of the method (issue 5 / DESIGN.md): at least this compression,
# student FID at most this multiple of the teacher's, class accuracy at most
# this many points (fraction) below, PPCD step at most this multiple of the
# teacher's. Generation speed (issue 32, which withdrew "0.8 x the MAC
# ratio": width-independent costs make it unreachable on a CPU): the student
# at least this many times the teacher's images/s at the report's batch
# (64 by default) and at batch 1.
TARGET_COMPRESSION = 5.2
TARGET_FID_RATIO = 1.10
TARGET_ACCURACY_DROP = 0.02
TARGET_SPEEDUP = 6.0
TARGET_SPEEDUP_BATCH1 = 3.0
TARGET_STEP_RATIO = 1.7
# The report as TensorBoard text, in an events.out.tfevents.* file beside
# REPORT_FILES.
REPORT_TEXT_TAG = "report/summary"
REPORT_FILES = ("report.json", "report.md", "teacher_samples.png",
                "student_samples.png", "samples_side_by_side.png",
                "truncation.png", "pruning.png", "evaluation_teacher.json",
                "evaluation_student.json")
# Figures of exports that have the interpolate signature (every export of
# this version; exports of older versions lack it and get no such figure).
INTERPOLATION_FILE = "interpolation.png"
TRUNCATION_FILE = "truncation.png"
OPTIONAL_REPORT_FILES = (INTERPOLATION_FILE,)
INTERPOLATION_ROWS = 4
INTERPOLATION_STEPS = 8
TRUNCATIONS = (0.25, 0.5, 0.75, 1.0)


def saved_model_facts(path):
    """{params, macs, saved_model, saved_model_bytes} of an export."""
    metadata = saved_model.read_metadata(path)
    return {"params": int(metadata["params"]),
            "macs": int(metadata["macs_per_image"]),
            "saved_model": os.path.abspath(path),
            "saved_model_bytes": int(saved_model.saved_model_bytes(path))}


def measure_generation(paths, batch_size=DEFAULT_GEN_BATCH,
                       repeats=DEFAULT_REPEATS, warmup=DEFAULT_WARMUP,
                       seed=0, runtime=RUNTIME_TENSORFLOW, threads=None):
    """Images/s of exported generators, timed alternately (one batch of each
    per round, so machine noise hits all alike). Returns {path: {...}}.

    `runtime`: RUNTIME_TENSORFLOW (the SavedModel's serving_default) or
    RUNTIME_TFLITE (each export converted to a TFLite model of this batch
    and checked against its SavedModel first, `conversion.checked_tflite`,
    whose errors are BadInputErrors, then run by the TFLite interpreter with
    its XNNPACK CPU delegate on `threads` threads, default one per core)."""
    runs, inputs = {}, {}
    for path in paths:
        export = saved_model.load_export(path)
        runs[path] = _generation_call(export, batch_size, runtime, threads)
        inputs[path] = evaluation.sample_inputs(
            batch_size, export.dim_z, export.num_classes, seed)
    times = {path: [] for path in paths}
    for round_index in range(warmup + repeats):
        for path in paths:
            z, labels = inputs[path]
            start = time.perf_counter()
            runs[path](z, labels)
            if round_index >= warmup:
                times[path].append(time.perf_counter() - start)
    return {path: {"batch_size": batch_size,
                   "seconds_per_batch": float(np.median(t)),
                   "images_per_sec": batch_size / float(np.median(t)),
                   "batch_times": t}
            for path, t in times.items()}


def _generation_call(export, batch_size, runtime, threads):
    """A function (z, labels numpy) -> images numpy of `export` in
    `runtime` (see measure_generation)."""
    if runtime == RUNTIME_TENSORFLOW:
        serve = export.signature()
        return lambda z, labels: serve(z=tf.constant(z),
                                       labels=tf.constant(labels))[
                                           "images"].numpy()
    if runtime != RUNTIME_TFLITE:
        raise errors.BadInputError(
            f"Unknown runtime {runtime!r}: use one of {RUNTIMES}.")
    model, _ = conversion.checked_tflite(export, batch_size)
    return portable.TFLiteGenerator(model, threads).generate


def write_grids(teacher_path, student_path, out_dir, classes, columns,
                seed=0):
    """teacher_samples.png, student_samples.png (one row per class, the same
    z in a column, for both) and samples_side_by_side.png."""
    grids = {}
    for name, path in (("teacher", teacher_path), ("student", student_path)):
        images = sampling.sample_saved_model(path, classes, columns, 1.0,
                                             seed)
        grids[name] = summaries.image_grid(images, rows=len(classes))
        summaries.write_png(grids[name],
                            os.path.join(out_dir, f"{name}_samples.png"))
    _write_side_by_side(grids, os.path.join(out_dir,
                                            "samples_side_by_side.png"))
    exports = {name: saved_model.load_export(path) for name, path in
               (("teacher", teacher_path), ("student", student_path))}
    # Truncation sweep: one row per truncation, the same z directions.
    _write_side_by_side(
        {name: summaries.image_grid(
            sampling.truncation_grid(export, classes, columns,
                                     TRUNCATIONS, seed),
            rows=len(TRUNCATIONS)) for name, export in exports.items()},
        os.path.join(out_dir, TRUNCATION_FILE))
    # Class interpolation from the first to the last class shown.
    if any("interpolate" not in export.signature_names
           for export in exports.values()):
        logging.warning("An export has no interpolate signature (written by "
                        "an older ppcd_tf): no %s.", INTERPOLATION_FILE)
        return
    _write_side_by_side(
        {name: summaries.image_grid(
            sampling.interpolation_grid(
                export, classes[0], classes[-1], INTERPOLATION_ROWS,
                INTERPOLATION_STEPS, 1.0, seed),
            rows=INTERPOLATION_ROWS) for name, export in exports.items()},
        os.path.join(out_dir, INTERPOLATION_FILE))


def _write_side_by_side(grids, path):
    """The teacher's and the student's grids in one PNG, a gap between."""
    gap = np.ones_like(grids["teacher"][:, :, :summaries.GRID_PADDING * 4])
    summaries.write_png(
        np.concatenate([grids["teacher"], gap, grids["student"]], axis=2),
        path)


def plot_pruning(history, path):
    """Two panels over PPCD steps: live G parameters (with the target) and
    kept channels of every mask layer."""
    import matplotlib  # Deferred: plotting is the only user.
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = [h["step"] for h in history]
    figure, (params_axis, channels_axis) = plt.subplots(
        1, 2, figsize=(12, 4.5))
    params_axis.plot(steps, [h["live_params"] for h in history],
                     label="live parameters")
    params_axis.axhline(history[-1]["target_params"], color="gray",
                        linestyle="--", label="budget")
    params_axis.axhline(history[-1]["full_params"], color="gray",
                        linestyle=":", label="teacher")
    hardened = [h["step"] for h in history if h.get("hardened")]
    if hardened:
        params_axis.axvline(hardened[0], color="red", linestyle=":",
                            label="masks hardened")
    params_axis.set_xlabel("step")
    params_axis.set_ylabel("generator parameters")
    params_axis.set_title("Generator parameters over PPCD training")
    params_axis.legend(fontsize=8)
    for key in history[-1]["kept_channels"]:
        channels_axis.plot(steps, [h["kept_channels"].get(key, np.nan)
                                   for h in history], label=key)
    channels_axis.set_xlabel("step")
    channels_axis.set_ylabel("kept channels")
    channels_axis.set_title("Kept channels per mask layer")
    channels_axis.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    summaries.write_figure(figure, path)


def _mean(result, name):
    value = result["summary"][name]
    return None if value is None else value["mean"]


def _std(result, name):
    value = result["summary"][name]
    return None if value is None else value["std"]


def targets(report):
    """[{name, target, measured, met}] of the method's targets."""
    t, s = report["teacher"], report["student"]
    rows = [("compression (teacher / student params)",
             f">= {TARGET_COMPRESSION}", t["params"] / s["params"],
             t["params"] / s["params"] >= TARGET_COMPRESSION)]
    if t["fid"] is not None and s["fid"] is not None:
        ratio = s["fid"] / t["fid"]
        rows.append(("student FID / teacher FID", f"<= {TARGET_FID_RATIO}",
                     ratio, ratio <= TARGET_FID_RATIO))
    if t["class_accuracy"] is not None and s["class_accuracy"] is not None:
        drop = t["class_accuracy"] - s["class_accuracy"]
        rows.append(("class accuracy drop (points)",
                     f"<= {100 * TARGET_ACCURACY_DROP:g}", 100 * drop,
                     drop <= TARGET_ACCURACY_DROP))
    generation = report.get("generation") or {}
    batch = generation.get("batch_size")
    speedup = s["images_per_sec"] / t["images_per_sec"]
    rows.append(("student / teacher images/s",
                 f">= {TARGET_SPEEDUP:g}"
                 + ("" if batch is None else f" (batch {batch})"),
                 speedup, speedup >= TARGET_SPEEDUP))
    rows += _batch1_row(generation.get("batch1"), batch, "")
    tflite = generation.get("tflite") or {}
    if "teacher" in tflite:
        speedup = (tflite["teacher"]["seconds_per_batch"]
                   / tflite["student"]["seconds_per_batch"])
        rows.append((f"student / teacher images/s{TFLITE_SUFFIX}",
                     f">= {TARGET_SPEEDUP:g} (batch {batch})", speedup,
                     speedup >= TARGET_SPEEDUP))
        rows += _batch1_row(tflite.get("batch1"), batch, TFLITE_SUFFIX)
    if report.get("train_step_ratio") is not None:
        rows.append(("PPCD / teacher training step", f"<= {TARGET_STEP_RATIO}",
                     report["train_step_ratio"],
                     report["train_step_ratio"] <= TARGET_STEP_RATIO))
    return [{"name": n, "target": g, "measured": float(m), "met": bool(ok)}
            for n, g, m, ok in rows]


def _batch1_row(single, batch, suffix):
    """[the batch-1 speed target's row] of timings `single`, or []."""
    if not single or batch == 1:
        return []
    speedup = (single["teacher"]["seconds_per_batch"]
               / single["student"]["seconds_per_batch"])
    return [(f"student / teacher images/s at batch 1{suffix}",
             f">= {TARGET_SPEEDUP_BATCH1:g}", speedup,
             speedup >= TARGET_SPEEDUP_BATCH1)]


def side_entry(facts, throughput, result):
    """One side of report.json."""
    entry = dict(facts)
    entry["images_per_sec"] = throughput["images_per_sec"]
    for name in ("fid", "kid", "intra_fid", "class_accuracy",
                 "inception_score"):
        entry[name] = _mean(result, name)
        entry[f"{name}_std"] = _std(result, name)
    return entry


def _fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def _pm(side, name, spec):
    return f"{_fmt(side[name], spec)} +- {_fmt(side[name + '_std'], spec)}"


def _ratio(a, b, spec=".2f"):
    return "n/a" if not a or not b else format(a / b, spec) + "x"


def _size_rows(t, s, generation):
    """Table rows of sizes and speed: (figure, teacher, student, ratio)."""
    rows = [
        ("generator parameters", f"{t['params']:,}", f"{s['params']:,}",
         _ratio(t["params"], s["params"]) + " smaller"),
        ("MACs per image", f"{t['macs'] / 1e6:.1f} M",
         f"{s['macs'] / 1e6:.1f} M", _ratio(t["macs"], s["macs"]) + " fewer"),
        ("SavedModel size", f"{t['saved_model_bytes'] / 1e6:.2f} MB",
         f"{s['saved_model_bytes'] / 1e6:.2f} MB",
         _ratio(t["saved_model_bytes"], s["saved_model_bytes"])
         + " smaller"),
        (f"CPU images/s (batch {generation['batch_size']}, median)",
         f"{t['images_per_sec']:.0f}", f"{s['images_per_sec']:.0f}",
         _ratio(s["images_per_sec"], t["images_per_sec"]) + " faster"),
        ("achieved GMAC/s (same batch)",
         f"{t['images_per_sec'] * t['macs'] / 1e9:.1f}",
         f"{s['images_per_sec'] * s['macs'] / 1e9:.1f}", ""),
    ]
    latency = generation.get("batch1")
    if latency:
        rows.append((
            "latency at batch 1 (ms, median)",
            f"{1e3 * latency['teacher']['seconds_per_batch']:.2f}",
            f"{1e3 * latency['student']['seconds_per_batch']:.2f}",
            _ratio(latency["teacher"]["seconds_per_batch"],
                   latency["student"]["seconds_per_batch"]) + " lower"))
    return rows


def _tflite_rows(generation):
    """Table rows of the TFLite timings (none when not measured)."""
    tflite = generation.get("tflite") or {}
    if "teacher" not in tflite:
        return []
    t, s = tflite["teacher"], tflite["student"]
    rows = [(f"CPU images/s{TFLITE_SUFFIX} (batch "
             f"{generation['batch_size']}, median)",
             f"{t['images_per_sec']:.0f}", f"{s['images_per_sec']:.0f}",
             _ratio(s["images_per_sec"], t["images_per_sec"]) + " faster")]
    single = tflite.get("batch1")
    if single:
        rows.append((
            f"latency at batch 1{TFLITE_SUFFIX} (ms, median)",
            f"{1e3 * single['teacher']['seconds_per_batch']:.2f}",
            f"{1e3 * single['student']['seconds_per_batch']:.2f}",
            _ratio(single["teacher"]["seconds_per_batch"],
                   single["student"]["seconds_per_batch"]) + " lower"))
    return rows


def _quality_rows(t, s):
    """Table rows of the quality metrics (mean +- std over seeds)."""
    return [
        ("FID (lower is better)", _pm(t, "fid", ".2f"), _pm(s, "fid", ".2f"),
         _ratio(s["fid"], t["fid"])),
        ("KID", _pm(t, "kid", ".4f"), _pm(s, "kid", ".4f"),
         _ratio(s["kid"], t["kid"])),
        ("intra-FID", _pm(t, "intra_fid", ".2f"), _pm(s, "intra_fid", ".2f"),
         _ratio(s["intra_fid"], t["intra_fid"])),
        ("class accuracy of samples", _pm(t, "class_accuracy", ".4f"),
         _pm(s, "class_accuracy", ".4f"),
         "n/a" if t["class_accuracy"] is None else
         f"{100 * (s['class_accuracy'] - t['class_accuracy']):+.1f} points"),
        ("Inception Score (feature net logits)",
         _pm(t, "inception_score", ".3f"), _pm(s, "inception_score", ".3f"),
         ""),
    ]


def _train_step_lines(report):
    if report.get("train_step_ratio") is None:
        return []
    step = report["train_step"]
    return ["", f"Training step (median of {step['repeats']}, timed "
            "alternately): teacher "
            f"{step['teacher_seconds_per_step']:.3f}"
            f" s, PPCD {step['ppcd_seconds_per_step']:.3f} s, ratio "
            f"{report['train_step_ratio']:.2f}" + (
                "; after the cut (compact student) "
                f"{step['ppcd_compact_seconds_per_step']:.3f} s, ratio "
                f"{step['compact_ratio']:.2f}."
                if "compact_ratio" in step else ".")]


def _method_lines(report):
    """'How the figures were computed'."""
    computed = report["computed"]
    network = computed["feature_network"]
    real = computed["real_statistics"]
    return [
        "", "## How the figures were computed", "",
        f"- Metrics: mean +- std over {len(computed['seeds'])} seeds "
        f"({', '.join(map(str, computed['seeds']))}), "
        f"{computed['num_samples_per_seed']:,} samples per seed and "
        f"generator; {computed['labels']}; truncation "
        f"{computed['truncation']}.",
        f"- Feature network: {network['network']} ({network['weights']}); "
        f"layer {network.get('feature_layer')}; input resize "
        f"{network.get('input_resize')}.",
        f"- Real statistics: {real['num_examples']:,} images of "
        f"{real['dataset']}/{real['split']} at {real['resolution']}px "
        f"(cache {real.get('cache')}); class accuracy of these real images "
        f"under the same network: "
        f"{_fmt(real.get('class_accuracy_of_real_images'), '.4f')}.",
        f"- KID: {computed['kid']}. Intra-FID: {computed['intra_fid']}.",
        f"- Throughput: exported SavedModels' serving_default on this CPU, "
        f"batch {report['generation']['batch_size']}, median of "
        f"{report['generation']['repeats']} alternating rounds"
        + _tflite_method(report["generation"])]


def _tflite_method(generation):
    """The end of the throughput line: how (or why not) TFLite was timed."""
    tflite = generation.get("tflite")
    if tflite is None:
        return "."
    if "error" in tflite:
        return f"; TFLite not timed: {tflite['error']}"
    return ("; TFLite rows: each export converted to TFLite at that batch "
            "(checked against its SavedModel) and run by the TFLite "
            "interpreter with XNNPACK, the same rounds.")


def _image_lines():
    return [
        "", "## Samples (same z for teacher and student; one row per "
        "class)", "", "Teacher | Student", "",
        "![side by side](samples_side_by_side.png)", "",
        "## Truncation (rows: truncation "
        f"{', '.join(f'{t:g}' for t in TRUNCATIONS)}; the same z "
        "directions in every row)", "", "Teacher | Student", "",
        f"![truncation]({TRUNCATION_FILE})", "",
        f"## Class interpolation (each row one z; the class embedding "
        f"moves from the first to the last class in "
        f"{INTERPOLATION_STEPS} steps)", "", "Teacher | Student", "",
        f"![interpolation]({INTERPOLATION_FILE})", "",
        "## Pruning over training", "", "![pruning](pruning.png)", ""]


def render_markdown(report):
    """report.md: the table, the targets, how it was computed, the images."""
    t, s = report["teacher"], report["student"]
    rows = _size_rows(t, s, report["generation"])
    # Quality after the speed rows, latency (if any) last as before.
    latency = rows.pop() if report["generation"].get("batch1") else None
    rows += _quality_rows(t, s) + ([latency] if latency else [])
    rows += _tflite_rows(report["generation"])
    lines = [
        "# PPCD compression report", "",
        f"Teacher: `{t['saved_model']}`  ",
        f"Student: `{s['saved_model']}` (PPCD run `{report['ppcd_dir']}`)",
        "", "| | teacher | student | student vs teacher |",
        "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines += _train_step_lines(report)
    lines += ["", "## Targets", "", "| target | wanted | measured | met |",
              "|---|---|---|---|"]
    lines += [f"| {r['name']} | {r['wanted']} | {r['measured']:.3f} | "
              f"{'yes' if r['met'] else 'MISSED'} |"
              for r in report["targets"]]
    lines += _method_lines(report) + _image_lines()
    return "\n".join(lines)


def measure_speeds(teacher_export, student_export, gen_batch, repeats,
                   warmup):
    """report.json's "generation": teacher and student timed alternately
    at `gen_batch` and at batch 1 ("batch1") served by TensorFlow, and the
    same served by TFLite ("tflite", each export converted at each batch;
    {"error": why} instead when a model cannot be converted: the runtime is
    an extra, the report does not fail for it)."""
    paths = (teacher_export, student_export)
    logging.info("Timing generation (teacher and student alternately) ...")
    generation = dict(_timed_pair(paths, gen_batch, repeats, warmup,
                                  RUNTIME_TENSORFLOW),
                      batch_size=gen_batch, repeats=repeats)
    logging.info("Timing generation served by TFLite ...")
    try:
        generation["tflite"] = _timed_pair(paths, gen_batch, repeats, warmup,
                                           RUNTIME_TFLITE)
    except errors.BadInputError as error:
        logging.warning("No TFLite timing: %s", error)
        generation["tflite"] = {"error": str(error)}
    return generation


def _timed_pair(paths, gen_batch, repeats, warmup, runtime):
    """{"teacher", "student", "batch1": {"teacher", "student"}} of one
    runtime (measure_generation's entries)."""
    speed = measure_generation(paths, gen_batch, repeats, warmup,
                               runtime=runtime)
    single = measure_generation(paths, 1, repeats, warmup, runtime=runtime)
    teacher, student = paths
    return {"teacher": speed[teacher], "student": speed[student],
            "batch1": {"teacher": single[teacher],
                       "student": single[student]}}


def build_report(teacher_export, student_export, ppcd_dir, output_dir,
                 network, real, num_samples=evaluation.DEFAULT_NUM_SAMPLES,
                 seeds=evaluation.DEFAULT_SEEDS,
                 gen_batch=DEFAULT_GEN_BATCH, repeats=DEFAULT_REPEATS,
                 warmup=DEFAULT_WARMUP, step_ratio=None,
                 grid_columns=DEFAULT_GRID_COLUMNS, overwrite=False):
    """Writes the report directory (an existing non-empty one only with
    `overwrite`); returns the report dict.

    Args:
      teacher_export, student_export: exported SavedModel directories.
      ppcd_dir: the PPCD run (its pruning history is plotted).
      network, real: feature network and `evaluation.RealFeatures`.
      step_ratio: result of `measure_train_step_ratio`, or None.
    """
    history = run_dir.read_pruning_history(ppcd_dir)
    results = {}
    for name, path in (("teacher", teacher_export),
                       ("student", student_export)):
        logging.info("Evaluating the %s (%s) ...", name, path)
        results[name] = evaluation.evaluate(
            evaluation.GeneratorSource.from_saved_model(path), network, real,
            num_samples, seeds)
    generation = measure_speeds(teacher_export, student_export, gen_batch,
                                repeats, warmup)
    report = {
        "teacher": side_entry(saved_model_facts(teacher_export),
                              generation["teacher"], results["teacher"]),
        "student": side_entry(saved_model_facts(student_export),
                              generation["student"], results["student"]),
        "train_step_ratio": None if step_ratio is None else
        step_ratio["ratio"],
        "train_step": step_ratio,
        "generation": generation,
        "computed": results["student"]["computed"],
        "ppcd_dir": os.path.abspath(ppcd_dir),
        "pruning": {"final": history[-1], "points": len(history)},
    }
    report["targets"] = [dict(r, wanted=r.pop("target"))
                         for r in targets(report)]
    with files.staged_directory(output_dir, overwrite=overwrite) as tmp:
        classes = list(range(min(results["teacher"]["num_classes"],
                                 MAX_GRID_ROWS)))
        write_grids(teacher_export, student_export, tmp, classes,
                    grid_columns)
        plot_pruning(history, os.path.join(tmp, "pruning.png"))
        for name, result in results.items():
            evaluation.write_json(
                result, os.path.join(tmp, f"evaluation_{name}.json"))
        evaluation.write_json(report, os.path.join(tmp, "report.json"))
        markdown = render_markdown(report)
        with open(os.path.join(tmp, "report.md"), "w") as f:
            f.write(markdown)
        write_report_summaries(tmp, markdown, report["targets"],
                               run_settings(ppcd_dir))
    return report


# Scalar tags of the report's measured figures (`targets` names).
REPORT_SCALARS = {
    "compression (teacher / student params)": "report/compression",
    "student FID / teacher FID": "report/fid_ratio",
    "class accuracy drop (points)": "report/accuracy_drop_points",
    "student / teacher images/s": "report/images_per_sec_ratio",
    "student / teacher images/s at batch 1":
        "report/images_per_sec_ratio_batch1",
    "student / teacher images/s, TFLite": "report/images_per_sec_ratio_tflite",
    "student / teacher images/s at batch 1, TFLite":
        "report/images_per_sec_ratio_batch1_tflite",
    "PPCD / teacher training step": "report/train_step_ratio"}


def run_settings(ppcd_dir):
    """(HParams session name, settings) of the PPCD run `ppcd_dir` from its
    operative configuration, or None when the run wrote none (it writes it
    when training ends)."""
    path = os.path.join(ppcd_dir, "operative_config.gin")
    if not os.path.isfile(path):
        logging.warning("%s is missing: the report's figures join no run "
                        "settings in TensorBoard's HParams table.", path)
        return None
    with open(path) as f:
        settings = run_summaries.hyperparameters(f.read())
    name = os.path.basename(os.path.normpath(os.path.abspath(ppcd_dir)))
    return f"{name} (report)", settings


def write_report_summaries(directory, markdown, target_rows, settings=None):
    """The report for TensorBoard, in `directory` (the run `report` of
    `tensorboard --logdir <demo output>`): its text (`report/summary`) and
    its measured figures as scalars at step 0 (REPORT_SCALARS), beside the
    training run's curves. With `settings` (`run_settings`), the run is an
    HParams session holding the PPCD run's settings, so the HParams table
    shows the exported student's figures (speed-up, FID ratio) in a row
    with the settings that made it."""
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        if settings is not None:
            trial_id, hparams = settings
            hparams_api.hparams(hparams, trial_id=trial_id)
        tf.summary.text(REPORT_TEXT_TAG, markdown, step=0)
        for row in target_rows:
            if row["name"] in REPORT_SCALARS:
                tf.summary.scalar(REPORT_SCALARS[row["name"]],
                                  row["measured"], step=0)
    writer.close()


def run_comparison(teacher_dir, ppcd_dir, teacher_export, student_export,
                   output_dir, feature_network=None, feature_weights=None,
                   split=None, num_real=None,
                   num_samples=evaluation.DEFAULT_NUM_SAMPLES,
                   seeds=evaluation.DEFAULT_SEEDS,
                   gen_batch=DEFAULT_GEN_BATCH, repeats=DEFAULT_REPEATS,
                   train_steps=None, cache_dir=evaluation.DEFAULT_CACHE_DIR,
                   overwrite=False):
    """Everything `python -m ppcd_tf.report` does: picks the feature network
    and real statistics for the student's dataset and writes the report
    directory, including `train_steps` (the result of
    `workflows.benchmark.measure_train_steps`, measured by `python -m
    ppcd_tf.time_training`) when given. Returns the report dict."""
    student = evaluation.GeneratorSource.from_saved_model(student_export)
    dataset = student.dataset
    network = feature_networks.build(
        feature_network or feature_networks.default_for_dataset(dataset),
        feature_weights)
    real = evaluation.real_features(
        network, dataset, split or evaluation.default_split(dataset),
        student.resolution, cache_dir, max_examples=num_real)
    return build_report(teacher_export, student_export, ppcd_dir, output_dir,
                        network, real, num_samples, seeds, gen_batch,
                        repeats, step_ratio=train_steps, overwrite=overwrite)
