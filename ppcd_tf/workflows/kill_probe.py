"""Kills a training command at random moments and checks that it recovers.

The probe behind `tools/kill_probe.py` and `tests/kill_probe_test.py`: a
training command (`python -m ppcd_tf.train ...`) is started, SIGKILLed after
a random delay or at a random step (seeded), started again, killed again,
..., optionally killed
the moment a checkpoint save is in progress (TensorFlow's `ckpt-N_temp`
directory exists), and finally run to completion. The run must then reach
its last step with every checkpoint readable and holding its own step, and
its generator (the compact student after a PPCD cut) must restore.

Each kill is recorded with the phase it hit: `startup` (no checkpoint
yet), `training` (the newest checkpoint's step), `saving` (a save was in
progress), `after_cut` (a PPCD run whose masks were already cut), or
`finished` (the command ended by itself before the delay ran out).
"""

import dataclasses
import os
import random
import signal
import subprocess
import time

from ppcd_tf.runs import checkpointing
from ppcd_tf.runs import run_dir

# How often the probe looks at the run directory while a command runs.
POLL_SECONDS = 0.005
# Temporary directories of a save in progress (tf.train.CheckpointManager).
SAVE_IN_PROGRESS_MARK = "_temp"


@dataclasses.dataclass
class Kill:
    """One SIGKILL: when it was sent and what it hit."""
    delay_seconds: float
    phase: str
    newest_checkpoint_step: int  # newest complete one; -1 for none


@dataclasses.dataclass
class ProbeResult:
    """What the probe did and what the final run reached."""
    kills: list
    final_returncode: int
    final_output: str
    final_step: int
    checkpoint_steps: dict  # {checkpoint prefix: stored step}


class ProbeError(AssertionError):
    """The run did not recover from a kill."""


def _staging_names(model_dir):
    directory = run_dir.checkpoint_dir(model_dir)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return [name for name in names if SAVE_IN_PROGRESS_MARK in name]


def _newest_step(model_dir):
    """The step of the newest complete checkpoint, -1 if there is none.

    A save in progress is not complete even once its `ckpt-N.index` shows:
    TensorFlow writes that file in place (not by a rename) while
    `ckpt-N_temp` still exists, so a kill then leaves a truncated index
    and the resume rightly falls back to the checkpoint before."""
    being_saved = {name.split(SAVE_IN_PROGRESS_MARK, 1)[0]
                   for name in _staging_names(model_dir)}
    for path in checkpointing.candidates(run_dir.checkpoint_dir(model_dir)):
        if os.path.basename(path) not in being_saved:
            return int(path.rsplit("-", 1)[-1])
    return -1


def _save_in_progress(model_dir):
    return bool(_staging_names(model_dir))


def _was_cut(model_dir):
    try:
        structure = run_dir.read_pruning_structure(model_dir)
    except run_dir.RunDirError:  # caught while being replaced
        return False
    return bool(structure) and structure.get("phase") == run_dir.PHASE_COMPACT


def _phase(model_dir, saving):
    if saving:
        return "saving"
    if _was_cut(model_dir):
        return "after_cut"
    return "training" if _newest_step(model_dir) >= 0 else "startup"


def _start(argv, cwd, env, log_path):
    log = open(log_path, "ab")
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    return process, log


def _stop(process, log):
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait()
    log.close()


def kill_after(argv, model_dir, delay_seconds, cwd, env, log_path):
    """Runs `argv`; SIGKILLs it after `delay_seconds` unless it ended."""
    process, log = _start(argv, cwd, env, log_path)
    deadline = time.monotonic() + delay_seconds
    try:
        while time.monotonic() < deadline and process.poll() is None:
            time.sleep(POLL_SECONDS)
        if process.poll() is not None:
            return Kill(delay_seconds, "finished", _newest_step(model_dir))
        saving = _save_in_progress(model_dir)
        phase = _phase(model_dir, saving)
        process.send_signal(signal.SIGKILL)
        process.wait()  # what it left, not what it is still writing
        return Kill(delay_seconds, phase, _newest_step(model_dir))
    finally:
        _stop(process, log)


