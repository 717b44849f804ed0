"""A training run's directory: its layout and the one place that reads it.

Layout of `--model_dir` (written by `trainer.Trainer` and `PPCDTrainer`):

  models.json             generator / discriminator configs (the full-width
                          generator the run started from) and the dataset;
                          an imported BigGAN-deep teacher has
                          "architecture": "biggan_deep" and no D
  config.gin              the bindings asked for; operative_config.gin: used
  checkpoints/ckpt-N.*    tf.train checkpoints (N = the G step)
  pruning.json            PPCD runs only: the pruning structure (mask widths,
                          mask function, attention masking) and, once the
                          student was cut, the cut step and the compact
                          channel configuration it is trained in from then on
  pruning_history.jsonl   PPCD runs only: one line per log step
  validation.jsonl        runs with a validator: one line per validation
  best/ckpt-N.*, best.json  the checkpoint with the best validation score
                          (a copy of checkpoints/ckpt-N) and its figures
  train/, samples/        TensorBoard events, PNG grids
  .trainer.lock           held (flock) by the trainer using the directory

`restore_generator(model_dir)` rebuilds the run's EMA generator from the
newest checkpoint (or the one `resolve_checkpoint` names: 'best', a path)
in whatever phase the run is (teacher, soft/hard masks, compact student
after the cut); every command that reads a run (export,
evaluate, sample, report, the PPCD trainer reading its teacher) uses it.
"""

import contextlib
import dataclasses
import fcntl
import json
import os
import socket

import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.models import builders
from ppcd_tf.models import inputs
from ppcd_tf.pruning import architectures
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import surgery
from ppcd_tf.runs import checkpointing

MODELS_FILE = "models.json"
PRUNING_FILE = "pruning.json"
PRUNING_HISTORY_FILE = "pruning_history.jsonl"
CHECKPOINT_DIR = "checkpoints"
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"
PHASE_MASKS = "masks"
PHASE_COMPACT = "compact"
LOCK_FILE = ".trainer.lock"
VALIDATION_HISTORY_FILE = "validation.jsonl"
BEST_DIR = "best"
BEST_RECORD = "best.json"
LATEST = "latest"
BEST = "best"


class RunDirError(errors.MissingInputError):
    """A run directory lacks a file it needs, or holds a damaged one."""


def read_run_json(path, what, missing_fix=None):
    """A JSON file of a run directory (RunDirError when missing or damaged):
    `what` names it in the damage message, `missing_fix` ends the message
    when it is missing (the damage message when None)."""
    damaged_fix = f"the {what} is damaged; restore it from a copy of the run."
    return files.read_json(path, "", missing_fix=missing_fix or damaged_fix,
                           damaged_fix=damaged_fix,
                           missing_error=RunDirError, damaged_error=RunDirError)


def checkpoint_dir(model_dir):
    return os.path.join(model_dir, CHECKPOINT_DIR)


# models.json's "architecture": BigGAN (absent, the default) or BigGAN-deep
# (an imported teacher: `import_teacher --format biggan_deep_pytorch`).
ARCHITECTURE_KEY = "architecture"
BIGGAN_DEEP = "biggan_deep"
DEEP_MODELS_SCHEMA = {
    "architecture": str, "generator": dict, "generator.ch": int,
    "generator.num_classes": int, "generator.dim_z": int,
    "generator.resolution": int, "discriminator": (dict, type(None)),
    "dataset?": dict,
}
MODELS_SCHEMA = {
    "generator": dict, "generator.channels": dict,
    "generator.num_classes": int, "generator.dim_z": int,
    "discriminator": dict,
    "dataset?": dict, "dataset.resolution?": int,
    "dataset.num_classes?": int, "dataset.image_channels?": int,
}
BEST_SCHEMA = {"step": int, "checkpoint": str, "figures": dict,
               "figures.score": float}
PRUNING_SCHEMA = {
    "mask_widths": dict, "phase": str, "cut_step": (int, type(None)),
    "compact_channels": (dict, type(None)),
    "kept_indices": (dict, type(None)),
    "mask_function?": str, "prune_attention?": bool,
    "compact_discriminator?": (dict, type(None)),
}


