"""What a PPCD run prunes to: the budgets and the rule that meets them.

`PruningBudget` (gin-configurable) holds the targets (parameters always;
MACs and predicted latency optionally), the per-layer floors, the width
multiple and the hardening rule, and turns a generator's full channel
configuration into the `costs.Limit`s the controller steers to.
"""

import gin

from ppcd_tf import errors
from ppcd_tf.models import latency as latency_lib
from ppcd_tf.pruning import controller as controller_lib
from ppcd_tf.pruning import costs


@gin.configurable
class PruningBudget:
    """The budgets of a PPCD run.

    Args:
      target_param_ratio: kept fraction of the generator's parameters
        (0.19 = 5.2x fewer). Ignored when `target_params` is set.
      target_params: absolute parameter budget.
      target_mac_ratio: optional second budget: kept fraction of the
        generator's MACs per image (None: not budgeted).
      target_latency_ratio: optional budget: kept fraction of the full
        generator's latency predicted by `latency_table` (None: not
        budgeted). Several budgets at once must all hold at the cut.
      latency_table: JSON path of the per-layer latency table measured on
        the serving machine (`tools/latency_table.py`); needed with
        `target_latency_ratio`.
      width_multiple: hardened kept counts are multiples of this (or the
        layer's full width), within the budgets (1: any count).
      min_channels, min_channel_fraction: per-layer floor of kept channels.
      harden_rule: 'global' (rank channels by logit over all layers) or
        'uniform' (the same kept fraction in every layer: the uniform-width
        pruning baseline).
      cost_exponent: how the budget's push on a layer's masks follows the
        cost of one of its channels: 1 in proportion (a cheap channel, e.g.
        of the attention, is hardly pushed), 0 the same push on every layer
        (`BudgetController.priced_counts`).
      uniform_floor_fraction: in [0, 1]: no layer keeps fewer than this
        fraction of the channels the uniform cut ('uniform' rule) would
        keep there at this budget (`budget.uniform_floors`; a floor that
        follows the ratio). 0: off.
    """

    def __init__(self, target_param_ratio=0.19, target_params=None,
                 target_mac_ratio=None, target_latency_ratio=None,
                 latency_table=None, width_multiple=1, min_channels=4,
                 min_channel_fraction=0.0, harden_rule="global",
                 cost_exponent=1.0, uniform_floor_fraction=0.0):
        if target_params is None and not 0.0 < target_param_ratio <= 1.0:
            raise errors.BadInputError(
                f"PruningBudget.target_param_ratio must be in (0, 1], got "
                f"{target_param_ratio}.")
        for name, ratio in (("target_mac_ratio", target_mac_ratio),
                            ("target_latency_ratio", target_latency_ratio)):
            if ratio is not None and not 0.0 < ratio <= 1.0:
                raise errors.BadInputError(
                    f"PruningBudget.{name} must be in (0, 1] or None, got "
                    f"{ratio}.")
        if target_latency_ratio is not None and not latency_table:
            raise errors.BadInputError(
                "PruningBudget.target_latency_ratio needs "
                "PruningBudget.latency_table: measure one on the serving "
                "machine with tools/latency_table.py.")
        if int(width_multiple) < 1:
            raise errors.BadInputError(
                f"PruningBudget.width_multiple must be >= 1, got "
                f"{width_multiple}.")
        if harden_rule not in controller_lib.HARDEN_RULES:
            raise errors.BadInputError(
                f"PruningBudget.harden_rule must be one of "
                f"{controller_lib.HARDEN_RULES}, got {harden_rule!r}.")
        self.target_param_ratio = float(target_param_ratio)
        self.target_params = target_params
        self.target_mac_ratio = target_mac_ratio
        self.target_latency_ratio = target_latency_ratio
        self.latency_table_path = latency_table
        self.latency_table = (latency_lib.LatencyTable.read(latency_table)
                              if target_latency_ratio is not None else None)
        self.width_multiple = int(width_multiple)
        self.min_channels = int(min_channels)
        self.min_channel_fraction = float(min_channel_fraction)
        self.harden_rule = harden_rule
        self.cost_exponent = float(cost_exponent)
        # Checked where it is used (`budget.uniform_floors`).
        self.uniform_floor_fraction = float(uniform_floor_fraction)

    def limits(self, architecture, widths):
        """The budgeted quantities (`costs.Limit`s) of a generator family
        (`pruning.architectures.of(full generator)`) with mask `widths`:
        parameters always, MACs and predicted latency when their targets
        are set (latency: BigGAN only)."""
        limits = [costs.parameter_limit_of(architecture.live_parameters,
                                           widths, self.target_param_ratio,
                                           self.target_params)]
        if self.target_mac_ratio is not None:
            limits.append(costs.mac_limit_of(architecture.live_macs, widths,
                                             self.target_mac_ratio))
        if self.target_latency_ratio is not None:
            if architecture.kind != "biggan":
                raise errors.BadInputError(
                    "PruningBudget.target_latency_ratio needs a latency "
                    "table, measured for BigGAN generators only; this is "
                    f"a {architecture.kind} generator: budget parameters or "
                    "MACs instead.")
            limits.append(costs.latency_limit(
                architecture.channels, architecture.shape, widths,
                self.latency_table, self.target_latency_ratio))
        return limits
