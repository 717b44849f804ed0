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
only.

`--format tfhub_biggan --module_dir DIR`: an unpacked TF1 hub module such as
biggan-128/2 (G only; its EMA weights unless `--no_ema`), read with
tf.train.load_checkpoint (no tensorflow_hub). It has no discriminator: give
a BigGAN-PyTorch `D.pth` of the same architecture with `--d_weights`, or
the D is initialised from scratch (orthogonal, `--d_seed`) and PPCD must then
use its own trained D for the class-aware term and skip the teacher-D
feature term: add `--gin_file extras/teacher_without_d.gin`.

`--format biggan_deep_pytorch --weights_dir DIR`: the PyTorch port of
BigGAN-deep (huggingface/pytorch-pretrained-BigGAN: `config.json` and
`pytorch_model.bin`), generator only (none of its releases has a D), with
its per-truncation batch-norm statistics (`ppcd_tf.importing.
biggan_deep_pytorch`); the architecture comes from its config.json. The run
can be sampled (`python -m ppcd_tf.sample --model_dir ...`: the standing
statistics are the truncation-1.0 row) and compressed by PPCD with
`extras/teacher_without_d.gin` and a BigGAN-deep D from gin (the student
trains its own BN statistics, without the tables); its export's `sample`
and `truncated` signatures take a float64 truncation that selects the
statistics; step timing refuses it (issue 35).

`--format tfhub_biggan_deep --module_dir DIR`: an unpacked TF-Hub
biggan-deep-128/256/512 module (`saved_model.pb` and `variables/`), its EMA
weights unless `--no_ema`, and the per-truncation statistics that its graph
holds (`ppcd_tf.importing.tfhub_biggan_deep`); the same generator as the
port's import of that module, and used the same way.

The architecture comes from `--preset` (`imagenet128_ch96`, the
launch_BigGAN_bs256x8.sh model; `tfhub_biggan128`) and/or the flags below,
which override the preset. A checkpoint that does not fit gets an error
listing the missing, unexpected and mis-shaped keys, what the files say about
the architecture, and the flags to change.

