"""Keras 3 layers of BigGAN: spectral norm, conditional BN, self-attention, blocks.

All tensors are channels-last (NHWC). The layers follow BigGAN-PyTorch
(ajbrock/BigGAN-PyTorch, `layers.py`) in structure and parameter shapes, so
that parameter counts match layer for layer:

* `SNDense`, `SNConv2D`, `SNEmbedding`: spectral normalisation computed inside
  `call` (the kernel variable is never overwritten), one power iteration per
  training call, the left singular vector `u` a non-trainable weight that is
  only updated when `training=True`. The power iteration and sigma are computed
  in float32 even under a mixed-precision policy.
* `ConditionalBatchNorm`: BN without affine parameters, then
  `gain = 1 + W_g y_cat` and `bias = W_b y_cat` (both spectrally normalised
  linears without bias), with cross-replica synchronised statistics.
* `SelfAttention`: the non-local block of SAGAN/BigGAN with a learnable
  scalar `gamma` initialised at 0 (identity at init).
* `GBlock`, `DBlock`: the pre-activation residual blocks of BigGAN.

`GBlock.call` takes optional per-channel mask vectors (see
`ppcd_tf.pruning`); with no masks it is the plain BigGAN block.

Layers are deliberately not gin-configurable: models pass explicit arguments.
"""

import keras
import tensorflow as tf

from ppcd_tf import errors

_PACKAGE = "ppcd_tf"


def _l2_normalize(x, eps):
    """x / max(||x||, eps) along the last axis (torch.nn.functional.normalize)."""
    norm = tf.sqrt(tf.reduce_sum(tf.square(x), axis=-1, keepdims=True))
    return x / tf.maximum(norm, eps)


def spectral_normalize(kernel_2d, u_var, training, eps):
    """Divides a [fan_in, fan_out] matrix by its largest singular value.

    One power iteration from the stored vector `u` ([1, fan_out]), as in
    BigGAN-PyTorch (`W_mat` there is the transpose, [out, in]). The vectors are
    constants for the gradient (stop_gradient); sigma carries the gradient.

    Args:
      kernel_2d: float32 tensor [fan_in, fan_out].
      u_var: non-trainable variable [1, fan_out].
      training: Python bool; when True the new `u` is written back.
      eps: floor of the norm in the vector normalisation.

    Returns:
      (kernel_2d / sigma, sigma) with sigma a float32 scalar.
    """
    u = tf.cast(u_var, tf.float32)
    v = _l2_normalize(tf.matmul(u, kernel_2d, transpose_b=True), eps)
    u_new = _l2_normalize(tf.matmul(v, kernel_2d), eps)
    v = tf.stop_gradient(v)
    u_new = tf.stop_gradient(u_new)
    if training:
        u_var.assign(u_new)
    sigma = tf.reduce_sum(tf.matmul(v, kernel_2d) * u_new)
    # A matrix whose channels are all pruned is zero: keep it zero, not NaN.
    sigma = tf.maximum(sigma, eps)
    return kernel_2d / sigma, sigma


