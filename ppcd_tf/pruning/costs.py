"""The quantities a pruning budget limits, as functions of kept counts.

A `Limit` is one budgeted quantity of the masked generator: its cost as a
function of {mask key: kept count} (a polynomial or a piecewise-linear
table, so that it accepts straight-through counts and passes gradients to
the masks), its value at full width and the target it must not exceed.
The controller steers every limit of a run at once and the hardening keeps
channels only while all of them hold (DESIGN.md section 4.3).

  * 'params': live generator parameters (the paper's budget);
  * 'macs': multiply-accumulates per generated image;
  * 'latency': predicted seconds per batch from a measured per-layer table
    (`ppcd_tf.models.latency`), the budget that makes a pruned generator
    actually faster on the machine that serves it.
"""

import dataclasses
from typing import Callable

from ppcd_tf import errors
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks

QUANTITIES = ("params", "macs", "latency")


@dataclasses.dataclass(frozen=True)
class Limit:
    """One budgeted quantity.

    Attributes:
      name: one of QUANTITIES.
      cost: {mask key: kept count} -> the quantity (numbers or scalar
        tensors in, the same out; missing keys keep the full width).
      full: the quantity at full width.
      target: the largest value the hardened student may have.
    """

    name: str
    cost: Callable
    full: float
    target: float

    @property
    def target_ratio(self):
        return self.target / self.full

    def ratio(self, counts):
        """cost(counts) / full (a tensor when the counts are tensors)."""
        return self.cost(counts) / float(self.full)

    def holds(self, counts):
        return float(self.cost(counts)) <= self.target


def _target(full, ratio, absolute, name):
    if absolute is not None:
        if not absolute > 0:
            raise errors.BadInputError(
                f"The absolute {name} budget must be > 0, got {absolute}.")
        return float(absolute)
    if not 0.0 < ratio <= 1.0:
        raise errors.BadInputError(
            f"The target {name} ratio must be in (0, 1], got {ratio}.")
    return float(ratio) * float(full)


def parameter_limit(channels, shape, widths, ratio=None, absolute=None):
    """The live-parameter budget of a BigGAN generator: `ratio` of the full
    count or `absolute`."""
    return parameter_limit_of(
        lambda counts: budget_lib.live_parameters(channels, shape, counts),
        widths, ratio, absolute)


def mac_limit(channels, shape, widths, ratio):
    """The MAC budget of a BigGAN generator: `ratio` of the full
    generator's MACs per image."""
    return mac_limit_of(
        lambda counts: budget_lib.live_macs(channels, shape, counts),
        widths, ratio)


def parameter_limit_of(cost, widths, ratio=None, absolute=None):
    """The live-parameter budget of any generator whose parameter count at
    {mask key: kept count} is `cost` (`pruning.architectures`)."""
    full = cost(dict(widths))
    return Limit("params", cost, full,
                 float(int(round(_target(full, ratio, absolute,
                                         "parameter")))))


def mac_limit_of(cost, widths, ratio):
    """The MAC budget of any generator whose MACs per image at {mask key:
    kept count} are `cost`."""
    full = cost(dict(widths))
    return Limit("macs", cost, full, _target(full, ratio, None, "MAC"))


def latency_limit(channels, shape, widths, table, ratio):
    """The latency budget: `ratio` of the full generator's predicted
    latency, from `table` (a `ppcd_tf.models.latency.LatencyTable` measured
    for this generator)."""
    table.check_matches(channels, shape)
    # Every width the table depends on, attention included when it is not
    # pruned (missing keys keep the full width).
    all_widths = dict(channel_masks.mask_widths(channels,
                                                prune_attention=True))

    def cost(counts):
        return table.predict(dict(all_widths, **counts))
    full = cost(dict(widths))
    return Limit("latency", cost, full, _target(full, ratio, None,
                                                "latency"))


def all_hold(limits, counts):
    """True when every limit holds for integer `counts`."""
    return all(limit.holds(counts) for limit in limits)
