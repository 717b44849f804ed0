"""TF-Hub BigGAN generators (`biggan-128/2`-style TF1 hub modules).

An unpacked module holds `variables/variables.{index,data-*}`, a TF1
checkpoint read here with `tf.train.load_checkpoint` (no tensorflow_hub).
Its generator is the original BigGAN, which differs from BigGAN-PyTorch's
in names, layouts and one ordering; this module maps its variables onto
BigGAN-PyTorch's state-dict keys and layouts (as BigGAN-PyTorch's own
`TFHub/converter.py` does), and `biggan_pytorch` takes it from there:

  linear/w [classes, 128]                    -> shared.weight
  Generator/G_Z/G_linear/{w,b,u0}            -> linear.*  (w [z, bw*bw*C],
      units in [bw, bw, C] order -> [C*bw*bw, z] in [C, bw, bw] order)
  Generator/GBlock{,_1,...}/conv0|conv1|conv_sc/{w,b,u0}
                                             -> blocks.i.0.conv1|conv2|conv_sc
  Generator/GBlock_i/HyperBN{,_1}/gamma|beta/{w,u0}
                                             -> blocks.i.0.bn1|bn2.gain|bias
      (w [z + classes, C]: the module concatenates [z chunk, class
      embedding], BigGAN-PyTorch [class embedding, z chunk]: rows reordered)
  Generator/GBlock_i/CrossReplicaBN{,_1}/accumulated_mean|var
                                             -> blocks.i.0.bn1|bn2.stored_*
  Generator/attention/theta|phi|g|o_conv/{w,u0}, gamma
                                             -> blocks.k.1.theta|phi|g|o
  Generator/ScaledCrossReplicaBN/gamma|beta, ScaledCrossReplicaBNbn/
      accumulated_mean|var                   -> output_layer.0.*
  Generator/conv_2d/{w,b,u0}                 -> output_layer.2.*

Weights (`w`, `b`, `gamma`, `beta`) are read from their EMA copies
(`.../ema_b999900`) unless `ema=False`. The module's standing statistics are
those of truncation 1.0 (BigGAN-PyTorch's converter has the same limit).
Names may carry the `module/` prefix of a graph the module was loaded into.
"""

import os
import re

import numpy as np
import tensorflow as tf

from ppcd_tf import errors

EMA_SUFFIX = "/ema_b999900"
MODULE_PREFIX = "module/"
# Conv names of a GBlock: module -> BigGAN-PyTorch.
_CONVS = {"conv0": "conv1", "conv1": "conv2", "conv_sc": "conv_sc"}
_BNS = {"HyperBN": ("bn1", "CrossReplicaBN"),
        "HyperBN_1": ("bn2", "CrossReplicaBN_1")}
_ATTENTION = {"theta": "theta", "phi": "phi", "g": "g", "o_conv": "o"}


class ModuleError(errors.MissingInputError):
    """No readable TF-Hub module where one was given."""


def read_module_variables(module_dir):
    """{name without 'module/': ndarray} of an unpacked TF1 hub module."""
    prefix = os.path.join(module_dir, "variables", "variables")
    if not tf.io.gfile.exists(prefix + ".index"):
        raise ModuleError(
            f"{module_dir} is not an unpacked TF-Hub module: no "
            "variables/variables.index. Download the module (e.g. "
            "https://tfhub.dev/deepmind/biggan-128/2?tf-hub-format="
            "compressed), unpack the .tar.gz into a directory and give that "
            "directory as --module_dir.")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        raise ModuleError(f"{prefix} cannot be read ({error}).") from error
    variables = {}
    for name in reader.get_variable_to_shape_map():
        short = name[len(MODULE_PREFIX):] if name.startswith(
            MODULE_PREFIX) else name
        variables[short] = reader.get_tensor(name)
    return variables


def _block_dirs(variables):
    """GBlock scopes in block order: GBlock, GBlock_1, ..."""
    indices = set()
    for name in variables:
        match = re.match(r"Generator/GBlock(?:_(\d+))?/", name)
        if match:
            indices.add(int(match.group(1) or 0))
    return ["Generator/GBlock" + (f"_{i}" if i else "")
            for i in sorted(indices)]


