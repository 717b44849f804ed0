"""BigGAN-deep from an unpacked TF-Hub module (`--format tfhub_biggan_deep`).

No module is on this machine (and nothing downloads), so the module is
written here from the port's fixture (tests/fixtures/biggan_deep_128_ch4:
the port's own code, random weights) in the module's names and layouts as
the port's converter reads them (`convert_tf_to_pytorch.py`: HWIO kernels,
[in, out] dense kernels, `u0`, `ema_0.9999` copies, the statistics as
`stack_N` constant tables of the graph). The import must then generate the
port's reference images at every truncation.
"""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2

from ppcd_tf import errors
from ppcd_tf.importing import biggan_deep_pytorch
from ppcd_tf.importing import biggan_pytorch
from ppcd_tf.importing import tfhub_biggan_deep
from ppcd_tf.importing import torch_files
from ppcd_tf.runs import run_dir
from tests import biggan_deep_import_test as port_test
from tests import helpers

EMA = tfhub_biggan_deep.EMA_SUFFIX
# The port's fixture has attention before its block 8 (layers.8).
ATTENTION_BLOCK = 8


def _module_variables(state, ema=True):
    """{module name: array} and [(means, variances)] of the port's state
    dict, as a module holds them."""
    suffix = EMA if ema else ""
    variables = {"linear/w" + suffix: state["embeddings.weight"].T}

    def sn(prefix, scope):
        weight = state[prefix + ".weight_orig"]
        variables[f"{scope}/w{suffix}"] = (
            np.transpose(weight, (2, 3, 1, 0)) if weight.ndim == 4
            else weight.T)
        # One power iteration from u0 gives the port's v (its converter).
        variables[f"{scope}/u0"] = biggan_deep_pytorch.sn_vector(
            weight, state[prefix + ".weight_v"])
        if prefix + ".bias" in state:
            variables[f"{scope}/b{suffix}"] = state[prefix + ".bias"]

    sn("generator.gen_z", "Generator/GenZ/G_linear")
    tables, layer = [], 0
    for block in range(10):
        if block == ATTENTION_BLOCK:
            for ours, theirs in (("theta", "theta"), ("phi", "phi"),
                                 ("g", "g"), ("o_conv", "o_conv")):
                sn(f"generator.layers.{layer}.snconv1x1_{ours}",
                   f"Generator/attention/{theirs}")
            variables["Generator/attention/gamma" + suffix] = np.reshape(
                state[f"generator.layers.{layer}.gamma"], ())
            layer += 1
        scope = "Generator/GBlock" + (f"_{block}" if block else "")
        prefix = f"generator.layers.{layer}"
        for k in range(4):
            bn = f"{scope}/BatchNorm" + (f"_{k}" if k else "")
            sn(f"{prefix}.bn_{k}.scale", bn + "/scale")
            sn(f"{prefix}.bn_{k}.offset", bn + "/offset")
            sn(f"{prefix}.conv_{k}", f"{scope}/conv{k}")
            tables.append((state[f"{prefix}.bn_{k}.running_means"],
                           state[f"{prefix}.bn_{k}.running_vars"]))
        layer += 1
    variables["Generator/BatchNorm/scale" + suffix] = state[
        "generator.bn.weight"]
    variables["Generator/BatchNorm/offset" + suffix] = state[
        "generator.bn.bias"]
    tables.append((state["generator.bn.running_means"],
                   state["generator.bn.running_vars"]))
    sn("generator.conv_to_rgb", "Generator/conv_to_rgb")
    return variables, tables


def _graph_with_tables(tables):
    """A GraphDef whose `stack_N` tensors are the tables (rows of
    constants, as the module's graph packs them), with other stacks and an
    input between them, as a real graph has."""
    names = list(itertools.islice(tfhub_biggan_deep.stack_names(),
                                  2 * len(tables)))
    last = int(names[-1].split("_")[1])
    graph = tf.Graph()
    with graph.as_default():
        truncation = tf.compat.v1.placeholder(tf.float32, (), "truncation")
        for number in range(last):
            if f"stack_{number}" not in names:
                tf.stack([truncation, truncation], name=f"stack_{number}")
        arrays = [table for pair in tables for table in pair]
        for name, table in zip(names, arrays):
            tf.stack([tf.constant(row) for row in table], name=name)
    return graph.as_graph_def()