def read_model_configs(model_dir):
    """models.json of a run: {"generator", "discriminator", "dataset"},
    its fields checked (RunDirError naming the field)."""
    path = os.path.join(model_dir, MODELS_FILE)
    content = read_run_json(
        path, "run's model configuration",
        missing_fix=("the directory must be the --model_dir of a training "
                     "run (python -m ppcd_tf.train --model_dir ...), which "
                     "writes models.json and checkpoints/."))
    deep = (isinstance(content, dict)
            and content.get(ARCHITECTURE_KEY) == BIGGAN_DEEP)
    files.check_fields(content, path,
                       DEEP_MODELS_SCHEMA if deep else MODELS_SCHEMA,
                       "the run's model configuration is damaged; restore "
                       "it from a copy of the run.", error=RunDirError)
    return content


def is_biggan_deep(configs):
    """Whether models.json `configs` describe a BigGAN-deep run."""
    return configs.get(ARCHITECTURE_KEY) == BIGGAN_DEEP


def refuse_biggan_deep(model_dir, configs, what):
    """An error when `configs` (models.json of `model_dir`) describe a
    BigGAN-deep run, which `what` does not handle yet: BadInputError
    (exit status 2)."""
    if is_biggan_deep(configs):
        raise errors.BadInputError(
            f"{model_dir} holds a BigGAN-deep generator; {what} supports "
            "BigGAN only so far (BigGAN-deep runs can be imported, trained, "
            "compressed by PPCD, exported and sampled; this on its "
            "bottleneck blocks is not built yet, issue 35).")


def write_model_configs(model_dir, content):
    files.write_json(os.path.join(model_dir, MODELS_FILE), content)


def latest_checkpoint(model_dir):
    """Path prefix of the newest checkpoint of a run (found from the
    `checkpoint` state file or, when that is missing or damaged, from the
    ckpt-N files); RunDirError if none."""
    directory = checkpoint_dir(model_dir)
    paths = checkpointing.candidates(directory)
    checkpointing.warn_without_index(directory, paths)
    path = paths[0] if paths else None
    if path is None:
        raise RunDirError(
            f"No checkpoint in {directory}: train the run first "
            "(python -m ppcd_tf.train ... --model_dir "
            f"{model_dir}).")
    return path


def read_best(model_dir):
    """best/best.json of a run ({step, checkpoint, figures}), or None when
    it has no best checkpoint; its fields checked (RunDirError naming the
    field)."""
    path = os.path.join(model_dir, BEST_DIR, BEST_RECORD)
    if not tf.io.gfile.exists(path):
        return None
    record = read_run_json(path, "best-checkpoint record")
    files.check_fields(record, path, BEST_SCHEMA,
                       "the best-checkpoint record is damaged; restore it "
                       "from a copy of the run, or export the latest "
                       "checkpoint instead of 'best'.", error=RunDirError)
    return record


def best_checkpoint(model_dir):
    """Path prefix of the run's best checkpoint; RunDirError if it has none
    (it was trained without a validator)."""
    record = read_best(model_dir)
    if record is None:
        raise RunDirError(
            f"{model_dir} has no best checkpoint ({BEST_DIR}/{BEST_RECORD}):"
            " it was trained without TrainLoop.validator; use the latest "
            "checkpoint.")
    return os.path.join(model_dir, BEST_DIR, record["checkpoint"])


def resolve_checkpoint(model_dir, which=None):
    """The checkpoint `which` names: None or 'latest' (the newest), 'best'
    (best/ of a validated run) or a checkpoint path prefix."""
    if which in (None, "", LATEST):
        return latest_checkpoint(model_dir)
    if which == BEST:
        return best_checkpoint(model_dir)
    if not tf.io.gfile.exists(which + ".index"):
        raise RunDirError(f"Checkpoint {which} does not exist (no "
                          f"{which}.index); give 'latest', 'best' or a "
                          "path prefix such as <model_dir>/checkpoints/"
                          "ckpt-1000.")
    return which


def checkpoint_step(path):
    """The G step stored in checkpoint `path`."""
    return int(tf.train.load_checkpoint(path).get_tensor(STEP_KEY))


# ---------------------------------------------------------------------------
# Pruning structure.


def read_pruning_structure(model_dir):
    """pruning.json of a PPCD run, or None for a run without masks."""
    path = os.path.join(model_dir, PRUNING_FILE)
    if not tf.io.gfile.exists(path):
        return None
    structure = read_run_json(path, "pruning structure")
    fix = "the pruning structure is damaged; restore it from a copy of the run."
    files.check_fields(structure, path, PRUNING_SCHEMA, fix,
                       error=RunDirError)
    if structure["phase"] not in (PHASE_MASKS, PHASE_COMPACT):
        raise RunDirError(f"{path}: field 'phase' must be {PHASE_MASKS!r} or "
                          f"{PHASE_COMPACT!r}, got {structure['phase']!r}; "
                          f"{fix}")
    if structure["phase"] == PHASE_COMPACT:
        files.check_fields(structure, path, {"cut_step": int,
                                             "compact_channels": dict}, fix,
                           error=RunDirError)
    return structure