The written directory (models.json, config.gin, teacher.json with the
sources' SHA-256, checkpoints/ckpt-0 with the EMA generator and D) is read
back and checked against the converted models before the command succeeds.

Exit status: 2 on bad flags or weights that do not fit the architecture, 3
when the weights directory, a weights file or the module is missing.
"""

import os

from absl import app
from absl import flags
from absl import logging

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import lazy
from ppcd_tf.importing import biggan_pytorch

# Imported on first use: --help and flag errors answer without
# TensorFlow (ppcd_tf/lazy.py).
convert = lazy.load("ppcd_tf.importing.convert")
teacher_run = lazy.load("ppcd_tf.importing.teacher_run")
biggan_deep_pytorch = lazy.load("ppcd_tf.importing.biggan_deep_pytorch")
tfhub_biggan_deep = lazy.load("ppcd_tf.importing.tfhub_biggan_deep")
run_dir = lazy.load("ppcd_tf.runs.run_dir")

FORMATS = ("biggan_pytorch", "tfhub_biggan", "biggan_deep_pytorch",
           "tfhub_biggan_deep")
# Formats of BigGAN-deep generators (no D; the architecture comes from the
# source).
DEEP_FORMATS = ("biggan_deep_pytorch", "tfhub_biggan_deep")
DEEP_DEFAULT_DATASET = "imagenet2012"
FLAGS = flags.FLAGS
flags.DEFINE_enum("format", "biggan_pytorch", FORMATS, "Source format.")
flags.DEFINE_string("weights_dir", None, "biggan_pytorch: directory of "
                    "G_ema.pth / G.pth and D.pth; biggan_deep_pytorch: of "
                    "config.json and pytorch_model.bin.")
flags.DEFINE_string("module_dir", None, "tfhub_biggan, tfhub_biggan_deep: the "
                    "unpacked module.")
flags.DEFINE_bool("no_ema", False, "tfhub_biggan(_deep): the raw weights "
                  "instead "
                  "of their EMA.")
flags.DEFINE_string("d_weights", None, "tfhub_biggan: a BigGAN-PyTorch "
                    "D.pth for the teacher D (default: initialised).")
flags.DEFINE_integer("d_seed", 0, "tfhub_biggan: seed of an initialised D.")
flags.DEFINE_string("output_dir", None, "Teacher run directory to write.")
flags.DEFINE_enum("preset", None, sorted(biggan_pytorch.PRESETS),
                  "Architecture preset (flags below override it).")
flags.DEFINE_enum("generator", "auto",
                  ["auto"] + sorted(biggan_pytorch.GENERATOR_FILES),
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
    arch = dict(convert.ARCH_DEFAULTS)
    if FLAGS.preset:
        arch.update(biggan_pytorch.PRESETS[FLAGS.preset])
    for name in convert.ARCH_DEFAULTS:
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


def _import(arch):
    """Converts the sources the flags name; returns (generator,
    discriminator, record)."""
    if FLAGS.format == "biggan_pytorch":
        if not FLAGS.weights_dir:
            raise errors.BadInputError("--format biggan_pytorch needs "
                                       "--weights_dir.")
        g_path, d_path = convert.source_files(FLAGS.weights_dir,
                                              FLAGS.generator)
        logging.info("Converting %s and %s ...", g_path, d_path)
        generator, discriminator = convert.convert_biggan_pytorch(
            g_path, d_path, arch)
        sources = [g_path, d_path]
        record = {"discriminator": os.path.abspath(d_path)}
    else:
        if not FLAGS.module_dir:
            raise errors.BadInputError("--format tfhub_biggan needs "
                                       "--module_dir.")
        if FLAGS.d_weights and not os.path.isfile(FLAGS.d_weights):
            raise errors.MissingInputError(
                f"--d_weights {FLAGS.d_weights} is not a file.")
        logging.info("Converting the module %s ...", FLAGS.module_dir)
        generator, discriminator, origin = convert.convert_tfhub_biggan(
            FLAGS.module_dir, arch, ema=not FLAGS.no_ema,
            d_path=FLAGS.d_weights, seed=FLAGS.d_seed)
        index = os.path.join(FLAGS.module_dir, "variables",
                             "variables.index")
        sources = [index] + ([FLAGS.d_weights] if FLAGS.d_weights else [])
        record = {"discriminator": origin, "ema": not FLAGS.no_ema}
    record.update(format=FLAGS.format, architecture=arch, sources={
        os.path.basename(p): {"path": os.path.abspath(p),
                              "sha256": teacher_run.sha256(p)}
        for p in sources})
    return generator, discriminator, record


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}",
                             exitcode=errors.EXIT_BAD_INPUT)
    with errors.exit_on_errors():
        if not FLAGS.output_dir:
            raise errors.BadInputError("Give --output_dir.")
        files.check_output_location(
            "--output_dir", FLAGS.output_dir, directory=True,
            inputs={f"--{name}": getattr(FLAGS, name) for name in (
                "weights_dir", "module_dir", "d_weights")})
        if os.path.exists(FLAGS.output_dir) and not FLAGS.overwrite:
            raise errors.OutputExistsError(
                f"{FLAGS.output_dir} exists; choose another --output_dir or "
                "pass --overwrite to replace it.")
        if FLAGS.format in DEEP_FORMATS:
            return _import_deep()
        arch = architecture()
        generator, discriminator, record = _import(arch)
        dataset = {"name": arch["dataset"], "resolution": arch["resolution"],
                   "num_classes": arch["num_classes"],
                   "image_channels": arch["image_channels"],
                   "class_names": None}
        teacher_run.write_teacher_run(
            FLAGS.output_dir, generator, discriminator, dataset, record,
            teacher_run.model_bindings(arch), overwrite=FLAGS.overwrite)
        convert.verify_written(FLAGS.output_dir, generator, discriminator)
    print(f"Imported {FLAGS.format} weights ("
          f"{convert.record_params(generator, discriminator)}; D "
          f"{record['discriminator']}) into {FLAGS.output_dir}; use it as "
          f"TEACHER_DIR = '{FLAGS.output_dir}'.")


def _read_deep_source():
    """(generator, config, source paths, record fields) of the BigGAN-deep
    source the flags name."""
    if FLAGS.format == "tfhub_biggan_deep":
        if not FLAGS.module_dir:
            raise errors.BadInputError(
                "--format tfhub_biggan_deep needs --module_dir (an unpacked "
                "biggan-deep-128/256/512 module: saved_model.pb and "
                "variables/).")
        logging.info("Converting the module %s ...", FLAGS.module_dir)
        generator, config = tfhub_biggan_deep.import_generator(
            FLAGS.module_dir, ema=not FLAGS.no_ema)
        sources = [os.path.join(FLAGS.module_dir, "variables",
                                "variables.index"),
                   os.path.join(FLAGS.module_dir,
                                tfhub_biggan_deep.GRAPH_NAME)]
        return generator, config, sources, {"ema": not FLAGS.no_ema}
    if not FLAGS.weights_dir:
        raise errors.BadInputError("--format biggan_deep_pytorch needs "
                                   "--weights_dir (the directory of the "
                                   "port's config.json and "
                                   "pytorch_model.bin).")
    logging.info("Converting %s ...", FLAGS.weights_dir)
    generator, config = biggan_deep_pytorch.import_generator(
        FLAGS.weights_dir)
    sources = [os.path.join(FLAGS.weights_dir, name) for name in (
        biggan_deep_pytorch.CONFIG_NAME, biggan_deep_pytorch.WEIGHTS_NAME)]
    return generator, config, sources, {}


def _import_deep():
    """--format biggan_deep_pytorch / tfhub_biggan_deep: the generator as a
    teacher run (no D), read back and checked before the command
    succeeds."""
    generator, config, sources, fields = _read_deep_source()
    record = dict(fields, format=FLAGS.format, discriminator=None,
                  architecture=config)
    record["sources"] = {
        os.path.basename(p): {"path": os.path.abspath(p),
                              "sha256": teacher_run.sha256(p)}
        for p in sources}
    dataset = {"name": FLAGS.dataset or DEEP_DEFAULT_DATASET,
               "resolution": generator.resolution,
               "num_classes": generator.num_classes,
               "image_channels": generator.image_channels,
               "class_names": None}
    teacher_run.write_teacher_run(
        FLAGS.output_dir, generator, None, dataset, record,
        teacher_run.deep_model_bindings(config), overwrite=FLAGS.overwrite,
        architecture=run_dir.BIGGAN_DEEP)
    convert.verify_deep_written(FLAGS.output_dir, generator)
    params = convert.record_params(generator, None)
    print(f"Imported {FLAGS.format} weights ({params}) into "
          f"{FLAGS.output_dir}: sample it with python -m ppcd_tf.sample "
          f"--model_dir {FLAGS.output_dir}; compress it with PPCD and "
          "--gin_file extras/teacher_without_d.gin (docs/commands.md, the "
          "BigGAN-deep run book).")


def run_main():
    """Console-script entry point (`ppcd-import-teacher`)."""
    errors.run(main)


if __name__ == "__main__":
    run_main()
