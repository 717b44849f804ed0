"""BigGAN-deep's discriminator (BigGAN-PyTorch's `BigGANdeep.Discriminator`)
as Keras layers, for training BigGAN-deep teachers from scratch (no
discriminator weights of the released BigGAN-deep models exist).

  h = input_conv(images)                       3x3, to the first width
  for each stage (`DEEP_D_STAGES[resolution]`): `depth` DeepDBlocks (the
      first changes the width and average-pools when the stage
      downsamples), then self-attention where the stage's resolution is in
      `attention`
  pooled = sum_hw relu(h)
  logit = linear(pooled) + <embed(labels), pooled>   (projection)

`DeepDBlock` is the bottleneck block: 1x1 conv from C_in to C_out / 4, two
3x3 convs, ReLU, 2x2 average pooling when downsampling, 1x1 conv up to C_out;
the skip is average-pooled with it and, when the width grows, concatenated
with a learnable 1x1 conv giving the C_out - C_in new channels. Spectral norm
on every weight, including the class embedding. Same call as
`ppcd_tf.models.discriminator.Discriminator` (logits [B], optionally the
features class-aware distillation reads).
"""

import keras
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import discriminator as discriminator_lib
from ppcd_tf.models import layers

_PACKAGE = "ppcd_tf"

# Stages per resolution: (in multiplier, out multiplier, downsample,
# resolution after the stage) of ch (BigGAN-PyTorch's BigGANdeep.D_arch; its
# 32x32 table labels every stage 16, here each has its true resolution).
DEEP_D_STAGES = {
    32: ((4, 4, True, 16), (4, 4, True, 8), (4, 4, False, 8)),
    64: ((1, 2, True, 32), (2, 4, True, 16), (4, 8, True, 8),
         (8, 16, True, 4)),
    128: ((1, 2, True, 64), (2, 4, True, 32), (4, 8, True, 16),
          (8, 16, True, 8), (16, 16, True, 4)),
    256: ((1, 2, True, 128), (2, 4, True, 64), (4, 8, True, 32),
          (8, 8, True, 16), (8, 16, True, 8), (16, 16, True, 4)),
}
# The bottleneck's inner width is the block's output width / this.
CHANNEL_RATIO = 4


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DeepDBlock(keras.layers.Layer):
    """BigGAN-deep's bottleneck discriminator block.

    Input [B, H, W, C_in] -> [B, H/2, W/2, C_out] with `downsample`
    ([B, H, W, C_out] without); C_out >= C_in.
    """

    def __init__(self, out_channels, downsample=False,
                 channel_ratio=CHANNEL_RATIO, sn_eps=1e-6,
                 kernel_initializer="orthogonal", **kwargs):
        super().__init__(**kwargs)
        self.out_channels = int(out_channels)
        self.downsample = bool(downsample)
        self.channel_ratio = int(channel_ratio)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        in_channels = int(input_shape[-1])
        if in_channels > self.out_channels:
            raise errors.BadInputError(
                f"DeepDBlock cannot narrow: {in_channels} input channels, "
                f"{self.out_channels} output channels.")
        hidden = max(1, self.out_channels // self.channel_ratio)
        common = dict(sn_eps=self.sn_eps,
                      kernel_initializer=self.kernel_initializer)
        self.conv1 = layers.SNConv2D(hidden, 1, name="conv1", **common)
        self.conv2 = layers.SNConv2D(hidden, 3, name="conv2", **common)
        self.conv3 = layers.SNConv2D(hidden, 3, name="conv3", **common)
        self.conv4 = layers.SNConv2D(self.out_channels, 1, name="conv4",
                                     **common)
        self.conv_sc = (
            layers.SNConv2D(self.out_channels - in_channels, 1,
                            name="conv_sc", **common)
            if in_channels != self.out_channels else None)
        self.conv1.build(input_shape)
        for conv in (self.conv2, self.conv3, self.conv4):
            conv.build((None, None, None, hidden))
        if self.conv_sc is not None:
            self.conv_sc.build(input_shape)

    def call(self, inputs, training=False):
        x = inputs
        h = self.conv1(tf.nn.relu(x), training=training)
        h = self.conv2(tf.nn.relu(h), training=training)
        h = tf.nn.relu(self.conv3(tf.nn.relu(h), training=training))
        if self.downsample:
            h = tf.nn.avg_pool2d(h, 2, 2, "VALID")
            x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
        h = self.conv4(h, training=training)
        if self.conv_sc is not None:
            x = tf.concat([x, self.conv_sc(x, training=training)], axis=-1)
        return h + tf.cast(x, h.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(out_channels=self.out_channels,
                      downsample=self.downsample,
                      channel_ratio=self.channel_ratio, sn_eps=self.sn_eps,
                      kernel_initializer=keras.initializers.serialize(
                          self.kernel_initializer))
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DeepDiscriminator(layers.NamedBlocksMixin, keras.Model):
    """Class-conditional projection discriminator with BigGAN-deep blocks.

    Call: `discriminator(images, labels, training=False,
    return_features=False)`: logits float32 [B], or (logits, {"features":
    relu(last output) [B, h, w, C], "class_embedding": [B, C], "blocks":
    [each block's output]}).
    """

    def __init__(self, resolution=128, ch=64, num_classes=1000,
                 image_channels=3, depth=2, attention=(64,), sn_eps=1e-6,
                 kernel_initializer="orthogonal",
                 name="deep_discriminator", **kwargs):
        super().__init__(name=name, **kwargs)
        if resolution not in DEEP_D_STAGES:
            raise errors.BadInputError(
                f"BigGAN-deep discriminator resolution {resolution} has no "
                f"configuration; choose from {sorted(DEEP_D_STAGES)}.")
        if depth < 1:
            raise errors.BadInputError(f"depth must be >= 1, got {depth}.")
        self.resolution = int(resolution)
        self.ch = int(ch)
        self.num_classes = int(num_classes)
        self.image_channels = int(image_channels)
        self.depth = int(depth)
        self.attention_resolutions = tuple(int(a) for a in attention)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(sn_eps=self.sn_eps,
                      kernel_initializer=self.kernel_initializer)
        stages = DEEP_D_STAGES[self.resolution]
        self.input_conv = layers.SNConv2D(stages[0][0] * self.ch, 3,
                                          name="input_conv", **common)
        self._init_named_blocks()
        index = 0
        for _, out_mult, downsample, size in stages:
            for d in range(self.depth):
                index += 1
                self._add_block(index, DeepDBlock(
                    out_mult * self.ch, downsample=downsample and d == 0,
                    name=f"block{index}", **common))
            if size in self.attention_resolutions:
                width = out_mult * self.ch
                self._add_attention(index, layers.SelfAttention(
                    width // 8, width // 2, name=f"attention{index}",
                    **common))
        last = stages[-1][1] * self.ch
        self.linear = layers.SNDense(1, name="linear", **common)
        self.embed = layers.SNEmbedding(
            self.num_classes, last, sn_eps=self.sn_eps,
            embeddings_initializer=self.kernel_initializer, name="embed")

    def build(self, input_shape=None):
        """Creates every weight (shapes follow from the configuration)."""
        if self.built:
            return
        images = tf.zeros((1, self.resolution, self.resolution,
                           self.image_channels))
        self.call(images, tf.zeros((1,), tf.int32))
        self.built = True

    def call(self, images, labels, training=False, return_features=False):
        return discriminator_lib.blocks_and_projection(
            self, self.input_conv(images, training=training), labels,
            training, return_features)

    def get_config(self):
        return {"name": self.name, "resolution": self.resolution,
                "ch": self.ch, "num_classes": self.num_classes,
                "image_channels": self.image_channels, "depth": self.depth,
                "attention": list(self.attention_resolutions),
                "sn_eps": self.sn_eps,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer)}
