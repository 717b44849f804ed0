"""TF-Hub BigGAN-deep generators (`biggan-deep-128/256/512`, TF1 hub
modules) into `ppcd_tf.models.biggan_deep.DeepGenerator`.

An unpacked module holds `saved_model.pb` (its graph) and
`variables/variables.{index,data-*}` (a TF1 checkpoint, read with
`tf.train.load_checkpoint`; no tensorflow_hub). The names and layouts below
are those the PyTorch port's converter (huggingface/pytorch-pretrained-BigGAN,
`convert_tf_to_pytorch.py`) reads; the port's weights are these modules'
weights, so both importers build the same generator:

  linear/w [classes, E]                       -> embedding/embeddings
  Generator/GenZ/G_linear/{w,b,u0}            -> linear/{kernel,bias,sn_u}
      (w [z + E, 4*4*16ch], units in [4, 4, C] order, as ours)
  Generator/GBlock{,_1,...}/conv0..conv3/{w,b,u0}
                                              -> block{i}/conv{k}
  Generator/GBlock_i/BatchNorm{,_1,_2,_3}/scale|offset/{w,u0}
                                              -> block{i}/bn{k}/gain|bias
      (w [z + E, C]: the conditioning vector is [z, class embedding], as
      the port's and ours)
  Generator/attention/theta|phi|g|o_conv/{w,u0}, gamma
                                              -> attention{p}/theta|phi|g|o
  Generator/BatchNorm/scale|offset            -> output_bn/gamma|beta
  Generator/conv_to_rgb/{w,b,u0}              -> conv_to_rgb

Weights (`w`, `b`, `gamma`, `scale`, `offset`) are read from their EMA
copies (`.../ema_0.9999`) unless `ema=False`. Kernels are HWIO and dense
kernels [in, out] in the module as in ours: no transposes. `u0` (the power
iteration's stored vector, `out` entries) is our `sn_u` as it is: one
iteration from it is what the port's converter ran to make its `u` and `v`.

BN statistics are not variables of the module: its graph holds them as
51-row tables per BN, `stack_N` tensors of constants (N = 10i + 1, 10i + 3,
10i + 6, 10i + 8 for i = 0, 1, ...: means, variances, means, variances, in
the order of the blocks' BNs, then the final BN), which the port's converter
evaluates the same way. They are evaluated here from `saved_model.pb`
(only the subgraph of those tensors). Rows are read at a truncation by the
port's rule (`ppcd_tf.models.truncation`): the module's own rule between
rows is in its graph, which was not available to check here; at multiples
of 0.02 both read one row, and the port's authors converted these modules'
weights to be used with the port's rule.
"""

import itertools
import os

import numpy as np

from ppcd_tf import errors
from ppcd_tf.importing import biggan_deep_pytorch
from ppcd_tf.importing import biggan_pytorch
from ppcd_tf.importing import tfhub_biggan

GRAPH_NAME = "saved_model.pb"
# Resolutions of the released modules.
RELEASED_RESOLUTIONS = (128, 256, 512)
EMA_SUFFIX = "/ema_0.9999"
# The released modules' epsilon of BN and of SN's vector normalisation
# (not stored in the module; the port's configurations).
RELEASED_EPS = 1e-4
# Offsets, within each ten, of the statistics tables' `stack_N` names.
STACK_OFFSETS = (1, 3, 6, 8)
# The scope a module's graph gets when applied (names may carry it).
APPLY_SCOPE = "module_apply_default/"
_ATTENTION = (("theta", "theta"), ("phi", "phi"), ("g", "g"),
              ("o", "o_conv"))
_BLOCK = "Generator/GBlock"


# No readable module where one was given (the TF-Hub importers' one error).
ModuleError = tfhub_biggan.ModuleError


def stack_names():
    """The statistics tables' tensor names in the converter's order
    (endless: read until the first that the graph lacks)."""
    for i in itertools.count():
        for offset in STACK_OFFSETS:
            yield f"stack_{10 * i + offset}"


