"""PPCD's pruning phase: channel masks pushed from soft to hard, a budget
controller, and the cut.

Until the cut (`prune_end_fraction` of the run) the student trains with
channel masks after every prunable width; the mask bound decays from its
initial value to 0 (`schedules.BoundSchedule`), and the budget term
`lambda * P_st / P_full` (straight-through kept counts) is steered by a
Lagrange-style controller along a line from 1 to the target. At the cut the
masks are hardened to the budget (`PruningBudget`: rank by logit within
per-layer floors; masks below it are topped up with their best closed
channels, whose BatchNorm statistics are reset) and frozen. The phase
writes the pruning summaries and `<model_dir>/pruning_history.jsonl`.

Masks have their own optimizer (plain SGD by default: no per-parameter
normalisation, so task and distillation gradients decide which channels go,
see DESIGN.md section 4.3).
"""

import json
import os

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import errors
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import architectures
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import controller as controller_lib
from ppcd_tf.pruning import schedules
from ppcd_tf.runs import run_dir
from ppcd_tf.training import phases
from ppcd_tf.training import pruning_budget

# Logit given to kept / removed channels when masks are hardened.
HARD_LOGIT = 1.0


def reopened_channels(logits, keep):
    """{mask key: int numpy [n]}: the channels kept at the cut whose masks
    had closed (logit <= 0), for the keys that have any. `logits`: {mask key:
    numpy [width]}; `keep`: {mask key: bool numpy [width]}."""
    reopened = {key: np.flatnonzero(keep[key] & (w <= 0.0))
                for key, w in logits.items()}
    return {key: index for key, index in reopened.items() if index.size}


def reset_reopened_statistics(architecture, generators, logits, keep):
    """Gives the channels the cut reopens (`reopened_channels`) a new
    BatchNorm's standing statistics (mean 0, variance 1) in every BatchNorm
    they feed (`architecture.masked_batch_norms`) of each of `generators`
    (the student and its EMA copy); other channels keep theirs. Closed, they
    fed those BatchNorms a constant (their weights zeroed by `keep`, the
    mask zeroing them): the variance is ~0 and would multiply the reopened
    channel by ~1/sqrt(epsilon) at inference."""
    reopened = reopened_channels(logits, keep)
    if not reopened:
        return
    logging.info(
        "The cut reopens channels whose masks had closed (to fill the "
        "budget, reach a floor or the width multiple, or by the uniform "
        "rule): %s; the BatchNorms they feed get fresh standing statistics "
        "for them (mean 0, variance 1).",
        {key: len(index) for key, index in reopened.items()})
    for generator in generators:
        norms = architecture.masked_batch_norms(generator)
        for key, index in reopened.items():
            for norm in norms.get(key, ()):
                for variable, value in ((norm.moving_mean, 0.0),
                                        (norm.moving_variance, 1.0)):
                    updated = np.array(variable.numpy())
                    updated[index] = value
                    variable.assign(updated)


