"""tools/ablations.py reads back what a rerun need not redo."""

import json
import os
import subprocess
import sys
import time

from tests import helpers

# In a child process: the tool defines absl flags that other test modules'
# imports define too.
_DRIVER = r"""
import importlib.util, json, sys
from absl import flags
path, export, seeds = sys.argv[1], sys.argv[2], sys.argv[3]
spec = importlib.util.spec_from_file_location("ablations_tool", path)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
flags.FLAGS(["ablations_tool", "--num_samples", "2000", "--seeds", seeds])
tool.evaluation.evaluate_generator = lambda **kwargs: {"evaluated": True}
print(json.dumps(tool._evaluate(export)))
"""


def _evaluate(export, seeds):
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER,
         os.path.join(helpers.REPO_ROOT, "tools", "ablations.py"),
         str(export), seeds],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_evaluation_is_read_back_only_when_current(tmp_path):
    export = tmp_path / "no_class_aware_export"
    (export / "assets.extra").mkdir(parents=True)
    (export / "assets.extra" / "metadata.json").write_text("{}")
    # What the table reads (evaluation.SWEEP_RESULT_FIELDS).
    summary = {name: {"mean": mean, "std": 0.01} for name, mean in
               (("fid", 1.5), ("intra_fid", 3.0), ("class_accuracy", 0.88))}
    stored = {"computed": {"num_samples_per_seed": 2000, "seeds": [0, 1]},
              "summary": summary, "generator": {"params": 1234}}
    evaluation = tmp_path / "no_class_aware_export.eval.json"
    time.sleep(0.05)
    evaluation.write_text(json.dumps(stored))
    # Same settings, written after the export: read back.
    assert _evaluate(export, "0,1") == stored
    # Other seeds: evaluated again.
    assert _evaluate(export, "0,1,2") == {"evaluated": True}
    # An export newer than the evaluation: evaluated again.
    time.sleep(0.05)
    (export / "assets.extra" / "metadata.json").write_text("{}")
    assert _evaluate(export, "0,1") == {"evaluated": True}
    # Written after the export again but without the figures the table
    # reads (hand-edited): evaluated again, not a KeyError in the table.
    time.sleep(0.05)
    evaluation.write_text(json.dumps(dict(stored, generator={})))
    assert _evaluate(export, "0,1") == {"evaluated": True}


_COMMANDS_DRIVER = r"""
import importlib.util, json, sys
from absl import flags
path, output_dir = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("ablations_tool", path)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
flags.FLAGS(["ablations_tool", "--output_dir", output_dir,
             "--gin_param", "RetrainSchedule.g_lr_scale = 1.0"])
from ppcd_tf.workflows import teachers
commands = []
tool._run = lambda argv, directory: commands.append(argv)
for name in ("no_class_aware", "no_retraining"):
    tool._student(name, teachers.shipped_teacher_dir())
print(json.dumps(commands))
"""


def test_every_run_follows_the_demo_recipe(tmp_path):
    """The full method's recipe is the demo's (1,200 steps, the cut at step
    300, validation every 100 steps, the best student exported) with
    --gin_param's bindings; no_retraining runs only the pruning phase and
    exports its last."""
    result = subprocess.run(
        [sys.executable, "-c", _COMMANDS_DRIVER,
         os.path.join(helpers.REPO_ROOT, "tools", "ablations.py"),
         str(tmp_path / "out")],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    train, export, short_train, short_export = json.loads(
        result.stdout.strip().splitlines()[-1])
    assert "NUM_STEPS = 1200" in train
    assert f"PruningPhase.prune_end_fraction = {300 / 1200}" in train
    assert "RetrainSchedule.g_lr_scale = 1.0" in train
    assert "RetrainSchedule.g_lr_scale = 1.0" in short_train
    assert "TrainLoop.validate_every = 100" in train
    assert "stage/ablation_no_class_aware.gin" in train
    assert export[-2:] == ["--checkpoint", "best"]
    # 303 x 0.99 rounds to the full method's cut at step 300.
    assert "NUM_STEPS = 303" in short_train
    assert not any(a.startswith("TrainLoop.validate_every")
                   for a in short_train)
    assert "--checkpoint" not in short_export
