"""Parameter budget of a masked generator.

The live parameter count is the analytic count of `models.complexity` with
every width replaced by the number of kept channels of its mask, so it is a
polynomial in the kept counts. Two evaluations:

  * `live_parameters(..., kept)` with exact hard counts (what the exporter
    will produce);
  * the same with straight-through counts (value: hard count; gradient:
    a surrogate, see `masks.budget_keep_surrogate`) for the budget loss, so
    the loss acts on what will be kept (DESIGN.md section 4.3).

`harden` ends the pruning phase: it ranks channels by mask logit within
per-layer floors and cuts (or restores) exactly to the budget, which may be
several limits at once (`ppcd_tf.pruning.costs`) and may ask every layer's
kept count to be a multiple of N (widths the hardware likes).
"""

import numpy as np
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import arch
from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import masks as mask_fns


def widths_from(channels, kept):
    """(stream, hidden, attention) kept widths of {mask key: kept count};
    missing keys keep the full width."""
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
    stream, hidden, attention = widths_from(channels, kept)
    return complexity.generator_parameters(channels, shape, stream=stream,
                                           hidden=hidden, attention=attention)


def live_macs(channels, shape, kept):
    """MACs per image of the generator with `kept` channels per mask key."""
    stream, hidden, attention = widths_from(channels, kept)
    return complexity.generator_macs(channels, shape, stream=stream,
                                     hidden=hidden, attention=attention)


def kept_channel_config(channels, kept):
    """The ChannelConfig of the compact generator for integer `kept` counts."""
    stream, hidden, attention = widths_from(channels, kept)
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


