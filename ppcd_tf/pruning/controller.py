"""The parameter-budget controller of the pruning phase (DESIGN.md 4.3).

`BudgetController` owns the budget's numbers (full and target live
parameters, per-layer floors), the Lagrange-style multiplier `lambda` and
the rules that use them:

  * `budget_loss(logits)`: lambda * P_st / P_full, with straight-through kept
    counts (value: hard count, gradient: the surrogate), gradient scaled so an
    average channel's push does not depend on the model's size;
  * `update(step, hard_ratio, pruning)`: lambda grows while the hard ratio is
    above the line from 1 to the target (reached at `ramp_fraction` of the
    pruning phase) and is 0 on or below it, and after the pruning phase;
  * `harden(logits, rule)`: the kept channels at the cut, exactly within the
    budget ('global' rank by logit, or 'uniform' widths).
"""

import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.pruning import budget as budget_lib

HARDEN_RULES = ("global", "uniform")


class BudgetController:
    """Budget bookkeeping and the lambda controller.

    Args:
      channels: the full ChannelConfig; shape: `complexity.GeneratorShape`.
      widths: {mask key: width} of the masked layers.
      target_ratio: kept fraction of the live parameters (used when
        `target_params` is None).
      target_params: absolute budget, or None.
      min_channels, min_channel_fraction: per-layer floors.
      surrogate_width: width of the straight-through counts' surrogate.
      ramp_fraction: fraction of the pruning phase at which the steered line
        reaches the target.
      lambda_rate, lambda_max: controller step and cap.
      prune_end_step: the cut.
    """

    def __init__(self, channels, shape, widths, target_ratio, target_params,
                 min_channels, min_channel_fraction, surrogate_width,
                 ramp_fraction, lambda_rate, lambda_max, prune_end_step):
        self.channels = channels
        self.shape = shape
        self.floors = budget_lib.channel_floors(widths, min_channels,
                                                min_channel_fraction)
        self.full_params = budget_lib.live_parameters(channels, shape,
                                                      dict(widths))
        self.target_params = int(
            target_params if target_params is not None
            else round(target_ratio * self.full_params))
        floor_params = budget_lib.live_parameters(channels, shape,
                                                  self.floors)
        if self.target_params < floor_params:
            raise errors.BadInputError(
                f"Target of {self.target_params:,} parameters is below the "
                f"{floor_params:,} that the per-layer floors keep; lower "
                "PPCDTrainer.min_channels or raise the target.")
        self.gradient_scale = 0.5 * sum(widths.values())
        self.surrogate_width = float(surrogate_width)
        self.ramp_fraction = float(ramp_fraction)
        self.lambda_rate = float(lambda_rate)
        self.lambda_max = float(lambda_max)
        self.prune_end_step = int(prune_end_step)
        self.budget_lambda = tf.Variable(
            0.0, trainable=False, name="budget_lambda",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    @property
    def target_ratio(self):
        return self.target_params / self.full_params

    def ratio_of_counts(self, counts):
        """Live parameters of {mask key: kept count} / full parameters."""
        return budget_lib.live_parameters(self.channels, self.shape,
                                          counts) / float(self.full_params)

    def hard_ratio(self, masks):
        """The hard masks' live ratio (float32 scalar tensor)."""
        return self.ratio_of_counts({k: tf.cast(v, tf.float32) for k, v in
                                     masks.hard_counts().items()})

    def desired_ratio(self, step):
        """The hard ratio the controller steers to at G step `step`."""
        ramp_end = max(1.0, self.ramp_fraction * self.prune_end_step)
        progress = tf.minimum(tf.cast(step, tf.float32) / ramp_end, 1.0)
        return 1.0 - (1.0 - self.target_ratio) * progress

    def budget_loss(self, logits):
        """(lambda * scaled ratio, ratio without gradient) of the masks'
        straight-through kept counts."""
        counts = budget_lib.straight_through_counts(
            logits, self.surrogate_width, self.floors)
        ratio = self.ratio_of_counts(counts)
        # Value lambda * ratio; gradient scaled by (mask channels / 2), the
        # inverse of the mean per-channel share of the ratio (the count is
        # quadratic in widths), so an average channel's budget gradient is
        # ~lambda / (2 * surrogate width) whatever the model's size.
        scaled = ratio + (self.gradient_scale - 1.0) * (
            ratio - tf.stop_gradient(ratio))
        return (tf.stop_gradient(self.budget_lambda) * scaled,
                tf.stop_gradient(ratio))

    def update(self, step, hard_ratio, pruning):
        """One controller step (cross-replica): lambda tracks the excess of
        `hard_ratio` over the line while `pruning`, else it is 0."""
        excess = hard_ratio - self.desired_ratio(step)
        updated = tf.clip_by_value(
            self.budget_lambda + self.lambda_rate * excess, 0.0,
            self.lambda_max)
        # Stop pushing as soon as the count is on or below the line (no
        # wind-up carried past the crossing).
        updated = tf.where(excess > 0.0, updated, 0.0)
        self.budget_lambda.assign(tf.where(pruning, updated, 0.0))

    def harden(self, logits, rule):
        """{mask key: bool [width]} kept at the cut, within the budget."""
        if rule not in HARDEN_RULES:
            raise errors.BadInputError(
                f"harden_rule must be one of {HARDEN_RULES}, "
                f"got {rule!r}.")
        harden = (budget_lib.harden_to_budget if rule == "global"
                  else budget_lib.harden_uniform)
        return harden(logits, self.channels, self.shape, self.target_params,
                      self.floors)
