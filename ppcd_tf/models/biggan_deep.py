"""BigGAN-deep's generator (Brock et al. 2019, appendix B) as Keras layers.

The architecture of the pretrained BigGAN-deep generators people download
(TF-Hub's `biggan-deep-128/256/512` and their PyTorch port,
huggingface/pytorch-pretrained-BigGAN), parameter for parameter:

  cond = concat(z [B, dim_z], embedding(labels) [B, embed_dim])
  x = SNDense(cond) -> [B, 4, 4, 16 ch]           (with bias)
  for each block (`DEEP_LAYERS[resolution]`: upsample?, in, out multipliers
  of ch), with self-attention before block `attention_position`:
      x = DeepGBlock(x, cond)
  x = conv_to_rgb(relu(bn(x)))[..., :image_channels]; tanh

`DeepGBlock` is the bottleneck residual block: four class-conditional BNs
(gain 1 + W_g cond, bias W_b cond; SN linears without bias), a 1x1 conv from
the block's width down to a quarter of it, two 3x3 convs at that width (the
first after the nearest upsampling), a 1x1 conv up to the output width; the
skip keeps the first `out` channels of the input when the width halves (no
shortcut conv) and is upsampled with the block. The class embedding is a
plain (not spectrally normalised) [num_classes, embed_dim] matrix, the port's
bias-free `Linear` of a one-hot; the final BN is unconditional and affine;
`conv_to_rgb` maps ch -> ch channels of which the first `image_channels` are
kept (the released weights have all ch).

Parameter counts (trainable, generator + class embedding) equal the port's
`BigGAN` module: 50,388,609 at 128, 55,880,833 at 256, 56,163,905 at 512
(tests/biggan_deep_test.py). The discriminator for training from scratch is
`ppcd_tf.models.biggan_deep_discriminator`. The released weights' per-truncation
BN statistics are tables (`truncation_rows`, `ppcd_tf.models.truncation`);
the PyTorch port's weights are read by
`ppcd_tf.importing.biggan_deep_pytorch`. Every width is data
(`ppcd_tf.models.deep_widths`): the masked student and the compact generator
that `ppcd_tf.pruning.deep_surgery` cuts from it are this class too. Not yet
here (issue 35): gin builders and the PPCD trainer on the deep blocks.
"""

import keras
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import deep_widths
from ppcd_tf.models import layers
from ppcd_tf.models import truncation as truncation_lib

_PACKAGE = "ppcd_tf"

# Blocks of the released configurations: (upsample, in multiplier, out
# multiplier) of ch, from 4x4 to the resolution (the port's config.json
# `layers`); 32 is ours, for small experiments (three upsamplings).
DEEP_LAYERS = {
    32: ((False, 4, 4), (True, 4, 4), (False, 4, 4), (True, 4, 2),
         (False, 2, 2), (True, 2, 1)),
    128: ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8),
          (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
          (False, 2, 2), (True, 2, 1)),
    256: ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8),
          (False, 8, 8), (True, 8, 8), (False, 8, 8), (True, 8, 4),
          (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)),
    512: ((False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8),
          (False, 8, 8), (True, 8, 8), (False, 8, 8), (True, 8, 4),
          (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1),
          (False, 1, 1), (True, 1, 1)),
}
# Self-attention sits before this block (at 64x64 in the released models;
# at 16x16 in the 32x32 configuration).
ATTENTION_POSITION = {32: 2, 128: 8, 256: 8, 512: 8}
# Width of the 4x4 input grid: 16 ch channels.
BOTTOM_WIDTH = 4
# The bottleneck's inner width is the block's input width / this.
REDUCTION = deep_widths.REDUCTION