def kill_at_step(argv, model_dir, step, timeout_seconds, cwd, env,
                 log_path):
    """Runs `argv`; SIGKILLs it as soon as a checkpoint of `step` or later
    exists (whatever the machine's speed, the kill lands in training),
    unless the command ends first."""
    process, log = _start(argv, cwd, env, log_path)
    start = time.monotonic()
    try:
        while process.poll() is None:
            if _newest_step(model_dir) >= step:
                phase = _phase(model_dir, _save_in_progress(model_dir))
                process.send_signal(signal.SIGKILL)
                process.wait()
                return Kill(time.monotonic() - start, phase,
                            _newest_step(model_dir))
            if time.monotonic() - start > timeout_seconds:
                break
            time.sleep(POLL_SECONDS)
        return Kill(time.monotonic() - start, "finished",
                    _newest_step(model_dir))
    finally:
        _stop(process, log)


def kill_during_save(argv, model_dir, timeout_seconds, cwd, env, log_path):
    """Runs `argv` and SIGKILLs it as soon as a checkpoint save is in
    progress (a `ckpt-N_temp` directory exists) while an older checkpoint
    exists, so that the resume has to fall back past the interrupted one.
    Returns the Kill, or one of phase `finished` / `no_save_seen` when no
    such save was caught."""
    process, log = _start(argv, cwd, env, log_path)
    start = time.monotonic()
    try:
        while process.poll() is None:
            if (_save_in_progress(model_dir)
                    and _newest_step(model_dir) >= 0):
                process.send_signal(signal.SIGKILL)
                process.wait()
                return Kill(time.monotonic() - start, "saving",
                            _newest_step(model_dir))
            if time.monotonic() - start > timeout_seconds:
                return Kill(time.monotonic() - start, "no_save_seen",
                            _newest_step(model_dir))
            time.sleep(POLL_SECONDS)
        return Kill(time.monotonic() - start, "finished",
                    _newest_step(model_dir))
    finally:
        _stop(process, log)


def check_checkpoints(model_dir):
    """{prefix: stored step} of every checkpoint; ProbeError if one named by
    the index or found on disk cannot be read or holds another step."""
    steps = {}
    for path in checkpointing.candidates(run_dir.checkpoint_dir(model_dir)):
        number = int(path.rsplit("-", 1)[-1])
        try:
            stored = run_dir.checkpoint_step(path)
        except Exception as error:  # pylint: disable=broad-except
            # Whatever the reader raises, an unreadable checkpoint fails.
            raise ProbeError(f"checkpoint {path} cannot be read after the "
                             f"kills: {error}") from error
        if stored != number:
            raise ProbeError(f"checkpoint {path} holds step {stored}")
        steps[path] = stored
    return steps


def probe(argv, model_dir, num_steps, kills, seed, min_delay_seconds,
          max_delay_seconds, kill_during_saves=0, cwd=None, env=None,
          log_path=None, final_timeout_seconds=900, by_step=False):
    """Kills `argv` (a training command writing `model_dir`, `num_steps`
    steps) `kills` times after random delays, then `kill_during_saves`
    times while a save is in progress, then runs it to completion. With
    `by_step` the random kills come at random steps instead (each as soon
    as a checkpoint of a step drawn between the newest one and `num_steps`
    exists), so that they land in training on a machine of any speed.

    Returns a ProbeResult; raises ProbeError if the final run fails, stops
    short of `num_steps` or leaves an unreadable checkpoint.
    """
    rng = random.Random(seed)
    log_path = log_path or model_dir.rstrip("/") + ".probe.log"
    record = []
    for _ in range(kills):
        if by_step:
            step = rng.randint(max(_newest_step(model_dir), 0) + 1,
                               max(num_steps - 1, 1))
            kill = kill_at_step(argv, model_dir, step, final_timeout_seconds,
                                cwd, env, log_path)
        else:
            delay = rng.uniform(min_delay_seconds, max_delay_seconds)
            kill = kill_after(argv, model_dir, delay, cwd, env, log_path)
        record.append(kill)
        if kill.phase == "finished":
            break
    for _ in range(kill_during_saves):
        if record and record[-1].phase == "finished":
            break
        record.append(kill_during_save(argv, model_dir,
                                       final_timeout_seconds, cwd, env,
                                       log_path))
    final = subprocess.run(argv, cwd=cwd, env=env, capture_output=True,
                           text=True, timeout=final_timeout_seconds,
                           check=False)
    output = final.stdout + final.stderr
    if final.returncode != 0:
        raise ProbeError(f"the run after the kills failed (exit "
                         f"{final.returncode}):\n{output[-4000:]}")
    steps = check_checkpoints(model_dir)
    final_step = max(steps.values()) if steps else -1
    if final_step != num_steps:
        raise ProbeError(f"the run after the kills stopped at step "
                         f"{final_step}, not {num_steps}")
    return ProbeResult(record, final.returncode, output, final_step, steps)
