"""BigGAN projection discriminator (BigGAN-PyTorch `BigGAN.Discriminator`).

Structure: DBlocks (the first not pre-activated), self-attention after the
blocks named in the config, then `h = sum_hw relu(features)`,
`logit = linear(h) + <embed(y), h>` (projection discriminator, Miyato &
Koyama 2018), spectral norm on every weight including the class embedding.

Parameter counts (trainable variables; equal to BigGAN-PyTorch's, checked
against the original code; dim_z is irrelevant to D):

  | resolution | ch | classes | attention | D params   |
  |------------|----|---------|-----------|------------|
  | 128        | 96 | 1000    | 64        | 87,982,370 |
  | 256        | 96 | 1000    | 128       | 99,191,330 |
  | 64         | 64 | 1000    | 32        | 20,571,842 |
  | 32         | 64 | 10      | none      |  4,207,361 |
  | 32         | 32 | 10      | 16        |  1,137,029 |

(3 input channels). In the 32x32 table every block output is labelled 16, so
attention '16' places one attention layer after each of the four blocks, as
in BigGAN-PyTorch.
"""

import keras
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import arch
from ppcd_tf.models import layers

_PACKAGE = "ppcd_tf"


def blocks_and_projection(model, h, labels, training=False,
                          return_features=False):
    """The body every projection discriminator shares: `model.blocks` in
    order on h [B, H, W, C] (each followed by `model.attentions[i]` where
    there is one), `pooled = sum_hw relu(h)`, then
    `logit = model.linear(pooled) + <model.embed(labels), pooled>`.

    Returns logits float32 [B], or (logits, {"features": relu(h) [B, h, w,
    C], "class_embedding": [B, C], "blocks": [each block's output]}).
    """
    block_outputs = []
    for i, block in enumerate(model.blocks, start=1):
        h = block(h, training=training)
        if i in model.attentions:
            h = model.attentions[i](h, training=training)
        block_outputs.append(h)
    features = tf.nn.relu(h)
    pooled = tf.reduce_sum(features, axis=[1, 2])
    embedding = model.embed(labels, training=training)
    logits = model.linear(pooled, training=training)[:, 0]
    logits = logits + tf.reduce_sum(
        tf.cast(embedding, pooled.dtype) * pooled, axis=1)
    logits = tf.cast(logits, tf.float32)
    if return_features:
        return logits, {"features": features, "class_embedding": embedding,
                        "blocks": block_outputs}
    return logits


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Discriminator(layers.NamedBlocksMixin, keras.Model):
    """Class-conditional projection discriminator.

    Call: `discriminator(images, labels, training=False,
    return_features=False)` with images float [B, H, W, C] in [-1, 1] and
    labels int [B]; returns logits float32 [B], or (logits, features) with
    features = {'features': relu(last block output) [B, h, w, C_last],
    'class_embedding': embed(labels) [B, C_last]} (the ingredients of the
    class activation map used by class-aware distillation).
    """

    def __init__(self, config, num_classes, image_channels=3, wide=True,
                 sn_eps=1e-6, kernel_initializer="orthogonal",
                 name="discriminator", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(config, dict):
            config = arch.DiscriminatorConfig.from_dict(config)
        if num_classes < 1:
            raise errors.BadInputError(
                f"num_classes must be >= 1, got {num_classes}.")
        self.config = config
        self.num_classes = int(num_classes)
        self.image_channels = int(image_channels)
        self.wide = bool(wide)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        common = dict(sn_eps=self.sn_eps,
                      kernel_initializer=self.kernel_initializer)
        self._init_named_blocks()
        for i, (width, down) in enumerate(
                zip(config.out, config.downsample), start=1):
            self._add_block(i, layers.DBlock(
                width, downsample=down, preactivation=i > 1, wide=self.wide,
                name=f"block{i}", **common))
            if i in config.attention:
                qk, value = config.attention[i]
                self._add_attention(i, layers.SelfAttention(
                    qk, value, name=f"attention{i}", **common))
        self.linear = layers.SNDense(1, name="linear", **common)
        self.embed = layers.SNEmbedding(
            self.num_classes, config.out[-1], sn_eps=self.sn_eps,
            embeddings_initializer=self.kernel_initializer, name="embed")

    def build(self, input_shape=None):
        if self.built:
            return
        size = self.config.resolution
        channels = self.image_channels
        for i, block in enumerate(self.blocks, start=1):
            block.build((None, size, size, channels))
            if block.downsample:
                size //= 2
            channels = block.out_channels
            if i in self.attentions:
                self.attentions[i].build((None, size, size, channels))
        self.linear.build((None, channels))
        self.embed.build((None,))
        self.built = True

    def call(self, images, labels, training=False, return_features=False):
        return blocks_and_projection(self, images, labels, training,
                                     return_features)

    def get_config(self):
        return {
            "config": self.config.to_dict(),
            "num_classes": self.num_classes,
            "image_channels": self.image_channels,
            "wide": self.wide,
            "sn_eps": self.sn_eps,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer),
            "name": self.name,
        }
