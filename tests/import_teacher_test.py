"""The BigGAN-PyTorch teacher import against BigGAN-PyTorch's own outputs.

Fixtures (tests/fixtures/biggan_pytorch_32, written once by
tools/make_biggan_pytorch_fixtures.py with BigGAN-PyTorch's `BigGAN.py` at
the commit recorded in source.json and torch 2.13 CPU; neither is needed
here): a 32x32, ch-4, attention-at-16, 10-class G and D with random weights
and BN statistics, saved in the zip and the legacy torch formats, and G's
images and D's logits for fixed z and labels in eval mode; and every key and
shape of the ImageNet 128 ch-96 model's state dicts.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf.importing import biggan_pytorch
from ppcd_tf.importing import convert
from ppcd_tf.importing import torch_files
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.runs import run_dir
from ppcd_tf.training import ppcd_trainer
from tests import helpers

FIXTURES = os.path.join(helpers.REPO_ROOT, "tests", "fixtures",
                        "biggan_pytorch_32")
SOURCE = json.load(open(os.path.join(FIXTURES, "source.json")))
ARCH = dict(convert.ARCH_DEFAULTS, resolution=SOURCE["resolution"],
            g_ch=SOURCE["ch"], d_ch=SOURCE["ch"],
            num_classes=SOURCE["n_classes"], attention=SOURCE["attention"],
            d_attention=SOURCE["attention"], dim_z=SOURCE["dim_z"],
            shared_dim=SOURCE["shared_dim"], sn_eps=SOURCE["sn_eps"],
            bn_epsilon=SOURCE["bn_eps"])
# The equivalence bound (inference mode).
TOLERANCE = 1e-4
# ImageNet 128, ch 96 (BigGAN-PyTorch launch_BigGAN_bs256x8.sh); our
# parameter counts of that model (models/generator.py's table).
IMAGENET_G_PARAMS = 70_433_988
IMAGENET_D_PARAMS = 87_982_370


def _arch_flags(arch):
    return ["--resolution", str(arch["resolution"]), "--g_ch",
            str(arch["g_ch"]), "--d_ch", str(arch["d_ch"]), "--num_classes",
            str(arch["num_classes"]), "--attention", arch["attention"],
            "--dim_z", str(arch["dim_z"]), "--shared_dim",
            str(arch["shared_dim"]), "--dataset", "fake"]


def _import(args):
    return subprocess.run(
        [sys.executable, "-m", "ppcd_tf.import_teacher"] + args,
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=300, check=False)


def _weights_dir(tmp_path, generator="G_ema.pth"):
    """The zip-format G_ema.pth beside the legacy-format D.pth."""
    directory = tmp_path / "weights"
    directory.mkdir()
    shutil.copy(os.path.join(FIXTURES, "G_ema.pth"), directory / generator)
    shutil.copy(os.path.join(FIXTURES, "legacy", "D.pth"), directory)
    return str(directory)


def test_zip_and_legacy_files_hold_the_same_state_dict():
    zipped = torch_files.read_torch_state_dict(
        os.path.join(FIXTURES, "G_ema.pth"))
    legacy = torch_files.read_torch_state_dict(
        os.path.join(FIXTURES, "legacy", "G_ema.pth"))
    assert list(zipped) == list(legacy)
    for key in zipped:
        np.testing.assert_array_equal(zipped[key], legacy[key], key)


def test_imported_models_equal_biggan_pytorch():
    reference = np.load(os.path.join(FIXTURES, "reference.npz"))
    generator, discriminator = convert.convert_biggan_pytorch(
        os.path.join(FIXTURES, "G_ema.pth"),
        os.path.join(FIXTURES, "legacy", "D.pth"), ARCH)
    images = generator(tf.constant(reference["z"]),
                       tf.constant(reference["labels"]),
                       training=False).numpy()
    expected = np.transpose(reference["images"], (0, 2, 3, 1))  # NCHW->NHWC
    assert np.abs(expected).max() > 0.1  # not a trivial output
    np.testing.assert_allclose(images, expected, atol=TOLERANCE, rtol=0)
    logits = discriminator(tf.constant(expected),
                           tf.constant(reference["d_labels"]),
                           training=False).numpy()
    np.testing.assert_allclose(logits, reference["d_logits"].reshape(-1),
                               atol=TOLERANCE, rtol=TOLERANCE)


def test_the_linear_units_are_reordered_channels_last():
    # Source unit c*bw*bw + h*bw + w is our unit (h*bw + w)*C + c.
    order = biggan_pytorch._linear_unit_order(bottom_width=2, channels=3)
    assert order.tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]


@pytest.mark.slow
@pytest.mark.eager
def test_cli_writes_a_teacher_run_that_ppcd_trains_from(tmp_path):
    output = str(tmp_path / "teacher")
    result = _import(["--weights_dir", _weights_dir(tmp_path),
                      "--output_dir", output] + _arch_flags(ARCH))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TEACHER_DIR" in result.stdout
    record = json.load(open(os.path.join(output, "teacher.json")))
    assert set(record["sources"]) == {"G_ema.pth", "D.pth"}
    assert len(record["sources"]["D.pth"]["sha256"]) == 64
    # The run reads back as a teacher and generates BigGAN-PyTorch's images.
    reference = np.load(os.path.join(FIXTURES, "reference.npz"))
    generator, _, _ = run_dir.restore_teacher(output)
    images = generator(tf.constant(reference["z"]),
                       tf.constant(reference["labels"]),
                       training=False).numpy()
    np.testing.assert_allclose(
        images, np.transpose(reference["images"], (0, 2, 3, 1)),
        atol=TOLERANCE, rtol=0)
    # PPCD takes it as its teacher (the debug data: 32x32x3, 10 classes).
    helpers.parse(["debug.gin", "stage/ppcd.gin"],
                  list(helpers.TINY_BINDINGS) + [
                      f"TEACHER_DIR = '{output}'",
                      "TARGET_PARAM_RATIO = 0.5",
                      "PruningBudget.min_channels = 1",
                      "TrainLoop.num_steps = 2", "TrainLoop.sample_every = 0"])
    trainer = ppcd_trainer.PPCDTrainer(model_dir=str(tmp_path / "ppcd"),
                                       strategy=helpers.one_device())
    assert trainer.generator.dim_z == SOURCE["dim_z"]
    losses = trainer.train()
    assert np.isfinite(losses["g_loss"])


# The refused imports: name -> (what the case's directory {tmp} holds,
# the arguments). "weights": G_ema.pth and D.pth (`_weights_dir`);
# "weights_no_d": G_ema.pth only; "existing": weights and an existing
# output directory; "module": an empty directory; "nothing": nothing.
BAD_IMPORTS = {
    "wrong_architecture": ("weights", [
        "--weights_dir", "{tmp}/weights", "--output_dir", "{tmp}/out"]
        + _arch_flags(dict(ARCH, g_ch=8, d_ch=8))),
    "missing_discriminator": ("weights_no_d", [
        "--weights_dir", "{tmp}/weights", "--output_dir", "{tmp}/out"]
        + _arch_flags(ARCH)),
    "missing_weights_dir": ("nothing", [
        "--weights_dir", "{tmp}/nowhere", "--output_dir", "{tmp}/out",
        "--preset", "imagenet128_ch96"]),
    "existing_output": ("existing", [
        "--weights_dir", "{tmp}/weights", "--output_dir", "{tmp}/existing"]),
    # The weights themselves are never an output, not even with --overwrite.
    "output_is_the_weights": ("weights", [
        "--weights_dir", "{tmp}/weights", "--output_dir", "{tmp}/weights",
        "--overwrite"]),
    "missing_architecture": ("weights", [
        "--weights_dir", "{tmp}/weights", "--output_dir", "{tmp}/out"]),
    "tfhub_without_a_module": ("module", [
        "--format", "tfhub_biggan", "--module_dir", "{tmp}/module",
        "--output_dir", "{tmp}/out", "--preset", "tfhub_biggan128"]),
}


def _bad_import_dir(tmp, holds):
    if holds in ("weights", "weights_no_d", "existing"):
        weights = _weights_dir(tmp)
        if holds == "weights_no_d":
            os.remove(os.path.join(weights, "D.pth"))
        if holds == "existing":
            (tmp / "existing").mkdir()
    elif holds == "module":
        (tmp / "module").mkdir()


@pytest.fixture(scope="module")
def bad_imports(tmp_path_factory):
    """name -> (result, the case's directory) for BAD_IMPORTS: the cases
    run in one process (tests/cli_batch.py: `run_main` as `python -m
    ppcd_tf.import_teacher` runs it, flags reset between cases), each in a
    directory of its own, paying the interpreter start and the TensorFlow
    import (~5-7 s on 2 cores) once instead of seven times."""
    root = tmp_path_factory.mktemp("bad_imports")
    cases, tmps = [], []
    for name, (holds, args) in BAD_IMPORTS.items():
        tmp = root / name
        tmp.mkdir()
        _bad_import_dir(tmp, holds)
        cases.append([arg.format(tmp=tmp) for arg in args])
        tmps.append(tmp)
    results = helpers.run_cli_batch(
        {"module": "ppcd_tf.import_teacher", "cases": cases})
    return dict(zip(BAD_IMPORTS, zip(results, tmps)))


def test_wrong_architecture_lists_keys_shapes_and_flags(bad_imports):
    result, tmp = bad_imports["wrong_architecture"]
    assert result["status"] == 2, result["stderr"][-3000:]
    assert "does not fit the architecture given" in result["stderr"]
    assert "blocks.0.0.conv1.weight: expected shape (32, 32, 3, 3), found " \
        "(16, 16, 3, 3)" in result["stderr"]
    assert "(--g_ch 4 at resolution 32)" in result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert not os.path.exists(tmp / "out")


def test_missing_discriminator_and_weights_dir_are_missing_inputs(
        bad_imports):
    result, _ = bad_imports["missing_discriminator"]
    assert result["status"] == 3, result["stderr"][-3000:]
    assert "needs the teacher's discriminator" in result["stderr"]
    result, _ = bad_imports["missing_weights_dir"]
    assert result["status"] == 3
    assert "is not a directory" in result["stderr"]


def test_existing_output_and_missing_architecture_are_refused(bad_imports):
    result, _ = bad_imports["existing_output"]
    assert result["status"] == 2
    assert "--overwrite" in result["stderr"]
    result, _ = bad_imports["output_is_the_weights"]
    assert result["status"] == 2
    assert "is the same path as --weights_dir" in result["stderr"]
    result, _ = bad_imports["missing_architecture"]
    assert result["status"] == 2
    assert "Give --preset" in result["stderr"]


@pytest.mark.slow
def test_imagenet128_ch96_every_real_key_and_shape():
    """The 128x128 ch-96 1,000-class model: the keys and shapes of
    BigGAN-PyTorch's state dicts (recorded from its code) are exactly the
    ones the import expects, and the imported models have the published
    parameter counts. Arrays are generated here (no 300 MB file)."""
    with open(os.path.join(FIXTURES, "imagenet128_ch96_shapes.json")) as f:
        shapes = json.load(f)
    arch = dict(convert.ARCH_DEFAULTS,
                **biggan_pytorch.PRESETS["imagenet128_ch96"])
    arch["d_attention"] = arch["attention"]
    # Names and shapes only: a cheap initializer (every weight is assigned).
    generator, discriminator = convert.build_models(
        arch, kernel_initializer="random_normal")
    channels = generator.channels
    for model, name, linear_units in (
            (generator, "G", (channels.bottom_width, channels.stream[0])),
            (discriminator, "D", None)):
        state = {key: np.broadcast_to(np.float32(0.5), shape)
                 for key, shape in shapes[name].items()}
        mappings = biggan_pytorch.plan(model, linear_units=linear_units)
        biggan_pytorch.check(mappings, state, name, "")
        biggan_pytorch.assign(mappings, state)
        # Every key is used but the singular-value records and counters.
        used = {m.key for m in mappings}
        assert all(biggan_pytorch.IGNORED_KEY.search(key)
                   for key in set(state) - used)
    assert generator_lib.count_trainable_parameters(generator) == \
        IMAGENET_G_PARAMS
    assert generator_lib.count_trainable_parameters(discriminator) == \
        IMAGENET_D_PARAMS
    assert float(generator.weights[0].numpy().ravel()[0]) == 0.5


# ---------------------------------------------------------------------------
# TF-Hub BigGAN: BigGAN-PyTorch's port of its generator (TFHub/biggan_v1.py,
# 128x128, chn 8, 10 classes) with the module's variable names and layouts.

HUB_FIXTURES = os.path.join(FIXTURES, "tfhub_128_ch8")
HUB_FLAGS = ["--resolution", "128", "--g_ch", "8", "--d_ch", "8",
             "--num_classes", "10", "--attention", "64", "--dim_z", "120",
             "--shared_dim", "128", "--sn_eps", "1e-4", "--bn_epsilon",
             "1e-4", "--dataset", "fake"]


def _write_module(directory, prefix=""):
    """An unpacked TF1 hub module's variables/ from the fixture arrays."""
    variables = np.load(os.path.join(HUB_FIXTURES, "variables.npz"))
    os.makedirs(os.path.join(directory, "variables"))
    helpers.write_tf1_checkpoint(
        os.path.join(directory, "variables", "variables"),
        {prefix + name: variables[name] for name in variables.files})
    return str(directory)


def _hub_reference_images(generator):
    reference = np.load(os.path.join(HUB_FIXTURES, "reference.npz"))
    images = generator(tf.constant(reference["z"]),
                       tf.constant(reference["labels"]),
                       training=False).numpy()
    return images, np.transpose(reference["images"], (0, 2, 3, 1))


def test_tfhub_generator_equals_its_source(tmp_path):
    module = _write_module(tmp_path / "module", prefix="module/")
    arch = dict(convert.ARCH_DEFAULTS, resolution=128, g_ch=8,
                d_ch=8, num_classes=10, attention="64", d_attention="64",
                sn_eps=1e-4, bn_epsilon=1e-4)
    generator, discriminator, origin = convert.convert_tfhub_biggan(
        module, arch)
    images, expected = _hub_reference_images(generator)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(images, expected, atol=TOLERANCE, rtol=0)
    assert origin.startswith("initialised")
    assert discriminator.built


@pytest.mark.slow
def test_tfhub_cli_writes_a_teacher_run(tmp_path):
    module = _write_module(tmp_path / "module")
    output = str(tmp_path / "teacher")
    result = _import(["--format", "tfhub_biggan", "--module_dir", module,
                      "--output_dir", output] + HUB_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.load(open(os.path.join(output, "teacher.json")))
    assert record["format"] == "tfhub_biggan" and record["ema"]
    assert record["discriminator"].startswith("initialised")
    generator, _, _ = run_dir.restore_teacher(output)
    images, expected = _hub_reference_images(generator)
    np.testing.assert_allclose(images, expected, atol=TOLERANCE, rtol=0)
    # Raw (non-EMA) weights are not in this module: a clear error.
    result = _import(["--format", "tfhub_biggan", "--module_dir", module,
                      "--output_dir", str(tmp_path / "raw"), "--no_ema"]
                     + HUB_FLAGS)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "The module has no variable 'linear/w'" in result.stderr


def test_tfhub_without_a_module_says_how_to_get_one(bad_imports):
    result, _ = bad_imports["tfhub_without_a_module"]
    assert result["status"] == 3, result["stderr"][-3000:]
    assert "not an unpacked TF-Hub module" in result["stderr"]
    assert "Traceback" not in result["stderr"]


def test_teacher_without_d_gin_switches_to_the_student_d():
    helpers.parse(["debug.gin", "stage/ppcd.gin",
                   "extras/teacher_without_d.gin"],
                  list(helpers.TINY_BINDINGS))
    import gin
    assert gin.query_parameter("PPCDTrainer.cam_discriminator") == "student"
    assert gin.query_parameter("DistillationWeights.d_features") == 0.0