class _SpectralNormMixin:
    """Shared bookkeeping of the SN layers: the `u` vector and its update.

    `serving_frozen` (set by `freeze_spectral_norms`: on a copy prepared
    for serving, and on the frozen teacher of a PPCD run): the kernel
    already holds kernel / sigma and is used as it is, so no power iteration
    or sigma runs at all.
    """

    serving_frozen = False

    def _add_sn_vector(self, fan_out):
        self.sn_u = self.add_weight(
            name="sn_u",
            shape=(1, fan_out),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            trainable=False,
            aggregation="only_first_replica",
        )

    def _freeze(self):
        """kernel <- kernel / sigma (see `freeze_spectral_norms`)."""
        normalized = self._normalized(self.kernel, False)
        self.kernel.assign(tf.cast(normalized, self.kernel.dtype))

    def _normalized(self, kernel, training, in_keep=None, out_keep=None):
        """Returns kernel / sigma, in float32, with the kernel's own shape.

        `in_keep` [fan_in channels] / `out_keep` [fan_out] are optional 0/1
        channel masks: the weights of removed channels are zeroed *before*
        sigma is computed, so sigma (and every output) depends only on the
        kept channels -- exactly what the compact network's own spectral
        norm will compute after those channels are cut away.
        """
        kernel = tf.cast(kernel, tf.float32)
        if self.serving_frozen:
            if in_keep is not None or out_keep is not None:
                raise ValueError("A frozen (serving) layer takes no keep "
                                 "vectors: it is already compact.")
            return kernel
        if in_keep is not None:
            kernel = kernel * tf.reshape(tf.cast(in_keep, tf.float32),
                                         (-1, 1))
        if out_keep is not None:
            kernel = kernel * tf.cast(out_keep, tf.float32)
        fan_out = kernel.shape[-1]
        kernel_2d = tf.reshape(kernel, (-1, fan_out))
        normalized, _ = spectral_normalize(
            kernel_2d, self.sn_u, bool(training), self.sn_eps)
        return tf.reshape(normalized, tf.shape(kernel))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SNDense(_SpectralNormMixin, keras.layers.Layer):
    """Spectrally normalised dense layer.

    Input [..., in_features] -> output [..., units]. The kernel is
    [in_features, units]; `u` is [1, units] (BigGAN-PyTorch: `u0` [1, out]).
    """

    def __init__(self, units, use_bias=True, sn_eps=1e-6,
                 kernel_initializer="orthogonal", **kwargs):
        super().__init__(autocast=False, **kwargs)
        if units <= 0:
            raise errors.BadInputError(
                f"SNDense units must be positive, got {units}.")
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        in_features = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(in_features, self.units),
            initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.units,),
                                     initializer="zeros")
                     if self.use_bias else None)
        self._add_sn_vector(self.units)

    def call(self, inputs, training=False, in_keep=None, out_keep=None):
        kernel = tf.cast(self._normalized(self.kernel, training, in_keep,
                                          out_keep), self.compute_dtype)
        outputs = tf.matmul(tf.cast(inputs, self.compute_dtype), kernel)
        if self.bias is not None:
            outputs = outputs + tf.cast(self.bias, self.compute_dtype)
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, use_bias=self.use_bias,
                      sn_eps=self.sn_eps,
                      kernel_initializer=keras.initializers.serialize(
                          self.kernel_initializer))
        return config


