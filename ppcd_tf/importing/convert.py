"""Converting pretrained BigGAN weights into our models (the import's
library part; `python -m ppcd_tf.import_teacher` is its command).

`convert_biggan_pytorch` (BigGAN-PyTorch G/G_ema and D files) and
`convert_tfhub_biggan` (a TF-Hub module's generator) return built
Generator / Discriminator models holding the weights; `verify_written`
reads a written teacher run back and compares it with them.
"""

import os

import numpy as np
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.importing import biggan_pytorch
from ppcd_tf.importing import tfhub_biggan
from ppcd_tf.importing import torch_files
from ppcd_tf.models import builders
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.runs import run_dir

GENERATOR_FILES = biggan_pytorch.GENERATOR_FILES
DISCRIMINATOR_FILE = "D.pth"
# Architecture flags and their defaults when no preset gives them.
ARCH_DEFAULTS = dict(resolution=None, g_ch=None, d_ch=None, num_classes=None,
                     attention="64", d_attention=None, dim_z=120,
                     shared_dim=128, sn_eps=1e-6, bn_epsilon=1e-5,
                     image_channels=3, dataset="imported")
# Images compared when the written run is read back.
CHECK_BATCH = 2


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


def convert_tfhub_biggan(module_dir, arch, ema=True, d_path=None,
                         seed=0):
    """(generator, discriminator, D origin) of a TF-Hub BigGAN module; the
    D from a BigGAN-PyTorch `d_path` or initialised with `seed`."""
    variables = tfhub_biggan.read_module_variables(module_dir)
    if d_path is None:
        tf.keras.utils.set_random_seed(seed)
    generator, discriminator = build_models(arch)
    channels = generator.channels
    attention = sorted(channels.attention)
    if len(attention) > 1:
        raise errors.BadInputError(
            "A TF-Hub BigGAN has one attention layer; --attention names "
            f"{len(attention)}.")
    state = tfhub_biggan.to_biggan_pytorch(
        variables, attention[0] - 1 if attention else None,
        channels.bottom_width, ema=ema)
    g_plan = biggan_pytorch.plan(
        generator, linear_units=(channels.bottom_width, channels.stream[0]))
    hint = biggan_pytorch.architecture_hint(state, None, arch["resolution"])
    biggan_pytorch.check(g_plan, state, module_dir, hint)
    biggan_pytorch.assign(g_plan, state)
    origin = f"initialised (orthogonal, seed {seed})"
    if d_path is not None:
        d_state = torch_files.read_torch_state_dict(d_path)
        d_plan = biggan_pytorch.plan(discriminator)
        biggan_pytorch.check(d_plan, d_state, d_path,
                             biggan_pytorch.architecture_hint(
                                 None, d_state, arch["resolution"]))
        biggan_pytorch.assign(d_plan, d_state)
        origin = os.path.abspath(d_path)
    return generator, discriminator, origin


def build_models(arch, kernel_initializer="orthogonal"):
    """Our Generator and Discriminator of `arch`, built. Their configs keep
    `kernel_initializer` (models trained from scratch on the imported run's
    models.json, e.g. the thin-student ablation, initialise with it); a
    check of names and shapes alone may pass a cheaper one (orthogonal
    initialisation of 1536-wide kernels takes ~10 s each on 2 cores)."""
    generator = builders.build_generator(
        arch["resolution"], arch["num_classes"], arch["image_channels"],
        ch=arch["g_ch"], attention=arch["attention"], dim_z=arch["dim_z"],
        shared_dim=arch["shared_dim"], sn_eps=arch["sn_eps"],
        bn_epsilon=arch["bn_epsilon"], kernel_initializer=kernel_initializer,
        name="generator_ema")
    discriminator = builders.build_discriminator(
        arch["resolution"], arch["num_classes"], arch["image_channels"],
        ch=arch["d_ch"], attention=arch["d_attention"], sn_eps=arch["sn_eps"],
        kernel_initializer=kernel_initializer, name="discriminator")
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


def verify_deep_written(output_dir, generator):
    """Reads a written BigGAN-deep run back (as sample and evaluate do) and
    checks that it generates exactly as the converted generator."""
    restored = run_dir.restore_generator(output_dir)
    z = tf.random.stateless_normal((CHECK_BATCH, generator.dim_z), (1, 2))
    labels = tf.range(CHECK_BATCH) % generator.num_classes
    want = generator(z, labels, training=False)
    got = restored.generate(z, labels)
    if not np.array_equal(want.numpy(), got.numpy()):
        raise RuntimeError(f"{output_dir} does not read back as written.")


def record_params(generator, discriminator):
    """'G n params, D m' (or 'no D') for the summary line."""
    g_params = generator_lib.count_trainable_parameters(generator)
    if discriminator is None:
        return f"G {g_params:,} params, no D"
    return (f"G {g_params:,} params, D "
            f"{generator_lib.count_trainable_parameters(discriminator):,}")
