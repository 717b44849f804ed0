"""The channel masks of a PP-Res generator (a Keras layer holding their logits).

One mask per prunable width of the generator (DESIGN.md section 4.1), keyed
like `Generator.call(masks=...)` expects:

  * `stream{i}`: residual stream i (0: the first linear's output; i >= 1:
    block i's output). Applied to the block output (both summands), again
    after the next block's bn1 (or the output BN), and to the self-attention
    output that writes into that stream.
  * `hidden{i}`: conv1's output in block i, applied after bn2.
  * `attention{i}_qk`, `attention{i}_value`: the inner widths of the
    self-attention after block i (optional, `prune_attention`).

Each mask is `mask_fn(w, bound)` of one real logit per channel. While the
bound is positive the masks are soft; at bound 0 they are the hard step
1[w > 0] with no gradient (frozen), whatever the mask function.
"""

import collections

import keras
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import masks as mask_fns

_PACKAGE = "ppcd_tf"


def mask_widths(channels, prune_attention=True):
    """Ordered {mask key: full width} of a ChannelConfig."""
    widths = collections.OrderedDict()
    for i, width in enumerate(channels.stream):
        widths[generator_lib.stream_mask_name(i)] = width
    for i, width in enumerate(channels.hidden, start=1):
        widths[generator_lib.hidden_mask_name(i)] = width
    if prune_attention:
        for block, (qk, value) in channels.attention.items():
            qk_name, value_name = generator_lib.attention_mask_names(block)
            widths[qk_name] = qk
            widths[value_name] = value
    return widths


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChannelMasks(keras.layers.Layer):
    """Mask logits of every prunable width, and the current bound.

    Args:
      widths: {mask key: width} (see `mask_widths`).
      initial_value: initial logit of every channel (>= the initial bound
        gives masks that start fully open).
      initial_bound: initial value of the bound variable.
      mask_function: name in `ppcd_tf.pruning.masks.MASK_FUNCTIONS`.

    Call: `masks()` -> {key: [width] float32 mask values}.
    """

    def __init__(self, widths, initial_value=1.0, initial_bound=1.0,
                 mask_function="smooth_step", **kwargs):
        super().__init__(**kwargs)
        if not widths:
            raise errors.BadInputError(
                "ChannelMasks needs at least one mask width.")
        self.widths = collections.OrderedDict(
            (str(k), int(v)) for k, v in dict(widths).items())
        self.initial_value = float(initial_value)
        self.initial_bound = float(initial_bound)
        self.mask_function = mask_function
        self._mask_fn = mask_fns.mask_function(mask_function)
        for key, width in self.widths.items():
            if width < 1:
                raise errors.BadInputError(f"Mask {key!r} has width {width}.")
            # One attribute per logit: tf.train.Checkpoint tracks attributes,
            # not variables inside plain dicts.
            setattr(self, f"logit_{key}", self.add_weight(
                name=key, shape=(width,),
                initializer=keras.initializers.Constant(self.initial_value)))
        self.bound = self.add_weight(
            name="bound", shape=(),
            initializer=keras.initializers.Constant(self.initial_bound),
            trainable=False)
        self.built = True

    @property
    def logits(self):
        """{key: logit variable [width]} in mask order."""
        return collections.OrderedDict(
            (key, getattr(self, f"logit_{key}")) for key in self.widths)

    def call(self, inputs=None):
        del inputs
        bound = tf.convert_to_tensor(self.bound)
        soft = bound > 0.0
        values = {}
        for key, logit in self.logits.items():
            w = tf.convert_to_tensor(logit)
            hard = tf.stop_gradient(mask_fns.hard_step(w))
            values[key] = tf.where(soft, self._mask_fn(w, bound), hard)
        return values

    def keep(self, values=None):
        """{key: [width] float32 0/1}: channels whose mask is not 0.

        Passed to `Generator.call(keep=...)` so that spectral norms ignore
        the weights of channels that are entirely off. A channel that is
        partly on (soft phase) is kept, so it still contributes and still
        receives task gradients; at bound 0 this is the hard mask.

        Args:
          values: the mask values of this step (`self()`), to avoid
            recomputing them.
        """
        values = self() if values is None else values
        return {key: tf.stop_gradient(tf.cast(value > 0.0, tf.float32))
                for key, value in values.items()}

    def hard_masks(self):
        """{key: bool numpy array} of the channels with a positive logit."""
        return {key: logit.numpy() > 0.0 for key, logit in self.logits.items()}

    def hard_counts(self):
        """{key: int32 scalar tensor}: channels with a positive logit."""
        return {key: tf.reduce_sum(tf.cast(
            tf.convert_to_tensor(logit) > 0.0, tf.int32))
            for key, logit in self.logits.items()}

    def get_config(self):
        config = super().get_config()
        config.update(widths=dict(self.widths),
                      initial_value=self.initial_value,
                      initial_bound=self.initial_bound,
                      mask_function=self.mask_function)
        return config