def harden_floor_count(width, floor, multiple):
    """The smallest count hardening may leave a layer with: its floor
    rounded up to a multiple of `multiple`, at most its width."""
    return min(width, -(-int(floor) // int(multiple)) * int(multiple))


def _allowed_counts(width, floor, multiple):
    """Sorted kept counts a layer may end with: the multiples of `multiple`
    from its floor (rounded up to a multiple) to its width, and the width."""
    low = harden_floor_count(width, floor, multiple)
    return sorted(set(range(low, width + 1, multiple)) | {width})


def _channel_order(w):
    """(channel indices best first, relative rank of each channel).

    Ties in logit (e.g. masks that barely moved) are broken by the channel's
    relative rank inside its layer, so that without information layers lose
    channels in proportion to their width.
    """
    w = np.asarray(w)
    rank = np.empty(len(w))
    rank[np.argsort(w, kind="stable")] = np.arange(len(w))
    rank /= len(w)
    order = sorted(range(len(w)), key=lambda i: (-w[i], -rank[i]))
    return np.asarray(order, dtype=int), rank


def harden(logits, holds, floors, multiple=1):
    """Decides the final hard masks: the best-ranked channels within budget.

    Every layer keeps its best-ranked channels; only how many is decided.
    Starting from the current hard masks (logit > 0), each layer's count
    raised to its floor and to an allowed count (a multiple of `multiple`,
    or the full width), groups of channels (`multiple` at a time) are removed
    in increasing order of mean logit (never below a floor) while the budget
    does not hold; then groups are restored in decreasing order of mean
    logit wherever the budget still holds. After a cut only what the cut
    removed can come back (this recovers the slack that the last, possibly
    expensive, removal left); masks that end below the budget are topped up
    to it with the best-ranked closed channels. With `multiple` 1 this ranks
    single channels globally by logit.

    A channel that was closed in training and is kept here (to fill the
    budget, reach a floor or an allowed count) comes back with the weights
    it had when it closed, and the BatchNorms a closed channel feeds hold
    standing statistics of a constant input (variance ~0): the trainer
    resets those (`PruningPhase.harden`), else the channel is multiplied by
    ~1/sqrt(epsilon) at inference (a failed cut measured activations going
    from 5.4 to 2.4e3; docs/log/benchmarks_log.md).

    Args:
      logits: {key: numpy [width]} mask logits.
      holds: {key: kept count} -> bool, True when every budgeted quantity is
        within its target (costs must not decrease when a count grows).
      floors: {key: minimum kept channels}.
      multiple: kept counts are multiples of this (or the full width).

    Returns:
      {key: bool numpy [width]} the kept channels.
    """
    if int(multiple) < 1:
        raise errors.BadInputError(
            f"The width multiple must be >= 1, got {multiple}.")
    state = _Hardening(logits, floors, int(multiple))
    initial = dict(state.counts)
    cut = not holds(state.counts)
    state.cut_until(holds)
    ceilings = (initial if cut
                else {key: len(w) for key, w in state.logits.items()})
    state.restore_while(holds, ceilings)
    return state.keep()


class _Hardening:
    """The kept counts of `harden` as they move: per layer the channel
    order (best first), the allowed counts and the current count."""

    def __init__(self, logits, floors, multiple):
        self.logits = {key: np.asarray(w, dtype=np.float64)
                       for key, w in logits.items()}
        self.orders, self.ranks, self.allowed, self.counts = {}, {}, {}, {}
        for key, w in self.logits.items():
            self.orders[key], self.ranks[key] = _channel_order(w)
            self.allowed[key] = _allowed_counts(len(w), floors[key],
                                                multiple)
            positive = int((w > 0.0).sum())
            self.counts[key] = min(c for c in self.allowed[key]
                                   if c >= positive)

    def group_score(self, key, low, high):
        """(mean logit, mean relative rank) of channels low..high-1 in
        order."""
        group = self.orders[key][low:high]
        return (float(self.logits[key][group].mean()),
                float(self.ranks[key][group].mean()))

    def below(self, key):
        smaller = [c for c in self.allowed[key] if c < self.counts[key]]
        return smaller[-1] if smaller else None

    def above(self, key, ceiling):
        larger = [c for c in self.allowed[key]
                  if self.counts[key] < c <= ceiling]
        return larger[0] if larger else None

    def cut_until(self, holds):
        """Removes the lowest-scored group until the budget holds."""
        while not holds(self.counts):
            candidates = [
                (self.group_score(key, lower, self.counts[key]), key, lower)
                for key in self.counts
                for lower in [self.below(key)] if lower is not None]
            if not candidates:
                raise errors.BadInputError(
                    f"The budget cannot be met: every layer is at its floor "
                    f"({self.counts}). Lower PruningBudget.min_channels or "
                    "width_multiple, or raise the target.")
            _, key, lower = min(candidates)
            self.counts[key] = lower

    def restore_while(self, holds, ceilings):
        """Restores the highest-scored group (up to `ceilings`) wherever
        the budget still holds."""
        blocked = set()
        while True:
            candidates = []
            for key in self.counts:
                upper = self.above(key, ceilings[key])
                if key not in blocked and upper is not None:
                    logit, rank = self.group_score(key, self.counts[key],
                                                   upper)
                    candidates.append(((-logit, -rank), key, upper))
            if not candidates:
                return
            _, key, upper = min(candidates)
            trial = dict(self.counts, **{key: upper})
            if holds(trial):
                self.counts = trial
            else:
                # Costs grow with counts, so no later group of it fits.
                blocked.add(key)

    def keep(self):
        """{key: bool [width]}: each layer's best-ranked `count` channels."""
        keep = {}
        for key, w in self.logits.items():
            k = np.zeros(len(w), bool)
            k[self.orders[key][:self.counts[key]]] = True
            keep[key] = k
        return keep


def parameters_within(channels, shape, target_params):
    """`holds` of `harden` for a parameter budget alone."""
    def holds(counts):
        return live_parameters(channels, shape, counts) <= target_params
    return holds


def harden_to_budget(logits, channels, shape, target_params, floors,
                     multiple=1):
    """`harden` within a parameter budget of `target_params`.

    Args:
      logits: {key: numpy [width]} mask logits.
      channels, shape: the full generator's ChannelConfig and shape.
      target_params: parameter budget.
      floors: {key: minimum kept channels}.
      multiple: kept counts are multiples of this (or the full width).
    """
    return harden(logits, parameters_within(channels, shape, target_params),
                  floors, multiple)


# Bisection steps of the uniform kept fraction (2**-30 resolution).
_BISECTION_STEPS = 30


def _uniform_counts(widths, fraction, floors, multiple=1):
    counts = {}
    for key, width in widths.items():
        allowed = _allowed_counts(width, floors.get(key, 1), multiple)
        wanted = np.floor(fraction * width)
        fitting = [c for c in allowed if c <= wanted]
        counts[key] = fitting[-1] if fitting else allowed[0]
    return counts


def uniform_counts_within(widths, holds, floors, multiple=1):
    """{key: kept count}: the largest uniform fraction of every width (>= its
    floor, rounded down to an allowed count) for which the budget holds."""
    low, high = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if holds(_uniform_counts(widths, middle, floors, multiple)):
            low = middle
        else:
            high = middle
    return _uniform_counts(widths, low, floors, multiple)


def uniform_counts(widths, channels, shape, target_params, floors,
                   multiple=1):
    """`uniform_counts_within` a parameter budget of `target_params`."""
    return uniform_counts_within(
        widths, parameters_within(channels, shape, target_params), floors,
        multiple)


def uniform_floors(widths, holds, floors, fraction, multiple=1):
    """Per-layer floors tied to the uniform cut at this budget: each layer
    keeps at least ceil(`fraction` x the count `uniform_counts_within`
    gives it), and never less than its own floor in `floors`.

    A learned allocation may then move channels between layers, but no
    layer drops below `fraction` of what the uniform-width baseline keeps
    there; the floors follow the budget, so one `fraction` serves every
    compression ratio. With `fraction` 0, `floors` unchanged.

    Args:
      widths: {key: full width}.
      holds: {key: kept count} -> bool, True within every budget.
      floors: {key: minimum kept channels}.
      fraction: in [0, 1].
      multiple: kept counts are multiples of this (or the full width).

    Returns:
      {key: floor}, each <= the layer's uniform count.
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise errors.BadInputError(
            f"PruningBudget.uniform_floor_fraction must be in [0, 1], got "
            f"{fraction}.")
    if float(fraction) == 0.0:
        return dict(floors)
    uniform = uniform_counts_within(widths, holds, floors, multiple)
    # ceil(fraction x u) <= u, and u >= the layer's floor.
    return {key: max(floors[key], int(np.ceil(
        float(fraction) * uniform[key] - 1e-9))) for key in widths}


def harden_uniform_within(logits, holds, floors, multiple=1):
    """Uniform-width baseline: the same kept fraction in every layer, the
    highest-logit channels of each layer kept. Same contract as `harden`."""
    widths = {key: len(w) for key, w in logits.items()}
    counts = uniform_counts_within(widths, holds, floors, multiple)
    keep = {}
    for key, w in logits.items():
        k = np.zeros(len(w), bool)
        k[np.argsort(-np.asarray(w), kind="stable")[:counts[key]]] = True
        keep[key] = k
    return keep


def harden_uniform(logits, channels, shape, target_params, floors,
                   multiple=1):
    """`harden_uniform_within` a parameter budget of `target_params`."""
    return harden_uniform_within(
        logits, parameters_within(channels, shape, target_params), floors,
        multiple)
