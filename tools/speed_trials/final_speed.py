"""Images/s of the teacher and of students, exported as served (serving graph
prepared), timed alternately in one process at several batch sizes.

  python tools/speed_trials/final_speed.py TEACHER_EXPORT STUDENT_EXPORT... [--batches 1,8,64,256] [--repeats 10]
"""
import argparse, json, os, sys
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from ppcd_tf import reporting

parser = argparse.ArgumentParser()
parser.add_argument("exports", nargs="+")
parser.add_argument("--batches", default="1,8,64,256")
parser.add_argument("--repeats", type=int, default=10)
parser.add_argument("--output", default=os.path.join(ROOT, "runs/exp/final_speed.json"))
args = parser.parse_args()
facts = {p: reporting.saved_model_facts(p) for p in args.exports}
teacher = args.exports[0]
rows = []
for batch in [int(b) for b in args.batches.split(",")]:
    speed = reporting.measure_generation(args.exports, batch, args.repeats, 3)
    for p in args.exports:
        ips = speed[p]["images_per_sec"]
        row = {"batch": batch, "export": p, "params": facts[p]["params"], "macs": facts[p]["macs"],
               "images_per_sec": ips, "gmacs_per_sec": ips * facts[p]["macs"] / 1e9,
               "speedup": ips / speed[teacher]["images_per_sec"],
               "mac_ratio": facts[teacher]["macs"] / facts[p]["macs"]}
        row["fraction_of_mac_limit"] = row["speedup"] / row["mac_ratio"]
        rows.append(row)
        print(f"batch {batch:4d} {os.path.basename(p.rstrip('/')):40s} {ips:8.0f} img/s  {row['speedup']:.2f}x "
              f"(MACs {row['mac_ratio']:.2f}x, fraction {row['fraction_of_mac_limit']:.2f}, {row['gmacs_per_sec']:.1f} GMAC/s)",
              flush=True)
with open(args.output, "w") as f:
    json.dump(rows, f, indent=1)
