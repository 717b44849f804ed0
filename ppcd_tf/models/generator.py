"""BigGAN generator (BigGAN-PyTorch `BigGAN.Generator`, channels-last).

Paper: Brock, Donahue, Simonyan, "Large Scale GAN Training for High Fidelity
Natural Image Synthesis", ICLR 2019. Structure matches BigGAN-PyTorch with
`G_shared=True, hier=True`:

  z [B, dim_z] is split into num_blocks + 1 chunks; chunk 0 feeds an SN linear
  to a [bottom, bottom, stream0] map; block i gets y_i = concat(shared(y),
  chunk_i) for its conditional BNs; optional self-attention after the blocks
  named in the ChannelConfig; output: BN (affine) -> ReLU -> SN conv3x3 ->
  tanh, images in [-1, 1].

Like BigGAN-PyTorch, the effective dim_z is `(dim_z // num_slots) * num_slots`
(119 for dim_z=120 at 256x256).

Parameter counts (trainable variables; they equal BigGAN-PyTorch's
`sum(p.numel() for p in G.parameters())`, checked against the original code):

  | resolution | ch | classes | attention | G params   |
  |------------|----|---------|-----------|------------|
  | 128        | 96 | 1000    | 64        | 70,433,988 |
  | 256        | 96 | 1000    | 128       | 81,970,308 |
  | 64         | 64 | 1000    | 32        | 31,969,540 |
  | 32         | 64 | 10      | none      |  4,358,915 |
  | 32         | 32 | 10      | 16        |  1,266,692 |

(all with dim_z=120, shared_dim=128, 3 output channels).

Deviations: channels-last; the first linear's output is reshaped to
[B, bottom, bottom, C] (PyTorch: [B, C, bottom, bottom]), so converting a
PyTorch checkpoint needs that permutation.
"""

import keras
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import arch
from ppcd_tf.models import layers

_PACKAGE = "ppcd_tf"


def stream_mask_name(index):
    """Mask key of residual stream `index` (0: first linear's output)."""
    return f"stream{index}"


def hidden_mask_name(block):
    """Mask key of block `block`'s hidden (conv1 output) channels."""
    return f"hidden{block}"


