"""Throughput of a 3x3 convolution against its width on this CPU (the

  python tools/speed_trials/width_sweep.py

'widths the hardware likes' table): batch 64, 16x16 and 32x32, cin = cout = w."""
import json, os, sys
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
os.chdir(ROOT)  # paths below are relative to the repository
os.makedirs('runs/exp', exist_ok=True)
import tensorflow as tf
from ppcd_tf import latency_profiling as lp
rows = []
for size in (16, 32):
    for w in list(range(4, 33, 2)) + [40, 48, 56, 64]:
        x = tf.random.normal((64, size, size, w)); k = tf.random.normal((3, 3, w, w))
        s = lp._seconds(lambda x: tf.nn.conv2d(x, k, 1, 'SAME'), [x], repeats=7, calls=5)
        macs = 64 * size * size * 9 * w * w
        rows.append({'size': size, 'width': w, 'ms': 1e3 * s, 'gmacs': macs / s / 1e9})
        print(size, w, f"{1e3*s:.3f} ms {macs/s/1e9:.1f} GMAC/s", flush=True)
json.dump(rows, open('runs/exp/width_sweep.json', 'w'), indent=1)
