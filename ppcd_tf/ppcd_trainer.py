"""PPCD: progressive channel pruning with class-aware distillation, one run.

`PPCDTrainer` extends the GAN trainer (DESIGN.md sections 4.1-4.5):

  1. Loads a trained teacher (G, EMA G, D) from `teacher_dir`; the student G
     starts as a copy of the teacher's EMA G, the student D as a copy of the
     teacher's D; a frozen teacher G (and D, for class activation maps) stays.
  2. Trains the student with channel masks (`ChannelMasks`) after every
     prunable width. The mask bound decays from its initial value to 0 over
     the pruning phase (`BoundSchedule`), pushing masks from soft to hard.
  3. The G loss adds attention transfer (every block and attention output),
     the class-aware term (teacher-D class activation maps of teacher and
     student images), a decaying output L1 and a budget term
     `lambda * P_st / P_full` where P_st is the live parameter count with
     straight-through kept counts (value: hard count). `lambda` is a
     Lagrange-style controller: it grows while the hard count is over the
     target and shrinks (to 0) once it is met.
  4. At the end of the pruning phase the masks are hardened to the budget
     (rank by logit within per-layer floors, cut exactly to the target) and
     frozen; the rest of the run trains the hard-masked student, which is what
     the exporter turns into a compact generator.

Masks have their own optimizer (plain SGD by default: no per-parameter
normalisation, so task and distillation gradients decide which channels go,
see DESIGN.md section 4.3). D is not pruned.
"""

import json
import os

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import checkpointing
from ppcd_tf import ema as ema_lib
from ppcd_tf import errors
from ppcd_tf import run_dir
from ppcd_tf import summaries
from ppcd_tf import trainer as trainer_lib
from ppcd_tf.distill import losses as distill_losses
from ppcd_tf.distill import objective as distill_objective
from ppcd_tf.models import complexity
from ppcd_tf.models import discriminator as discriminator_lib
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.models import latency as latency_lib
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import compaction
from ppcd_tf.pruning import controller as controller_lib
from ppcd_tf.pruning import costs
from ppcd_tf.pruning import schedules

# Logit given to kept / removed channels when masks are hardened.
HARD_LOGIT = 1.0


