r"""Imports a pretrained BigGAN as a teacher run directory.

  python -m ppcd_tf.import_teacher --format biggan_pytorch \
      --weights_dir /data/BigGAN-PyTorch/weights/138k \
      --preset imagenet128_ch96 --output_dir runs/imagenet128_teacher

then PPCD on it as on a teacher trained here:

  python -m ppcd_tf.train --model_dir runs/imagenet128_ppcd \
      --gin_file data/imagenet128.gin --gin_file model/biggan128.gin \
      --gin_file stage/teacher.gin --gin_file stage/ppcd.gin \
      --gin_param "TEACHER_DIR = 'runs/imagenet128_teacher'"

`--format biggan_pytorch`: a directory of BigGAN-PyTorch weights as its
`utils.save_weights` writes them: `G_ema.pth` (or `G.pth`, see
`--generator`) and `D.pth` (PPCD's class-aware term needs the teacher's D).
Both torch formats are read without torch (the zip format of torch >= 1.6
and the legacy format of the 2019 releases), through a restricted unpickler
only. The architecture comes from `--preset` (`imagenet128_ch96`, the
launch_BigGAN_bs256x8.sh model) and/or the flags below, which override the
preset. A checkpoint that does not fit gets an error listing the missing,
unexpected and mis-shaped keys, what the files say about the architecture,
and the flags to change.

The written directory (models.json, config.gin, teacher.json with the files'
SHA-256, checkpoints/ckpt-0 with the EMA generator and D) is read back and
checked against the converted models before the command succeeds.

Exit status: 2 on bad flags or a checkpoint that does not fit the
architecture, 3 when the weights directory or a weights file is missing.
"""

import os

import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from absl import logging

from ppcd_tf import errors
from ppcd_tf import run_dir
from ppcd_tf import torch_files
from ppcd_tf.importing import biggan_pytorch
from ppcd_tf.importing import teacher_run
from ppcd_tf.models import builders
from ppcd_tf.models import generator as generator_lib

FORMATS = ("biggan_pytorch",)
GENERATOR_FILES = {"G_ema": "G_ema.pth", "G": "G.pth"}
DISCRIMINATOR_FILE = "D.pth"
# Architecture flags and their defaults when no preset gives them.
ARCH_DEFAULTS = dict(resolution=None, g_ch=None, d_ch=None, num_classes=None,
                     attention="64", d_attention=None, dim_z=120,
                     shared_dim=128, sn_eps=1e-6, bn_epsilon=1e-5,
                     image_channels=3, dataset="imported")
# Images compared when the written run is read back.
CHECK_BATCH = 2

FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "biggan_pytorch", FORMATS, "Source format.")
flags.DEFINE_string("weights_dir", None, "Directory of the source weights.")
flags.DEFINE_string("output_dir", None, "Teacher run directory to write.")
flags.DEFINE_enum("preset", None, sorted(biggan_pytorch.PRESETS),
                  "Architecture preset (flags below override it).")
flags.DEFINE_enum("generator", "auto", ["auto"] + sorted(GENERATOR_FILES),
                  "Which generator file: G_ema.pth, G.pth, or auto (G_ema "
                  "when present).")
flags.DEFINE_integer("resolution", None, "Image resolution.")
flags.DEFINE_integer("g_ch", None, "BigGAN-PyTorch's G_ch.")
flags.DEFINE_integer("d_ch", None, "BigGAN-PyTorch's D_ch.")
flags.DEFINE_integer("num_classes", None, "Number of classes.")
flags.DEFINE_string("attention", None, "G_attn: resolutions with "
                    "self-attention, '_'-separated ('64', '' for none).")
flags.DEFINE_string("d_attention", None, "D_attn (default: --attention).")
flags.DEFINE_integer("dim_z", None, "dim_z (hierarchical z).")
flags.DEFINE_integer("shared_dim", None, "shared_dim of G_shared.")
flags.DEFINE_float("sn_eps", None, "SN_eps.")
flags.DEFINE_float("bn_epsilon", None, "BN_eps.")
flags.DEFINE_string("dataset", None, "Dataset name recorded in "
                    "models.json (e.g. imagenet2012).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.")


def architecture():
    """The architecture settings: defaults < preset < flags given."""
    arch = dict(ARCH_DEFAULTS)
    if FLAGS.preset:
        arch.update(biggan_pytorch.PRESETS[FLAGS.preset])
    for name in ARCH_DEFAULTS:
        if name in FLAGS and FLAGS[name].present:
            arch[name] = FLAGS[name].value
    if arch["d_attention"] is None:
        arch["d_attention"] = arch["attention"]
    missing = [name for name in ("resolution", "g_ch", "d_ch",
                                 "num_classes") if arch[name] is None]
    if missing:
        raise errors.BadInputError(
            "Give --preset (" + ", ".join(sorted(biggan_pytorch.PRESETS))
            + ") or " + ", ".join(f"--{name}" for name in missing) + ".")
    for name in ("resolution", "g_ch", "d_ch", "num_classes", "dim_z",
                 "shared_dim"):
        if arch[name] < 1:
            raise errors.BadInputError(f"--{name} must be >= 1.")
    return arch


