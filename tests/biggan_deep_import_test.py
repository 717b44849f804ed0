"""BigGAN-deep from the PyTorch port (huggingface/pytorch-pretrained-BigGAN):
the importer against the port's own outputs, and the per-truncation BN
statistics read as the port reads them.

Fixtures: tests/fixtures/biggan_deep_128_ch4, written once by
tools/make_biggan_deep_fixtures.py with torch and the port's code (the
released 128x128 layout at channel width 4, random weights and statistics).
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.exporting import pipeline as export_pipeline
from ppcd_tf.exporting import saved_model
from ppcd_tf.importing import biggan_deep_pytorch
from ppcd_tf.importing import biggan_pytorch
from ppcd_tf.importing import torch_files
from ppcd_tf.models import biggan_deep
from ppcd_tf.models import truncation as truncation_lib
from ppcd_tf.runs import run_dir
from tests import helpers

FIXTURES = os.path.join(helpers.REPO_ROOT, "tests", "fixtures",
                        "biggan_deep_128_ch4")
# Every fourth pixel in each direction (as the fixture stores them).
STRIDE = 4
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def imported():
    return biggan_deep_pytorch.import_generator(FIXTURES)


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(os.path.join(FIXTURES, "reference.npz")))


def _images(generator, reference, truncation):
    """Our images at the fixture's z and labels, NCHW, every STRIDE-th
    pixel (the fixture's layout)."""
    images = generator(tf.constant(reference["z"]),
                       tf.constant(reference["labels"].astype(np.int32)),
                       truncation=truncation).numpy()
    return np.transpose(images, (0, 3, 1, 2))[:, :, ::STRIDE, ::STRIDE]


def test_images_equal_the_ports_at_every_truncation(imported, reference):
    generator, config = imported
    assert config["n_stats"] == 51 and config["output_dim"] == 128
    truncations = reference["truncations"]
    assert len(truncations) == 4
    for index, value in enumerate(truncations):
        ours = _images(generator, reference, tf.constant(value, tf.float64))
        theirs = reference[f"images_{index}"]
        assert ours.shape == theirs.shape == (2, 3, 32, 32)
        assert np.abs(ours - theirs).max() <= TOLERANCE, value
    # The truncations select different statistics: the images differ.
    assert np.abs(reference["images_0"] - reference["images_3"]).max() > 0.05


def test_a_python_float_truncation_is_read_as_the_port_reads_it(
        imported, reference):
    generator, _ = imported
    index = list(reference["truncations"]).index(0.28)
    ours = _images(generator, reference, 0.28)
    assert np.abs(ours - reference[f"images_{index}"]).max() <= TOLERANCE
    # 0.28 / 0.02 = 14.000000000000002 in float64: the port reads row 15,
    # the row of 0.30, and so do we.
    at_030 = _images(generator, reference, 0.3)
    np.testing.assert_allclose(ours, at_030, atol=1e-5)


def test_without_truncation_the_standing_statistics_are_truncation_one(
        imported, reference):
    generator, _ = imported
    standing = _images(generator, reference, None)
    np.testing.assert_allclose(standing, reference["images_0"],
                               atol=TOLERANCE)
    assert reference["truncations"][0] == 1.0


def test_parameters_equal_the_ports_parameters(imported):
    generator, _ = imported
    state = torch_files.read_torch_state_dict(
        os.path.join(FIXTURES, biggan_deep_pytorch.WEIGHTS_NAME))
    # The port's parameters: spectral-norm weights (weight_orig), biases,
    # the class embedding, attention gamma, the final BN's weight and bias.
    port_parameters = sum(
        value.size for key, value in state.items()
        if not key.endswith(("weight_u", "weight_v", "running_means",
                             "running_vars")))
    ours = sum(int(np.prod(v.shape)) for v in generator.trainable_weights)
    assert ours == port_parameters == 106_301


def test_row_rule_weights_the_lower_row_by_the_fraction():
    table = tf.constant(np.arange(51, dtype=np.float32)[:, None]
                        * np.ones((1, 3), np.float32))

    def row(value):
        return float(truncation_lib.row_at(table, value)[0])

    assert row(1.0) == 50.0
    assert row(0.5) == 25.0
    assert row(tf.constant(0.3, tf.float64)) == 15.0
    # Between rows 21 and 22 at a fraction of one half.
    assert row(tf.constant(0.43, tf.float64)) == pytest.approx(21.5)
    # 0.45 / 0.02 = 22.5 exactly in float64: coef 0.5.
    assert row(0.45) == pytest.approx(22.5)
    # At 0.41 (20.499999999999996): 20 * 0.4999... + 21 * 0.5000... ~ 20.5.
    assert row(0.41) == pytest.approx(20.5, abs=1e-5)
    # 0.28 -> 14.000000000000002: almost all of row 15.
    assert row(0.28) == pytest.approx(15.0, abs=1e-5)
    # A float32 0.3 (0.30000001192...) reads almost all of row 16.
    assert row(tf.constant(0.3, tf.float32)) == pytest.approx(16.0, abs=1e-4)


def test_sn_vector_reproduces_the_ports_sigma():
    rng = np.random.default_rng(0)
    for shape in ((6, 4, 3, 3), (24, 5), (3, 40)):
        weight = rng.normal(size=shape)
        matrix = weight.reshape(shape[0], -1)
        u0 = rng.normal(size=shape[0])
        v = matrix.T @ u0
        v /= np.linalg.norm(v)
        u_port = matrix @ v
        sigma_port = float(u_port @ (matrix @ v) / np.linalg.norm(u_port))
        u = biggan_deep_pytorch.sn_vector(weight, v)
        assert u.shape == (1, shape[0])
        v_ours = matrix.T @ u[0]
        v_ours /= np.linalg.norm(v_ours)
        np.testing.assert_allclose(v_ours, v, atol=1e-5)
        sigma_ours = float(np.linalg.norm(matrix @ v_ours))
        assert sigma_ours == pytest.approx(sigma_port, rel=1e-5)


def test_truncation_needs_tables_and_inference():
    generator = biggan_deep.DeepGenerator(resolution=32, ch=8,
                                          num_classes=3, dim_z=4,
                                          embed_dim=4)
    z = tf.zeros((1, 4))
    labels = tf.constant([0])
    with pytest.raises(errors.BadInputError, match="truncation_rows"):
        generator(z, labels, truncation=0.5)
    with_tables = biggan_deep.DeepGenerator(
        resolution=32, ch=8, num_classes=3, dim_z=4, embed_dim=4,
        truncation_rows=51)
    with pytest.raises(errors.BadInputError, match="inference"):
        with_tables(z, labels, training=True, truncation=0.5)
    assert with_tables(z, labels, truncation=0.5).shape == (1, 32, 32, 3)
    # The tables are non-trainable: the trainable count is the plain one's.
    assert (sum(int(np.prod(v.shape)) for v in with_tables.trainable_weights)
            == sum(int(np.prod(v.shape))
                   for v in generator.trainable_weights))
    config = with_tables.get_config()
    assert config["truncation_rows"] == 51
    assert biggan_deep.DeepGenerator.from_config(config).truncation_rows == 51


def _copy_fixtures(tmp_path):
    target = tmp_path / "weights"
    shutil.copytree(FIXTURES, target)
    return target


def test_missing_files_are_missing_inputs(tmp_path):
    with pytest.raises(errors.MissingInputError, match="config.json"):
        biggan_deep_pytorch.import_generator(str(tmp_path))
    target = _copy_fixtures(tmp_path)
    os.remove(target / biggan_deep_pytorch.WEIGHTS_NAME)
    with pytest.raises(errors.MissingInputError, match="pytorch_model.bin"):
        biggan_deep_pytorch.import_generator(str(target))


@pytest.mark.parametrize("field, value, message", [
    ("channel_width", "4", "channel_width"),
    ("n_stats", None, "n_stats"),
    ("output_dim", 64, "released 64x64"),
    ("attention_layer_position", 3, "attention_layer_position"),
    ("class_embed_dim", 8, "class_embed_dim == z_dim"),
])
def test_config_fields_are_checked(tmp_path, field, value, message):
    target = _copy_fixtures(tmp_path)
    path = target / biggan_deep_pytorch.CONFIG_NAME
    config = json.loads(path.read_text())
    config[field] = value
    path.write_text(json.dumps(config))
    with pytest.raises(errors.BadInputError, match=message):
        biggan_deep_pytorch.import_generator(str(target))


def test_weights_of_another_width_name_the_mismatched_shapes(tmp_path):
    target = _copy_fixtures(tmp_path)
    path = target / biggan_deep_pytorch.CONFIG_NAME
    config = json.loads(path.read_text())
    config["channel_width"] = 8
    path.write_text(json.dumps(config))
    with pytest.raises(biggan_pytorch.CheckpointMismatchError,
                       match=r"generator\.gen_z\.weight_orig: expected "
                             r"shape \(2048, 32\), found \(1024, 32\)"):
        biggan_deep_pytorch.import_generator(str(target))


def _command(module, args):
    return subprocess.run(
        [sys.executable, "-m", module] + args, cwd=helpers.REPO_ROOT,
        env=helpers.python_env(), capture_output=True, text=True,
        timeout=300, check=False)


def test_import_command_writes_a_run_that_samples_and_is_refused_by_ppcd(
        tmp_path, imported):
    generator, _ = imported
    output = str(tmp_path / "deep_teacher")
    result = _command("ppcd_tf.import_teacher", [
        "--format", "biggan_deep_pytorch", "--weights_dir", FIXTURES,
        "--output_dir", output])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "106,301 params, no D" in result.stdout
    with open(os.path.join(output, "models.json")) as f:
        models = json.load(f)
    assert models["architecture"] == run_dir.BIGGAN_DEEP
    assert models["discriminator"] is None
    assert models["dataset"]["num_classes"] == 10
    with open(os.path.join(output, "teacher.json")) as f:
        record = json.load(f)
    assert record["format"] == "biggan_deep_pytorch"
    assert set(record["sources"]) == {"config.json", "pytorch_model.bin"}
    # Read back, it generates as the imported generator, also with the
    # per-truncation statistics.
    restored = run_dir.restore_generator(output)
    z = tf.random.stateless_normal((3, generator.dim_z), (5, 6))
    labels = tf.constant([0, 4, 9])
    for truncation in (None, 0.5):
        np.testing.assert_array_equal(
            restored.generate(z, labels, truncation=truncation).numpy(),
            generator(z, labels, training=False,
                      truncation=truncation).numpy())
    # PPCD needs its own D (none was released).
    with pytest.raises(errors.BadInputError, match="without a discriminator"):
        run_dir.restore_teacher(output)
    _check_export(output, str(tmp_path / "export"), generator)
    png = str(tmp_path / "samples.png")
    result = _command("ppcd_tf.sample", [
        "--model_dir", output, "--classes", "1,2", "--n", "2",
        "--truncation", "0.5", "--out", png])
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.getsize(png) > 0


def _check_export(run, export, generator):
    """The run's export: its truncation inputs select the statistics rows
    as the generator does (float64, the port's rule); ONNX / TFLite refused."""
    result = _command("ppcd_tf.export", ["--model_dir", run, "--output",
                                         export])
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = saved_model.load_export(export)
    assert set(loaded.signature_names) == {
        "serving_default", "sample", "interpolate", "truncated"}
    metadata = saved_model.read_metadata(export)
    assert metadata["truncation_statistics"]["rows"] == 51
    assert "truncation float64" in metadata["signatures"]["sample"]
    z = tf.random.stateless_normal((3, generator.dim_z), (7, 8))
    labels = [0, 4, 9]
    for truncation in (0.28, 0.43, 1.0):
        expected = generator(z, tf.constant(labels), training=False,
                             truncation=truncation).numpy()
        np.testing.assert_allclose(
            loaded.truncated(z, labels, truncation).numpy(), expected,
            atol=TOLERANCE)
    drawn = saved_model.truncated_z((3, generator.dim_z),
                                    tf.constant([5, 6]), 0.5)
    np.testing.assert_allclose(
        loaded.sample(labels, 0.5, [5, 6]).numpy(),
        generator(drawn, tf.constant(labels), training=False,
                  truncation=0.5).numpy(), atol=TOLERANCE)
    np.testing.assert_allclose(
        loaded.generate(z.numpy(), labels),
        generator(z, tf.constant(labels), training=False).numpy(),
        atol=TOLERANCE)
    with pytest.raises(export_pipeline.ExportError, match="SavedModel alone"):
        export_pipeline.export_run(run, export + "_onnx", formats=("onnx",))