@gin.configurable(denylist=["model_dir", "strategy"])
class PPCDTrainer(trainer_lib.Trainer):
    """Compresses a teacher generator by progressive pruning + distillation.

    Args (beyond `Trainer`'s, which gin binds as `Trainer.*`):
      teacher_dir: model_dir of a finished teacher run.
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
      prune_end_fraction: fraction of `num_steps` after which masks are
        hardened to the budget and frozen.
      bound_schedule: `schedules.BoundSchedule` (class; gin binds its
        `initial_bound` and `kind`; its end step is the cut).
      mask_init: initial mask logit (>= initial_bound: masks start open).
      mask_function: 'smooth_step' (DMAD), 'straight_through' or 'sigmoid'.
      mask_optimizer_cls: optimizer class of the mask logits.
      prune_attention: also mask the self-attention inner widths.
      min_channels, min_channel_fraction: per-layer floor of kept channels.
      budget_surrogate_width: width of the budget's surrogate gradient.
      budget_ramp_fraction: the hard parameter ratio is steered along a line
        from 1 to the target, reached at this fraction of the pruning phase
        (progressive pruning rather than a cut at the start).
      budget_lambda_rate: controller step: lambda += rate * (ratio -
        desired ratio) per G step while the ratio is above the line
        (clipped to [0, budget_lambda_max]); lambda is 0 on or below it.
      budget_lambda_max: cap of lambda.
      harden_rule: 'global' (rank channels by logit over all layers) or
        'uniform' (the same kept fraction in every layer: the uniform-width
        pruning baseline).
      use_masks: False trains a fixed thinner student instead (every width
        scaled uniformly to meet the budget, randomly initialised, no masks):
        the "distillation into a fixed thinner student" ablation.
      distillation: `DistillationWeights` (class; gin binds its weights).
      cam_discriminator: 'teacher' (frozen teacher D) or 'student' (the D
        being fine-tuned) computes the class activation maps.
      train_compact_after_cut: at the cut, replace the hard-masked student
        (and its EMA copy) by the compact generator its masks define
        (surgery, verified equal within `compaction_tolerance`) and train
        that for the rest of the run; checkpoints after the cut hold the
        compact student, `pruning.json` its channel configuration.
      carry_optimizer_state: slice the G optimizer's moments to the kept
        channels at the switch (False: a fresh optimizer).
      compaction_tolerance: largest |compact - masked| accepted at the cut
        (or float32 rounding at the largest activation, when larger).
      compaction_rounding_factor: that rounding in float32 ulps of the
        largest activation (`surgery.allowed_difference`).
      retrain: `schedules.RetrainSchedule` (class; gin binds it): learning
        rate scales and decay of G and D after the cut.
    """

    def __init__(self, model_dir, strategy, teacher_dir=gin.REQUIRED,
                 target_param_ratio=0.19, target_params=None,
                 target_mac_ratio=None, target_latency_ratio=None,
                 latency_table=None, width_multiple=1,
                 prune_end_fraction=0.5,
                 bound_schedule=schedules.BoundSchedule, mask_init=1.0,
                 mask_function="smooth_step",
                 mask_optimizer_cls=keras.optimizers.SGD,
                 prune_attention=True, min_channels=4,
                 min_channel_fraction=0.0, budget_surrogate_width=2.0,
                 budget_ramp_fraction=0.8, budget_lambda_rate=0.1,
                 budget_lambda_max=10.0, harden_rule="global",
                 use_masks=True,
                 distillation=distill_losses.DistillationWeights,
                 cam_discriminator="teacher", train_compact_after_cut=True,
                 carry_optimizer_state=True, compaction_tolerance=1e-4,
                 compaction_rounding_factor=16.0,
                 retrain=schedules.RetrainSchedule, **kwargs):
        if teacher_dir is gin.REQUIRED or not teacher_dir:
            raise errors.BadInputError(
                "PPCDTrainer needs teacher_dir: bind "
                "TEACHER_DIR = '/path/to/teacher_run'.")
        if target_params is None and not 0.0 < target_param_ratio <= 1.0:
            raise errors.BadInputError(
                f"target_param_ratio must be in (0, 1], got "
                f"{target_param_ratio}.")
        for name, ratio in (("target_mac_ratio", target_mac_ratio),
                            ("target_latency_ratio", target_latency_ratio)):
            if ratio is not None and not 0.0 < ratio <= 1.0:
                raise errors.BadInputError(
                    f"PPCDTrainer.{name} must be in (0, 1] or None, got "
                    f"{ratio}.")
        if target_latency_ratio is not None and not latency_table:
            raise errors.BadInputError(
                "PPCDTrainer.target_latency_ratio needs "
                "PPCDTrainer.latency_table: measure one on the serving "
                "machine with tools/latency_table.py.")
        if int(width_multiple) < 1:
            raise errors.BadInputError(
                f"PPCDTrainer.width_multiple must be >= 1, got "
                f"{width_multiple}.")
        if not 0.0 < prune_end_fraction <= 1.0:
            raise errors.BadInputError(
                f"prune_end_fraction must be in (0, 1], got "
                f"{prune_end_fraction}.")
        if abs(mask_init) >= budget_surrogate_width:
            raise errors.BadInputError(
                f"mask_init {mask_init} lies outside the budget surrogate's "
                f"band (-{budget_surrogate_width}, {budget_surrogate_width}):"
                " the budget could never move the masks. Raise "
                "PPCDTrainer.budget_surrogate_width.")
        if harden_rule not in controller_lib.HARDEN_RULES:
            raise errors.BadInputError(
                f"harden_rule must be one of "
                f"{controller_lib.HARDEN_RULES}, "
                f"got {harden_rule!r}.")
        if not 0.0 < budget_ramp_fraction <= 1.0:
            raise errors.BadInputError(
                f"budget_ramp_fraction must be in (0, 1], got "
                f"{budget_ramp_fraction}.")
        if cam_discriminator not in distill_objective.CAM_DISCRIMINATORS:
            raise errors.BadInputError(
                f"cam_discriminator must be one of "
                f"{distill_objective.CAM_DISCRIMINATORS}, got "
                f"{cam_discriminator!r}.")
        self.teacher_dir = teacher_dir
        self.teacher_configs = run_dir.read_model_configs(teacher_dir)
        self.teacher_checkpoint = run_dir.latest_checkpoint(teacher_dir)
        self.target_param_ratio = float(target_param_ratio)
        self.target_params_arg = target_params
        self.target_mac_ratio = target_mac_ratio
        self.target_latency_ratio = target_latency_ratio
        self.latency_table_path = latency_table
        self.latency_table = (latency_lib.LatencyTable.read(latency_table)
                              if target_latency_ratio is not None else None)
        self.width_multiple = int(width_multiple)
        self.prune_end_fraction = float(prune_end_fraction)
        self.bound_schedule_cls = bound_schedule
        self.mask_init = float(mask_init)
        self.mask_function = mask_function
        self.mask_optimizer_cls = mask_optimizer_cls
        self.prune_attention = bool(prune_attention)
        self.min_channels = int(min_channels)
        self.min_channel_fraction = float(min_channel_fraction)
        self.budget_surrogate_width = float(budget_surrogate_width)
        self.budget_ramp_fraction = float(budget_ramp_fraction)
        self.budget_lambda_rate = float(budget_lambda_rate)
        self.budget_lambda_max = float(budget_lambda_max)
        self.harden_rule = harden_rule
        self.use_masks = bool(use_masks)
        self.weights = distillation()
        self.cam_discriminator = cam_discriminator
        self.train_compact_after_cut = bool(train_compact_after_cut)
        self.carry_optimizer_state = bool(carry_optimizer_state)
        self.compaction_tolerance = float(compaction_tolerance)
        if not (compaction_tolerance >= 0 and compaction_rounding_factor >= 0):
            raise errors.BadInputError(
                "PPCDTrainer.compaction_tolerance and "
                "compaction_rounding_factor must be >= 0, got "
                f"{compaction_tolerance} and {compaction_rounding_factor}.")
        self.compaction_rounding_factor = float(compaction_rounding_factor)
        self.retrain = retrain()
        self.structure = run_dir.read_pruning_structure(model_dir)
        self.compacted = self._resumes_compact(model_dir)
        super().__init__(model_dir, strategy, **kwargs)
        self.base_learning_rates = {
            "g": float(np.asarray(self._inner(self.g_optimizer)
                                  .learning_rate)),
            "d": float(np.asarray(self._inner(self.d_optimizer)
                                  .learning_rate))}

    def _resumes_compact(self, model_dir):
        """Whether the newest checkpoint holds the compact student."""
        if (self.structure is None
                or self.structure.get("phase") != run_dir.PHASE_COMPACT):
            return False
        # The newest checkpoint whose step can be read decides: a save
        # killed while its files were written leaves a damaged newest one,
        # which the restore skips for the previous one (possibly from
        # before the cut) as well.
        try:
            step = run_dir.newest_readable_step(model_dir)
        except run_dir.RunDirError:
            return False  # none, or none readable: the restore says which
        return run_dir.is_compact_checkpoint(self.structure, step)

    @staticmethod
    def _inner(optimizer):
        return getattr(optimizer, "inner_optimizer", optimizer)

    # ------------------------------------------------------------------
    # Construction.

    def build_models(self, resolution, num_classes, image_channels):
        g_config = self.teacher_configs["generator"]
        d_config = self.teacher_configs["discriminator"]
        teacher = generator_lib.Generator.from_config(g_config)
        if (teacher.channels.resolution != resolution
                or teacher.num_classes != num_classes
                or teacher.image_channels != image_channels):
            raise errors.BadInputError(
                f"The teacher in {self.teacher_dir} generates "
                f"{teacher.channels.resolution}x{teacher.channels.resolution}"
                f"x{teacher.image_channels} images of {teacher.num_classes} "
                f"classes, the data is {resolution}x{resolution}x"
                f"{image_channels} with {num_classes} classes: use the data "
                "gin file the teacher was trained with.")
        student_config = dict(g_config, name="generator")
        self.full_student_config = dict(student_config)
        if self.compacted:
            student_config["channels"] = self.structure["compact_channels"]
        elif not self.use_masks:
            widths = dict(channel_masks.mask_widths(teacher.channels,
                                                    self.prune_attention))
            limits = self.budget_limits(
                teacher.channels, complexity.GeneratorShape.of(teacher),
                widths)
            floors = {key: min(width, self.min_channels)
                      for key, width in widths.items()}
            counts = budget_lib.uniform_counts_within(
                widths, lambda c: costs.all_hold(limits, c), floors,
                self.width_multiple)
            thin = budget_lib.kept_channel_config(teacher.channels, counts)
            student_config["channels"] = thin.to_dict()
            # A fixed thinner student has no full width: models.json holds
            # it as trained, so exports and evaluations read it back.
            self.full_student_config = dict(student_config)
        student = generator_lib.Generator.from_config(student_config)
        discriminator = discriminator_lib.Discriminator.from_config(
            dict(d_config, name="discriminator"))
        return student, discriminator

    def build_extra(self):
        g_config = self.teacher_configs["generator"]
        d_config = self.teacher_configs["discriminator"]
        self.teacher_generator = generator_lib.Generator.from_config(
            dict(g_config, name="teacher_generator"))
        self.teacher_discriminator = (
            discriminator_lib.Discriminator.from_config(
                dict(d_config, name="teacher_discriminator")))
        self.teacher_generator.build()
        self.teacher_discriminator.build()
        self.teacher_generator.trainable = False
        self.teacher_discriminator.trainable = False
        self._load_teacher()
        self.objective = distill_objective.DistillationObjective(
            self.weights, self.teacher_generator,
            self.teacher_discriminator, self.cam_discriminator)

        channels = self.teacher_generator.channels
        self.shape = complexity.GeneratorShape.of(self.teacher_generator)
        self.prune_end_step = max(
            1, int(round(self.prune_end_fraction * self.num_steps)))
        self.bound_schedule = self.bound_schedule_cls(
            begin_step=0, end_step=self.prune_end_step)
        widths = channel_masks.mask_widths(channels, self.prune_attention)
        self.masks = channel_masks.ChannelMasks(
            widths, initial_value=self.mask_init,
            initial_bound=self.bound_schedule.initial_bound,
            mask_function=self.mask_function, name="channel_masks")
        self.controller = controller_lib.BudgetController(
            self.budget_limits(channels, self.shape, widths), widths,
            self.min_channels,
            self.min_channel_fraction, self.budget_surrogate_width,
            self.budget_ramp_fraction, self.budget_lambda_rate,
            self.budget_lambda_max, self.prune_end_step,
            self.width_multiple)
        self.budget_lambda = self.controller.budget_lambda
        self.floors = self.controller.floors
        self.full_params = self.controller.full_params
        self.target_params = self.controller.target_params
        self.student_params = generator_lib.count_trainable_parameters(
            self.generator)
        # Average only the hardened student: weights from before the cut
        # belong to a different network.
        self.ema.start_step = max(self.ema.start_step, self.prune_end_step)
        self.mask_optimizer = self.mask_optimizer_cls(name="mask_optimizer")
        self.mask_optimizer.build(list(self.masks.logits.values()))
        if not self.use_masks or self.compacted:
            # Fixed thinner student (masks stay open, nothing is pruned), or
            # the compact student after the cut (the masks are spent).
            self.masks = None
        self.hardened = tf.Variable(
            False, trainable=False, name="hardened",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def budget_limits(self, channels, shape, widths):
        """The budgeted quantities (`costs.Limit`s) of a generator with
        this full ChannelConfig and shape: parameters always, MACs and
        predicted latency when their targets are set."""
        limits = [costs.parameter_limit(channels, shape, widths,
                                        self.target_param_ratio,
                                        self.target_params_arg)]
        if self.target_mac_ratio is not None:
            limits.append(costs.mac_limit(channels, shape, widths,
                                          self.target_mac_ratio))
        if self.target_latency_ratio is not None:
            limits.append(costs.latency_limit(
                channels, shape, widths, self.latency_table,
                self.target_latency_ratio))
        return limits

    def _load_teacher(self):
        """Teacher EMA G and D from the teacher checkpoint; student copies
        (by weight name, shapes checked). A resumed run overwrites the
        copies from its own checkpoint."""
        self.teacher_checkpoint = run_dir.restore_newest(
            self.teacher_dir, dict(generator_ema=self.teacher_generator,
                                   discriminator=self.teacher_discriminator),
            "teacher")
        pairs = [(self.teacher_discriminator, self.discriminator)]
        # A thinner or compact student cannot copy the teacher.
        if self.use_masks and not self.compacted:
            pairs.append((self.teacher_generator, self.generator))
        for src, dst in pairs:
            compaction.copy_weights_by_name(src, dst)
        logging.info("Teacher loaded from %s (student starts as its copy).",
                     self.teacher_checkpoint)

    def write_model_configs(self):
        """models.json holds the full-width student (the compact channels
        after a cut are in pruning.json; a fixed thinner student, without
        masks, as it is); PPCD runs also write
        pruning.json, the pruning structure, before their first step."""
        super().write_model_configs()
        content = run_dir.read_model_configs(self.model_dir)
        content["generator"] = self.full_student_config
        run_dir.write_model_configs(self.model_dir, content)
        if self.use_masks and not self.compacted:
            self.write_pruning_structure(None, None)

    def write_pruning_structure(self, cut_step, keep):
        """pruning.json: the masks' set-up and, after a cut at `cut_step`
        with hard masks `keep`, the compact channel configuration."""
        widths = channel_masks.mask_widths(self.teacher_generator.channels,
                                           self.prune_attention)
        structure = {
            "mask_widths": dict(widths),
            "mask_function": self.mask_function,
            "prune_attention": self.prune_attention,
            "phase": (run_dir.PHASE_MASKS if cut_step is None
                      else run_dir.PHASE_COMPACT),
            "cut_step": cut_step,
            "compact_channels": (None if cut_step is None else
                                 self.generator.channels.to_dict()),
            "kept_indices": (None if keep is None else
                             compaction.kept_index_lists(
                                 self.teacher_generator, keep)),
        }
        self.structure = structure
        if self.is_chief:
            run_dir.write_pruning_structure(self.model_dir, structure)

    def checkpoint_items(self):
        items = super().checkpoint_items()
        items.update(self.controller.checkpoint_items())
        items.update(hardened=self.hardened)
        if self.masks is not None:
            items.update(channel_masks=self.masks,
                         mask_optimizer=self.mask_optimizer)
        return items

    def generator_update_groups(self):
        groups = [(self.g_optimizer, self.generator.trainable_variables)]
        if self.masks is not None:
            groups.append((self.mask_optimizer,
                           list(self.masks.logits.values())))
        return groups

    # ------------------------------------------------------------------
    # Forward passes and losses.

    def generate(self, z, labels, training, return_features=False,
                 model=None):
        model = model or self.generator
        if self.masks is None:
            return model(z, labels, training=training,
                         return_features=return_features)
        values = self.masks()
        return model(z, labels, training=training, masks=values,
                     keep=self.masks.keep(values),
                     return_features=return_features)

    def _global_scalar(self, value):
        """A whole-batch scalar as this replica's / micro-batch's share."""
        return value / float(self.num_replicas * self.accumulation_steps)

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

    def generator_losses(self, z, labels, step):
        fake, student_features = self.generate(z, labels, training=True,
                                               return_features=True)
        logits, d_features = self.discriminator(fake, labels, training=True,
                                                return_features=True)
        terms = {"g_loss_adversarial":
                 self._scaled_mean(self.g_loss_fn(logits))}
        terms.update(self.objective.terms(
            z, labels, step, fake, student_features, d_features,
            self.discriminator, self._scaled_mean))
        if self.masks is None:
            terms["g_loss_budget"] = tf.constant(0.0)
            terms["info_param_ratio"] = self._global_scalar(
                self.param_ratio())
            return terms
        loss, ratio = self.controller.budget_loss(self.masks.logits)
        terms["g_loss_budget"] = self._global_scalar(loss)
        terms["info_param_ratio"] = self._global_scalar(ratio)
        return terms

    def extra_generator_loss_names(self):
        return self.objective.term_names + ("g_loss_budget",
                                            "info_param_ratio")

    # ------------------------------------------------------------------
    # Schedule, controller, hardening.

    def after_step(self, step):
        """Controller update (cross-replica): lambda tracks the excess."""
        if self.masks is None:
            return
        pruning = tf.logical_and(step < self.prune_end_step,
                                 tf.logical_not(self.hardened))
        self.controller.update(
            step, self.controller.float_counts(self.masks), pruning)

    def extra_boundaries(self):
        return (self.prune_end_step,)

    def validation_allowed(self, step):
        """Only students of the retraining phase (after the cut, where the
        structure is final) compete for best/; before it the masks still
        move. Runs without masks (ablations) follow the same schedule."""
        return step > self.prune_end_step

    def train_loop_begin(self):
        step = int(self.step.numpy())
        if self.masks is not None:
            hardened = bool(self.hardened.numpy())
            if step >= self.prune_end_step and not hardened:
                self.harden()
                hardened = True
            elif not hardened:
                self.masks.bound.assign(self.bound_schedule(step))
            if hardened and self.train_compact_after_cut:
                self.switch_to_compact(step)
        self.set_learning_rates(step)

    def set_learning_rates(self, step):
        """G and D learning rates: the optimizers' own before the cut, the
        retraining schedule's (`schedules.RetrainSchedule`) after it."""
        for name, optimizer in (("g", self.g_optimizer),
                                ("d", self.d_optimizer)):
            factor = self.retrain.factor(name, step, self.prune_end_step,
                                         self.num_steps)
            self._inner(optimizer).learning_rate.assign(
                self.base_learning_rates[name] * factor)

    def switch_to_compact(self, step):
        """Replaces the hard-masked student, its EMA copy and the G optimizer
        by compact ones (verified equal; optimizer moments sliced when
        `carry_optimizer_state`), records the cut in pruning.json and
        rebuilds the checkpoint and the compiled step around them."""
        keep = run_dir.hard_keep(self.generator, self.masks)
        full_generator = self.generator
        with self.strategy.scope():
            compact, difference = compaction.compact_student(
                self.generator, keep, "generator", self.compaction_tolerance,
                rounding_factor=self.compaction_rounding_factor)
            compact_ema, _ = compaction.compact_student(
                self.generator_ema, keep, "generator_ema",
                self.compaction_tolerance,
                rounding_factor=self.compaction_rounding_factor)
            inner = self._inner(self.g_optimizer)
            optimizer = self._make_optimizer(
                lambda name: type(inner).from_config(
                    dict(inner.get_config(), name=name)), "g_optimizer")
            optimizer.build(compact.trainable_variables)
            carried = []
            if self.carry_optimizer_state:
                carried = compaction.carry_optimizer_state(
                    self.g_optimizer, optimizer, full_generator, compact,
                    keep)
        self.generator, self.generator_ema = compact, compact_ema
        self.g_optimizer = optimizer
        self.ema = ema_lib.ExponentialMovingAverage(
            compact, compact_ema, self.ema.decay, self.ema.start_step)
        self.masks = None
        self.compacted = True
        self.student_params = generator_lib.count_trainable_parameters(
            compact)
        self.write_pruning_structure(step, keep)
        self.checkpointer = checkpointing.Checkpointer(
            self.checkpointer.directory,
            max_to_keep=self.checkpointer.max_to_keep,
            **self.checkpoint_items())
        self._train_fn = None
        logging.info(
            "Switched to the compact student at step %d: %s trainable G "
            "parameters (max |compact - masked| %.2e), optimizer %s.", step,
            f"{self.student_params:,}", difference,
            f"state carried ({', '.join(carried)})" if carried
            else "rebuilt")

    def harden(self):
        """Cuts the masks exactly to the budget and freezes them."""
        logits = {k: v.numpy() for k, v in self.masks.logits.items()}
        before = float(self.param_ratio().numpy())
        self.set_hard_masks(self.controller.harden(logits, self.harden_rule))
        self.controller.reset()
        after = float(self.param_ratio().numpy())
        logging.info(
            "Masks hardened to the budget at step %d: parameter ratio %.4f "
            "-> %.4f (target %.4f, %s of %s parameters); %s; kept channels "
            "%s.", int(self.step.numpy()), before, after,
            self.target_params / self.full_params,
            f"{int(round(after * self.full_params)):,}",
            f"{self.full_params:,}", self._budget_summary(),
            self.kept_channels())

    def set_hard_masks(self, keep):
        """Freezes the masks at `keep` ({mask key: bool [width]}): logits
        at +-HARD_LOGIT, the bound at 0, the run marked hardened."""
        for key, variable in self.masks.logits.items():
            variable.assign(np.where(keep[key], HARD_LOGIT,
                                     -HARD_LOGIT).astype(np.float32))
        self.masks.bound.assign(0.0)
        self.hardened.assign(True)

    def budget_ratios(self):
        """{limit name: hard ratio} of the student's kept channels."""
        return {name: float(value) for name, value in
                self.controller.ratios_of_counts(
                    self.kept_channels()).items()}

    def _budget_summary(self):
        ratios = self.budget_ratios()
        return ", ".join(
            f"{limit.name} {ratios[limit.name]:.4f} "
            f"(target {limit.target_ratio:.4f})"
            for limit in self.controller.limits)

    def kept_channels(self):
        """{mask key: kept count} of the hard masks (of the student)."""
        if self.masks is None:
            return dict(channel_masks.mask_widths(self.generator.channels,
                                                  self.prune_attention))
        return {k: int(v.numpy()) for k, v in self.masks.hard_counts().items()}

    def compact_channel_config(self):
        """ChannelConfig of the compact generator the hard masks define."""
        return budget_lib.kept_channel_config(self.generator.channels,
                                              self.kept_channels())

    # ------------------------------------------------------------------
    # Summaries.

    def extra_summaries(self, step):
        if not self.is_chief:
            return
        ratio = float(self.param_ratio().numpy())
        tf.summary.scalar("pruning/param_ratio", ratio, step=step)
        tf.summary.scalar("pruning/live_params", ratio * self.full_params,
                          step=step)
        tf.summary.scalar("pruning/compression",
                          1.0 / max(ratio, 1e-12), step=step)
        tf.summary.scalar("pruning/target_ratio",
                          self.target_params / self.full_params, step=step)
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
        if self.masks is None:
            return
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
        path = os.path.join(self.model_dir, run_dir.PRUNING_HISTORY_FILE)
        with tf.io.gfile.GFile(path, "a") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")

    def write_samples(self, step):
        images = super().write_samples(step)
        z, labels = self.sample_inputs()
        teacher = self.teacher_generator(z, labels, training=False).numpy()
        rows = len(self.sample_classes)
        # Teacher and student side by side: each row shows the class once
        # from the teacher (left half) and once from the student (right).
        cols = self.samples_per_class
        pair = np.concatenate([teacher.reshape((rows, cols) +
                                               teacher.shape[1:]),
                               images.reshape((rows, cols) +
                                              images.shape[1:])], axis=1)
        grid = summaries.image_grid(
            pair.reshape((-1,) + images.shape[1:]), rows=rows)
        if self.is_chief:
            tf.summary.image("samples/teacher_vs_student", grid, step=step)
            summaries.write_png(grid, os.path.join(
                self.model_dir, "samples", f"teacher_vs_student_{step:08d}"
                ".png"))
        return images