def source_files(weights_dir, which):
    """(generator file, D file) paths; MissingInputError if absent."""
    if not os.path.isdir(weights_dir):
        raise errors.MissingInputError(
            f"--weights_dir {weights_dir} is not a directory: give the "
            "directory holding BigGAN-PyTorch's G_ema.pth / G.pth and D.pth.")
    names = ([GENERATOR_FILES[which]] if which != "auto"
             else [GENERATOR_FILES["G_ema"], GENERATOR_FILES["G"]])
    generator = next((os.path.join(weights_dir, n) for n in names
                      if os.path.isfile(os.path.join(weights_dir, n))), None)
    if generator is None:
        raise errors.MissingInputError(
            f"No {' or '.join(names)} in {weights_dir}.")
    discriminator = os.path.join(weights_dir, DISCRIMINATOR_FILE)
    if not os.path.isfile(discriminator):
        raise errors.MissingInputError(
            f"No {DISCRIMINATOR_FILE} in {weights_dir}: PPCD's class-aware "
            "distillation needs the teacher's discriminator. Copy D.pth of "
            "the same run next to the generator file.")
    return generator, discriminator


def build_models(arch):
    """Our Generator and Discriminator of `arch`, built."""
    generator = builders.build_generator(
        arch["resolution"], arch["num_classes"], arch["image_channels"],
        ch=arch["g_ch"], attention=arch["attention"], dim_z=arch["dim_z"],
        shared_dim=arch["shared_dim"], sn_eps=arch["sn_eps"],
        bn_epsilon=arch["bn_epsilon"], name="generator_ema")
    discriminator = builders.build_discriminator(
        arch["resolution"], arch["num_classes"], arch["image_channels"],
        ch=arch["d_ch"], attention=arch["d_attention"], sn_eps=arch["sn_eps"],
        name="discriminator")
    generator.build()
    discriminator.build()
    return generator, discriminator


def convert_biggan_pytorch(g_path, d_path, arch):
    """(generator, discriminator) holding the weights of the two files."""
    g_state = torch_files.read_torch_state_dict(g_path)
    d_state = torch_files.read_torch_state_dict(d_path)
    generator, discriminator = build_models(arch)
    channels = generator.channels
    g_plan = biggan_pytorch.plan(
        generator, linear_units=(channels.bottom_width, channels.stream[0]))
    d_plan = biggan_pytorch.plan(discriminator)
    hint = biggan_pytorch.architecture_hint(g_state, d_state,
                                              arch["resolution"])
    biggan_pytorch.check(g_plan, g_state, g_path, hint)
    biggan_pytorch.check(d_plan, d_state, d_path, hint)
    biggan_pytorch.assign(g_plan, g_state)
    biggan_pytorch.assign(d_plan, d_state)
    return generator, discriminator


def verify_written(output_dir, generator, discriminator):
    """Reads the written run back (as TEACHER_DIR would) and checks that it
    generates and discriminates exactly as the converted models."""
    restored_g, restored_d, _ = run_dir.restore_teacher(output_dir)
    z = tf.random.stateless_normal((CHECK_BATCH, generator.dim_z), (1, 2))
    labels = tf.range(CHECK_BATCH) % generator.num_classes
    want = generator(z, labels, training=False)
    got = restored_g(z, labels, training=False)
    want_d = discriminator(want, labels, training=False)
    got_d = restored_d(want, labels, training=False)
    if not (np.array_equal(want.numpy(), got.numpy())
            and np.array_equal(np.asarray(want_d), np.asarray(got_d))):
        raise RuntimeError(f"{output_dir} does not read back as written.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    with errors.exit_on_errors():
        if not FLAGS.weights_dir or not FLAGS.output_dir:
            raise errors.BadInputError("Give --weights_dir and --output_dir.")
        if os.path.exists(FLAGS.output_dir) and not FLAGS.overwrite:
            raise errors.OutputExistsError(
                f"{FLAGS.output_dir} exists; choose another --output_dir or "
                "pass --overwrite to replace it.")
        arch = architecture()
        g_path, d_path = source_files(FLAGS.weights_dir, FLAGS.generator)
        logging.info("Converting %s and %s ...", g_path, d_path)
        generator, discriminator = convert_biggan_pytorch(g_path, d_path,
                                                          arch)
        record = {"format": FLAGS.format, "architecture": arch,
                  "sources": {os.path.basename(p): {
                      "path": os.path.abspath(p),
                      "sha256": teacher_run.sha256(p)}
                      for p in (g_path, d_path)}}
        dataset = {"name": arch["dataset"], "resolution": arch["resolution"],
                   "num_classes": arch["num_classes"],
                   "image_channels": arch["image_channels"],
                   "class_names": None}
        teacher_run.write_teacher_run(
            FLAGS.output_dir, generator, discriminator, dataset, record,
            teacher_run.model_bindings(arch), overwrite=FLAGS.overwrite)
        verify_written(FLAGS.output_dir, generator, discriminator)
    params = record_params(generator, discriminator)
    print(f"Imported {os.path.basename(g_path)} and {DISCRIMINATOR_FILE} "
          f"({params}) into {FLAGS.output_dir}; use it as "
          f"TEACHER_DIR = '{FLAGS.output_dir}'.")


def record_params(generator, discriminator):
    """'G n params, D m' for the summary line."""
    return (f"G {generator_lib.count_trainable_parameters(generator):,} "
            f"params, D "
            f"{generator_lib.count_trainable_parameters(discriminator):,}")


def run_main():
    """Console-script entry point (`ppcd-import-teacher`)."""
    app.run(main)


if __name__ == "__main__":
    run_main()