def write_pruning_structure(model_dir, structure):
    """Writes pruning.json atomically. `structure`:
    {"mask_widths": {key: width}, "mask_function": str,
     "prune_attention": bool, "phase": "masks" | "compact",
     "cut_step": int | None, "compact_channels": ChannelConfig dict | None,
     "kept_indices": {key: [int]} | None}."""
    files.write_json(os.path.join(model_dir, PRUNING_FILE), structure)


def is_compact_checkpoint(structure, step):
    """Whether a checkpoint of `step` holds the compact student: the run was
    cut at `cut_step` and the checkpoint comes from after the cut (the
    checkpoint of the cut step itself is the masked student before it)."""
    return (structure is not None
            and structure.get("phase") == PHASE_COMPACT
            and step > int(structure["cut_step"]))


def read_pruning_history(model_dir):
    """The lines of a PPCD run's pruning history, one per step (the last
    written for a step wins, so resumed runs read cleanly), sorted by step."""
    path = os.path.join(model_dir, PRUNING_HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        raise RunDirError(
            f"{path} not found: --ppcd_dir must be the --model_dir of a PPCD "
            "run (gin/stage/ppcd.gin), which writes it at every log step.")
    by_step = {}
    with tf.io.gfile.GFile(path) as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                # A line cut by a kill mid-write; the resumed run rewrites
                # its step.
                continue
            if not isinstance(line, dict) or "step" not in line:
                raise RunDirError(f"{path} line {number} is not a pruning "
                                  "history record.")
            by_step[line["step"]] = line
    return [by_step[s] for s in sorted(by_step)]


# ---------------------------------------------------------------------------
# Restoring the generator.


@dataclasses.dataclass
class RestoredGenerator:
    """A run's EMA generator as of a checkpoint.

    Attributes:
      generator: the Generator holding the checkpoint's EMA weights (full
        width for teacher and masked runs, compact after a PPCD cut).
      keep: {mask key: bool [width]} hard masks to apply to `generator`, or
        None (teacher runs and compact students need none).
      masks: the run's ChannelMasks (masked phase of a PPCD run) or None.
      hardened: whether the masks were hardened (None without masks).
      kind: 'teacher' or 'ppcd'.
      step: the checkpoint's G step; checkpoint: its path.
      full_config: the full-width generator config of models.json.
      configs: the whole models.json.
    """
    generator: object
    keep: object
    masks: object
    hardened: object
    kind: str
    step: int
    checkpoint: str
    full_config: dict
    configs: dict

    def generate(self, z, labels, class_embedding=None, truncation=None):
        """Images [N, H, W, C] of the (hard-masked where needed) generator;
        `class_embedding` [N, shared_dim] replaces the labels' shared
        embedding (class interpolation); `truncation` (a Python float)
        selects a BigGAN-deep generator's batch-norm statistics (its z is
        the caller's; BigGAN ignores it). Labels given as values (not
        inside a traced function) must be integers in range
        (models.inputs.checked_labels)."""
        labels = self._checked(labels, "labels")
        kwargs = {"training": False}
        if class_embedding is not None:
            kwargs["class_embedding"] = class_embedding
        if truncation is not None and is_biggan_deep(self.configs):
            kwargs["truncation"] = float(truncation)
        if self.masks is not None and self.keep is None:
            values = self.masks()
            return self.generator(z, labels, masks=values,
                                  keep=self.masks.keep(values), **kwargs)
        if self.keep is None:
            return self.generator(z, labels, **kwargs)
        masks = surgery.masks_from_keep(self.keep)
        return self.generator(z, labels, masks=masks, keep=masks, **kwargs)

    def interpolate(self, z, labels_a, labels_b, alpha):
        """Images of z [N, dim_z] with the shared class embedding mixed as
        (1 - alpha) * e(labels_a) + alpha * e(labels_b), alpha [N]."""
        if not hasattr(self.generator, "mixed_embedding"):
            raise errors.BadInputError(
                "Class interpolation is not supported for this generator "
                "(BigGAN-deep): sample without --interpolate_classes.")
        labels_a = self._checked(labels_a, "labels_a")
        labels_b = self._checked(labels_b, "labels_b")
        return self.generate(z, labels_a, self.generator.mixed_embedding(
            labels_a, labels_b, alpha))

    def _checked(self, labels, name):
        if tf.is_symbolic_tensor(labels):
            return labels
        return tf.constant(inputs.checked_labels(
            labels, self.generator.num_classes, name))

    def compact_generator(self):
        """The compact Generator: surgery of the hard masks, or the
        generator itself when there are none."""
        if self.keep is None:
            return self.generator
        return architectures.of(self.generator).build_compact(
            self.generator, self.keep)


def _restore(checkpoint, items):
    try:
        tf.train.Checkpoint(**items).restore(checkpoint).expect_partial() \
            .assert_existing_objects_matched()
    except (tf.errors.OpError, ValueError, AssertionError,
            IndexError) as error:  # IndexError: a truncated file
        raise RunDirError(
            f"Checkpoint {checkpoint} cannot be read into the run's models "
            f"({type(error).__name__}: {str(error).splitlines()[0]}). It is "
            "damaged or belongs to another configuration; remove it so that "
            "the previous checkpoint is used.") from error


def restore_generator(model_dir, checkpoint=None):
    """RestoredGenerator of a run's newest readable checkpoint (a damaged
    newest one is skipped with a warning naming it, older ones are tried in
    turn), or of `checkpoint` ('best' or a path prefix; see
    resolve_checkpoint)."""
    configs = read_model_configs(model_dir)
    # Read once, before the checkpoints: a damaged pruning.json is named as
    # such, not taken for damaged checkpoints.
    structure = read_pruning_structure(model_dir)
    if checkpoint not in (None, "", LATEST):
        return _restore_generator(model_dir, configs, structure,
                                  resolve_checkpoint(model_dir, checkpoint))
    return _newest_readable(
        model_dir, lambda path: _restore_generator(model_dir, configs,
                                                   structure, path),
        "run")


def _readable_step(checkpoint):
    """checkpoint_step, with RunDirError for a damaged checkpoint."""
    try:
        return checkpoint_step(checkpoint)
    except (tf.errors.OpError, ValueError,
            IndexError) as error:  # IndexError: a truncated file
        raise RunDirError(f"Checkpoint {checkpoint} cannot be read "
                          f"({str(error).splitlines()[0]}).") from error


def newest_readable_step(model_dir):
    """The step of the run's newest checkpoint whose step can be read
    (a damaged newer one is skipped with a warning, as the restores skip
    it); RunDirError when the run has no checkpoint or none can be read."""
    return _newest_readable(model_dir, _readable_step, "run")


def _restore_generator(model_dir, configs, structure, checkpoint):
    step = _readable_step(checkpoint)
    full_config = configs["generator"]

    def built(config):
        generator = builders.generator_from_config(
            dict(config, name="generator_ema"))
        generator.build()
        return generator

    if structure is None:
        names = {name for name, _ in tf.train.list_variables(checkpoint)}
        if any(name.startswith("channel_masks/") for name in names):
            raise RunDirError(
                f"{model_dir} holds channel masks but no {PRUNING_FILE}: it "
                "was written by an older ppcd_tf; export it with that "
                "version.")
        generator = built(full_config)
        _restore(checkpoint, dict(generator_ema=generator))
        return RestoredGenerator(generator, None, None, None, "teacher",
                                 step, checkpoint, full_config, configs)
    if is_compact_checkpoint(structure, step):
        full = builders.generator_from_config(full_config)
        generator = built(architectures.of(full).with_widths(
            full_config, structure["compact_channels"]))
        _restore(checkpoint, dict(generator_ema=generator))
        return RestoredGenerator(generator, None, None, True, "ppcd", step,
                                 checkpoint, full_config, configs)
    generator = built(full_config)
    masks = channel_masks.ChannelMasks(
        {k: int(w) for k, w in structure["mask_widths"].items()},
        mask_function=structure.get("mask_function", "smooth_step"),
        name="channel_masks")
    hardened = tf.Variable(False)
    _restore(checkpoint, dict(generator_ema=generator, channel_masks=masks,
                              hardened=hardened))
    hardened = bool(hardened.numpy())
    keep = hard_keep(generator, masks) if hardened else None
    return RestoredGenerator(generator, keep, masks, hardened, "ppcd", step,
                             checkpoint, full_config, configs)


def hard_keep(generator, masks, threshold=0.0):
    """{mask key: bool [width]}: channels whose mask logit exceeds
    `threshold`; widths without a mask keep every channel."""
    keep = full_keep(generator)
    keep.update({k: v.numpy() > threshold for k, v in masks.logits.items()})
    return keep


def full_keep(generator):
    """{mask key: all-True bool [width]} for every prunable width."""
    return {k: np.ones(w, bool) for k, w in
            architectures.of(generator).mask_widths(
                prune_attention=True).items()}


def restore_teacher(model_dir, generator_name="teacher_generator",
                    discriminator_name="teacher_discriminator"):
    """(EMA generator, discriminator, checkpoint path) of a teacher run."""
    if not tf.io.gfile.isdir(model_dir):
        raise RunDirError(
            f"TEACHER_DIR {model_dir} is not a directory: bind TEACHER_DIR "
            "to a teacher run's --model_dir (or the shipped "
            "ppcd_tf/assets/teacher_fashion_mnist32).")
    configs = read_model_configs(model_dir)
    if configs["discriminator"] is None:
        raise errors.BadInputError(
            f"{model_dir} holds a generator without a discriminator (an "
            "imported BigGAN-deep), and this reads a teacher's G and D. "
            "PPCD takes it as TEACHER_DIR with extras/teacher_without_d.gin "
            "after stage/ppcd.gin (its training D is built from gin).")
    latest_checkpoint(model_dir)  # "no checkpoint" with what to do
    if read_pruning_structure(model_dir) is not None:
        raise RunDirError(f"{model_dir} is a PPCD run, not a teacher run: "
                          "TEACHER_DIR must be a run of stage/teacher.gin.")
    generator = builders.generator_from_config(
        dict(configs["generator"], name=generator_name))
    discriminator = builders.discriminator_from_config(
        dict(configs["discriminator"], name=discriminator_name))
    generator.build()
    discriminator.build()
    checkpoint = restore_newest(
        model_dir, dict(generator_ema=generator, discriminator=discriminator),
        "teacher")
    return generator, discriminator, checkpoint


def restore_newest(model_dir, items, what="run"):
    """Restores `items` ({checkpoint key: trackable}) from the newest
    checkpoint of a run that holds them readably (a damaged one is skipped
    with a warning naming it); returns its path. RunDirError when none can
    be read."""

    def read(checkpoint):
        _restore(checkpoint, items)
        return checkpoint

    return _newest_readable(model_dir, read, what)


def _newest_readable(model_dir, read, what):
    """`read(checkpoint)` of the run's newest checkpoint it can read,
    trying older ones in turn (each skipped one is named in a warning);
    RunDirError when none can be read or there is none."""
    failures = []
    for checkpoint in checkpointing.candidates(checkpoint_dir(model_dir)):
        try:
            return read(checkpoint)
        except RunDirError as error:
            logging.warning("Skipping %s checkpoint %s: %s", what,
                            checkpoint, error)
            failures.append(os.path.basename(checkpoint))
    if not failures:
        latest_checkpoint(model_dir)  # raises "no checkpoint: train it"
    raise RunDirError(f"No checkpoint of the {what} {model_dir} can be read"
                      f" (tried {', '.join(failures)}): they are damaged; "
                      "restore it from a copy.")


# ---------------------------------------------------------------------------
# One trainer per run directory.


# Run directories whose lock this process holds (resolved paths).
_HELD = set()


@contextlib.contextmanager
def locked_once(model_dir):
    """`locked(model_dir)` unless this process already holds that lock
    (the train command takes it before it writes config.gin; the trainer
    it then runs trains under the same lock)."""
    if "://" not in model_dir and os.path.realpath(model_dir) in _HELD:
        yield
        return
    with locked(model_dir):
        yield


class RunLockedError(errors.BadInputError):
    """Another trainer is using the run directory."""


@contextlib.contextmanager
def locked(model_dir):
    """Holds <model_dir>/.trainer.lock (an exclusive flock) for the block.

    A second trainer on the same directory fails at once with
    RunLockedError naming the holder (pid and host written in the file).
    The operating system releases the lock when its process dies, so a
    killed run never leaves a stale lock. Remote (gs://...) directories are
    not locked: flock needs a local file system. A second `locked` of the
    same directory in the same process fails too (see `locked_once`).
    """
    if "://" in model_dir:
        yield
        return
    key = os.path.realpath(model_dir)
    os.makedirs(model_dir, exist_ok=True)
    path = os.path.join(model_dir, LOCK_FILE)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            raise RunLockedError(
                f"{model_dir} is in use by another trainer ({holder}); stop"
                " it or choose another --model_dir.") from error
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
