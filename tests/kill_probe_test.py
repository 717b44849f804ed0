"""SIGKILL at random moments and during saves: a PPCD run recovers (the
teacher's Trainer resumes through the same code).

The test drives `python -m ppcd_tf.train` through `ppcd_tf.workflows.kill_probe`:
killed at seeded random steps, then the moment a checkpoint save is in
progress, then run to the end. The final run must reach its last step with
every checkpoint readable, and the run's generator (for PPCD the compact
student after the cut) must restore and generate finite images.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf.runs import checkpointing
from ppcd_tf.runs import run_dir
from ppcd_tf.workflows import kill_probe
from tests import helpers

# The random kills come at random steps (kill_probe's `by_step`): a kill
# after a fixed delay missed the run on a faster machine (the 40 steps were
# over before the delay). Startup kills are the tool's (tools/kill_probe.py).
MIN_DELAY_S = 8.0
MAX_DELAY_S = 30.0
PPCD_STEPS = 16  # cut at step 8 (prune_end_fraction 0.5)
PPCD_KILL_SEED = 5  # its random kill comes at step 10, after the cut
# Phases in which a kill can hurt a run (not before it wrote anything).
HARMFUL_PHASES = {"training", "saving", "after_cut"}


def _command(model_dir, gin_files, bindings):
    return helpers.train_command(model_dir, gin_files, bindings)


def _probe(tmp_path, gin_files, bindings, num_steps, kills, seed):
    model_dir = str(tmp_path / "run")
    argv = _command(model_dir, gin_files, list(bindings) + [
        f"TrainLoop.num_steps = {num_steps}"])
    return kill_probe.probe(
        argv, model_dir, num_steps, kills=kills, seed=seed,
        min_delay_seconds=MIN_DELAY_S, max_delay_seconds=MAX_DELAY_S,
        kill_during_saves=1, cwd=helpers.REPO_ROOT, env=helpers.python_env(),
        log_path=str(tmp_path / "probe.log"), by_step=True), model_dir


def _assert_generates(model_dir):
    restored = run_dir.restore_generator(model_dir)
    z = tf.random.normal((2, restored.generator.dim_z), seed=3)
    images = restored.generate(z, tf.constant([0, 1])).numpy()
    assert np.isfinite(images).all()
    return restored


def _assert_hit(result):
    phases = [kill.phase for kill in result.kills]
    # The save kill is the last one; it must have caught a save (or the run
    # finished before: then nothing was left to probe).
    assert phases[-1] in ("saving", "finished"), phases
    assert HARMFUL_PHASES & set(phases), phases


@pytest.mark.slow
def test_ppcd_run_recovers_from_random_kills_across_the_cut(tmp_path):
    bindings = list(helpers.TINY_BINDINGS) + [
        f"TEACHER_DIR = '{helpers.tiny_teacher_dir()}'",
        "TARGET_PARAM_RATIO = 0.5",
        "PruningBudget.min_channels = 1",
        "PruningPhase.prune_end_fraction = 0.5",
        "TrainLoop.sample_every = 0",
    ]
    # Seed 5 draws step 10: the first process trains through the cut and is
    # killed in the compact phase, so the next one resumes the compact
    # student from its checkpoint; the save kill follows, then the final
    # run. (A kill between the switch and the next checkpoint, which
    # resumes the masked student and cuts again, is compaction_test's.)
    result, model_dir = _probe(tmp_path, ["debug.gin", "stage/ppcd.gin"],
                               bindings, PPCD_STEPS, kills=1,
                               seed=PPCD_KILL_SEED)
    assert result.kills[0].newest_checkpoint_step > PPCD_STEPS // 2, \
        result.kills
    _assert_hit(result)
    assert result.final_step == PPCD_STEPS
    # The save kill interrupted a newer checkpoint: the resume starts from
    # the newest complete one, and says so. (The teacher's Trainer resumes
    # through the same code; its own probe was folded into this one.)
    newest_before = result.kills[-1].newest_checkpoint_step
    match = re.search(r"Resumed from \S*ckpt-(\d+) at step (\d+)",
                      result.final_output)
    assert match, result.final_output[-3000:]
    assert int(match.group(1)) == int(match.group(2)) >= newest_before
    assert f"Training from step {match.group(2)} to {PPCD_STEPS}" in \
        result.final_output
    state = tf.train.get_checkpoint_state(run_dir.checkpoint_dir(model_dir))
    assert os.path.basename(state.model_checkpoint_path) == \
        f"ckpt-{PPCD_STEPS}"
    structure = run_dir.read_pruning_structure(model_dir)
    assert structure["phase"] == run_dir.PHASE_COMPACT
    assert structure["cut_step"] == PPCD_STEPS // 2
    restored = _assert_generates(model_dir)
    # The newest checkpoint holds the compact student of pruning.json.
    kept = structure["compact_channels"]
    assert json.loads(json.dumps(restored.generator.channels.to_dict())) \
        == kept


def test_tool_refuses_an_existing_run_directory(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join("tools", "kill_probe.py"),
         "--model_dir", str(tmp_path), "--gin_file", "debug.gin"],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "needs a fresh run directory" in result.stderr


def test_an_index_written_during_a_save_is_not_counted_as_complete(tmp_path):
    # TensorFlow writes ckpt-N.index in place while ckpt-N_temp still
    # exists; a kill in that window leaves a truncated index. The probe must
    # not count it (CI stop 47 read "newest 12" and then saw the run rightly
    # resume from ckpt-10), and the resume must fall back past it.
    # pylint: disable=protected-access
    model_dir = str(tmp_path / "run")
    directory = run_dir.checkpoint_dir(model_dir)
    step = tf.Variable(0, dtype=tf.int64)
    saver = checkpointing.Checkpointer(directory, step=step)
    step.assign(10)
    saver.save(10)
    assert kill_probe._newest_step(model_dir) == 10
    with open(os.path.join(directory, "ckpt-10.index"), "rb") as complete:
        head = complete.read()[:16]
    with open(os.path.join(directory, "ckpt-12.index"), "wb") as truncated:
        truncated.write(head)
    os.makedirs(os.path.join(directory, "ckpt-12_temp"))
    assert kill_probe._newest_step(model_dir) == 10
    assert kill_probe._save_in_progress(model_dir)
    os.rmdir(os.path.join(directory, "ckpt-12_temp"))
    assert kill_probe._newest_step(model_dir) == 12
    step.assign(0)
    resumed = checkpointing.Checkpointer(directory, step=step)
    assert resumed.restore_latest().endswith("ckpt-10")
    assert int(step.numpy()) == 10