def attention_mask_names(block):
    """Mask keys (qk, value) of the self-attention after block `block`."""
    return f"attention{block}_qk", f"attention{block}_value"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Generator(layers.NamedBlocksMixin, keras.Model):
    """Class-conditional BigGAN generator built from a ChannelConfig.

    Call: `generator(z, labels, training=False, masks=None,
    return_features=False)` with z float [B, dim_z] and labels int [B];
    returns images float32 [B, H, W, image_channels] in [-1, 1], or
    (images, features) where features maps 'block{i}' / 'attention{i}' to
    that layer's output [B, h, w, c].

    `masks` (optional) maps mask keys (`stream_mask_name`, `hidden_mask_name`,
    `attention_mask_names`) to [C] vectors; missing keys mean "no mask". See
    DESIGN.md section 4.1 for where each mask acts. `keep` (optional, same
    keys) holds 0/1 kept-channel vectors: removed channels' weights are
    zeroed inside every spectral norm, so with `keep` equal to hard `masks`
    the output does not depend on removed channels' weights at all, and a
    compact generator holding only the kept slices computes the same images.

    `output_bn_folded` (set by `ppcd_tf.exporting.graph` on a copy prepared
    for serving): the output BatchNorm was folded into the last block's
    convolutions and is skipped.
    """

    output_bn_folded = False

    def __init__(self, channels, num_classes, dim_z=120, shared_dim=128,
                 image_channels=3, hierarchical=True, bn_epsilon=1e-5,
                 bn_momentum=0.9, sn_eps=1e-6,
                 kernel_initializer="orthogonal", name="generator", **kwargs):
        super().__init__(name=name, **kwargs)
        if isinstance(channels, dict):
            channels = arch.ChannelConfig.from_dict(channels)
        if num_classes < 1:
            raise errors.BadInputError(
                f"num_classes must be >= 1, got {num_classes}.")
        if image_channels < 1:
            raise errors.BadInputError(
                f"image_channels must be >= 1, got {image_channels}.")
        self.channels = channels
        self.num_classes = int(num_classes)
        self.shared_dim = int(shared_dim)
        self.image_channels = int(image_channels)
        self.hierarchical = bool(hierarchical)
        self.bn_epsilon = float(bn_epsilon)
        self.bn_momentum = float(bn_momentum)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        num_slots = channels.num_blocks + 1 if self.hierarchical else 1
        self.z_chunk_size = int(dim_z) // num_slots
        if self.z_chunk_size < 1:
            raise errors.BadInputError(
                f"dim_z={dim_z} is smaller than the {num_slots} "
                "hierarchical z chunks.")
        self.requested_dim_z = int(dim_z)
        self.dim_z = self.z_chunk_size * num_slots

        common = dict(sn_eps=self.sn_eps,
                      kernel_initializer=self.kernel_initializer)
        bw = channels.bottom_width
        self.shared = keras.layers.Embedding(
            self.num_classes, self.shared_dim,
            embeddings_initializer=self.kernel_initializer, name="shared")
        self.linear = layers.SNDense(channels.stream[0] * bw * bw,
                                     name="linear", **common)
        self._init_named_blocks()
        for i in range(1, channels.num_blocks + 1):
            self._add_block(i, layers.GBlock(
                channels.stream[i], hidden_channels=channels.hidden[i - 1],
                upsample=True, bn_epsilon=self.bn_epsilon,
                bn_momentum=self.bn_momentum, name=f"block{i}", **common))
            if i in channels.attention:
                qk, value = channels.attention[i]
                self._add_attention(i, layers.SelfAttention(
                    qk, value, name=f"attention{i}", **common))
        self.output_bn = keras.layers.BatchNormalization(
            epsilon=self.bn_epsilon, momentum=self.bn_momentum,
            synchronized=True, name="output_bn")
        self.output_conv = layers.SNConv2D(self.image_channels, 3,
                                           name="output_conv", **common)

    @property
    def resolution(self):
        """Side of the generated images."""
        return self.channels.resolution

    def build(self, input_shape=None):
        """Creates every weight (shapes follow from the ChannelConfig)."""
        if self.built:
            return
        ch = self.channels
        bw = ch.bottom_width
        cond_dim = self.shared_dim + (self.z_chunk_size
                                      if self.hierarchical else 0)
        self.shared.build((None,))
        self.linear.build((None, self.z_chunk_size if self.hierarchical
                           else self.dim_z))
        size = bw
        for i, block in enumerate(self.blocks, start=1):
            block.build(((None, size, size, ch.stream[i - 1]),
                         (None, cond_dim)))
            size *= 2
            if i in self.attentions:
                self.attentions[i].build((None, size, size, ch.stream[i]))
        self.output_bn.build((None, size, size, ch.stream[-1]))
        self.output_conv.build((None, size, size, ch.stream[-1]))
        self.built = True

    def mixed_embedding(self, labels_a, labels_b, alpha):
        """The shared class embedding mixed between two classes:
        (1 - alpha) * e(labels_a) + alpha * e(labels_b), [N, shared_dim]
        for labels [N] and alpha [N] (BigGAN's class interpolation)."""
        alpha = tf.cast(tf.reshape(alpha, (-1, 1)), self.shared.dtype)
        return ((1.0 - alpha) * self.shared(tf.cast(labels_a, tf.int32))
                + alpha * self.shared(tf.cast(labels_b, tf.int32)))

    def call(self, z, labels, training=False, masks=None, keep=None,
             return_features=False, class_embedding=None):
        """Images [N, H, W, C] for z [N, dim_z] and labels [N];
        `class_embedding` [N, shared_dim], when given, replaces the labels'
        shared embedding (see `mixed_embedding`)."""
        masks = masks or {}
        keep = keep or {}
        ch = self.channels
        bw = ch.bottom_width
        z = tf.convert_to_tensor(z)
        z = z[:, :self.dim_z]
        if class_embedding is None:
            shared = self.shared(tf.cast(labels, tf.int32))
        else:
            shared = class_embedding
        shared = tf.cast(shared, z.dtype)
        if self.hierarchical:
            chunks = tf.split(z, ch.num_blocks + 1, axis=1)
            z0 = chunks[0]
            conds = [tf.concat([shared, c], axis=1) for c in chunks[1:]]
        else:
            z0 = z
            conds = [shared] * ch.num_blocks
        stream0_keep = keep.get(stream_mask_name(0))
        units_keep = (None if stream0_keep is None
                      else tf.tile(stream0_keep, [bw * bw]))
        h = self.linear(z0, training=training, out_keep=units_keep)
        h = tf.reshape(h, (-1, bw, bw, ch.stream[0]))
        h = _mask(h, masks.get(stream_mask_name(0)))
        features = {}
        for i, block in enumerate(self.blocks, start=1):
            h = block((h, conds[i - 1]), training=training,
                      in_mask=masks.get(stream_mask_name(i - 1)),
                      hidden_mask=masks.get(hidden_mask_name(i)),
                      out_mask=masks.get(stream_mask_name(i)),
                      in_keep=keep.get(stream_mask_name(i - 1)),
                      hidden_keep=keep.get(hidden_mask_name(i)),
                      out_keep=keep.get(stream_mask_name(i)))
            features[f"block{i}"] = h
            if i in self.attentions:
                qk_name, value_name = attention_mask_names(i)
                h = self.attentions[i](
                    h, training=training, qk_mask=masks.get(qk_name),
                    value_mask=masks.get(value_name),
                    channel_keep=keep.get(stream_mask_name(i)),
                    qk_keep=keep.get(qk_name),
                    value_keep=keep.get(value_name))
                h = _mask(h, masks.get(stream_mask_name(i)))
                features[f"attention{i}"] = h
        if not self.output_bn_folded:
            h = self.output_bn(h, training=training)
        h = _mask(h, masks.get(stream_mask_name(ch.num_blocks)))
        h = self.output_conv(
            tf.nn.relu(h), training=training,
            in_keep=keep.get(stream_mask_name(ch.num_blocks)))
        images = tf.cast(tf.tanh(h), tf.float32)
        if return_features:
            return images, features
        return images

    def get_config(self):
        return {
            "channels": self.channels.to_dict(),
            "num_classes": self.num_classes,
            "dim_z": self.requested_dim_z,
            "shared_dim": self.shared_dim,
            "image_channels": self.image_channels,
            "hierarchical": self.hierarchical,
            "bn_epsilon": self.bn_epsilon,
            "bn_momentum": self.bn_momentum,
            "sn_eps": self.sn_eps,
            "kernel_initializer": keras.initializers.serialize(
                self.kernel_initializer),
            "name": self.name,
        }


def _mask(x, mask):
    if mask is None:
        return x
    return x * tf.cast(mask, x.dtype)


def count_trainable_parameters(model):
    """Number of trainable scalars of a built Keras model."""
    return int(sum(int(tf.size(v)) for v in model.trainable_variables))
