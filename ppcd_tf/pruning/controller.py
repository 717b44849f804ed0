"""The budget controller of the pruning phase (DESIGN.md 4.3).

`BudgetController` owns the budget's numbers (one or more `costs.Limit`s:
live parameters, and optionally MACs and measured latency; per-layer floors),
one Lagrange-style multiplier `lambda` per limit and the rules that use them:

  * `budget_loss(logits)`: sum over limits of lambda * Q_st / Q_full, with
    straight-through kept counts (value: hard count, gradient: the
    surrogate), gradient scaled so an average channel's push does not depend
    on the model's size;
  * `update(step, hard_counts, pruning)`: each lambda grows while its
    quantity's hard ratio is above the line from 1 to its target (reached at
    `ramp_fraction` of the pruning phase) and is 0 on or below it, and after
    the pruning phase;
  * `harden(logits, rule)`: the kept channels at the cut, with every limit
    holding ('global' rank by logit, or 'uniform' widths), each layer's
    count a multiple of `width_multiple` (or its full width).
"""

import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import costs

HARDEN_RULES = ("global", "uniform")


def lambda_variable_name(limit_name):
    """Checkpoint name of a limit's multiplier ('budget_lambda' for the
    parameter budget, as in runs written before the other budgets)."""
    return ("budget_lambda" if limit_name == "params"
            else f"budget_lambda_{limit_name}")


