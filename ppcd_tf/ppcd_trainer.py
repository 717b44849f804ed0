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

from ppcd_tf import summaries
from ppcd_tf import trainer as trainer_lib
from ppcd_tf.distill import losses as distill_losses
from ppcd_tf.models import complexity
from ppcd_tf.models import discriminator as discriminator_lib
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import schedules

CAM_DISCRIMINATORS = ("teacher", "student")
HARDEN_RULES = ("global", "uniform")
# Logit given to kept / removed channels when masks are hardened.
HARD_LOGIT = 1.0


PRUNING_HISTORY_FILE = "pruning_history.jsonl"


def read_pruning_history(model_dir):
    """The lines of a PPCD run's pruning history, one per step (the last
    written for a step wins, so resumed runs read cleanly), sorted by step."""
    path = os.path.join(model_dir, PRUNING_HISTORY_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} not found: --ppcd_dir must be the --model_dir of a PPCD "
            "run (gin/stage/ppcd.gin), which writes it at every log step.")
    by_step = {}
    with tf.io.gfile.GFile(path) as f:
        for text in f:
            if text.strip():
                line = json.loads(text)
                by_step[line["step"]] = line
    return [by_step[s] for s in sorted(by_step)]


class TeacherNotFoundError(FileNotFoundError):
    """The teacher directory lacks its checkpoint or model configs."""


def load_model_configs(model_dir):
    """The models.json a Trainer wrote into `model_dir`."""
    path = os.path.join(model_dir, trainer_lib.MODELS_FILE)
    if not tf.io.gfile.exists(path):
        raise TeacherNotFoundError(
            f"{path} not found: TEACHER_DIR must be the --model_dir of a "
            "finished teacher run (python -m ppcd_tf.train with "
            "gin/stage/teacher.gin), which writes models.json and "
            "checkpoints/.")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def latest_checkpoint(model_dir):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    if path is None:
        raise TeacherNotFoundError(
            f"No checkpoint in {os.path.join(model_dir, 'checkpoints')}: "
            "train the teacher first (python -m ppcd_tf.train ... "
            "--model_dir TEACHER_DIR).")
    return path


