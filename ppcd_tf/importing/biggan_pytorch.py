"""BigGAN-PyTorch checkpoints (G, G_ema, D state dicts) into our models.

BigGAN-PyTorch (ajbrock/BigGAN-PyTorch, `utils.save_weights`) writes
`G.pth`, `G_ema.pth` and `D.pth`: `torch.save(model.state_dict())`. Their
keys, and where each goes in our channels-last Keras models:

  G  shared.weight                          -> shared/embeddings
     linear.{weight,bias,u0}                -> linear/{kernel,bias,sn_u}
         (output units reordered: PyTorch views them as [C, bw, bw], we as
         [bw, bw, C]; u0 lives in that output space and is reordered too)
     blocks.{i}.0.conv{1,2,_sc}.{weight,bias,u0}
                                            -> block{i+1}/conv*/{kernel,...}
     blocks.{i}.0.bn{1,2}.{gain,bias}.{weight,u0}
                                            -> block{i+1}/bn*/{gain,bias}/...
         (the conditional gain is applied as 1 + g in both)
     blocks.{i}.0.bn{1,2}.stored_{mean,var} -> block{i+1}/bn*/bn/moving_*
     blocks.{i}.1.{theta,phi,g,o}.{weight,u0}, blocks.{i}.1.gamma
                                            -> attention{i+1}/...
     output_layer.0.{gain,bias,stored_mean,stored_var}
                                            -> output_bn/{gamma,beta,moving_*}
     output_layer.2.{weight,bias,u0}        -> output_conv/...
  D  blocks.{i}.0.conv{1,2,_sc}.*, blocks.{i}.1.* (attention),
     linear.{weight,bias,u0}, embed.{weight,u0}

Layouts: conv weights OIHW -> HWIO; linear weights [out, in] -> [in, out];
embeddings as they are. The spectral-norm vectors `u0` are carried (our
`sn_u`, [1, fan_out]), so sigma at inference is the source's; the recorded
singular values `sv*` and the BN `accumulation_counter` are not needed.
Models with several singular vectors (`num_svs` > 1) keep the first only.
"""

import dataclasses
import re

import numpy as np

from ppcd_tf import errors
from ppcd_tf.models import arch

# Entries of the files that inference does not use.
IGNORED_KEY = re.compile(
    r"(^|\.)(sv\d+|u[1-9]\d*|accumulation_counter|num_batches_tracked)$")

# Generator weight files of a BigGAN-PyTorch run (by --generator_weights).
GENERATOR_FILES = {"G_ema": "G_ema.pth", "G": "G.pth"}

# Architecture presets of BigGAN-PyTorch's launch scripts.
PRESETS = {
    # launch_BigGAN_bs256x8.sh: G_ch = D_ch = 96, attention at 64,
    # dim_z 120 hierarchical, shared_dim 128, SN eps 1e-6, BN eps 1e-5.
    "imagenet128_ch96": dict(resolution=128, g_ch=96, d_ch=96,
                             num_classes=1000, attention="64", dim_z=120,
                             shared_dim=128, sn_eps=1e-6, bn_epsilon=1e-5,
                             image_channels=3, dataset="imagenet2012"),
    # TF-Hub biggan-128/2 (its generator; BigGAN-PyTorch TFHub/converter.py
    # get_config(128)): as above with SN and BN eps 1e-4.
    "tfhub_biggan128": dict(resolution=128, g_ch=96, d_ch=96,
                            num_classes=1000, attention="64", dim_z=120,
                            shared_dim=128, sn_eps=1e-4, bn_epsilon=1e-4,
                            image_channels=3, dataset="imagenet2012"),
}


class CheckpointMismatchError(errors.BadInputError):
    """Keys or shapes of a checkpoint differ from the architecture's."""


@dataclasses.dataclass
class Mapping:
    """Where one of our variables comes from."""
    variable: object   # a Keras variable of our model
    key: str           # the state-dict key
    convert: object    # fn(ndarray) -> ndarray in our layout
    source_shape: tuple  # the shape the state dict must hold


def oihw_to_hwio(array):
    return np.transpose(array, (2, 3, 1, 0))


def transposed(array):
    return np.transpose(array)


def unchanged(array):
    return array


def as_scalar(array):
    return np.reshape(array, ())


def _linear_unit_order(bottom_width, channels):
    """Permutation p: our linear unit j is the source's unit p[j]. The
    source's output index is c*bw*bw + h*bw + w; ours (h*bw + w)*C + c."""
    source = np.arange(channels * bottom_width * bottom_width).reshape(
        channels, bottom_width, bottom_width)
    return np.transpose(source, (1, 2, 0)).reshape(-1)


def _block_prefix(head):
    match = re.fullmatch(r"(block|attention)(\d+)", head)
    if not match:
        return None
    index = int(match.group(2)) - 1
    return f"blocks.{index}.{0 if match.group(1) == 'block' else 1}"


_LEAF_NAMES = {"kernel": "weight", "embeddings": "weight", "sn_u": "u0",
               "moving_mean": "stored_mean", "moving_variance": "stored_var",
               "bias": "bias", "gamma": "gamma", "beta": "bias"}
_HEADS = {"output_bn": "output_layer.0", "output_conv": "output_layer.2"}


