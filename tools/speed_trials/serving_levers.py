"""Measures the serving-graph levers side by side (issue: speed at ratio).

  python tools/speed_trials/serving_levers.py STUDENT_RUN BATCHES REPEATS  # e.g. runs/exp/Q2000 1,8,64,256 10


Variants of the teacher's and of a student's exported generator: plain (the
old export: spectral norms computed at every call, BatchNorms kept), SN
frozen, SN frozen + BN folded, + XLA. Images/s timed alternately.
"""
import json, os, sys, shutil
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.chdir(ROOT)  # paths below are relative to the repository
os.makedirs('runs/exp', exist_ok=True)
from ppcd_tf import exporting, serving, serving_graph, reporting, run_dir
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import surgery

OUT = '/tmp/levers'
shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(OUT)
runs = {'teacher': ('ppcd_tf/assets/teacher_fashion_mnist32', 'latest'),
        'student': (sys.argv[1], 'best')}
paths = {}
for who, (model_dir, ckpt) in runs.items():
    restored = run_dir.restore_generator(model_dir, ckpt)
    keep = exporting.decide_keep(restored)
    compact = (restored.generator if keep is None
               else surgery.build_compact(restored.generator, keep))
    for variant in ('plain', 'sn_frozen', 'sn_frozen_bn_folded', 'xla'):
        g = generator_lib.Generator.from_config(dict(compact.get_config()))
        g.build(); g.set_weights(compact.get_weights())
        if variant != 'plain':
            serving_graph.prepare(g, fold_batch_norm=variant != 'sn_frozen')
        path = os.path.join(OUT, f'{who}_{variant}')
        meta = {'params': generator_lib.count_trainable_parameters(g),
                'macs_per_image': 0, 'dim_z': g.dim_z,
                'num_classes': g.num_classes, 'resolution': g.channels.resolution, 'image_channels': g.image_channels}
        serving.write_saved_model(g, path, {'metadata.json': meta},
                                  jit_compile=variant == 'xla')
        paths[(who, variant)] = path
results = {}
for batch in [int(b) for b in sys.argv[2].split(',')]:
    speed = reporting.measure_generation(list(paths.values()), batch,
                                         repeats=int(sys.argv[3]), warmup=3)
    for key, path in paths.items():
        results.setdefault(f'{key[0]}_{key[1]}', {})[batch] = speed[path]['images_per_sec']
    print(batch, {k: round(v[batch]) for k, v in results.items()}, flush=True)
json.dump(results, open('runs/exp/serving_levers.json', 'w'), indent=1)
