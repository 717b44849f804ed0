"""Shipped teachers: small, slimmed copies of finished teacher runs.

A slim teacher directory has the layout of a training run, so it can be
passed wherever a teacher run's `--model_dir` is expected (PPCD's
`TEACHER_DIR`, `ppcd_tf.export`, `ppcd_tf.sample`, `ppcd_tf.evaluate`):

  models.json            generator / discriminator configs
  config.gin             the run's configuration (with operative_config.gin)
  checkpoints/ckpt-N.*   only `generator_ema`, `discriminator` and `step`
                         (no raw G, no optimizer slots: what PPCD reads)
  teacher.json           how it was trained (command, steps) and measured

`python tools/ship_teacher.py` writes one from a run.
"""

import os
import shutil

import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.models import discriminator as discriminator_lib
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.runs import run_dir
from ppcd_tf.training import trainer as trainer_lib

ASSETS_DIR = files.ASSETS_DIR
SHIPPED = {"fashion_mnist32": "teacher_fashion_mnist32"}
RECORD_FILE = "teacher.json"
_COPIED_FILES = (trainer_lib.MODELS_FILE, "config.gin",
                 "operative_config.gin")
# What a teacher record holds (files.check_fields): every field is
# optional (an imported teacher records its source instead of a command),
# but a field that is there has its type; the evaluation's summary holds
# the figures of python -m ppcd_tf.evaluate.
RECORD_SCHEMA = {
    "command?": str, "note?": str, "step?": int, "source_checkpoint?": str,
    "generator_params?": int, "discriminator_params?": int,
    "evaluation?": dict, "evaluation.summary?": dict,
    "evaluation.summary.fid?": dict,
    "evaluation.summary.fid.mean?": (int, float),
    "evaluation.summary.class_accuracy?": (dict, type(None)),
    "evaluation.computed?": dict}


class TeacherError(errors.MissingInputError):
    """A shipped teacher or a teacher run is missing or incomplete."""


def shipped_teacher_dir(name="fashion_mnist32"):
    """Directory of a shipped teacher; clear error if it is absent."""
    if name not in SHIPPED:
        raise TeacherError(f"No shipped teacher {name!r}; shipped: "
                           f"{sorted(SHIPPED)}.")
    path = os.path.join(ASSETS_DIR, SHIPPED[name])
    if not os.path.isfile(os.path.join(path, RECORD_FILE)):
        raise TeacherError(
            f"The shipped teacher {name!r} is missing from {path}; "
            "reinstall ppcd_tf, or train one and slim it with "
            "tools/ship_teacher.py (the command is in README.md).")
    return path


def read_record(teacher_dir):
    """The record (provenance, evaluation) of a slim teacher directory;
    exit 3 naming the file and the field when it is not JSON or a field
    has the wrong type (RECORD_SCHEMA)."""
    path = os.path.join(teacher_dir, RECORD_FILE)
    damaged = ("the teacher is damaged; reinstall ppcd_tf or slim it "
               "again with tools/ship_teacher.py.")
    record = files.read_json(
        path, "the teacher record",
        missing_fix=("the directory is not a slim teacher; write one with "
                     "tools/ship_teacher.py."),
        damaged_fix=damaged)
    files.check_fields(record, path, RECORD_SCHEMA, damaged)
    return record


def _checkpoint_path(model_dir, step):
    directory = os.path.join(model_dir, "checkpoints")
    if step is None:
        path = tf.train.latest_checkpoint(directory)
        if path is None:
            raise TeacherError(f"No checkpoint in {directory}.")
        return path
    path = os.path.join(directory, f"ckpt-{int(step)}")
    if not tf.io.gfile.exists(path + ".index"):
        raise TeacherError(f"No checkpoint of step {step} in {directory}.")
    return path


def write_slim_teacher(model_dir, output_dir, step=None, record=None,
                       overwrite=False):
    """Writes the slim copy of a teacher run's checkpoint `step` (newest if
    None) to `output_dir` (through a temporary directory renamed into
    place). Returns the written checkpoint path."""
    if os.path.exists(output_dir) and not overwrite:
        raise errors.OutputExistsError(
            f"{output_dir} exists; pass overwrite=True.")
    source = _checkpoint_path(model_dir, step)
    configs = run_dir.read_model_configs(model_dir)
    run_dir.refuse_biggan_deep(model_dir, configs, "slimming a teacher run")
    generator = generator_lib.Generator.from_config(
        dict(configs["generator"], name="generator_ema"))
    discriminator = discriminator_lib.Discriminator.from_config(
        dict(configs["discriminator"], name="discriminator"))
    generator.build()
    discriminator.build()
    step_variable = tf.Variable(0, dtype=tf.int64)
    items = dict(generator_ema=generator, discriminator=discriminator,
                 step=step_variable)
    tf.train.Checkpoint(**items).restore(source).expect_partial() \
        .assert_existing_objects_matched()
    with files.staged_directory(output_dir, overwrite=overwrite) as tmp:
        manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(**items), os.path.join(tmp, "checkpoints"),
            max_to_keep=1)
        written = manager.save(checkpoint_number=int(step_variable.numpy()))
        for name in _COPIED_FILES:
            if os.path.isfile(os.path.join(model_dir, name)):
                shutil.copy(os.path.join(model_dir, name), tmp)
        record = dict(record or {}, step=int(step_variable.numpy()),
                      source_checkpoint=os.path.abspath(source),
                      generator_params=generator_lib
                      .count_trainable_parameters(generator),
                      discriminator_params=generator_lib
                      .count_trainable_parameters(discriminator))
        files.write_json(os.path.join(tmp, RECORD_FILE), record)
        relative_checkpoint_state(os.path.join(tmp, "checkpoints"))
    return os.path.join(output_dir, "checkpoints",
                        os.path.basename(written))


def relative_checkpoint_state(directory):
    """Rewrites the `checkpoint` state file with relative paths, so the
    directory can be moved (shipped inside the package)."""
    state = tf.train.get_checkpoint_state(directory)
    name = os.path.basename(state.model_checkpoint_path)
    with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write(f'model_checkpoint_path: "{name}"\n'
                f'all_model_checkpoint_paths: "{name}"\n')