def conv_one_output(x, kernel):
    """A 'SAME', stride-1 convolution with one output channel, computed as
    one matmul from the C input channels to the k*k kernel taps followed by
    the sum of the k*k shifted tap maps: the values of `tf.nn.conv2d` (to
    float rounding), 2-3x faster on this project's CPU at batch 64, where
    oneDNN's direct kernel for a single output channel reaches ~3 GMAC/s
    (the grayscale generators' output convolution; BENCHMARKS.md).

    Args:
      x: [B, H, W, C].
      kernel: [k, k, C, 1], k odd.

    Returns:
      [B, H, W, 1].
    """
    size, channels = kernel.shape[0], kernel.shape[2]
    taps = size * size
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    # Column t = dy * size + dx holds the tap kernel[dy, dx, :, 0].
    per_tap = tf.reshape(tf.transpose(kernel[..., 0], (2, 0, 1)),
                         (channels, taps))
    tapped = tf.reshape(tf.matmul(tf.reshape(x, (-1, channels)), per_tap),
                        (batch, height, width, taps))
    half = size // 2
    tapped = tf.pad(tapped, [[0, 0], [half, half], [half, half], [0, 0]])
    out = None
    for dy in range(size):
        for dx in range(size):
            t = dy * size + dx
            shifted = tapped[:, dy:dy + height, dx:dx + width, t:t + 1]
            out = shifted if out is None else out + shifted
    return out


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SNConv2D(_SpectralNormMixin, keras.layers.Layer):
    """Spectrally normalised 2-D convolution, 'same' padding, stride 1.

    Input [B, H, W, C_in] -> output [B, H, W, filters]. Kernel
    [k, k, C_in, filters]; `u` is [1, filters].
    """

    def __init__(self, filters, kernel_size=3, use_bias=True, sn_eps=1e-6,
                 kernel_initializer="orthogonal", **kwargs):
        super().__init__(autocast=False, **kwargs)
        if filters <= 0:
            raise errors.BadInputError(
                f"SNConv2D filters must be positive, got {filters}.")
        if kernel_size <= 0 or kernel_size % 2 == 0:
            raise errors.BadInputError(
                "SNConv2D kernel_size must be a positive odd "
                f"number, got {kernel_size}.")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.use_bias = bool(use_bias)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, in_channels, self.filters),
            initializer=self.kernel_initializer)
        self.bias = (self.add_weight(name="bias", shape=(self.filters,),
                                     initializer="zeros")
                     if self.use_bias else None)
        self._add_sn_vector(self.filters)

    def call(self, inputs, training=False, in_keep=None, out_keep=None):
        kernel = tf.cast(self._normalized(self.kernel, training, in_keep,
                                          out_keep), self.compute_dtype)
        inputs = tf.cast(inputs, self.compute_dtype)
        if self.filters == 1 and self.kernel_size > 1:
            outputs = conv_one_output(inputs, kernel)
        else:
            outputs = tf.nn.conv2d(inputs, kernel, strides=1, padding="SAME")
        if self.bias is not None:
            outputs = tf.nn.bias_add(outputs,
                                     tf.cast(self.bias, self.compute_dtype))
        return outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size,
                      use_bias=self.use_bias, sn_eps=self.sn_eps,
                      kernel_initializer=keras.initializers.serialize(
                          self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SNEmbedding(_SpectralNormMixin, keras.layers.Layer):
    """Spectrally normalised embedding (the projection D's class embedding).

    Input int [B] -> output float [B, output_dim]. Table
    [input_dim, output_dim]. As in BigGAN-PyTorch the matrix normalised is the
    table itself with rows as "outputs", so `u` is [1, input_dim].
    """

    def __init__(self, input_dim, output_dim, sn_eps=1e-6,
                 embeddings_initializer="orthogonal", **kwargs):
        super().__init__(autocast=False, **kwargs)
        if input_dim <= 0 or output_dim <= 0:
            raise errors.BadInputError(
                "SNEmbedding dims must be positive, got "
                f"input_dim={input_dim}, output_dim={output_dim}.")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.sn_eps = float(sn_eps)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.input_dim, self.output_dim),
            initializer=self.embeddings_initializer)
        self._add_sn_vector(self.input_dim)

    def call(self, inputs, training=False):
        return tf.gather(tf.cast(self._normalized_table(training),
                                 self.compute_dtype),
                         tf.cast(inputs, tf.int32))

    def _normalized_table(self, training):
        """The table / sigma, float32 [input_dim, output_dim] (as it is
        when frozen)."""
        if self.serving_frozen:
            return tf.cast(self.embeddings, tf.float32)
        # Normalise the transposed table: its "fan_out" axis is input_dim.
        table_t = tf.transpose(tf.cast(self.embeddings, tf.float32))
        normalized_t, _ = spectral_normalize(
            table_t, self.sn_u, bool(training), self.sn_eps)
        return tf.transpose(normalized_t)

    def _freeze(self):
        self.embeddings.assign(tf.cast(self._normalized_table(False),
                                       self.embeddings.dtype))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(input_dim=self.input_dim, output_dim=self.output_dim,
                      sn_eps=self.sn_eps,
                      embeddings_initializer=keras.initializers.serialize(
                          self.embeddings_initializer))
        return config


def spectral_norm_layers(model):
    """Every spectrally normalised layer inside `model`."""
    return [layer for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
            if isinstance(layer, _SpectralNormMixin)]


def freeze_spectral_norms(model):
    """Replaces every SN weight of `model` by weight / sigma (sigma from the
    stored vector u, as the layer computes it at inference) and marks the
    layer frozen: the layer then computes exactly what it computed at
    inference, without a power iteration or sigma. For a model that no
    longer trains: a copy prepared for serving, the frozen teacher of a PPCD
    run. Returns the number of layers frozen."""
    frozen = 0
    for layer in spectral_norm_layers(model):
        if layer.serving_frozen:
            continue
        layer._freeze()  # pylint: disable=protected-access
        layer.serving_frozen = True
        frozen += 1
    return frozen


def normalize_with(x, statistics, epsilon):
    """(x - mean) / sqrt(variance + epsilon) for x [B, H, W, C] and
    statistics (mean [C], variance [C]), in x's dtype."""
    mean, variance = (tf.cast(v, x.dtype) for v in statistics)
    return (x - mean) * tf.math.rsqrt(variance + epsilon)