def read_statistics_tables(module_dir):
    """[(means [n, C], variances [n, C])] of every BN, in the blocks' order
    and then the final BN's, evaluated from the module's graph."""
    import tensorflow as tf  # deferred: the command answers flags first
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(module_dir, GRAPH_NAME)
    if not os.path.isfile(path):
        raise ModuleError(
            f"{path} not found: an unpacked TF-Hub module holds its graph "
            f"({GRAPH_NAME}) next to variables/; unpack the whole .tar.gz "
            "(e.g. https://tfhub.dev/deepmind/biggan-deep-128/1?tf-hub-"
            "format=compressed) into --module_dir.")
    saved = saved_model_pb2.SavedModel()
    try:
        with open(path, "rb") as f:
            saved.ParseFromString(f.read())
    except Exception as error:  # protobuf's DecodeError and OSError
        raise errors.DamagedInputError(
            f"{path} is not a readable SavedModel graph ({error}).") from error
    if not saved.meta_graphs:
        raise errors.DamagedInputError(f"{path} holds no graph.")
    graph_def = saved.meta_graphs[0].graph_def
    nodes = {node.name[len(APPLY_SCOPE):] if node.name.startswith(
        APPLY_SCOPE) else node.name: node.name for node in graph_def.node}
    found = list(itertools.takewhile(lambda name: name in nodes,
                                     stack_names()))
    if not found or len(found) % 2:
        raise errors.BadInputError(
            f"{path}: {len(found)} statistics tables (stack_N) found: not a "
            "BigGAN-deep module's graph (it has two per batch norm).")
    sub_graph = tf.compat.v1.graph_util.extract_sub_graph(
        graph_def, [nodes[name] for name in found])
    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(sub_graph, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            values = session.run([nodes[name] + ":0" for name in found])
    arrays = [np.asarray(value, np.float32) for value in values]
    return list(zip(arrays[0::2], arrays[1::2]))


def module_config(variables, tables):
    """The port's config fields (`biggan_deep_pytorch.CONFIG_FIELDS`) of a
    module, from its variables' shapes and its tables."""
    from ppcd_tf.models import biggan_deep  # deferred: imports TensorFlow
    blocks = len({name.split("/")[1] for name in variables
                  if name.startswith(_BLOCK)})
    resolutions = [r for r, layout in biggan_deep.DEEP_LAYERS.items()
                   if len(layout) == blocks
                   and r in RELEASED_RESOLUTIONS]
    if not resolutions:
        raise errors.BadInputError(
            f"The module has {blocks} GBlocks: not a released BigGAN-deep "
            "layout (128x128: 10, 256x256: 12, 512x512: 14).")
    classes, embed_dim = _shape(variables, "linear/w")
    cond_dim, units = _shape(variables, "Generator/GenZ/G_linear/w")
    bottom = biggan_deep.BOTTOM_WIDTH
    return {"output_dim": resolutions[0], "z_dim": cond_dim - embed_dim,
            "class_embed_dim": embed_dim,
            "channel_width": units // (bottom * bottom * 16),
            "num_classes": classes,
            "layers": [list(layer)
                       for layer in biggan_deep.DEEP_LAYERS[resolutions[0]]],
            "attention_layer_position":
                biggan_deep.ATTENTION_POSITION[resolutions[0]],
            "eps": RELEASED_EPS, "n_stats": int(tables[0][0].shape[0])}


def _shape(variables, name):
    """The shape of `name` or of its EMA copy."""
    for key in (name + EMA_SUFFIX, name):
        if key in variables:
            return tuple(np.shape(variables[key]))
    raise ModuleError(f"The module has no variable {name!r}: not a "
                      "BigGAN-deep generator module.")


def _block_scope(index):
    return _BLOCK + (f"_{index}" if index else "")


def _bn_scope(block_index, k):
    return f"{_block_scope(block_index)}/BatchNorm" + (f"_{k}" if k else "")


def _sn_mappings(layer, scope, suffix):
    """Kernel, stored vector and bias of one SN layer at `scope`."""
    Mapping = biggan_pytorch.Mapping
    same = biggan_pytorch.unchanged
    kernel_shape = tuple(layer.kernel.shape)
    mappings = [
        Mapping(layer.kernel, f"{scope}/w{suffix}", same, kernel_shape),
        Mapping(layer.sn_u, f"{scope}/u0", lambda u: np.reshape(u, (1, -1)),
                (kernel_shape[-1],))]
    if getattr(layer, "use_bias", False):
        mappings.append(Mapping(layer.bias, f"{scope}/b{suffix}", same,
                                (kernel_shape[-1],)))
    return mappings


def plan(generator, ema=True):
    """[biggan_pytorch.Mapping] of every variable of `generator` (built by
    `biggan_deep_pytorch.build_generator`) from the module's names; the
    statistics tables are keyed by their `stack_N` names."""
    Mapping = biggan_pytorch.Mapping
    same = biggan_pytorch.unchanged
    suffix = EMA_SUFFIX if ema else ""
    stacks = stack_names()
    mappings = [Mapping(generator.embedding.embeddings, "linear/w" + suffix,
                        same, tuple(generator.embedding.embeddings.shape))]
    mappings += _sn_mappings(generator.linear, "Generator/GenZ/G_linear",
                             suffix)
    for index, block in enumerate(generator.blocks):
        attention = generator.attentions.get(index)
        if attention is not None:
            for ours, theirs in _ATTENTION:
                mappings += _sn_mappings(getattr(attention, ours),
                                         f"Generator/attention/{theirs}",
                                         suffix)
            mappings.append(Mapping(attention.gamma,
                                    "Generator/attention/gamma" + suffix,
                                    biggan_pytorch.as_scalar, (1,)))
        for k in range(4):
            bn = block.bns[k]
            mappings += biggan_deep_pytorch.table_mappings(
                block.tables[k], (bn.bn.moving_mean, bn.bn.moving_variance),
                next(stacks), next(stacks))
            mappings += _sn_mappings(bn.gain, f"{_bn_scope(index, k)}/scale",
                                     suffix)
            mappings += _sn_mappings(bn.bias,
                                     f"{_bn_scope(index, k)}/offset", suffix)
            mappings += _sn_mappings(block.convs[k],
                                     f"{_block_scope(index)}/conv{k}", suffix)
    output_bn = generator.output_bn
    mappings += biggan_deep_pytorch.table_mappings(
        generator.output_stats,
        (output_bn.moving_mean, output_bn.moving_variance), next(stacks),
        next(stacks))
    channels = (int(output_bn.gamma.shape[0]),)
    mappings += [Mapping(output_bn.gamma, "Generator/BatchNorm/scale"
                         + suffix, same, channels),
                 Mapping(output_bn.beta, "Generator/BatchNorm/offset"
                         + suffix, same, channels)]
    mappings += _sn_mappings(generator.conv_to_rgb, "Generator/conv_to_rgb",
                             suffix)
    return mappings


def _source_state(variables, tables):
    """{name: ndarray} of the module as `plan` keys it: the variables
    (`u0` and the attention's gamma flattened: [out] and [1], whichever
    shape the module gives them) and the tables under their stack names."""
    state = {name: (np.reshape(value, -1) if name.endswith("/u0")
                    or name.startswith("Generator/attention/gamma")
                    else np.asarray(value))
             for name, value in variables.items()}
    names = stack_names()
    for means, variances in tables:
        state[next(names)] = means
        state[next(names)] = variances
    return state


def import_generator(module_dir, ema=True):
    """(DeepGenerator with the module's weights and statistics, the port's
    config fields of it).

    Raises ModuleError (no module, or not a BigGAN-deep one),
    DamagedInputError (an unreadable graph), BadInputError (a layout that
    is not a released one), CheckpointMismatchError (names or shapes that
    do not fit).
    """
    variables = tfhub_biggan.read_module_variables(module_dir)
    tables = read_statistics_tables(module_dir)
    config = module_config(variables, tables)
    generator = biggan_deep_pytorch.build_generator(config)
    mappings = plan(generator, ema)
    state = _source_state(variables, tables)
    used = {m.key for m in mappings}
    # The raw weights beside their EMA copies (or the reverse) and the
    # optimiser's slots are not read.
    checked = {key: value for key, value in state.items() if key in used
               or not _is_unread(key, ema)}
    biggan_pytorch.check(
        mappings, checked, module_dir,
        "The module does not fit the BigGAN-deep layout its variables "
        f"imply ({config['output_dim']}x{config['output_dim']}, ch "
        f"{config['channel_width']})" + (
            "; without EMA copies (ema_0.9999) read its raw weights with "
            "--no_ema" if ema else "; --no_ema reads raw weights, which "
            "the released modules do not hold: leave it out") + ".")
    biggan_pytorch.assign(mappings, state)
    return generator, config


def _is_unread(key, ema):
    """Variables of a module that no mapping reads by design."""
    if ema:
        return not key.endswith(EMA_SUFFIX) and not key.endswith("/u0") \
            and not key.startswith("stack_")
    return "/ema_" in key
