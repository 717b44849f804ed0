"""Speed of candidate budgets before training (weights do not change speed).

  python tools/speed_trials/oracle_speed.py '[["name", params_ratio, mac_ratio_or_null, multiple], ...]' [BATCH]


Hardens the soft masks of the pruning phase's step-300 checkpoint
(runs/exp/prune300) within each candidate budget, builds the compact
generators (random weights), prepares their serving graphs and times them
against the teacher's (also prepared) at batch 64, alternately.
"""
import json, os, sys, shutil
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.chdir(ROOT)  # paths below are relative to the repository
os.makedirs('runs/exp', exist_ok=True)
from ppcd_tf import run_dir, serving, serving_graph, reporting
from ppcd_tf.models import complexity, generator as generator_lib
from ppcd_tf.pruning import budget, costs, channel_masks
from ppcd_tf.latency_profiling import compact_generator

restored = run_dir.restore_generator('runs/exp/prune300', 'runs/exp/prune300/checkpoints/ckpt-300')
g = restored.generator
logits = {k: v.numpy() for k, v in restored.masks.logits.items()}
ch = g.channels; shape = complexity.GeneratorShape.of(g)
widths = dict(channel_masks.mask_widths(ch))
floors = budget.channel_floors(widths, 4, 0.0)
OUT = '/tmp/oracle'; shutil.rmtree(OUT, ignore_errors=True); os.makedirs(OUT)
cands = json.loads(sys.argv[1])  # [[name, params, macs, multiple], ...]
paths = {}
def export(name, gen):
    served = generator_lib.Generator.from_config(dict(gen.get_config())); served.build()
    served.set_weights(gen.get_weights()); serving_graph.prepare(served)
    p = os.path.join(OUT, name)
    meta = {'params': generator_lib.count_trainable_parameters(gen),
            'macs_per_image': complexity.generator_macs(gen.channels, shape), 'dim_z': gen.dim_z, 'num_classes': gen.num_classes, 'resolution': gen.channels.resolution, 'image_channels': gen.image_channels}
    serving.write_saved_model(served, p, {'metadata.json': meta}); paths[name] = (p, meta)
export('teacher', g)
for name, p, m, mult in cands:
    limits = [costs.parameter_limit(ch, shape, widths, p)]
    if m: limits.append(costs.mac_limit(ch, shape, widths, m))
    keep = budget.harden(logits, lambda c: costs.all_hold(limits, c), floors, mult)
    counts = {k: int(v.sum()) for k, v in keep.items()}
    print(name, counts, flush=True)
    export(name, compact_generator(g, counts))
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
speed = reporting.measure_generation([v[0] for v in paths.values()], batch, repeats=15, warmup=3)
t = speed[paths['teacher'][0]]['images_per_sec']; tm = paths['teacher'][1]
rows = []
for name, (p, meta) in paths.items():
    ips = speed[p]['images_per_sec']
    row = dict(name=name, params_ratio=tm['params']/meta['params'], mac_ratio=tm['macs_per_image']/meta['macs_per_image'],
               images_per_sec=ips, speedup=ips/t)
    row['fraction_of_mac_limit'] = row['speedup']/row['mac_ratio']
    rows.append(row)
    print(f"{name}: {row['params_ratio']:.2f}x params, {row['mac_ratio']:.2f}x MACs, {ips:.0f} img/s, {row['speedup']:.2f}x, fraction {row['fraction_of_mac_limit']:.2f}", flush=True)
json.dump(rows, open(f'runs/exp/oracle_speed_b{batch}.json', 'w'), indent=1)
