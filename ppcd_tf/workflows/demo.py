"""The demo's stages as commands (used by `python -m ppcd_tf.demo`).

Each stage is the project's own command line, run as a subprocess with its
output streamed, so the demo shows the same progress a user sees when
running the stages by hand.
"""

import os
import subprocess
import sys
import time

from absl import logging

from ppcd_tf import errors
from ppcd_tf.runs import run_dir

VALIDATION_GIN_FILE = "extras/validation.gin"
DATA_GIN_FILE = "data/fashion_mnist32.gin"
STAGE_GIN_FILES = ("stage/teacher.gin", "stage/ppcd.gin")
# The model file of the teacher's family: its bindings build the training D
# of a teacher without one (the student and a recorded D come from the
# teacher's models.json).
BIGGAN_GIN_FILE = "model/biggan32.gin"
DEEP_GIN_FILE = "model/biggan_deep32.gin"


def ppcd_gin_files(teacher_dir):
    """The package's gin files of a Fashion-MNIST 32x32 PPCD run of
    `teacher_dir`: data, the model file of the teacher's family, stages."""
    deep = run_dir.is_biggan_deep(run_dir.read_model_configs(teacher_dir))
    model = DEEP_GIN_FILE if deep else BIGGAN_GIN_FILE
    return (DATA_GIN_FILE, model) + STAGE_GIN_FILES


def run_stage(stage, command):
    """Runs one stage, streaming its output; exits with its status."""
    logging.info("[demo] %s: %s", stage, " ".join(command))
    start = time.time()
    status = subprocess.call(command)
    if status:
        # One line, once (the stage printed its own error above it).
        print(f"error: [demo] {stage} failed with exit status {status}; "
              "fix the cause and rerun the same command: the PPCD run "
              "continues from its newest checkpoint.", file=sys.stderr)
        sys.exit(status)
    logging.info("[demo] %s done in %.0f s.", stage, time.time() - start)