def is_statistics_table(path):
    """Whether a weight path belongs to a per-truncation statistics table
    (`stats{i}` of a block, `output_stats`): a student trained from an
    imported generator has none (its own BN statistics are trained)."""
    return any(part == "output_stats" or (part.startswith("stats")
                                          and part[5:].isdigit())
               for part in path.split("/"))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DeepGBlock(keras.layers.Layer):
    """BigGAN-deep's bottleneck generator block.

    Inputs: x [B, H, W, C_in], cond [B, cond_dim]. Output [B, 2H, 2W, C_out]
    with `upsample` ([B, H, W, C_out] without). Released form
    (`inner_channels` None): C_out is C_in or C_in / 2 (the skip drops the
    second half of the channels) and every inner width is C_in // reduction.
    A compact block (cut by surgery) gives its `inner_channels` (a, b, c)
    and, when its kept channels do not line up, a `skip_index`: one input
    index per output channel, -1 where the skip adds zero
    (`deep_widths.DeepWidths.skips`). With `truncation_rows` > 0 each BN has
    a table of per-truncation statistics (`truncation.StatisticsTable`) that
    `call` reads when given a `truncation`.

    Masks and kept-channel vectors (all optional [C] vectors; where they act:
    `ppcd_tf.models.deep_widths`): `in_mask` / `in_keep` the input stream's,
    re-applied after bn0; `inner_masks` / `inner_keeps` three, after bn1,
    bn2, bn3; `out_mask` / `out_keep` the output stream's, on the sum.
    A keep vector zeroes removed channels' weights inside every spectral
    norm, so a compact block computes the same sigmas.
    """

    def __init__(self, out_channels, upsample=False, reduction=REDUCTION,
                 bn_epsilon=1e-4, bn_momentum=0.9, sn_eps=1e-4,
                 kernel_initializer="orthogonal", truncation_rows=0,
                 inner_channels=None, skip_index=None, **kwargs):
        # No autocast: a float64 truncation must reach the tables as it is.
        super().__init__(autocast=False, **kwargs)
        self.truncation_rows = int(truncation_rows)
        self.out_channels = int(out_channels)
        self.upsample = bool(upsample)
        self.reduction = int(reduction)
        self.bn_epsilon = float(bn_epsilon)
        self.bn_momentum = float(bn_momentum)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.inner_channels = (None if inner_channels is None
                               else tuple(int(c) for c in inner_channels))
        self.skip_index = (None if skip_index is None
                           else tuple(int(c) for c in skip_index))

    def _inner_widths(self, in_channels):
        """(a, b, c): the given inner widths, or the released block's."""
        if self.inner_channels is not None:
            if self.out_channels > in_channels and self.skip_index is None:
                raise errors.BadInputError(
                    f"DeepGBlock: the skip cannot widen {in_channels} input "
                    f"channels to {self.out_channels}.")
            return self.inner_channels
        if self.out_channels not in (in_channels, in_channels // 2):
            raise errors.BadInputError(
                f"DeepGBlock keeps or halves its width: {in_channels} "
                f"input channels cannot give {self.out_channels}.")
        middle = in_channels // self.reduction
        if middle < 1:
            raise errors.BadInputError(
                f"DeepGBlock: {in_channels} input channels / reduction "
                f"{self.reduction} leaves no inner channel.")
        return (middle,) * 3

    def build(self, input_shape):
        x_shape, cond_shape = input_shape
        in_channels = int(x_shape[-1])
        inner = self._inner_widths(in_channels)
        self.middle_channels = inner[0]
        self._in_channels = in_channels
        common = dict(sn_eps=self.sn_eps,
                      kernel_initializer=self.kernel_initializer)
        cbn = dict(epsilon=self.bn_epsilon, momentum=self.bn_momentum,
                   **common)
        # Named attributes, not lists: tf.train.Checkpoint tracks only
        # these (a list's layers would be left out of every checkpoint).
        for i, (width, size) in enumerate(zip(
                inner + (self.out_channels,), (1, 3, 3, 1))):
            setattr(self, f"bn{i}", layers.ConditionalBatchNorm(
                name=f"bn{i}", **cbn))
            setattr(self, f"conv{i}", layers.SNConv2D(
                width, size, name=f"conv{i}", **common))
            if self.truncation_rows:
                setattr(self, f"stats{i}", truncation_lib.StatisticsTable(
                    self.truncation_rows, name=f"stats{i}"))
        # Input widths of bn_i and conv_i (only the channels matter).
        for i, (bn, conv, width) in enumerate(zip(
                self.bns, self.convs, (in_channels,) + inner[:3])):
            shape = (x_shape[0], None, None, width)
            bn.build((shape, cond_shape))
            conv.build(shape)
            if self.tables:
                self.tables[i].build(shape)

    @property
    def bns(self):
        """The four conditional BNs, in order."""
        return [getattr(self, f"bn{i}") for i in range(4)]

    @property
    def convs(self):
        """conv0 (1x1 down), conv1, conv2 (3x3), conv3 (1x1 up)."""
        return [getattr(self, f"conv{i}") for i in range(4)]

    @property
    def tables(self):
        """The BNs' per-truncation statistics ([] without tables)."""
        if not self.truncation_rows:
            return []
        return [getattr(self, f"stats{i}") for i in range(4)]

    def call(self, inputs, training=False, truncation=None, in_mask=None,
             inner_masks=(None, None, None), out_mask=None, in_keep=None,
             inner_keeps=(None, None, None), out_keep=None):
        x, cond = inputs
        masks = (in_mask,) + tuple(inner_masks)
        # keeps[i]: the channels entering bn_i and conv_i; keeps[i + 1]:
        # conv_i's outputs.
        keeps = (in_keep,) + tuple(inner_keeps) + (out_keep,)
        h = x
        for i, (bn, conv) in enumerate(zip(self.bns, self.convs)):
            statistics = (None if truncation is None
                          else self.tables[i].statistics(truncation))
            h = bn((h, cond), training=training, keep=keeps[i],
                   statistics=statistics)
            h = tf.nn.relu(layers.apply_mask(h, masks[i]))
            if i == 1 and self.upsample:
                h = layers.upsample2x(h)
            h = conv(h, training=training, in_keep=keeps[i],
                     out_keep=keeps[i + 1])
        skip = self._skip(x)
        if self.upsample:
            skip = layers.upsample2x(skip)
        return layers.apply_mask(h + tf.cast(skip, h.dtype), out_mask)

    def _skip(self, x):
        """The skip's channels of x [B, H, W, C_in]: the first C_out, or
        those `skip_index` names (zero for -1)."""
        if self.skip_index is None:
            return x[..., :self.out_channels]
        index = [self._in_channels if c < 0 else c for c in self.skip_index]
        if min(self.skip_index) < 0:
            x = tf.concat([x, tf.zeros_like(x[..., :1])], axis=-1)
        return tf.gather(x, index, axis=-1)

    def compute_output_shape(self, input_shape):
        x_shape = input_shape[0]
        scale = 2 if self.upsample else 1
        return (x_shape[0], x_shape[1] * scale, x_shape[2] * scale,
                self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(out_channels=self.out_channels, upsample=self.upsample,
                      reduction=self.reduction, bn_epsilon=self.bn_epsilon,
                      bn_momentum=self.bn_momentum, sn_eps=self.sn_eps,
                      kernel_initializer=keras.initializers.serialize(
                          self.kernel_initializer),
                      truncation_rows=self.truncation_rows,
                      inner_channels=self.inner_channels,
                      skip_index=self.skip_index)
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DeepGenerator(layers.NamedBlocksMixin, keras.Model):
    """BigGAN-deep generator (see the module docstring).

    Call: `generator(z, labels, training=False, truncation=None, masks=None,
    keep=None, return_features=False)` with z float [B, dim_z] and labels
    int [B]; returns images float32 [B, R, R, image_channels] in [-1, 1] for
    the configuration's resolution R, or (images, features) where features
    maps 'block{i}' / 'attention{p}' to that layer's output [B, h, w, c].
    With `truncation_rows` > 0 (the released weights: 51) every BN holds
    per-truncation statistics, and a scalar `truncation` in (0, 1] makes
    the BNs use them (inference; `truncation.row_at` says how a row is
    read) instead of the standing statistics.

    `widths` (a `deep_widths.DeepWidths` or its dict; default: the released
    widths of `ch`) sets every width: a compact generator cut by surgery is
    this class with its kept widths. `masks` / `keep` map the mask keys of
    `deep_widths.mask_widths` to [C] mask values / 0/1 kept channels (where
    they act: `ppcd_tf.models.deep_widths`); with `keep`, `conv_to_rgb`'s
    unused outputs (beyond `image_channels`) leave its spectral norm too, as
    in a compact generator, which does not have them. `class_embedding`
    [B, embed_dim], when given, replaces the labels' embedding
    (`mixed_embedding`).
    """

    def __init__(self, resolution=128, ch=128, num_classes=1000, dim_z=128,
                 embed_dim=128, image_channels=3, attention=True,
                 bn_epsilon=1e-4, bn_momentum=0.9, sn_eps=1e-4,
                 kernel_initializer="orthogonal", truncation_rows=0,
                 widths=None, name="deep_generator", **kwargs):
        # No autocast: a float64 truncation must reach the tables as it is.
        super().__init__(name=name, autocast=False, **kwargs)
        self.truncation_rows = int(truncation_rows)
        if resolution not in DEEP_LAYERS:
            raise errors.BadInputError(
                f"BigGAN-deep resolution {resolution} has no configuration; "
                f"choose from {sorted(DEEP_LAYERS)}.")
        self.resolution = int(resolution)
        self.ch = int(ch)
        self.num_classes = int(num_classes)
        self.dim_z = int(dim_z)
        self.embed_dim = int(embed_dim)
        self.image_channels = int(image_channels)
        self.attention = bool(attention)
        self.bn_epsilon = float(bn_epsilon)
        self.bn_momentum = float(bn_momentum)
        self.sn_eps = float(sn_eps)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.compact = widths is not None
        if isinstance(widths, dict):
            widths = deep_widths.DeepWidths.from_dict(widths)
        self.widths = widths or deep_widths.full_widths(
            DEEP_LAYERS[self.resolution], self.ch,
            ATTENTION_POSITION[self.resolution] if attention else None)
        self.stages = deep_widths.stages_of(DEEP_LAYERS[self.resolution])
        if len(self.widths.inner) != len(DEEP_LAYERS[self.resolution]):
            raise errors.BadInputError(
                f"The widths have {len(self.widths.inner)} blocks; "
                f"resolution {resolution} has "
                f"{len(DEEP_LAYERS[self.resolution])}.")
        if image_channels > self.widths.rgb:
            raise errors.BadInputError(
                f"image_channels={image_channels} exceeds the output conv's "
                f"{self.widths.rgb} channels (ch, of which the first are "
                "kept).")
        self._build_layers()

    def _build_layers(self):
        common = dict(sn_eps=self.sn_eps,
                      kernel_initializer=self.kernel_initializer)
        widths = self.widths
        self.embedding = keras.layers.Embedding(
            self.num_classes, self.embed_dim,
            embeddings_initializer=self.kernel_initializer, name="embedding")
        self.linear = layers.SNDense(
            widths.stream[0] * BOTTOM_WIDTH ** 2, name="linear", **common)
        self._init_named_blocks()
        for index, (upsample, _, _) in enumerate(
                DEEP_LAYERS[self.resolution]):
            if index in widths.attention:
                qk, value = widths.attention[index]
                self._add_attention(index, layers.SelfAttention(
                    qk, value, name=f"attention{index}", **common))
            self._add_block(index + 1, DeepGBlock(
                widths.stream[index + 1], upsample=upsample,
                bn_epsilon=self.bn_epsilon, bn_momentum=self.bn_momentum,
                truncation_rows=self.truncation_rows,
                inner_channels=(widths.inner[index] if self.compact
                                else None),
                skip_index=widths.skips[index],
                name=f"block{index + 1}", **common))
        self.output_bn = keras.layers.BatchNormalization(
            epsilon=self.bn_epsilon, momentum=self.bn_momentum,
            synchronized=True, name="output_bn")
        self.conv_to_rgb = layers.SNConv2D(widths.rgb, 3, name="conv_to_rgb",
                                           **common)
        self.output_stats = (
            truncation_lib.StatisticsTable(self.truncation_rows,
                                           name="output_stats")
            if self.truncation_rows else None)

    def build(self, input_shape=None):
        """Creates every weight (shapes follow from the widths)."""
        if self.built:
            return
        cond_shape = (None, self.dim_z + self.embed_dim)
        self.embedding.build((None,))
        self.linear.build(cond_shape)
        size = BOTTOM_WIDTH
        for index, (upsample, _, _) in enumerate(
                DEEP_LAYERS[self.resolution]):
            shape = (None, size, size, self.widths.stream[index])
            attention = self.attentions.get(index)
            if attention is not None:
                attention.build(shape)
            self.blocks[index].build((shape, cond_shape))
            size *= 2 if upsample else 1
        last = self.widths.stream[-1]
        self.output_bn.build((None, size, size, last))
        if self.output_stats is not None:
            self.output_stats.build((None, size, size, last))
        self.conv_to_rgb.build((None, size, size, last))
        self.built = True

    def mixed_embedding(self, labels_a, labels_b, alpha):
        """The class embedding mixed between two classes: (1 - alpha) *
        e(labels_a) + alpha * e(labels_b), [N, embed_dim] for labels [N]
        and alpha [N] (for `call(class_embedding=)`)."""
        alpha = tf.cast(tf.reshape(alpha, (-1, 1)), tf.float32)
        return ((1.0 - alpha) * self.embedding(tf.cast(labels_a, tf.int32))
                + alpha * self.embedding(tf.cast(labels_b, tf.int32)))

    def call(self, z, labels, training=False, truncation=None, masks=None,
             keep=None, return_features=False, class_embedding=None):
        if truncation is not None and (training or not self.truncation_rows):
            raise errors.BadInputError(
                "A truncation selects per-truncation BN statistics: the "
                "generator needs truncation_rows > 0 (imported weights) and "
                "inference (training=False).")
        masks, keep = masks or {}, keep or {}

        def stage(key_source, stream):
            return key_source.get(deep_widths.stage_mask_name(
                self.stages[stream]))

        embedding = (self.embedding(labels) if class_embedding is None
                     else tf.cast(class_embedding, tf.float32))
        cond = tf.concat([tf.cast(z, tf.float32), embedding], axis=-1)
        units_keep = stage(keep, 0)
        if units_keep is not None:
            units_keep = tf.tile(units_keep, [BOTTOM_WIDTH ** 2])
        x = tf.reshape(self.linear(cond, training=training,
                                   out_keep=units_keep),
                       (-1, BOTTOM_WIDTH, BOTTOM_WIDTH,
                        self.widths.stream[0]))
        x = layers.apply_mask(x, stage(masks, 0))
        features = {}
        for index, block in enumerate(self.blocks):
            attention = self.attentions.get(index)
            if attention is not None:
                qk_name, value_name = deep_widths.attention_mask_names(index)
                x = attention(x, training=training,
                              qk_mask=masks.get(qk_name),
                              value_mask=masks.get(value_name),
                              channel_keep=stage(keep, index),
                              qk_keep=keep.get(qk_name),
                              value_keep=keep.get(value_name))
                x = layers.apply_mask(x, stage(masks, index))
                features[f"attention{index}"] = x
            inner = [deep_widths.inner_mask_name(index + 1, j)
                     for j in range(deep_widths.INNER_PER_BLOCK)]
            x = block((x, cond), training=training, truncation=truncation,
                      in_mask=stage(masks, index),
                      inner_masks=[masks.get(k) for k in inner],
                      out_mask=stage(masks, index + 1),
                      in_keep=stage(keep, index),
                      inner_keeps=[keep.get(k) for k in inner],
                      out_keep=stage(keep, index + 1))
            features[f"block{index + 1}"] = x
        return self._output(x, training, truncation, masks, keep,
                            return_features, features)

    def _output(self, x, training, truncation, masks, keep, return_features,
                features):
        """Output BN, last stage mask, ReLU, conv_to_rgb, tanh."""
        last = deep_widths.stage_mask_name(self.stages[-1])
        x = tf.nn.relu(layers.apply_mask(
            self._output_norm(x, training, truncation), masks.get(last)))
        rgb_keep = None
        if keep and self.widths.rgb > self.image_channels:
            rgb_keep = tf.constant(
                [1.0] * self.image_channels
                + [0.0] * (self.widths.rgb - self.image_channels))
        x = self.conv_to_rgb(x, training=training, in_keep=keep.get(last),
                             out_keep=rgb_keep)
        images = tf.tanh(x[..., :self.image_channels])
        if return_features:
            return images, features
        return images

    def _output_norm(self, x, training, truncation):
        """The unconditional affine output BN, with the per-truncation
        statistics when a truncation is given."""
        if truncation is None:
            return self.output_bn(x, training=training)
        normalized = layers.normalize_with(
            x, self.output_stats.statistics(truncation), self.bn_epsilon)
        return (normalized * tf.cast(self.output_bn.gamma, x.dtype)
                + tf.cast(self.output_bn.beta, x.dtype))

    def get_config(self):
        config = {"name": self.name, "resolution": self.resolution,
                  "ch": self.ch, "num_classes": self.num_classes,
                  "dim_z": self.dim_z, "embed_dim": self.embed_dim,
                  "image_channels": self.image_channels,
                  "attention": self.attention, "bn_epsilon": self.bn_epsilon,
                  "bn_momentum": self.bn_momentum, "sn_eps": self.sn_eps,
                  "kernel_initializer": keras.initializers.serialize(
                      self.kernel_initializer),
                  "truncation_rows": self.truncation_rows}
        if self.compact:
            config["widths"] = self.widths.to_dict()
        return config