@gin.configurable(denylist=["model_dir", "strategy"])
class PPCDTrainer(trainer_lib.Trainer):
    """Compresses a teacher generator by progressive pruning + distillation.

    Args (beyond `Trainer`'s, which gin binds as `Trainer.*`):
      teacher_dir: model_dir of a finished teacher run.
      target_param_ratio: kept fraction of the generator's parameters
        (0.19 = 5.2x fewer). Ignored when `target_params` is set.
      target_params: absolute parameter budget.
      prune_end_fraction: fraction of `num_steps` after which masks are
        hardened to the budget and frozen.
      initial_bound: mask bound at step 0 (the schedule decays it to 0).
      bound_kind: schedule shape ('cube', 'linear', 'cosine', 'constant').
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
    """

    def __init__(self, model_dir, strategy, teacher_dir=gin.REQUIRED,
                 target_param_ratio=0.19, target_params=None,
                 prune_end_fraction=0.5, initial_bound=1.0,
                 bound_kind="cube", mask_init=1.0,
                 mask_function="smooth_step",
                 mask_optimizer_cls=keras.optimizers.SGD,
                 prune_attention=True, min_channels=4,
                 min_channel_fraction=0.0, budget_surrogate_width=2.0,
                 budget_ramp_fraction=0.8, budget_lambda_rate=0.1,
                 budget_lambda_max=10.0, harden_rule="global",
                 use_masks=True,
                 distillation=distill_losses.DistillationWeights,
                 cam_discriminator="teacher", **kwargs):
        if teacher_dir is gin.REQUIRED or not teacher_dir:
            raise ValueError("PPCDTrainer needs teacher_dir: bind "
                             "TEACHER_DIR = '/path/to/teacher_run'.")
        if target_params is None and not 0.0 < target_param_ratio <= 1.0:
            raise ValueError(f"target_param_ratio must be in (0, 1], got "
                             f"{target_param_ratio}.")
        if not 0.0 < prune_end_fraction <= 1.0:
            raise ValueError(f"prune_end_fraction must be in (0, 1], got "
                             f"{prune_end_fraction}.")
        if abs(mask_init) >= budget_surrogate_width:
            raise ValueError(
                f"mask_init {mask_init} lies outside the budget surrogate's "
                f"band (-{budget_surrogate_width}, {budget_surrogate_width}):"
                " the budget could never move the masks. Raise "
                "PPCDTrainer.budget_surrogate_width.")
        if harden_rule not in HARDEN_RULES:
            raise ValueError(f"harden_rule must be one of {HARDEN_RULES}, "
                             f"got {harden_rule!r}.")
        if not 0.0 < budget_ramp_fraction <= 1.0:
            raise ValueError(f"budget_ramp_fraction must be in (0, 1], got "
                             f"{budget_ramp_fraction}.")
        if cam_discriminator not in CAM_DISCRIMINATORS:
            raise ValueError(f"cam_discriminator must be one of "
                             f"{CAM_DISCRIMINATORS}, got "
                             f"{cam_discriminator!r}.")
        self.teacher_dir = teacher_dir
        self.teacher_configs = load_model_configs(teacher_dir)
        self.teacher_checkpoint = latest_checkpoint(teacher_dir)
        self.target_param_ratio = float(target_param_ratio)
        self.target_params_arg = target_params
        self.prune_end_fraction = float(prune_end_fraction)
        self.initial_bound = float(initial_bound)
        self.bound_kind = bound_kind
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
        super().__init__(model_dir, strategy, **kwargs)

    # ------------------------------------------------------------------
    # Construction.

    def build_models(self, resolution, num_classes, image_channels):
        g_config = self.teacher_configs["generator"]
        d_config = self.teacher_configs["discriminator"]
        teacher = generator_lib.Generator.from_config(g_config)
        if (teacher.channels.resolution != resolution
                or teacher.num_classes != num_classes
                or teacher.image_channels != image_channels):
            raise ValueError(
                f"The teacher in {self.teacher_dir} generates "
                f"{teacher.channels.resolution}x{teacher.channels.resolution}"
                f"x{teacher.image_channels} images of {teacher.num_classes} "
                f"classes, the data is {resolution}x{resolution}x"
                f"{image_channels} with {num_classes} classes: use the data "
                "gin file the teacher was trained with.")
        student_config = dict(g_config, name="generator")
        if not self.use_masks:
            full = budget_lib.live_parameters(
                teacher.channels, complexity.GeneratorShape.of(teacher),
                dict(channel_masks.mask_widths(teacher.channels,
                                               self.prune_attention)))
            target = (self.target_params_arg if self.target_params_arg
                      else self.target_param_ratio * full)
            thin = budget_lib.uniform_channel_config(
                teacher.channels, complexity.GeneratorShape.of(teacher),
                target, self.min_channels, self.prune_attention)
            student_config["channels"] = thin.to_dict()
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

        channels = self.teacher_generator.channels
        self.shape = complexity.GeneratorShape.of(self.teacher_generator)
        widths = channel_masks.mask_widths(channels, self.prune_attention)
        self.masks = channel_masks.ChannelMasks(
            widths, initial_value=self.mask_init,
            initial_bound=self.initial_bound,
            mask_function=self.mask_function, name="channel_masks")
        self.floors = budget_lib.channel_floors(
            widths, self.min_channels, self.min_channel_fraction)
        self.full_params = budget_lib.live_parameters(
            channels, self.shape, dict(widths))
        self.target_params = int(
            self.target_params_arg if self.target_params_arg is not None
            else round(self.target_param_ratio * self.full_params))
        floor_params = budget_lib.live_parameters(channels, self.shape,
                                                  self.floors)
        if self.target_params < floor_params:
            raise ValueError(
                f"Target of {self.target_params:,} parameters is below the "
                f"{floor_params:,} that the per-layer floors keep; lower "
                "PPCDTrainer.min_channels or raise the target.")
        self.gradient_scale = 0.5 * sum(widths.values())
        self.student_params = generator_lib.count_trainable_parameters(
            self.generator)
        self.prune_end_step = max(
            1, int(round(self.prune_end_fraction * self.num_steps)))
        # Average only the hardened student: weights from before the cut
        # belong to a different network.
        self.ema.start_step = max(self.ema.start_step, self.prune_end_step)
        self.bound_schedule = schedules.BoundSchedule(
            initial_bound=self.initial_bound, begin_step=0,
            end_step=self.prune_end_step, kind=self.bound_kind)
        self.mask_optimizer = self.mask_optimizer_cls(name="mask_optimizer")
        self.mask_optimizer.build(list(self.masks.logits.values()))
        if not self.use_masks:
            # Fixed thinner student: masks stay open, nothing is pruned.
            self.masks = None
        self.budget_lambda = tf.Variable(
            0.0, trainable=False, name="budget_lambda",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.hardened = tf.Variable(
            False, trainable=False, name="hardened",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def _load_teacher(self):
        """Teacher EMA G and D from the teacher checkpoint; student copies."""
        source = tf.train.Checkpoint(
            generator_ema=self.teacher_generator,
            discriminator=self.teacher_discriminator)
        status = source.restore(self.teacher_checkpoint)
        status.expect_partial().assert_existing_objects_matched()
        pairs = [(self.teacher_discriminator, self.discriminator)]
        if self.use_masks:  # a thinner student cannot copy the teacher
            pairs.append((self.teacher_generator, self.generator))
        for src, dst in pairs:
            for s, d in zip(src.weights, dst.weights):
                d.assign(s)
        logging.info("Teacher loaded from %s (student starts as its copy).",
                     self.teacher_checkpoint)

    def checkpoint_items(self):
        items = super().checkpoint_items()
        items.update(budget_lambda=self.budget_lambda, hardened=self.hardened)
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
        if self.masks is None:
            return tf.constant(self.student_params / float(self.full_params),
                               tf.float32)
        counts = {k: tf.cast(v, tf.float32)
                  for k, v in self.masks.hard_counts().items()}
        live = budget_lib.live_parameters(self.teacher_generator.channels,
                                          self.shape, counts)
        return live / float(self.full_params)

    def desired_ratio(self, step):
        """The hard ratio the controller steers to at G step `step`."""
        target = self.target_params / self.full_params
        ramp_end = max(1.0, self.budget_ramp_fraction * self.prune_end_step)
        progress = tf.minimum(tf.cast(step, tf.float32) / ramp_end, 1.0)
        return 1.0 - (1.0 - target) * progress

    def _class_activation_maps(self, fake, teacher_images, labels,
                               student_d_features):
        if self.cam_discriminator == "teacher":
            _, feats = self.teacher_discriminator(
                tf.concat([teacher_images, fake], axis=0),
                tf.concat([labels, labels], axis=0), training=False,
                return_features=True)
            cams = distill_losses.class_activation_map(
                feats["features"], feats["class_embedding"])
            teacher_cam, student_cam = tf.split(cams, 2, axis=0)
        else:
            _, feats = self.discriminator(teacher_images, labels,
                                          training=False,
                                          return_features=True)
            teacher_cam = distill_losses.class_activation_map(
                feats["features"], feats["class_embedding"])
            student_cam = distill_losses.class_activation_map(
                student_d_features["features"],
                student_d_features["class_embedding"])
        return tf.stop_gradient(teacher_cam), student_cam

    def generator_losses(self, z, labels, step):
        fake, student_features = self.generate(z, labels, training=True,
                                               return_features=True)
        teacher_images, teacher_features = self.teacher_generator(
            z, labels, training=False, return_features=True)
        teacher_images = tf.stop_gradient(teacher_images)
        teacher_features = {k: tf.stop_gradient(v)
                            for k, v in teacher_features.items()}
        logits, d_features = self.discriminator(fake, labels, training=True,
                                                return_features=True)
        weights = self.weights
        terms = {"g_loss_adversarial":
                 self._scaled_mean(self.g_loss_fn(logits))}
        terms["g_loss_attention"] = weights.attention * self._scaled_mean(
            distill_losses.attention_transfer_loss(
                student_features, teacher_features,
                layers=weights.attention_layers))
        teacher_cam, student_cam = self._class_activation_maps(
            fake, teacher_images, labels, d_features)
        terms["g_loss_class_aware"] = weights.class_aware * self._scaled_mean(
            distill_losses.class_aware_loss(student_cam, teacher_cam))
        terms["g_loss_output_l1"] = (
            weights.output_l1_weight(step) * self._scaled_mean(
                distill_losses.output_l1_loss(fake, teacher_images)))
        if self.masks is None:
            terms["g_loss_budget"] = tf.constant(0.0)
            terms["info_param_ratio"] = self._global_scalar(
                self.param_ratio())
            return terms
        counts = budget_lib.straight_through_counts(
            self.masks.logits, self.budget_surrogate_width, self.floors)
        live = budget_lib.live_parameters(self.teacher_generator.channels,
                                          self.shape, counts)
        ratio = live / float(self.full_params)
        # Value lambda * ratio; gradient scaled by (mask channels / 2), the
        # inverse of the mean per-channel share of the ratio (the count is
        # quadratic in widths), so an average channel's budget gradient is
        # ~lambda / (2 * surrogate width) whatever the model's size.
        scaled = ratio + (self.gradient_scale - 1.0) * (
            ratio - tf.stop_gradient(ratio))
        terms["g_loss_budget"] = self._global_scalar(
            tf.stop_gradient(self.budget_lambda) * scaled)
        terms["info_param_ratio"] = self._global_scalar(
            tf.stop_gradient(ratio))
        return terms

    def extra_generator_loss_names(self):
        return ("g_loss_attention", "g_loss_class_aware", "g_loss_output_l1",
                "g_loss_budget", "info_param_ratio")

    # ------------------------------------------------------------------
    # Schedule, controller, hardening.

    def after_step(self, step):
        """Controller update (cross-replica): lambda tracks the excess."""
        if self.masks is None:
            return
        excess = self.param_ratio() - self.desired_ratio(step)
        pruning = tf.logical_and(step < self.prune_end_step,
                                 tf.logical_not(self.hardened))
        updated = tf.clip_by_value(
            self.budget_lambda + self.budget_lambda_rate * excess, 0.0,
            self.budget_lambda_max)
        # Stop pushing as soon as the count is on or below the line (no
        # wind-up carried past the crossing).
        updated = tf.where(excess > 0.0, updated, 0.0)
        self.budget_lambda.assign(tf.where(pruning, updated, 0.0))

    def extra_boundaries(self):
        return (self.prune_end_step,)

    def train_loop_begin(self):
        if self.masks is None:
            return
        step = int(self.step.numpy())
        if step >= self.prune_end_step and not bool(self.hardened.numpy()):
            self.harden()
        elif not bool(self.hardened.numpy()):
            self.masks.bound.assign(self.bound_schedule(step))

    def harden(self):
        """Cuts the masks exactly to the budget and freezes them."""
        logits = {k: v.numpy() for k, v in self.masks.logits.items()}
        before = float(self.param_ratio().numpy())
        harden = (budget_lib.harden_to_budget if self.harden_rule == "global"
                  else budget_lib.harden_uniform)
        keep = harden(logits, self.teacher_generator.channels, self.shape,
                      self.target_params, self.floors)
        for key, variable in self.masks.logits.items():
            variable.assign(np.where(keep[key], HARD_LOGIT,
                                     -HARD_LOGIT).astype(np.float32))
        self.masks.bound.assign(0.0)
        self.budget_lambda.assign(0.0)
        self.hardened.assign(True)
        after = float(self.param_ratio().numpy())
        logging.info(
            "Masks hardened to the budget at step %d: parameter ratio %.4f "
            "-> %.4f (target %.4f, %s of %s parameters); kept channels %s.",
            int(self.step.numpy()), before, after,
            self.target_params / self.full_params,
            f"{int(round(after * self.full_params)):,}",
            f"{self.full_params:,}", self.kept_channels())

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
        self.append_pruning_history(step, ratio, kept)
        if self.masks is None:
            return
        bound = float(self.masks.bound.numpy())
        tf.summary.scalar("pruning/bound", bound, step=step)
        tf.summary.scalar("pruning/budget_lambda",
                          float(self.budget_lambda.numpy()), step=step)
        tf.summary.scalar("pruning/desired_ratio",
                          float(self.desired_ratio(step)), step=step)
        for key, value in self.masks().items():
            tf.summary.histogram(f"mask_values/{key}", value, step=step)
        logging.info("pruning: %.4f of G's parameters live (%.2fx smaller, "
                     "target %.2fx), bound %.4f, lambda %.4f.", ratio,
                     1.0 / max(ratio, 1e-12),
                     self.full_params / self.target_params, bound,
                     float(self.budget_lambda.numpy()))

    def append_pruning_history(self, step, ratio, kept):
        """Appends one JSON line to `<model_dir>/PRUNING_HISTORY_FILE`:
        {"step", "param_ratio", "live_params", "full_params",
        "target_params", "kept_channels": {mask key: count}}. A resumed run
        appends again from its checkpoint; readers keep the last line of
        each step (see `read_pruning_history`)."""
        line = {"step": int(step), "param_ratio": ratio,
                "live_params": int(round(ratio * self.full_params)),
                "full_params": int(self.full_params),
                "target_params": int(round(self.target_params)),
                "hardened": bool(self.hardened.numpy()),
                "kept_channels": {k: int(v) for k, v in kept.items()}}
        path = os.path.join(self.model_dir, PRUNING_HISTORY_FILE)
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