def cut_fraction(cut_step, ppcd_steps):
    """`PruningPhase.prune_end_fraction` that puts the cut at `cut_step`
    (a sixth of the steps when the run is not longer than `cut_step`)."""
    if ppcd_steps < 1 or cut_step < 1:
        raise errors.BadInputError(
            f"--ppcd_steps and --cut_step must be >= 1, got {ppcd_steps} "
            f"and {cut_step}.")
    if cut_step >= ppcd_steps:
        cut_step = max(1, ppcd_steps // 6)
    # The trainer rounds fraction x steps back to cut_step.
    return cut_step / ppcd_steps


def recipe_fraction(ppcd_steps, cut_step, prune_end_fraction=None):
    """The pruning-phase fraction of a run of `ppcd_steps`:
    `prune_end_fraction` when given, else the one that cuts at `cut_step`."""
    if prune_end_fraction is not None:
        return prune_end_fraction
    return cut_fraction(cut_step, ppcd_steps)


def train_command(ppcd_dir, teacher_dir, target_ratio, ppcd_steps,
                  log_every, gin_params=(), ema_decay=0.99,
                  extra_gin_files=(), prune_end_fraction=None,
                  validate_every=0):
    """argv of the PPCD run of `teacher_dir` into `ppcd_dir`; with
    `validate_every` > 0 the run validates (extras/validation.gin) and
    checkpoints every `validate_every` steps and keeps its best student.
    `extra_gin_files` (package-relative or paths) come after the package's
    files and before the bindings, which therefore win over theirs."""
    train = [sys.executable, "-m", "ppcd_tf.train"]
    extra_gin_files = tuple(extra_gin_files)
    if validate_every:
        extra_gin_files += (VALIDATION_GIN_FILE,)
    for name in ppcd_gin_files(teacher_dir) + extra_gin_files:
        train += ["--gin_file", name]
    bindings = [f"TEACHER_DIR = '{os.path.abspath(teacher_dir)}'",
                f"TARGET_PARAM_RATIO = {target_ratio}",
                f"NUM_STEPS = {ppcd_steps}",
                f"EMA_DECAY = {ema_decay}",
                # The PPCD trainer starts the EMA at the cut at the earliest;
                # 0 makes it start exactly there (the data file's 1,000
                # would leave a 1,000-step run without any averaging).
                "EMA_START_STEP = 0",
                f"TrainLoop.log_every = {log_every}",
                f"TrainLoop.sample_every = {max(ppcd_steps // 4, 1)}",
                "TrainLoop.checkpoint_every = "
                f"{validate_every or max(ppcd_steps // 6, 1)}"]
    if validate_every:
        bindings.append(f"TrainLoop.validate_every = {validate_every}")
    if prune_end_fraction is not None:
        bindings.append(
            f"PruningPhase.prune_end_fraction = {prune_end_fraction}")
    for binding in bindings + list(gin_params):
        train += ["--gin_param", binding]
    return train + ["--model_dir", ppcd_dir]


def export_command(model_dir, output, checkpoint=None):
    """argv of the export of a run's (compact) EMA generator (of its newest
    checkpoint, or `checkpoint`: 'best' or a path prefix)."""
    argv = [sys.executable, "-m", "ppcd_tf.export", "--overwrite",
            "--model_dir", model_dir, "--output", output]
    return argv + (["--checkpoint", checkpoint] if checkpoint else [])


def commands(output_dir, teacher_dir, target_ratio, ppcd_steps, log_every,
             gin_params, num_samples, seeds, train_repeats, repeats,
             cache_dir, num_real=None, ema_decay=0.99,
             prune_end_fraction=None, validate_every=0, gin_files=()):
    """[(stage name, argv)] of the demo, in order (with `validate_every`,
    the student export is the run's best checkpoint; `gin_files`: extra
    gin files of the PPCD run, `train_command`'s `extra_gin_files`)."""
    python = sys.executable
    ppcd_dir = os.path.join(output_dir, "ppcd")
    teacher_export = os.path.join(output_dir, "teacher_export")
    student_export = os.path.join(output_dir, "student_export")
    train = train_command(ppcd_dir, teacher_dir, target_ratio, ppcd_steps,
                          log_every, gin_params, ema_decay,
                          extra_gin_files=gin_files,
                          prune_end_fraction=prune_end_fraction,
                          validate_every=validate_every)
    train_steps = os.path.join(output_dir, "train_steps.json")
    report = [python, "-m", "ppcd_tf.report",
              "--teacher_dir", teacher_dir, "--ppcd_dir", ppcd_dir,
              "--teacher_export", teacher_export,
              "--student_export", student_export,
              "--output_dir", os.path.join(output_dir, "report"),
              "--overwrite",
              "--num_samples", str(num_samples),
              "--seeds", ",".join(str(s) for s in seeds),
              "--repeats", str(repeats),
              "--cache_dir", cache_dir or os.path.join(output_dir, "cache")]
    if num_real:
        report += ["--num_real", str(num_real)]
    stages = [
        ("PPCD compression", train),
        ("teacher export", export_command(teacher_dir, teacher_export)),
        ("student export", export_command(
            ppcd_dir, student_export,
            run_dir.BEST if validate_every else None)),
    ]
    if train_repeats > 0:
        stages.append(("training step timing", [
            python, "-m", "ppcd_tf.time_training",
            "--teacher_dir", teacher_dir, "--ppcd_dir", ppcd_dir,
            "--output", train_steps, "--repeats", str(train_repeats)]
            + [arg for name in gin_files for arg in ("--extra_gin_file", name)]
            + [arg for binding in gin_params
               for arg in ("--gin_param", binding)]))
        report += ["--train_steps", train_steps]
    return stages + [("report", report)]


def check_sweep_flags(ppcd_steps, cut_step, validate_every,
                      prune_end_fraction, num_samples, ema_decay, seeds,
                      teacher_dir):
    """The flags the sweep tools (compression curve, ablations) share,
    checked before any training: BadInputError / MissingInputError.

    `prune_end_fraction` is the override flag (None: the fraction that cuts
    at `cut_step`, `recipe_fraction`).
    """
    from ppcd_tf.metrics import evaluation  # deferred: it loads the metrics
    for name, value in (("ppcd_steps", ppcd_steps), ("cut_step", cut_step)):
        if value < 1:
            raise errors.BadInputError(
                f"--{name} must be >= 1, got {value}.")
    if validate_every < 0:
        raise errors.BadInputError(
            f"--validate_every must be >= 0, got {validate_every}.")
    if num_samples < 2:
        raise errors.BadInputError(
            f"--num_samples must be >= 2, got {num_samples}.")
    fraction = recipe_fraction(ppcd_steps, cut_step, prune_end_fraction)
    if not 0.0 < fraction <= 1.0:
        raise errors.BadInputError(
            f"--prune_end_fraction must be in (0, 1], got {fraction}.")
    if not 0.0 <= ema_decay < 1.0:
        raise errors.BadInputError(
            f"--ema_decay must be in [0, 1), got {ema_decay}.")
    evaluation.parse_seeds(seeds)
    if teacher_dir and not os.path.isdir(teacher_dir):
        raise errors.MissingInputError(
            f"--teacher_dir {teacher_dir} does not exist or is not a "
            "directory.")