class BudgetController:
    """Budget bookkeeping and the lambda controllers.

    Args:
      limits: list of `costs.Limit`, the first the parameter budget.
      widths: {mask key: width} of the masked layers.
      min_channels, min_channel_fraction: per-layer floors.
      surrogate_width: width of the straight-through counts' surrogate.
      ramp_fraction: fraction of the pruning phase at which the steered line
        reaches the target.
      lambda_rate, lambda_max: controller step and cap.
      prune_end_step: the cut.
      width_multiple: hardened kept counts are multiples of this (or a
        layer's full width).
      cost_exponent: how the budget's push on a layer's masks follows what
        one of its channels costs (`priced_counts`): 1 in proportion to the
        marginal cost (the gradient of the ratio), 0 the same push on every
        layer (the cost then acts through the lambdas and the hardening
        only), values between interpolate geometrically.
      uniform_floor_fraction: raises each layer's floor to this fraction
        of the count the uniform cut keeps there at this budget
        (`budget.uniform_floors`; 0: no such floor).
    """

    def __init__(self, limits, widths, min_channels, min_channel_fraction,
                 surrogate_width, ramp_fraction, lambda_rate, lambda_max,
                 prune_end_step, width_multiple=1, cost_exponent=1.0,
                 uniform_floor_fraction=0.0):
        if float(cost_exponent) < 0.0:
            raise errors.BadInputError(
                f"PruningBudget.cost_exponent must be >= 0, got "
                f"{cost_exponent}.")
        self.cost_exponent = float(cost_exponent)
        if not limits or limits[0].name != "params":
            raise ValueError("The first limit must be the parameter budget.")
        if int(width_multiple) < 1:
            raise errors.BadInputError(
                f"PruningBudget.width_multiple must be >= 1, got "
                f"{width_multiple}.")
        self.limits = list(limits)
        self.width_multiple = int(width_multiple)
        self.floors = budget_lib.uniform_floors(
            widths, self.holds,
            budget_lib.channel_floors(widths, min_channels,
                                      min_channel_fraction),
            uniform_floor_fraction, self.width_multiple)
        floor_counts = {
            key: budget_lib.harden_floor_count(width, self.floors[key],
                                               self.width_multiple)
            for key, width in widths.items()}
        for limit in self.limits:
            at_floors = float(limit.cost(floor_counts))
            if at_floors > limit.target:
                raise errors.BadInputError(
                    f"The {limit.name} target ({limit.target:,.6g}, "
                    f"{limit.target_ratio:.4f} of full) is below the "
                    f"{at_floors:,.6g} that the per-layer floors keep; lower "
                    "PruningBudget.min_channels or width_multiple, or raise "
                    "the target.")
        self.params = self.limits[0]
        self.full_params = int(self.params.full)
        self.target_params = int(self.params.target)
        self.gradient_scale = 0.5 * sum(widths.values())
        self.surrogate_width = float(surrogate_width)
        self.ramp_fraction = float(ramp_fraction)
        self.lambda_rate = float(lambda_rate)
        self.lambda_max = float(lambda_max)
        self.prune_end_step = int(prune_end_step)
        self.lambdas = {
            limit.name: tf.Variable(
                0.0, trainable=False, name=lambda_variable_name(limit.name),
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            for limit in self.limits}

    @property
    def budget_lambda(self):
        """The parameter budget's multiplier."""
        return self.lambdas["params"]

    def checkpoint_items(self):
        """{checkpoint name: variable} of the multipliers."""
        return {lambda_variable_name(name): variable
                for name, variable in self.lambdas.items()}

    @property
    def target_ratio(self):
        return self.params.target_ratio

    def ratio_of_counts(self, counts):
        """Live parameters of {mask key: kept count} / full parameters."""
        return self.params.ratio(counts)

    def ratios_of_counts(self, counts):
        """{limit name: quantity / full} of {mask key: kept count}."""
        return {limit.name: limit.ratio(counts) for limit in self.limits}

    @staticmethod
    def float_counts(masks):
        """{mask key: float32 hard count} of `masks`."""
        return {k: tf.cast(v, tf.float32)
                for k, v in masks.hard_counts().items()}

    def hard_ratio(self, masks):
        """The hard masks' live parameter ratio (float32 scalar tensor)."""
        return self.ratio_of_counts(self.float_counts(masks))

    def hard_ratios(self, masks):
        """{limit name: the hard masks' ratio (float32 scalar tensor)}."""
        return self.ratios_of_counts(self.float_counts(masks))

    def desired_ratio(self, step, limit=None):
        """The hard ratio the controller steers `limit` (default: the
        parameter budget) to at G step `step`."""
        limit = self.params if limit is None else limit
        ramp_end = max(1.0, self.ramp_fraction * self.prune_end_step)
        progress = tf.minimum(tf.cast(step, tf.float32) / ramp_end, 1.0)
        return 1.0 - (1.0 - limit.target_ratio) * progress

    def budget_loss(self, logits):
        """(sum of lambda * scaled ratio, parameter ratio without gradient)
        of the masks' straight-through kept counts."""
        counts = budget_lib.straight_through_counts(
            logits, self.surrogate_width, self.floors)
        loss = 0.0
        param_ratio = None
        for limit in self.limits:
            ratio = tf.cast(limit.ratio(self.priced_counts(counts, limit)),
                            tf.float32)
            # Value lambda * ratio; gradient scaled by (mask channels / 2),
            # the inverse of the mean per-channel share of the ratio (the
            # quantities are quadratic in widths), so an average channel's
            # budget gradient is ~lambda / (2 * surrogate width) whatever
            # the model's size.
            scaled = ratio + (self.gradient_scale - 1.0) * (
                ratio - tf.stop_gradient(ratio))
            loss += tf.stop_gradient(self.lambdas[limit.name]) * scaled
            if limit.name == "params":
                param_ratio = tf.stop_gradient(ratio)
        return loss, param_ratio

    def priced_counts(self, counts, limit):
        """`counts` ({mask key: scalar}) with each layer's gradient path
        rescaled by (mean marginal cost / its marginal cost) ** (1 -
        cost_exponent), where a layer's marginal cost is the gradient of
        `limit`'s ratio with respect to its count: values unchanged, so the
        ratio and the controller see the same numbers; with exponent 1
        (the default) `counts` itself."""
        if self.cost_exponent == 1.0:
            return counts
        keys = sorted(counts)
        probes = [tf.stop_gradient(tf.cast(counts[k], tf.float32))
                  for k in keys]
        with tf.GradientTape() as tape:
            tape.watch(probes)
            ratio = tf.cast(limit.ratio(dict(zip(keys, probes))), tf.float32)
        marginals = [tf.zeros([]) if g is None else tf.abs(g)
                     for g in tape.gradient(ratio, probes)]
        mean = tf.add_n(marginals) / len(marginals)
        priced = {}
        for key, marginal in zip(keys, marginals):
            scale = tf.stop_gradient(tf.math.divide_no_nan(mean, marginal)
                                     ** (1.0 - self.cost_exponent))
            count = counts[key]
            priced[key] = tf.stop_gradient(count) + scale * (
                count - tf.stop_gradient(count))
        return priced

    def update(self, step, hard_counts, pruning):
        """One controller step (cross-replica): each lambda tracks the excess
        of its quantity's hard ratio (of `hard_counts`, {mask key: float
        count}) over its line while `pruning`, else it is 0."""
        for limit in self.limits:
            variable = self.lambdas[limit.name]
            excess = (tf.cast(limit.ratio(hard_counts), tf.float32)
                      - self.desired_ratio(step, limit))
            updated = tf.clip_by_value(
                variable + self.lambda_rate * excess, 0.0, self.lambda_max)
            # Stop pushing as soon as the quantity is on or below the line
            # (no wind-up carried past the crossing).
            updated = tf.where(excess > 0.0, updated, 0.0)
            variable.assign(tf.where(pruning, updated, 0.0))

    def reset(self):
        """Sets every multiplier to 0 (at the cut)."""
        for variable in self.lambdas.values():
            variable.assign(0.0)

    def holds(self, counts):
        """True when every limit holds for integer `counts`."""
        return costs.all_hold(self.limits, counts)

    def harden(self, logits, rule):
        """{mask key: bool [width]} kept at the cut, within every limit."""
        if rule not in HARDEN_RULES:
            raise errors.BadInputError(
                f"harden_rule must be one of {HARDEN_RULES}, "
                f"got {rule!r}.")
        harden = (budget_lib.harden if rule == "global"
                  else budget_lib.harden_uniform_within)
        return harden(logits, self.holds, self.floors, self.width_multiple)
