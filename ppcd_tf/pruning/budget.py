"""Parameter budget of a masked generator.

The live parameter count is the analytic count of `models.complexity` with
every width replaced by the number of kept channels of its mask, so it is a
polynomial in the kept counts. Two evaluations:

  * `live_parameters(..., kept)` with exact hard counts (what the exporter
    will produce);
  * the same with straight-through counts (value: hard count; gradient:
    a surrogate, see `masks.budget_keep_surrogate`) for the budget loss, so
    the loss acts on what will be kept (DESIGN.md section 4.3).

`harden_to_budget` ends the pruning phase: it ranks channels by mask logit
within per-layer floors and cuts (or restores) exactly to the target.
"""

import numpy as np
import tensorflow as tf

from ppcd_tf.models import arch
from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import masks as mask_fns


def _widths_from(channels, kept):
    """(stream, hidden, attention) kept widths; missing keys keep full width."""
    stream = [kept.get(generator_lib.stream_mask_name(i), width)
              for i, width in enumerate(channels.stream)]
    hidden = [kept.get(generator_lib.hidden_mask_name(i), width)
              for i, width in enumerate(channels.hidden, start=1)]
    attention = {}
    for block, (qk, value) in channels.attention.items():
        qk_name, value_name = generator_lib.attention_mask_names(block)
        attention[block] = (kept.get(qk_name, qk), kept.get(value_name, value))
    return stream, hidden, attention


def live_parameters(channels, shape, kept):
    """Parameters of the generator with `kept` channels per mask key.

    Args:
      channels: the full ChannelConfig.
      shape: `complexity.GeneratorShape`.
      kept: {mask key: kept count} (ints, floats or scalar tensors).
    """
    stream, hidden, attention = _widths_from(channels, kept)
    return complexity.generator_parameters(channels, shape, stream=stream,
                                           hidden=hidden, attention=attention)


def live_macs(channels, shape, kept):
    """MACs per image of the generator with `kept` channels per mask key."""
    stream, hidden, attention = _widths_from(channels, kept)
    return complexity.generator_macs(channels, shape, stream=stream,
                                     hidden=hidden, attention=attention)


def kept_channel_config(channels, kept):
    """The ChannelConfig of the compact generator for integer `kept` counts."""
    stream, hidden, attention = _widths_from(channels, kept)
    return arch.ChannelConfig(
        resolution=channels.resolution, stream=[int(c) for c in stream],
        hidden=[int(c) for c in hidden],
        attention={k: (int(q), int(v)) for k, (q, v) in attention.items()},
        bottom_width=channels.bottom_width)


def straight_through_counts(logits, width, floors=None):
    """{key: scalar}: hard kept counts with a surrogate gradient.

    Channels of a layer already at (or below) its floor get no budget
    gradient, so the budget never pushes a layer below its floor.
    """
    counts = {}
    for key, w in logits.items():
        w = tf.convert_to_tensor(w)
        kept = mask_fns.budget_keep_surrogate(w, width)
        if floors is not None:
            hard = tf.reduce_sum(mask_fns.hard_step(w))
            at_floor = hard <= float(floors[key])
            kept = tf.where(at_floor, tf.stop_gradient(kept), kept)
        counts[key] = tf.reduce_sum(kept)
    return counts


def channel_floors(widths, min_channels, min_fraction):
    """{key: floor}: max(min_channels, ceil(min_fraction * width)), <= width."""
    floors = {}
    for key, width in widths.items():
        floor = max(int(min_channels), int(np.ceil(min_fraction * width)))
        floors[key] = min(floor, width)
    return floors


def harden_to_budget(logits, channels, shape, target_params, floors):
    """Decides the final hard masks: the best-ranked channels within budget.

    Starting from the current hard masks (logit > 0), with every layer
    raised to its floor (its highest-logit channels), channels are removed
    in increasing order of logit (never below a floor) while the count
    exceeds `target_params`; then removed channels are restored in
    decreasing order of logit wherever they still fit within the target.

    Args:
      logits: {key: numpy [width]} mask logits.
      channels, shape: the full generator's ChannelConfig and shape.
      target_params: parameter budget.
      floors: {key: minimum kept channels}.

    Returns:
      {key: bool numpy [width]} the kept channels.
    """
    keep = {}
    for key, w in logits.items():
        w = np.asarray(w)
        k = keep[key] = w > 0.0
        if k.sum() < floors[key]:
            k[np.argsort(-w)[:floors[key]]] = True

    def params():
        return live_parameters(channels, shape,
                               {key: int(k.sum()) for key, k in keep.items()})

    # Ties in logit (e.g. masks that barely moved) are broken by the
    # channel's relative rank inside its layer, so that without information
    # layers lose channels in proportion to their width.
    relative_rank = {}
    for key, w in logits.items():
        ranks = np.empty(len(w))
        ranks[np.argsort(np.asarray(w), kind="stable")] = np.arange(len(w))
        relative_rank[key] = ranks / len(w)

    was_on = {key: k.copy() for key, k in keep.items()}
    current = params()
    cut = current > target_params
    if cut:
        order = sorted(((float(logits[key][i]), relative_rank[key][i], key, i)
                        for key, k in keep.items() for i in np.flatnonzero(k)))
        for _, _, key, i in order:
            if current <= target_params:
                break
            if keep[key].sum() <= floors[key]:
                continue
            keep[key][i] = False
            current = params()
    # Refill: restore channels, best logit first, wherever they still fit.
    # After a cut only channels the cut removed are candidates (a channel
    # training switched off stays off); this recovers the slack that the
    # last, possibly expensive, removal left.
    candidates = {key: ~k & was_on[key] if cut else ~k
                  for key, k in keep.items()}
    order = sorted(((-float(logits[key][i]), -relative_rank[key][i], key, i)
                    for key, c in candidates.items()
                    for i in np.flatnonzero(c)))
    for _, _, key, i in order:
        keep[key][i] = True
        if params() > target_params:
            keep[key][i] = False
    return keep


# Bisection steps of the uniform kept fraction (2**-30 resolution).
_BISECTION_STEPS = 30


def _uniform_counts(widths, fraction, floors):
    return {key: min(width, max(floors.get(key, 1),
                                int(np.floor(fraction * width))))
            for key, width in widths.items()}


def uniform_counts(widths, channels, shape, target_params, floors):
    """{key: kept count}: the largest uniform fraction of every width (>=
    its floor) whose parameter count is within `target_params`."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        counts = _uniform_counts(widths, middle, floors)
        if live_parameters(channels, shape, counts) <= target_params:
            low = middle
        else:
            high = middle
    return _uniform_counts(widths, low, floors)


def harden_uniform(logits, channels, shape, target_params, floors):
    """Uniform-width baseline: the same kept fraction in every layer, the
    highest-logit channels of each layer kept. Same contract as
    `harden_to_budget`."""
    widths = {key: len(w) for key, w in logits.items()}
    counts = uniform_counts(widths, channels, shape, target_params, floors)
    keep = {}
    for key, w in logits.items():
        k = np.zeros(len(w), bool)
        k[np.argsort(-np.asarray(w), kind="stable")[:counts[key]]] = True
        keep[key] = k
    return keep


def uniform_channel_config(channels, shape, target_params, min_channels,
                           prune_attention=True):
    """A uniformly thinner ChannelConfig within `target_params`."""
    widths = dict(channel_masks.mask_widths(channels, prune_attention))
    floors = {key: min(width, int(min_channels))
              for key, width in widths.items()}
    counts = uniform_counts(widths, channels, shape, target_params, floors)
    return kept_channel_config(channels, counts)
