"""How fast can any student of this architecture be? (uniform widths)

  python tools/speed_trials/speed_ceiling.py [WIDTHS] [BATCH] [ROUNDS]

  WIDTHS: comma-separated kept widths (default 64,48,32,24,16,8,4); every
  masked layer (streams, hidden, attention q/k and value) is cut to
  min(width, its full width), so 64 is the teacher's own shape.

Builds the shipped teacher's generator at each width (random weights: speed
does not depend on them), prepares the serving graphs as the exporter does
(spectral norms frozen, BatchNorm folded), writes them as SavedModels under
/tmp/speed_ceiling and times them alternately at batch BATCH (default 64).
Prints, for each width, the MAC ratio against the teacher, the measured
speed-up and the fraction of the MAC limit (speed-up / MAC ratio). The
largest speed-up, at the smallest width, bounds what any pruning of this
architecture can reach on the machine: its per-op costs that do not shrink
with the width (the speed issue's target is 0.8 of the MAC limit).
Results go to runs/exp/speed_ceiling_b{BATCH}.json.
"""
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.chdir(ROOT)

from ppcd_tf import reporting, run_dir, serving, serving_graph, teachers  # noqa: E402
from ppcd_tf.latency_profiling import compact_generator  # noqa: E402
from ppcd_tf.models import complexity  # noqa: E402
from ppcd_tf.models import generator as generator_lib  # noqa: E402
from ppcd_tf.pruning import channel_masks  # noqa: E402

OUT = "/tmp/speed_ceiling"


def export(name, generator, shape):
    """Writes `generator`'s prepared serving graph; returns (path, meta)."""
    served = generator_lib.Generator.from_config(dict(generator.get_config()))
    served.build()
    served.set_weights(generator.get_weights())
    serving_graph.prepare(served)
    meta = {"params": generator_lib.count_trainable_parameters(generator),
            "macs_per_image": complexity.generator_macs(generator.channels,
                                                        shape),
            "dim_z": generator.dim_z, "num_classes": generator.num_classes,
            "resolution": generator.channels.resolution,
            "image_channels": generator.image_channels}
    path = os.path.join(OUT, name)
    serving.write_saved_model(served, path, {"metadata.json": meta})
    return path, meta


def main():
    widths = [int(w) for w in (sys.argv[1] if len(sys.argv) > 1
                               else "64,48,32,24,16,8,4").split(",")]
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    config = run_dir.read_model_configs(
        teachers.shipped_teacher_dir())["generator"]
    teacher = generator_lib.Generator.from_config(config)
    teacher.build()
    shape = complexity.GeneratorShape.of(teacher)
    full = dict(channel_masks.mask_widths(teacher.channels,
                                          prune_attention=True))
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    paths = {"teacher": export("teacher", teacher, shape)}
    for width in widths:
        counts = {key: min(width, w) for key, w in full.items()}
        paths[f"width {width}"] = export(
            f"w{width}", compact_generator(teacher, counts), shape)
    speed = reporting.measure_generation([p for p, _ in paths.values()],
                                         batch, repeats=rounds, warmup=3)
    teacher_path, teacher_meta = paths["teacher"]
    teacher_ips = speed[teacher_path]["images_per_sec"]
    rows = []
    for name, (path, meta) in paths.items():
        ips = speed[path]["images_per_sec"]
        row = dict(name=name, params=meta["params"],
                   mac_ratio=teacher_meta["macs_per_image"]
                   / meta["macs_per_image"],
                   images_per_sec=ips, speedup=ips / teacher_ips)
        row["fraction_of_mac_limit"] = row["speedup"] / row["mac_ratio"]
        rows.append(row)
        print(f"{name}: {meta['params']:,} params, {row['mac_ratio']:.2f}x "
              f"fewer MACs, {ips:.0f} images/s, {row['speedup']:.2f}x the "
              f"teacher, {row['fraction_of_mac_limit']:.2f} of the MAC "
              "limit", flush=True)
    os.makedirs("runs/exp", exist_ok=True)
    with open(f"runs/exp/speed_ceiling_b{batch}.json", "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