@gin.configurable
class PruningPhase(phases.Phase):
    """Masks, the budget controller and the cut.

    Args:
      prune_end_fraction: fraction of the run's steps after which masks are
        hardened to the budget and frozen (the cut).
      bound_schedule: `schedules.BoundSchedule` (class; gin binds its
        `initial_bound` and `kind`; its end step is the cut).
      mask_init: initial mask logit (>= initial_bound: masks start open).
      mask_function: 'smooth_step' (DMAD), 'straight_through' or 'sigmoid'.
      mask_optimizer_cls: optimizer class of the mask logits.
      prune_attention: also mask the self-attention inner widths.
      budget_surrogate_width: width of the budget's surrogate gradient.
      budget_ramp_fraction: the hard parameter ratio is steered along a line
        from 1 to the target, reached at this fraction of the pruning phase.
      budget_lambda_rate: controller step: lambda += rate * (ratio -
        desired ratio) per G step while the ratio is above the line
        (clipped to [0, budget_lambda_max]); lambda is 0 on or below it.
      budget_lambda_max: cap of lambda.
      use_masks: False trains a fixed thinner student instead (every width
        scaled uniformly to meet the budget, randomly initialised, no
        masks): the "distillation into a fixed thinner student" ablation.
      budget: `PruningBudget` (class; gin binds its targets).
    """

    def __init__(self, prune_end_fraction=0.5,
                 bound_schedule=schedules.BoundSchedule, mask_init=1.0,
                 mask_function="smooth_step",
                 mask_optimizer_cls=keras.optimizers.SGD,
                 prune_attention=True, budget_surrogate_width=2.0,
                 budget_ramp_fraction=0.8, budget_lambda_rate=0.1,
                 budget_lambda_max=10.0, use_masks=True,
                 budget=pruning_budget.PruningBudget):
        if not 0.0 < prune_end_fraction <= 1.0:
            raise errors.BadInputError(
                f"PruningPhase.prune_end_fraction must be in (0, 1], got "
                f"{prune_end_fraction}.")
        if abs(mask_init) >= budget_surrogate_width:
            raise errors.BadInputError(
                f"PruningPhase.mask_init {mask_init} lies outside the budget"
                f" surrogate's band (-{budget_surrogate_width}, "
                f"{budget_surrogate_width}): the budget could never move the"
                " masks. Raise PruningPhase.budget_surrogate_width.")
        if not 0.0 < budget_ramp_fraction <= 1.0:
            raise errors.BadInputError(
                f"PruningPhase.budget_ramp_fraction must be in (0, 1], got "
                f"{budget_ramp_fraction}.")
        self.prune_end_fraction = float(prune_end_fraction)
        self.bound_schedule_cls = bound_schedule
        self.mask_init = float(mask_init)
        self.mask_function = mask_function
        self.mask_optimizer_cls = mask_optimizer_cls
        self.prune_attention = bool(prune_attention)
        self.controller_settings = (
            float(budget_surrogate_width), float(budget_ramp_fraction),
            float(budget_lambda_rate), float(budget_lambda_max))
        self.use_masks = bool(use_masks)
        self.budget = budget()
        self.trainer = None
        self.masks = None
        self.compacted = False

    def mask_widths(self, generator):
        """{mask key: width} of a full-width generator's prunable widths."""
        return architectures.of(generator).mask_widths(self.prune_attention)

    def build(self, trainer, full_generator):
        """Creates the masks, the controller and their state (inside the
        strategy scope) for a student as wide as `full_generator` (the
        teacher; `compacted` set first when the run resumes after its cut:
        the masks are spent)."""
        self.trainer = trainer
        self.architecture = architectures.of(full_generator)
        self.full_generator = full_generator
        self.prune_end_step = max(
            1, int(round(self.prune_end_fraction * trainer.num_steps)))
        self.bound_schedule = self.bound_schedule_cls(
            begin_step=0, end_step=self.prune_end_step)
        widths = self.mask_widths(full_generator)
        masks = channel_masks.ChannelMasks(
            widths, initial_value=self.mask_init,
            initial_bound=self.bound_schedule.initial_bound,
            mask_function=self.mask_function, name="channel_masks")
        budget = self.budget
        self.controller = controller_lib.BudgetController(
            budget.limits(self.architecture, widths), widths,
            budget.min_channels, budget.min_channel_fraction,
            *self.controller_settings, self.prune_end_step,
            budget.width_multiple, budget.cost_exponent,
            budget.uniform_floor_fraction)
        self.full_params = self.controller.full_params
        self.target_params = self.controller.target_params
        self.student_params = generator_lib.count_trainable_parameters(
            trainer.generator)
        # Average only the hardened student: weights from before the cut
        # belong to a different network.
        ema = trainer.state.ema
        ema.start_step = max(ema.start_step, self.prune_end_step)
        self.mask_optimizer = self.mask_optimizer_cls(name="mask_optimizer")
        self.mask_optimizer.build(list(masks.logits.values()))
        # A fixed thinner student keeps no masks (nothing is pruned), nor
        # does the compact student after the cut.
        self.masks = (masks if self.use_masks and not self.compacted
                      else None)
        self.hardened = tf.Variable(
            False, trainable=False, name="hardened",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    @property
    def floors(self):
        return self.controller.floors

    @property
    def budget_lambda(self):
        return self.controller.budget_lambda

    # ------------------------------------------------------------------
    # What the trainer calls.

    def checkpoint_items(self):
        items = dict(self.controller.checkpoint_items(),
                     hardened=self.hardened)
        if self.masks is not None:
            items.update(channel_masks=self.masks,
                         mask_optimizer=self.mask_optimizer)
        return items

    def begin_loop(self, step):
        """Before the cut: the mask bound of `step`; at it: harden."""
        if self.masks is None or bool(self.hardened.numpy()):
            return
        if step >= self.prune_end_step:
            self.harden()
        else:
            self.masks.bound.assign(self.bound_schedule(step))

    def boundaries(self):
        return (self.prune_end_step,)

    def allows_validation(self, step):
        """Only students after the cut (whose structure is final) compete
        for best/; before it the masks still move. Runs without masks
        (ablations) follow the same schedule."""
        return step > self.prune_end_step

    def after_step(self, step):
        """Controller update (cross-replica): lambda tracks the excess."""
        if self.masks is None:
            return
        pruning = tf.logical_and(step < self.prune_end_step,
                                 tf.logical_not(self.hardened))
        self.controller.update(
            step, self.controller.float_counts(self.masks), pruning)

    # ------------------------------------------------------------------
    # The student's size.

    def param_ratio(self):
        """Hard live parameters / full parameters (float32 scalar tensor)."""
        if self.compacted:
            return tf.constant(self.controller.ratio_of_counts(
                self.kept_channels()), tf.float32)
        if self.masks is None:
            return tf.constant(self.student_params / float(self.full_params),
                               tf.float32)
        return self.controller.hard_ratio(self.masks)

    def desired_ratio(self, step):
        """The hard ratio the controller steers to at G step `step`."""
        return self.controller.desired_ratio(step)

    def kept_channels(self):
        """{mask key: kept count} of the hard masks (of the student)."""
        if self.masks is None:
            return dict(self.mask_widths(self.trainer.generator))
        return {k: int(v.numpy()) for k, v in self.masks.hard_counts().items()}

    def budget_ratios(self):
        """{limit name: hard ratio} of the student's kept channels."""
        return {name: float(value) for name, value in
                self.controller.ratios_of_counts(
                    self.kept_channels()).items()}

    def compact_channel_config(self):
        """The widths dict (a BigGAN ChannelConfig's, a DeepWidths') of a
        generator keeping the hard masks' counts; for BigGAN the compact
        generator's own (a deep one's skips depend on which channels)."""
        return self.architecture.uniform_widths(self.kept_channels())

    # ------------------------------------------------------------------
    # The cut.

    def harden(self):
        """Cuts (or tops up) the masks exactly to the budget, freezes them,
        and resets the standing statistics that reopened channels feed."""
        logits = {k: v.numpy() for k, v in self.masks.logits.items()}
        before = float(self.param_ratio().numpy())
        keep = self.controller.harden(logits, self.budget.harden_rule)
        self.set_hard_masks(keep)
        self.controller.reset()
        after = float(self.param_ratio().numpy())
        logging.info(
            "Masks hardened to the budget at step %d: parameter ratio %.4f "
            "-> %.4f (target %.4f, %s of %s parameters); %s; kept channels "
            "%s.", self.trainer.current_step(), before, after,
            self.target_params / self.full_params,
            f"{int(round(after * self.full_params)):,}",
            f"{self.full_params:,}", self._budget_summary(),
            self.kept_channels())
        reset_reopened_statistics(
            self.architecture,
            (self.trainer.generator, self.trainer.generator_ema), logits,
            keep)

    def set_hard_masks(self, keep):
        """Freezes the masks at `keep` ({mask key: bool [width]}): logits
        at +-HARD_LOGIT, the bound at 0, the run marked hardened."""
        for key, variable in self.masks.logits.items():
            variable.assign(np.where(keep[key], HARD_LOGIT,
                                     -HARD_LOGIT).astype(np.float32))
        self.masks.bound.assign(0.0)
        self.hardened.assign(True)

    def _budget_summary(self):
        ratios = self.budget_ratios()
        return ", ".join(
            f"{limit.name} {ratios[limit.name]:.4f} "
            f"(target {limit.target_ratio:.4f})"
            for limit in self.controller.limits)

    # ------------------------------------------------------------------
    # Summaries and the history file.

    def write_summaries(self, step):
        if not self.trainer.is_chief:
            return
        ratio = float(self.param_ratio().numpy())
        for tag, value in (("param_ratio", ratio),
                           ("live_params", ratio * self.full_params),
                           ("compression", 1.0 / max(ratio, 1e-12)),
                           ("target_ratio",
                            self.target_params / self.full_params)):
            tf.summary.scalar(f"pruning/{tag}", value, step=step)
        kept = self.kept_channels()
        for key, count in kept.items():
            tf.summary.scalar(f"kept_channels/{key}", count, step=step)
        ratios = self.budget_ratios()
        for limit in self.controller.limits[1:]:
            tf.summary.scalar(f"pruning/{limit.name}_ratio",
                              ratios[limit.name], step=step)
            tf.summary.scalar(f"pruning/{limit.name}_target_ratio",
                              limit.target_ratio, step=step)
        self.append_pruning_history(step, ratio, kept, ratios)
        if self.masks is not None:
            self._write_mask_summaries(step, ratio)

    def _write_mask_summaries(self, step, ratio):
        bound = float(self.masks.bound.numpy())
        tf.summary.scalar("pruning/bound", bound, step=step)
        for name, variable in self.controller.lambdas.items():
            tag = ("pruning/budget_lambda" if name == "params"
                   else f"pruning/budget_lambda_{name}")
            tf.summary.scalar(tag, float(variable.numpy()), step=step)
        tf.summary.scalar("pruning/desired_ratio",
                          float(self.desired_ratio(step)), step=step)
        for key, value in self.masks().items():
            tf.summary.histogram(f"mask_values/{key}", value, step=step)
        logging.info("pruning: %.4f of G's parameters live (%.2fx smaller, "
                     "target %.2fx), bound %.4f, lambda %.4f.", ratio,
                     1.0 / max(ratio, 1e-12),
                     self.full_params / self.target_params, bound,
                     float(self.budget_lambda.numpy()))

    def append_pruning_history(self, step, ratio, kept, ratios=None):
        """Appends one JSON line to `<model_dir>/PRUNING_HISTORY_FILE`:
        {"step", "param_ratio", "live_params", "full_params",
        "target_params", "kept_channels": {mask key: count}, and with
        MAC or latency budgets "macs_ratio" / "latency_ratio"}. A resumed run
        appends again from its checkpoint; readers keep the last line of
        each step (see `run_dir.read_pruning_history`)."""
        line = {"step": int(step), "param_ratio": ratio,
                "live_params": int(round(ratio * self.full_params)),
                "full_params": int(self.full_params),
                "target_params": int(round(self.target_params)),
                "hardened": bool(self.hardened.numpy()),
                "kept_channels": {k: int(v) for k, v in kept.items()}}
        for name, value in (ratios or {}).items():
            if name != "params":
                line[f"{name}_ratio"] = value
        path = os.path.join(self.trainer.model_dir,
                            run_dir.PRUNING_HISTORY_FILE)
        with tf.io.gfile.GFile(path, "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
