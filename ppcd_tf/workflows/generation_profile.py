"""Where a served generator's time goes: TensorFlow's profiler, op by op,
summed into the parts of a BigGAN generator.

`profile_export` calls an export's `serving_default` signature `calls` times
under `tf.profiler` (after a warm-up), reads the trace's per-op statistics
(TensorFlow's `framework_op_stats` tool, the table TensorBoard's profile tab
shows) and sums the self-time of every op into a part of the generator by
its name (`PARTS`, first match wins):

  attention        the self-attention block (theta, phi, g, o, the two
                   matmuls, softmax, pooling)
  block convs      conv1, conv2 and the 1x1 shortcut of the residual blocks
  conditional BN + ReLU  the class-conditional batch norms (gain / bias
                   projections, the normalisation arithmetic) and their ReLUs
  upsampling       the nearest upsampling (reshape / broadcast / tile)
  output           the output BN, ReLU, conv and tanh
  linear, embedding  z's first linear, the class embedding, z's split
  input checks     the signature's label / z checks and the finite check
  other            anything else

It also times the same calls without the profiler (median wall time per
call) and reports what no op accounts for: `wall - sum of op self-times`
(per-op dispatch, thread hand-offs and the call itself), the
width-independent floor that issue 32 asks to find.
"""

import glob
import json
import os
import re
import tempfile
import time

import numpy as np
import tensorflow as tf

from ppcd_tf.exporting import saved_model

# (part, regular expression searched in "op type|op name"), in order.
PARTS = (
    ("attention", r"/attention\d+"),
    ("conditional BN + ReLU", r"/block\d+_?\d*/(bn\d|Relu)"),
    ("upsampling", r"/block\d+_?\d*/(Reshape|BroadcastTo|Repeat|Tile)"
                   r"|^(BroadcastTo|Tile)\|"),
    ("block convs", r"/block\d+_?\d*/conv"),
    ("output", r"/output_|^(Tanh|Relu)\|"),
    ("linear, embedding", r"/linear|/shared|/split|/concat"),
    ("input checks", r"assert|Assert|CheckNumerics|VerifyFinite"),
)
OTHER = "other"
# The trace's pseudo-op for time the threads spent waiting.
IDLE_OP = "IDLE"
OUTSIDE = "outside ops (dispatch, hand-offs)"


def part_of(op_type, op_name):
    """The generator part an op belongs to (PARTS, else OTHER)."""
    text = f"{op_type}|{op_name}"
    for part, pattern in PARTS:
        if re.search(pattern, text):
            return part
    return OTHER


def read_op_stats(logdir):
    """[{"type", "name", "occurrences", "self_us"}] of the trace under
    `logdir` (every *.xplane.pb), from TensorFlow's framework_op_stats."""
    # The profiler's own reader of its trace (TensorFlow's tools data).
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin
    paths = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"),
                      recursive=True)
    if not paths:
        raise RuntimeError(f"The profiler wrote no trace under {logdir}.")
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(
        paths, "framework_op_stats", {})
    if not ok:
        raise RuntimeError("TensorFlow's profiler could not read its trace.")
    table = json.loads(data)[0]
    columns = [column["id"] for column in table["cols"]]
    stats = []
    for row in table["rows"]:
        values = {key: (cell or {}).get("v")
                  for key, cell in zip(columns, row["c"])}
        stats.append({"type": values["type"], "name": values["operation"],
                      "occurrences": int(values["occurrences"]),
                      "self_us": float(values["total_self_time"])})
    return stats


def summarize(stats, calls, wall_seconds):
    """{part: milliseconds per call} of `stats` (read_op_stats of `calls`
    calls), with OUTSIDE = wall time per call minus the ops' total."""
    parts = {part: 0.0 for part, _ in PARTS}
    parts[OTHER] = 0.0
    for op in stats:
        if op["type"] == IDLE_OP:
            continue
        parts[part_of(op["type"], op["name"])] += op["self_us"] / 1e3 / calls
    parts[OUTSIDE] = max(0.0, 1e3 * wall_seconds - sum(parts.values()))
    return parts


def _wall_seconds(signature, z, labels, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        signature(z=z, labels=labels)["images"].numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def profile_export(path, batch_size, calls=50, warmup=10, seed=0):
    """Profiles the export `path` at `batch_size`.

    Returns:
      {"export", "batch_size", "calls", "wall_ms" (median per call, no
      profiler), "parts": {part: ms per call}, "ops": the 15 ops of most
      self-time ({"type", "name", "ms_per_call"})}.
    """
    export = saved_model.load_export(path)
    signature = export.signature()
    rng = np.random.default_rng(seed)
    z = tf.constant(rng.standard_normal((batch_size, export.dim_z)),
                    tf.float32)
    labels = tf.constant(np.arange(batch_size) % export.num_classes,
                         tf.int32)
    _wall_seconds(signature, z, labels, warmup)
    wall = _wall_seconds(signature, z, labels, calls)
    with tempfile.TemporaryDirectory(prefix="ppcd_profile_") as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            for _ in range(calls):
                signature(z=z, labels=labels)["images"].numpy()
        finally:
            tf.profiler.experimental.stop()
        stats = read_op_stats(logdir)
    top = sorted((op for op in stats if op["type"] != IDLE_OP),
                 key=lambda op: -op["self_us"])[:15]
    return {"export": os.path.abspath(path), "batch_size": int(batch_size),
            "calls": int(calls), "wall_ms": 1e3 * wall,
            "parts": summarize(stats, calls, wall),
            "ops": [{"type": op["type"], "name": op["name"],
                     "ms_per_call": op["self_us"] / 1e3 / calls}
                    for op in top]}


def markdown(results):
    """The profiles as one table: a column per (export, batch), a row per
    part: ms of op self-time per call and its share of all ops' self-time;
    then the ops' total, the wall time and what no op accounts for. Ops run
    in parallel on several cores, so the ops' total may exceed the wall
    time (then nothing is outside the ops)."""
    names = [f"{os.path.basename(r['export'])}, batch {r['batch_size']}"
             for r in results]
    lines = ["| part | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(results)]
    parts = [part for part in results[0]["parts"] if part != OUTSIDE]
    totals = [sum(r["parts"][part] for part in parts) for r in results]
    for part in parts:
        cells = [f"{r['parts'][part]:.3f} ms ({r['parts'][part] / total:.0%})"
                 for r, total in zip(results, totals)]
        lines.append(f"| {part} | " + " | ".join(cells) + " |")
    lines.append("| all ops (self-time) | " + " | ".join(
        f"{total:.3f} ms" for total in totals) + " |")
    lines.append("| **wall time per call** (no profiler) | " + " | ".join(
        f"**{r['wall_ms']:.3f} ms**" for r in results) + " |")
    outside = [r["parts"][OUTSIDE] for r in results]
    lines.append(f"| {OUTSIDE}: wall - ops | " + " | ".join(
        f"{ms:.3f} ms ({ms / r['wall_ms']:.0%} of the wall)"
        for ms, r in zip(outside, results)) + " |")
    return "\n".join(lines)