def _batch_norm(epsilon, momentum, affine, name):
    """Synchronised BN (cross-replica statistics, as BigGAN trains)."""
    return keras.layers.BatchNormalization(
        epsilon=epsilon, momentum=momentum, center=affine, scale=affine,
        synchronized=True, name=name)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConditionalBatchNorm(keras.layers.Layer):
    """Class-conditional BN: `bn(x) * (1 + W_g y) + W_b y`.

    Inputs: x [B, H, W, C], y [B, cond_dim] (shared class embedding, possibly
    concatenated with a z chunk). Output [B, H, W, C]. W_g, W_b are
    spectrally normalised [cond_dim, C] linears without bias, zero-initialised
    gains are not required: at W_g = W_b = 0 this is plain non-affine BN.
    BN momentum uses the Keras convention (0.9 == PyTorch's 0.1).

    `normalization_folded` (set by `ppcd_tf.exporting.graph` on a copy
    prepared for serving): the standing statistics were folded into the
    preceding convolution, so `bn` is skipped (inference only).
    """

    normalization_folded = False
    # Set by `ppcd_tf.exporting.graph` on a copy prepared for serving: the
    # standing statistics as numpy (scale [C], shift [C]) merged into the
    # conditional gain and bias, so x * gain' + bias' is one pass over x.
    merged_statistics = None

    def __init__(self, epsilon=1e-5, momentum=0.9, sn_eps=1e-6,
                 kernel_initializer="orthogonal", **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)
        self.momentum = float(momentum)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        x_shape, y_shape = input_shape
        channels = int(x_shape[-1])
        self.bn = _batch_norm(self.epsilon, self.momentum, False, "bn")
        self.gain = SNDense(channels, use_bias=False, sn_eps=self.sn_eps,
                            kernel_initializer=self.kernel_initializer,
                            name="gain")
        self.bias = SNDense(channels, use_bias=False, sn_eps=self.sn_eps,
                            kernel_initializer=self.kernel_initializer,
                            name="bias")
        self.bn.build(x_shape)
        self.gain.build(y_shape)
        self.bias.build(y_shape)

    def call(self, inputs, training=False, keep=None, statistics=None):
        """`keep` [C]: optional 0/1 mask of kept channels (see SN layers).
        `statistics`: optional (mean [C], variance [C]) used instead of the
        standing ones (inference only; BigGAN-deep's per-truncation
        statistics, `ppcd_tf.models.truncation`)."""
        x, y = inputs
        if statistics is not None and training:
            raise ValueError("Given statistics are for inference only.")
        if ((self.normalization_folded or self.merged_statistics is not None)
                and training):
            raise ValueError("A BatchNorm prepared for serving cannot "
                             "train.")
        gain = 1.0 + self.gain(y, training=training, out_keep=keep)
        bias = self.bias(y, training=training, out_keep=keep)
        if self.merged_statistics is not None:
            scale, shift = (tf.constant(v, gain.dtype)
                            for v in self.merged_statistics)
            bias = bias + gain * shift
            gain = gain * scale
            normalized = x
        elif self.normalization_folded:
            normalized = x
        elif statistics is not None:
            normalized = normalize_with(x, statistics, self.epsilon)
        else:
            normalized = self.bn(x, training=training)
        gain = tf.cast(gain[:, None, None, :], normalized.dtype)
        bias = tf.cast(bias[:, None, None, :], normalized.dtype)
        return normalized * gain + bias

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon, momentum=self.momentum,
                      sn_eps=self.sn_eps,
                      kernel_initializer=keras.initializers.serialize(
                          self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SelfAttention(keras.layers.Layer):
    """Non-local self-attention: `x + gamma * o(g(x) @ softmax(theta^T phi))`.

    Input/output [B, H, W, C] with H and W even. theta/phi map C -> qk_width,
    g maps C -> value_width (1x1 SN convs without bias), phi and g are 2x2
    max-pooled, o maps value_width -> C. gamma is a scalar initialised at 0,
    so the layer is the identity at init. BigGAN uses qk_width = C // 8 and
    value_width = C // 2.

    `call` takes optional masks: `qk_mask` [qk_width], `value_mask`
    [value_width], applied to theta/phi and to g (pruning of inner widths),
    and the 0/1 kept-channel vectors `channel_keep` [C], `qk_keep`,
    `value_keep` that exclude removed channels from the spectral norms.
    """

    def __init__(self, qk_width, value_width, sn_eps=1e-6,
                 kernel_initializer="orthogonal", **kwargs):
        super().__init__(**kwargs)
        if qk_width <= 0 or value_width <= 0:
            raise errors.BadInputError(
                "SelfAttention widths must be positive, got "
                f"qk_width={qk_width}, value_width={value_width}.")
        self.qk_width = int(qk_width)
        self.value_width = int(value_width)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        channels = int(input_shape[-1])

        def conv(filters, name):
            return SNConv2D(filters, kernel_size=1, use_bias=False,
                            sn_eps=self.sn_eps,
                            kernel_initializer=self.kernel_initializer,
                            name=name)

        self.theta = conv(self.qk_width, "theta")
        self.phi = conv(self.qk_width, "phi")
        self.g = conv(self.value_width, "g")
        self.o = conv(channels, "o")
        for layer in (self.theta, self.phi, self.g):
            layer.build(input_shape)
        self.o.build(tuple(input_shape[:-1]) + (self.value_width,))
        self.gamma = self.add_weight(name="gamma", shape=(),
                                     initializer="zeros")

    def call(self, inputs, training=False, qk_mask=None, value_mask=None,
             channel_keep=None, qk_keep=None, value_keep=None):
        x = inputs
        shape = tf.shape(x)
        batch, height, width = shape[0], shape[1], shape[2]
        theta = self.theta(x, training=training, in_keep=channel_keep,
                           out_keep=qk_keep)
        phi = self.phi(x, training=training, in_keep=channel_keep,
                       out_keep=qk_keep)
        g = self.g(x, training=training, in_keep=channel_keep,
                   out_keep=value_keep)
        if qk_mask is not None:
            theta = theta * tf.cast(qk_mask, theta.dtype)
            phi = phi * tf.cast(qk_mask, phi.dtype)
        if value_mask is not None:
            g = g * tf.cast(value_mask, g.dtype)
        phi = tf.nn.max_pool2d(phi, 2, 2, "VALID")
        g = tf.nn.max_pool2d(g, 2, 2, "VALID")
        theta = tf.reshape(theta, (batch, -1, self.qk_width))
        phi = tf.reshape(phi, (batch, -1, self.qk_width))
        g = tf.reshape(g, (batch, -1, self.value_width))
        # beta[b, i, j]: attention of output position i on pooled position j.
        beta = tf.nn.softmax(tf.matmul(theta, phi, transpose_b=True), axis=-1)
        attended = tf.matmul(beta, g)
        attended = tf.reshape(attended,
                              (batch, height, width, self.value_width))
        out = self.o(attended, training=training, in_keep=value_keep,
                     out_keep=channel_keep)
        return x + tf.cast(self.gamma, out.dtype) * out

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(qk_width=self.qk_width, value_width=self.value_width,
                      sn_eps=self.sn_eps,
                      kernel_initializer=keras.initializers.serialize(
                          self.kernel_initializer))
        return config


class NamedBlocksMixin:
    """Blocks and attention layers held as attributes `block{i}` and
    `attention{i}`: stable names that tf.train.Checkpoint tracks (layers in
    plain Python lists or dicts are not tracked)."""

    def _init_named_blocks(self):
        self._block_names = []
        self._attention_index = {}

    def _add_block(self, index, block):
        setattr(self, f"block{index}", block)
        self._block_names.append(f"block{index}")

    def _add_attention(self, index, attention):
        setattr(self, f"attention{index}", attention)
        self._attention_index[index] = f"attention{index}"

    @property
    def blocks(self):
        """Residual blocks in order (`block1` .. `blockN`)."""
        return [getattr(self, name) for name in self._block_names]

    @property
    def attentions(self):
        """{block index: SelfAttention placed after that block}."""
        return {i: getattr(self, name)
                for i, name in self._attention_index.items()}


def apply_mask(x, mask):
    """x [B, H, W, C] * mask [C] (no-op when mask is None)."""
    if mask is None:
        return x
    return x * tf.cast(mask, x.dtype)


def upsample2x(x):
    """Nearest-neighbour 2x upsampling of [B, H, W, C]: each pixel broadcast
    to a 2x2 patch in one reshape-broadcast-reshape (measured faster on the
    CPU than two `tf.repeat`s, the same values)."""
    shape = tf.shape(x)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    x = tf.reshape(x, [batch, height, 1, width, 1, channels])
    x = tf.broadcast_to(x, [batch, height, 2, width, 2, channels])
    return tf.reshape(x, [batch, 2 * height, 2 * width, channels])


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GBlock(keras.layers.Layer):
    """BigGAN generator residual block (pre-activation, 2x nearest upsample).

    h = conv1(up(relu(bn1(x, y)))) ; h = conv2(relu(bn2(h, y)))
    out = h + up(conv_sc(x))

    The 1x1 shortcut is computed before the nearest upsampling: the same
    values as BigGAN's conv_sc(up(x)) (a 1x1 convolution commutes with
    nearest upsampling; bit-identical on the CPU), on a quarter of the
    pixels.

    Inputs: x [B, H, W, in_channels], y [B, cond_dim].
    Output [B, 2H, 2W, out_channels] (H, W unchanged without upsampling).
    conv1: in -> hidden_channels (3x3), conv2: hidden -> out (3x3), conv_sc:
    in -> out (1x1), present when in != out or upsampling (BigGAN's
    `learnable_sc`). All convs carry a bias.

    Masks (all optional, each a [C] vector, see DESIGN.md section 4.1):
      in_mask: the stream mask of the input, re-applied after bn1.
      hidden_mask: the hidden mask, applied after bn2.
      out_mask: the stream mask of the output, applied to h + shortcut.
    Kept-channel vectors (optional 0/1 [C], usually the hard versions of the
    masks): `in_keep`, `hidden_keep`, `out_keep` zero the weights of removed
    channels inside every spectral norm, so that removed channels' weights
    have no influence at all and the compact network computes the same
    sigmas.
    """

    def __init__(self, out_channels, hidden_channels=None, upsample=True,
                 bn_epsilon=1e-5, bn_momentum=0.9, sn_eps=1e-6,
                 kernel_initializer="orthogonal", **kwargs):
        super().__init__(**kwargs)
        if out_channels <= 0:
            raise errors.BadInputError(
                f"GBlock out_channels must be positive, got {out_channels}.")
        self.out_channels = int(out_channels)
        self.hidden_channels = int(hidden_channels or out_channels)
        self.upsample = bool(upsample)
        self.bn_epsilon = float(bn_epsilon)
        self.bn_momentum = float(bn_momentum)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        x_shape, y_shape = input_shape
        in_channels = int(x_shape[-1])
        scale = 2 if self.upsample else 1
        up_shape = (x_shape[0],
                    None if x_shape[1] is None else x_shape[1] * scale,
                    None if x_shape[2] is None else x_shape[2] * scale,
                    in_channels)
        common = dict(sn_eps=self.sn_eps,
                      kernel_initializer=self.kernel_initializer)
        cbn = dict(epsilon=self.bn_epsilon, momentum=self.bn_momentum, **common)
        self.bn1 = ConditionalBatchNorm(name="bn1", **cbn)
        self.conv1 = SNConv2D(self.hidden_channels, 3, name="conv1", **common)
        self.bn2 = ConditionalBatchNorm(name="bn2", **cbn)
        self.conv2 = SNConv2D(self.out_channels, 3, name="conv2", **common)
        self.learnable_sc = in_channels != self.out_channels or self.upsample
        self.conv_sc = (SNConv2D(self.out_channels, 1, name="conv_sc",
                                 **common)
                        if self.learnable_sc else None)
        hidden_shape = up_shape[:3] + (self.hidden_channels,)
        self.bn1.build((x_shape, y_shape))
        self.conv1.build(up_shape)
        self.bn2.build((hidden_shape, y_shape))
        self.conv2.build(hidden_shape)
        if self.conv_sc is not None:
            self.conv_sc.build(x_shape)

    def call(self, inputs, training=False, in_mask=None, hidden_mask=None,
             out_mask=None, in_keep=None, hidden_keep=None, out_keep=None):
        x, y = inputs
        h = self.bn1((x, y), training=training, keep=in_keep)
        h = tf.nn.relu(apply_mask(h, in_mask))
        if self.conv_sc is not None:  # on the small grid (see above)
            x = self.conv_sc(x, training=training, in_keep=in_keep,
                             out_keep=out_keep)
        if self.upsample:
            h = upsample2x(h)
            x = upsample2x(x)
        h = self.conv1(h, training=training, in_keep=in_keep,
                       out_keep=hidden_keep)
        h = self.bn2((h, y), training=training, keep=hidden_keep)
        h = tf.nn.relu(apply_mask(h, hidden_mask))
        h = self.conv2(h, training=training, in_keep=hidden_keep,
                       out_keep=out_keep)
        return apply_mask(h + tf.cast(x, h.dtype), out_mask)

    def compute_output_shape(self, input_shape):
        x_shape = input_shape[0]
        scale = 2 if self.upsample else 1
        return (x_shape[0], x_shape[1] * scale, x_shape[2] * scale,
                self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(out_channels=self.out_channels,
                      hidden_channels=self.hidden_channels,
                      upsample=self.upsample, bn_epsilon=self.bn_epsilon,
                      bn_momentum=self.bn_momentum, sn_eps=self.sn_eps,
                      kernel_initializer=keras.initializers.serialize(
                          self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DBlock(keras.layers.Layer):
    """BigGAN discriminator residual block (optional 2x average-pool).

    h = conv2(relu(conv1(act(x)))) [then avgpool], act = relu when
    `preactivation` else identity; shortcut: preactivation blocks apply
    conv_sc then pool, the first (non-preactivated) block pools then conv_sc.

    Input [B, H, W, in_channels] -> output [B, H/2, W/2, out_channels]
    (H, W unchanged without downsampling). `wide` (BigGAN default) makes
    conv1's width out_channels instead of in_channels.
    """

    def __init__(self, out_channels, downsample=True, preactivation=True,
                 wide=True, sn_eps=1e-6, kernel_initializer="orthogonal",
                 **kwargs):
        super().__init__(**kwargs)
        if out_channels <= 0:
            raise errors.BadInputError(
                f"DBlock out_channels must be positive, got {out_channels}.")
        self.out_channels = int(out_channels)
        self.downsample = bool(downsample)
        self.preactivation = bool(preactivation)
        self.wide = bool(wide)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        hidden = self.out_channels if self.wide else in_channels
        common = dict(sn_eps=self.sn_eps,
                      kernel_initializer=self.kernel_initializer)
        self.conv1 = SNConv2D(hidden, 3, name="conv1", **common)
        self.conv2 = SNConv2D(self.out_channels, 3, name="conv2", **common)
        self.learnable_sc = in_channels != self.out_channels or self.downsample
        self.conv_sc = (SNConv2D(self.out_channels, 1, name="conv_sc",
                                 **common)
                        if self.learnable_sc else None)
        self.conv1.build(input_shape)
        self.conv2.build(tuple(input_shape[:-1]) + (hidden,))
        if self.conv_sc is not None:
            if self.preactivation:
                self.conv_sc.build(input_shape)
            else:
                scale = 2 if self.downsample else 1
                self.conv_sc.build(
                    (input_shape[0],
                     None if input_shape[1] is None
                     else input_shape[1] // scale,
                     None if input_shape[2] is None
                     else input_shape[2] // scale, in_channels))

    def _pool(self, x):
        return tf.nn.avg_pool2d(x, 2, 2, "VALID") if self.downsample else x

    def call(self, inputs, training=False):
        x = inputs
        h = tf.nn.relu(x) if self.preactivation else x
        h = self.conv1(h, training=training)
        h = self.conv2(tf.nn.relu(h), training=training)
        h = self._pool(h)
        if self.preactivation:
            if self.conv_sc is not None:
                x = self.conv_sc(x, training=training)
            x = self._pool(x)
        else:
            x = self._pool(x)
            if self.conv_sc is not None:
                x = self.conv_sc(x, training=training)
        return h + tf.cast(x, h.dtype)

    def compute_output_shape(self, input_shape):
        scale = 2 if self.downsample else 1
        return (input_shape[0], input_shape[1] // scale,
                input_shape[2] // scale, self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(out_channels=self.out_channels,
                      downsample=self.downsample,
                      preactivation=self.preactivation, wide=self.wide,
                      sn_eps=self.sn_eps,
                      kernel_initializer=keras.initializers.serialize(
                          self.kernel_initializer))
        return config