def source_key(path):
    """State-dict key of our variable `path` ('<model>/<layer>/.../<leaf>')."""
    parts = path.split("/")[1:]
    head, middle, leaf = parts[0], parts[1:-1], parts[-1]
    prefix = _block_prefix(head) or _HEADS.get(head, head)
    # Our conditional BN wraps a plain BN layer named `bn`; PyTorch's ccbn
    # holds the statistics itself.
    middle = [name for name in middle if name != "bn"]
    name = _LEAF_NAMES.get(leaf, leaf)
    if head == "output_bn" and leaf == "gamma":
        name = "gain"
    return ".".join([prefix] + middle + [name])


def source_shape_of(our_shape, convert):
    """The shape the state dict holds for one of ours converted by
    `convert` (oihw_to_hwio, transposed, as_scalar or unchanged)."""
    if convert is oihw_to_hwio:
        h, w, i, o = our_shape
        return (o, i, h, w)
    if convert is transposed:
        return tuple(reversed(our_shape))
    if convert is as_scalar:
        return ()
    return tuple(our_shape)


def plan(model, linear_units=None):
    """[Mapping] of every variable of `model` (our Generator or
    Discriminator, built). `linear_units`: (bottom_width, channels) of a
    generator's first linear, whose output units are reordered."""
    mappings = []
    for variable in model.weights:
        path = variable.path
        leaf = path.rsplit("/", 1)[-1]
        shape = tuple(variable.shape)
        convert = unchanged
        if leaf == "kernel":
            convert = oihw_to_hwio if len(shape) == 4 else transposed
        elif leaf == "gamma" and shape == ():
            convert = as_scalar
        key = source_key(path)
        source_shape = source_shape_of(shape, convert)
        if linear_units and key.startswith("linear."):
            order = _linear_unit_order(*linear_units)
            convert = _reorder_units(convert, order)
        mappings.append(Mapping(variable, key, convert, source_shape))
    return mappings


def _reorder_units(convert, order):
    def reorder(array):
        return convert(array)[..., order]
    return reorder


def check(mappings, state, what, hint):
    """CheckpointMismatchError listing missing, unexpected and mis-shaped
    keys (expected and found shapes) unless `state` fits `mappings`."""
    expected = {m.key: m.source_shape for m in mappings}
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state
                        if k not in expected and not IGNORED_KEY.search(k))
    # Weights first (they say most about the widths), in the model's order.
    misshaped = sorted(
        ((k, expected[k], tuple(state[k].shape)) for k in expected
         if k in state and tuple(state[k].shape) != expected[k]
         and not (expected[k] == () and state[k].size == 1)),
        key=lambda item: not item[0].endswith(".weight"))
    if not (missing or unexpected or misshaped):
        return
    lines = [f"{what} does not fit the architecture given:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): "
                     + ", ".join(missing[:12])
                     + (" ..." if len(missing) > 12 else ""))
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): "
                     + ", ".join(unexpected[:12])
                     + (" ..." if len(unexpected) > 12 else ""))
    for key, want, found in misshaped[:12]:
        lines.append(f"  {key}: expected shape {want}, found {found}")
    if len(misshaped) > 12:
        lines.append(f"  ... and {len(misshaped) - 12} more mis-shaped keys")
    lines.append(hint)
    raise CheckpointMismatchError("\n".join(lines))


def assign(mappings, state):
    """Writes every mapped array of `state` into our variables."""
    for mapping in mappings:
        value = mapping.convert(np.asarray(state[mapping.key],
                                           dtype=np.float32))
        mapping.variable.assign(value.astype(mapping.variable.dtype))


def _first_multiplier(resolution):
    try:
        return arch.generator_channels(resolution, 1, "").stream[0]
    except (errors.BadInputError, TypeError):
        return None


def _last_d_multiplier(resolution):
    try:
        return arch.discriminator_channels(resolution, 1, "").out[-1]
    except (errors.BadInputError, TypeError, AttributeError):
        return None


def architecture_hint(g_state=None, d_state=None, resolution=None):
    """What the files say about the architecture, as flags to check
    (`resolution`: the one given, to turn widths into a G_ch)."""
    found = []
    if g_state is not None:
        if "shared.weight" in g_state:
            classes, shared = g_state["shared.weight"].shape
            found.append(f"--num_classes {classes} --shared_dim {shared}")
        first = g_state.get("blocks.0.0.conv1.weight")
        if first is not None:
            text = f"G's first block has {first.shape[1]} input channels"
            multiplier = _first_multiplier(resolution)
            if multiplier and first.shape[1] % multiplier == 0:
                text += (f" (--g_ch {first.shape[1] // multiplier} at "
                         f"resolution {resolution})")
            found.append(text)
        blocks = {int(k.split(".")[1]) for k in g_state
                  if k.startswith("blocks.")}
        if blocks:
            found.append(f"G has {max(blocks) + 1} blocks")
        attention = sorted({int(k.split(".")[1]) for k in g_state
                            if re.match(r"blocks\.\d+\.1\.gamma$", k)})
        if attention:
            found.append("G has attention after block(s) "
                         + ", ".join(str(i + 1) for i in attention))
    if d_state is not None and "linear.weight" in d_state:
        width = d_state["linear.weight"].shape[1]
        multiplier = _last_d_multiplier(resolution)
        text = f"D's last block has {width} channels"
        if multiplier and width % multiplier == 0:
            text += f" (--d_ch {width // multiplier})"
        found.append(text)
    if d_state is not None and "embed.weight" in d_state:
        classes, width = d_state["embed.weight"].shape
        found.append(f"D's class embedding is {classes} x {width}")
    return ("Check --preset or --resolution, --g_ch, --d_ch, --attention, "
            "--num_classes, --dim_z, --shared_dim. The files say: "
            + ("; ".join(found) if found else "nothing recognisable") + ".")
