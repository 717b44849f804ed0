"""Writes imported weights as an ordinary teacher run directory.

The directory is what `TEACHER_DIR`, export, sample and evaluate accept from
a teacher trained here:

  <output_dir>/models.json     the configs that rebuild G and D, the dataset
  <output_dir>/config.gin      the model's bindings (for reading; the
                               import ran no gin)
  <output_dir>/teacher.json    where the weights came from (format, files,
                               SHA-256, architecture, parameter counts)
  <output_dir>/checkpoints/ckpt-0   generator_ema, discriminator, step 0

Written through a temporary sibling renamed into place (files.staged_
directory): an interrupted import leaves nothing, an existing directory is
replaced only with `overwrite`.
"""

import hashlib
import json
import os

import tensorflow as tf

from ppcd_tf import files
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.runs import run_dir
from ppcd_tf.workflows import teachers

CHECKPOINT_NUMBER = 0


def sha256(path):
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_bindings(arch):
    """config.gin text: the model bindings that rebuild the architecture
    with `python -m ppcd_tf.train` (arch: the importer's settings)."""
    lines = [
        "# Imported teacher: the model's bindings (not read by the import).",
        "import ppcd_tf.models.builders",
        "",
        f"build_generator.ch = {arch['g_ch']}",
        f"build_generator.attention = '{arch['attention']}'",
        f"build_generator.dim_z = {arch['dim_z']}",
        f"build_generator.shared_dim = {arch['shared_dim']}",
        f"build_generator.sn_eps = {arch['sn_eps']!r}",
        f"build_generator.bn_epsilon = {arch['bn_epsilon']!r}",
        f"build_discriminator.ch = {arch['d_ch']}",
        f"build_discriminator.attention = '{arch['d_attention']}'",
        f"build_discriminator.sn_eps = {arch['sn_eps']!r}",
    ]
    return "\n".join(lines) + "\n"


def write_teacher_run(output_dir, generator, discriminator, dataset, record,
                      config_text, overwrite=False, architecture=None):
    """Writes the run directory (see the module docstring); returns the
    checkpoint path. `generator` / `discriminator`: built models holding
    the imported weights (discriminator None: none released, as for
    BigGAN-deep); `dataset`: models.json's dataset entry; `architecture`:
    None (BigGAN) or `run_dir.BIGGAN_DEEP`."""
    content = {"generator": dict(generator.get_config(), name="generator"),
               "discriminator": None if discriminator is None else dict(
                   discriminator.get_config(), name="discriminator"),
               "dataset": dataset}
    if architecture is not None:
        content[run_dir.ARCHITECTURE_KEY] = architecture
    record = dict(record,
                  generator_params=generator_lib.count_trainable_parameters(
                      generator),
                  discriminator_params=None if discriminator is None else
                  generator_lib.count_trainable_parameters(discriminator),
                  step=CHECKPOINT_NUMBER)
    step = tf.Variable(CHECKPOINT_NUMBER, dtype=tf.int64)
    items = dict(generator_ema=generator, step=step)
    if discriminator is not None:
        items["discriminator"] = discriminator
    with files.staged_directory(output_dir, overwrite=overwrite) as tmp:
        with open(os.path.join(tmp, "models.json"), "w") as f:
            json.dump(content, f, indent=2, default=list)
        with open(os.path.join(tmp, "config.gin"), "w") as f:
            f.write(config_text)
        with open(os.path.join(tmp, teachers.RECORD_FILE), "w") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        manager = tf.train.CheckpointManager(
            tf.train.Checkpoint(**items),
            run_dir.checkpoint_dir(tmp), max_to_keep=1)
        manager.save(checkpoint_number=CHECKPOINT_NUMBER)
        teachers.relative_checkpoint_state(run_dir.checkpoint_dir(tmp))
    return os.path.join(run_dir.checkpoint_dir(output_dir),
                        f"ckpt-{CHECKPOINT_NUMBER}")


def deep_model_bindings(config):
    """config.gin text of an imported BigGAN-deep generator (for reading:
    no gin builder trains BigGAN-deep yet)."""
    lines = ["# Imported BigGAN-deep generator (the PyTorch port's "
             "config.json):",
             "# no gin builder trains BigGAN-deep yet; these are its "
             "settings."]
    lines += [f"# {name} = {config[name]!r}" for name in sorted(config)]
    return "\n".join(lines) + "\n"
