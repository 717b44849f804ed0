"""The PyTorch port of BigGAN-deep (huggingface/pytorch-pretrained-BigGAN)
into `ppcd_tf.models.biggan_deep.DeepGenerator`.

The port ships a directory with `config.json` (its `BigGANConfig`) and
`pytorch_model.bin` (`torch.save` of the `BigGAN` module's state dict; read
here without torch, `torch_files.read_torch_state_dict`). Its keys, and where
each goes in our channels-last Keras model:

  embeddings.weight [E, classes]         -> embedding/embeddings (transposed;
                                            the port multiplies a one-hot)
  generator.gen_z.{weight_orig,bias,weight_v}
                                         -> linear/{kernel,bias,sn_u}
      (its output units are already in [4, 4, C] order: the port views
      them so and permutes to NCHW itself)
  generator.layers.{j}  GenBlock (j counts the attention module too):
      bn_{k}.running_{means,vars} [n, C] -> block{i}/stats{k}/{means,variances}
      bn_{k}.{scale,offset}.{weight_orig,weight_v}
                                         -> block{i}/bn{k}/{gain,bias}
      conv_{k}.{weight_orig,bias,weight_v} -> block{i}/conv{k}
  generator.layers.{p}  SelfAttn: snconv1x1_{theta,phi,g,o_conv}, gamma
                                         -> attention{p}/{theta,phi,g,o}, gamma
  generator.bn.{running_means,running_vars,weight,bias}
                                         -> output_stats, output_bn/{gamma,beta}
  generator.conv_to_rgb.*                -> conv_to_rgb

Layouts: conv weights OIHW -> HWIO, linear weights [out, in] -> [in, out].

Spectral norm: the port's `torch.nn.utils.spectral_norm` divides by
sigma = u . (W v) with its stored u and v, without a power iteration at
inference; ours runs one iteration from a stored u: v' = normalize(W^T u),
sigma = |W v'|. The port's u is normalize(W v), so both give |W v| when our u
solves W^T u = v (least squares in float64; v lies in the range of W^T, as
the port's converter made it from a power iteration). The port's `weight_u`
is therefore not read.

BN statistics: every BN has 51 rows of per-truncation statistics, read by the
port's rule (`ppcd_tf.models.truncation`); our standing statistics (used
when the generator is called without a truncation, and by training) are set
to the row of truncation 1.0.
"""

import json
import os

import numpy as np

from ppcd_tf import errors
from ppcd_tf.importing import biggan_pytorch
from ppcd_tf.importing import torch_files

WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
# Fields of the port's config.json this importer reads, with their types.
CONFIG_FIELDS = {"output_dim": int, "z_dim": int, "class_embed_dim": int,
                 "channel_width": int, "num_classes": int, "layers": list,
                 "attention_layer_position": int, "eps": float,
                 "n_stats": int}
SN_SUFFIXES = ("weight_orig", "weight_u", "weight_v")


def read_config(weights_dir):
    """The port's config.json as a dict of CONFIG_FIELDS.

    Raises MissingInputError (no file) or BadInputError (a field missing,
    mistyped, or a layout ppcd_tf has no configuration for).
    """
    from ppcd_tf.models import biggan_deep  # deferred: imports TensorFlow
    path = os.path.join(weights_dir, CONFIG_NAME)
    if not os.path.isfile(path):
        raise errors.MissingInputError(
            f"{path} not found: --weights_dir must hold the port's "
            f"{CONFIG_NAME} and {WEIGHTS_NAME}.")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as error:
        raise errors.DamagedInputError(
            f"{path} is not readable JSON ({error}).") from error
    for name, kind in CONFIG_FIELDS.items():
        value = config.get(name) if isinstance(config, dict) else None
        if not isinstance(value, (int, float) if kind is float else kind) \
                or isinstance(value, bool):
            raise errors.BadInputError(
                f"{path}: field {name!r} must be a {kind.__name__}, got "
                f"{value!r}.")
    layers = tuple(tuple(layer) for layer in config["layers"])
    expected = biggan_deep.DEEP_LAYERS.get(config["output_dim"])
    if layers != expected:
        raise errors.BadInputError(
            f"{path}: the layers {config['layers']} are not BigGAN-deep's "
            f"released {config['output_dim']}x{config['output_dim']} layout "
            f"(resolutions with one: 128, 256, 512).")
    if config["attention_layer_position"] != biggan_deep.ATTENTION_POSITION[
            config["output_dim"]]:
        raise errors.BadInputError(
            f"{path}: attention_layer_position "
            f"{config['attention_layer_position']} differs from the released "
            "models' (before the 64x64 block).")
    if config["class_embed_dim"] != config["z_dim"]:
        raise errors.BadInputError(
            f"{path}: the port needs class_embed_dim == z_dim, got "
            f"{config['class_embed_dim']} and {config['z_dim']}.")
    return config


def build_generator(config):
    """An unweighted DeepGenerator of the port's configuration (with its
    per-truncation tables), every weight created."""
    from ppcd_tf.models import biggan_deep  # deferred: imports TensorFlow
    generator = biggan_deep.DeepGenerator(
        resolution=config["output_dim"], ch=config["channel_width"],
        num_classes=config["num_classes"], dim_z=config["z_dim"],
        embed_dim=config["class_embed_dim"], image_channels=3,
        bn_epsilon=config["eps"], sn_eps=config["eps"],
        truncation_rows=config["n_stats"])
    generator.build()
    return generator