class _ModuleVariables:
    """A module's variables read by name: weights with the EMA suffix when
    `ema`, other variables (u0, statistics, biases) as they are."""

    def __init__(self, variables, ema):
        self.variables = variables
        self.ema = ema
        self.suffix = EMA_SUFFIX if ema else ""

    def __contains__(self, name):
        return name in self.variables

    def get(self, name, weight=True):
        full = name + (self.suffix if weight else "")
        if full not in self.variables:
            raise ModuleError(
                f"The module has no variable {full!r}: not a BigGAN "
                "generator module of the expected layout"
                + (" (or it has no EMA weights: pass --no_ema)" if weight
                   and self.ema else "") + ".")
        return np.asarray(self.variables[full])

    def conv(self, scope):
        """{"weight": [out, in, kh, kw], "u0": [1, out]} of a conv scope."""
        return {"weight": np.transpose(self.get(scope + "/w"), (3, 2, 0, 1)),
                "u0": self.get(scope + "/u0", False).reshape(1, -1)}


def to_biggan_pytorch(variables, attention_block, bottom_width, ema=True):
    """BigGAN-PyTorch G state dict ({key: ndarray}) of the module's
    variables. `attention_block`: 0-based index of the block followed by
    the attention layer (from the architecture), or None; `bottom_width`:
    the first linear's spatial size (4 in BigGAN)."""
    module = _ModuleVariables(variables, ema)
    shared = module.get("linear/w")               # [classes, shared_dim]
    state = {"shared.weight": shared}
    state.update(_linear_state(module, bottom_width))
    for index, scope in enumerate(_block_dirs(variables)):
        state.update(_block_state(module, scope, f"blocks.{index}.0",
                                  shared.shape[1]))
    if attention_block is not None:
        prefix = f"blocks.{attention_block}.1"
        for source, target in _ATTENTION.items():
            converted = module.conv(f"Generator/attention/{source}")
            state[f"{prefix}.{target}.weight"] = converted["weight"]
            state[f"{prefix}.{target}.u0"] = converted["u0"]
        state[f"{prefix}.gamma"] = module.get("Generator/attention/gamma")
    state.update(_output_state(module))
    return state


def _linear_state(module, bottom):
    """The first linear, its units reordered from channels-last to
    BigGAN-PyTorch's channels-first [C, bw, bw] view."""
    w = module.get("Generator/G_Z/G_linear/w")    # [z, bw*bw*C]
    b = module.get("Generator/G_Z/G_linear/b")
    u = module.get("Generator/G_Z/G_linear/u0", False).reshape(-1)
    channels = w.shape[1] // (bottom * bottom)

    def channels_first(units):
        return np.moveaxis(units.reshape(units.shape[:-1] + (
            bottom, bottom, channels)), -1, -3).reshape(units.shape)

    return {"linear.weight": channels_first(w).T,
            "linear.bias": channels_first(b),
            "linear.u0": channels_first(u).reshape(1, -1)}


def _block_state(module, scope, prefix, shared_dim):
    """One residual block: its convs and conditional batch norms (gain and
    bias projections with the class rows first, standing statistics)."""
    state = {}
    for source, target in _CONVS.items():
        if f"{scope}/{source}/u0" not in module:
            continue  # a block without a shortcut conv
        converted = module.conv(f"{scope}/{source}")
        state[f"{prefix}.{target}.weight"] = converted["weight"]
        state[f"{prefix}.{target}.bias"] = module.get(f"{scope}/{source}/b")
        state[f"{prefix}.{target}.u0"] = converted["u0"]
    for source, (target, stats) in _BNS.items():
        for which, name in (("gamma", "gain"), ("beta", "bias")):
            weight = module.get(f"{scope}/{source}/{which}/w")  # [z+cls, C]
            z_rows = weight.shape[0] - shared_dim
            reordered = np.concatenate([weight[z_rows:], weight[:z_rows]])
            state[f"{prefix}.{target}.{name}.weight"] = reordered.T
            state[f"{prefix}.{target}.{name}.u0"] = module.get(
                f"{scope}/{source}/{which}/u0", False).reshape(1, -1)
        state[f"{prefix}.{target}.stored_mean"] = module.get(
            f"{scope}/{stats}/accumulated_mean", False)
        state[f"{prefix}.{target}.stored_var"] = module.get(
            f"{scope}/{stats}/accumulated_var", False)
    return state


def _output_state(module):
    """The final batch norm and the output conv."""
    root = "Generator/ScaledCrossReplicaBN"
    out = module.conv("Generator/conv_2d")
    return {
        "output_layer.0.gain": module.get(root + "/gamma"),
        "output_layer.0.bias": module.get(root + "/beta"),
        "output_layer.0.stored_mean": module.get(
            root + "bn/accumulated_mean", False),
        "output_layer.0.stored_var": module.get(
            root + "bn/accumulated_var", False),
        "output_layer.2.weight": out["weight"],
        "output_layer.2.bias": module.get("Generator/conv_2d/b"),
        "output_layer.2.u0": out["u0"],
    }