def write_module(directory, ema=True, prefix="module/"):
    """An unpacked BigGAN-deep hub module (saved_model.pb, variables/) of
    the port's fixture; returns its path."""
    state = torch_files.read_torch_state_dict(
        os.path.join(port_test.FIXTURES, biggan_deep_pytorch.WEIGHTS_NAME))
    variables, tables = _module_variables(state, ema)
    os.makedirs(os.path.join(directory, "variables"))
    helpers.write_tf1_checkpoint(
        os.path.join(directory, "variables", "variables"),
        {prefix + name: value for name, value in variables.items()})
    saved = saved_model_pb2.SavedModel(meta_graphs=[
        meta_graph_pb2.MetaGraphDef(graph_def=_graph_with_tables(tables))])
    with open(os.path.join(directory, tfhub_biggan_deep.GRAPH_NAME),
              "wb") as f:
        f.write(saved.SerializeToString())
    return str(directory)


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory):
    return write_module(str(tmp_path_factory.mktemp("hub") / "module"))


def test_module_generates_the_ports_images_at_every_truncation(module_dir):
    generator, config = tfhub_biggan_deep.import_generator(module_dir)
    with open(os.path.join(port_test.FIXTURES,
                           biggan_deep_pytorch.CONFIG_NAME)) as f:
        port_config = json.load(f)
    assert config == {name: port_config[name]
                      for name in biggan_deep_pytorch.CONFIG_FIELDS}
    reference = dict(np.load(os.path.join(port_test.FIXTURES,
                                          "reference.npz")))
    for index, value in enumerate(reference["truncations"]):
        ours = port_test._images(generator, reference,
                                 tf.constant(value, tf.float64))
        difference = np.abs(ours - reference[f"images_{index}"]).max()
        assert difference <= port_test.TOLERANCE, value
    standing = port_test._images(generator, reference, None)
    np.testing.assert_allclose(standing, reference["images_0"],
                               atol=port_test.TOLERANCE)


def test_the_tables_are_read_in_the_converters_order(module_dir):
    tables = tfhub_biggan_deep.read_statistics_tables(module_dir)
    # 10 blocks of 4 batch norms, then the final one; 51 rows each.
    assert len(tables) == 41
    assert {means.shape[0] for means, _ in tables} == {51}
    state = torch_files.read_torch_state_dict(
        os.path.join(port_test.FIXTURES, biggan_deep_pytorch.WEIGHTS_NAME))
    np.testing.assert_array_equal(
        tables[5][1], state["generator.layers.1.bn_1.running_vars"])
    np.testing.assert_array_equal(
        tables[-1][0], state["generator.bn.running_means"])


def test_raw_weights_and_missing_parts_are_named(tmp_path, module_dir):
    # This module holds only the EMA weights: --no_ema names what is absent.
    with pytest.raises(biggan_pytorch.CheckpointMismatchError,
                       match=r"(?s)missing keys.*Generator/BatchNorm/offset,"
                             r".*leave it out"):
        tfhub_biggan_deep.import_generator(module_dir, ema=False)
    raw = write_module(str(tmp_path / "raw"), ema=False, prefix="")
    generator, _ = tfhub_biggan_deep.import_generator(raw, ema=False)
    ema_generator, _ = tfhub_biggan_deep.import_generator(module_dir)
    for ours, theirs in zip(generator.weights, ema_generator.weights):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    os.remove(os.path.join(raw, tfhub_biggan_deep.GRAPH_NAME))
    with pytest.raises(errors.MissingInputError, match="saved_model.pb"):
        tfhub_biggan_deep.import_generator(raw, ema=False)
    with open(os.path.join(raw, tfhub_biggan_deep.GRAPH_NAME), "wb") as f:
        f.write(b"not a graph")
    with pytest.raises(errors.DamagedInputError, match="not a readable"):
        tfhub_biggan_deep.import_generator(raw, ema=False)


@pytest.mark.slow
def test_import_command_writes_a_run_that_samples(tmp_path, module_dir):
    output = str(tmp_path / "teacher")
    result = subprocess.run(
        [sys.executable, "-m", "ppcd_tf.import_teacher", "--format",
         "tfhub_biggan_deep", "--module_dir", module_dir, "--output_dir",
         output], cwd=helpers.REPO_ROOT, env=helpers.python_env(),
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "106,301 params, no D" in result.stdout
    with open(os.path.join(output, "teacher.json")) as f:
        record = json.load(f)
    assert record["format"] == "tfhub_biggan_deep" and record["ema"]
    assert set(record["sources"]) == {"variables.index", "saved_model.pb"}
    restored = run_dir.restore_generator(output)
    reference = dict(np.load(os.path.join(port_test.FIXTURES,
                                          "reference.npz")))
    images = restored.generate(
        tf.constant(reference["z"]),
        tf.constant(reference["labels"].astype(np.int32)),
        truncation=tf.constant(reference["truncations"][1], tf.float64))
    ours = np.transpose(images.numpy(), (0, 3, 1, 2))[
        :, :, ::port_test.STRIDE, ::port_test.STRIDE]
    assert np.abs(ours - reference["images_1"]).max() <= port_test.TOLERANCE