def sn_vector(weight, v):
    """Our stored u [1, out] for the port's W (any [out, ...] shape) and v:
    the least-squares solution of W^T u = v (see the module docstring)."""
    matrix = np.asarray(weight, np.float64).reshape(weight.shape[0], -1)
    u, *_ = np.linalg.lstsq(matrix.T, np.asarray(v, np.float64), rcond=None)
    norm = np.linalg.norm(u)
    return (u / norm if norm > 0 else u)[None, :].astype(np.float32)


def _sn_mappings(layer, prefix, state):
    """Mappings of one spectrally normalised layer (conv or dense): kernel,
    bias, u."""
    Mapping = biggan_pytorch.Mapping
    weight_key = prefix + ".weight_orig"
    kernel_shape = tuple(layer.kernel.shape)
    convert = (biggan_pytorch.oihw_to_hwio if len(kernel_shape) == 4
               else biggan_pytorch.transposed)
    source_shape = biggan_pytorch.source_shape_of(kernel_shape, convert)
    fan_in = int(np.prod(source_shape[1:]))

    def solve_u(v):
        return sn_vector(np.asarray(state[weight_key], np.float64), v)

    mappings = [Mapping(layer.kernel, weight_key, convert, source_shape),
                Mapping(layer.sn_u, prefix + ".weight_v", solve_u,
                        (fan_in,))]
    if getattr(layer, "use_bias", False):
        mappings.append(Mapping(layer.bias, prefix + ".bias",
                                biggan_pytorch.unchanged,
                                (source_shape[0],)))
    return mappings


def _last_row(array):
    return array[-1]


def table_mappings(table, bn_variables, means_key, variances_key):
    """Per-truncation tables [n, C] from the sources' `means_key` and
    `variances_key`, and the standing statistics (the truncation-1.0 row,
    the last) of `bn_variables` (moving mean, moving variance)."""
    Mapping = biggan_pytorch.Mapping
    same = biggan_pytorch.unchanged
    shape = tuple(table.means.shape)
    mean_var, variance_var = bn_variables
    return [Mapping(table.means, means_key, same, shape),
            Mapping(table.variances, variances_key, same, shape),
            Mapping(mean_var, means_key, _last_row, shape),
            Mapping(variance_var, variances_key, _last_row, shape)]


def _table_mappings(table, bn_variables, prefix):
    """`table_mappings` of the port's BN at `prefix`."""
    return table_mappings(table, bn_variables, prefix + ".running_means",
                          prefix + ".running_vars")


def plan(generator, state):
    """[biggan_pytorch.Mapping] of every variable of `generator` (built by
    `build_generator`) from the port's state dict `state`."""
    Mapping = biggan_pytorch.Mapping
    mappings = [Mapping(generator.embedding.embeddings, "embeddings.weight",
                        biggan_pytorch.transposed,
                        tuple(generator.embedding.embeddings.shape)[::-1])]
    mappings += _sn_mappings(generator.linear, "generator.gen_z", state)
    index = 0
    for block_index, block in enumerate(generator.blocks):
        attention = generator.attentions.get(block_index)
        if attention is not None:
            prefix = f"generator.layers.{index}"
            for ours, theirs in (("theta", "theta"), ("phi", "phi"),
                                 ("g", "g"), ("o", "o_conv")):
                mappings += _sn_mappings(getattr(attention, ours),
                                         f"{prefix}.snconv1x1_{theirs}", state)
            mappings.append(Mapping(attention.gamma, prefix + ".gamma",
                                    biggan_pytorch.as_scalar,
                                    (1,)))
            index += 1
        prefix = f"generator.layers.{index}"
        for k in range(4):
            bn = block.bns[k]
            mappings += _table_mappings(
                block.tables[k], (bn.bn.moving_mean, bn.bn.moving_variance),
                f"{prefix}.bn_{k}")
            mappings += _sn_mappings(bn.gain, f"{prefix}.bn_{k}.scale", state)
            mappings += _sn_mappings(bn.bias, f"{prefix}.bn_{k}.offset", state)
            mappings += _sn_mappings(block.convs[k], f"{prefix}.conv_{k}",
                                     state)
        index += 1
    output_bn = generator.output_bn
    mappings += _table_mappings(
        generator.output_stats,
        (output_bn.moving_mean, output_bn.moving_variance), "generator.bn")
    channels = (int(output_bn.gamma.shape[0]),)
    same = biggan_pytorch.unchanged
    mappings += [Mapping(output_bn.gamma, "generator.bn.weight", same,
                         channels),
                 Mapping(output_bn.beta, "generator.bn.bias", same,
                         channels)]
    mappings += _sn_mappings(generator.conv_to_rgb,
                             "generator.conv_to_rgb", state)
    return mappings


def import_generator(weights_dir):
    """(DeepGenerator with the port's weights, the port's config dict).

    Raises MissingInputError (no config or weights), DamagedInputError (an
    unreadable file), CheckpointMismatchError (keys or shapes that do not
    fit the configuration).
    """
    config = read_config(weights_dir)
    path = os.path.join(weights_dir, WEIGHTS_NAME)
    if not os.path.isfile(path):
        raise errors.MissingInputError(
            f"{path} not found: --weights_dir must hold the port's "
            f"{WEIGHTS_NAME} next to {CONFIG_NAME}.")
    state = torch_files.read_torch_state_dict(path)
    generator = build_generator(config)
    mappings = plan(generator, state)
    checked = {key: value for key, value in state.items()
               if not key.endswith(".weight_u")}
    biggan_pytorch.check(
        mappings, checked, path,
        f"The weights do not fit {os.path.join(weights_dir, CONFIG_NAME)}: "
        "use the config.json that was released with them.")
    biggan_pytorch.assign(mappings, state)
    return generator, config
