"""What G is trained to: the generator objectives `GanSteps` optimises.

An objective tells the step code how G generates (PPCD: through its channel
masks), the loss terms of one G micro-batch, which variables the G loss
updates, and what happens after each step. Every term is a per-example sum
divided by the global batch; terms whose name starts with 'info_' are
reported, not optimised.

  AdversarialObjective   a teacher: D's GAN loss on G's images
  PPCDObjective          + distillation from the frozen teacher + the
                         parameter budget through the pruning phase's masks
"""

import tensorflow as tf


class AdversarialObjective:
    """G's loss for a dense GAN (teacher): the adversarial term.

    Args:
      steps: the `GanSteps` whose state (models, optimizers) it reads.
    """

    loss_names = ("g_loss_adversarial",)

    def __init__(self, steps):
        self.steps = steps

    @property
    def state(self):
        return self.steps.state

    def generate(self, z, labels, training, return_features=False,
                 model=None):
        """Images [B, H, W, C] (and features) of z [B, dim_z], labels [B]
        from the trained generator, or `model` (the EMA copy for samples)."""
        model = model or self.state.generator
        return model(z, labels, training=training,
                     return_features=return_features)

    def g_inputs(self, step):
        """(z [per_replica, dim_z], labels [per_replica], extras) of this
        replica's G update; extras (None here) are sliced into
        micro-batches with them and passed to `losses`."""
        z, labels = self.steps.replica_noise(step, self.steps.G_UPDATE_PURPOSE)
        return z, labels, None

    def adversarial_loss(self, fake, labels):
        """G's GAN loss on its images: a scalar divided by the global batch."""
        logits = self.state.discriminator(fake, labels, training=True)
        return self.steps.scaled_mean(self.steps.g_loss_fn(logits))

    def losses(self, z, labels, step, extras=None):
        """Loss terms of one G micro-batch: {name: scalar}."""
        del step, extras
        fake = self.generate(z, labels, training=True)
        return {"g_loss_adversarial": self.adversarial_loss(fake, labels)}

    def update_groups(self):
        """[(optimizer, variables)] updated from the G loss."""
        return [(self.state.g_optimizer,
                 self.state.generator.trainable_variables)]

    def after_step(self, step):
        """Cross-replica work after each G step, inside tf.function."""
        del step


class PPCDObjective(AdversarialObjective):
    """The PPCD student's loss: adversarial + distillation + budget. The
    adversarial term (and the training D's pass it needs) is left out while
    `steps.adversarial_active` is False (D switched off after the cut).

    Args:
      steps: the `GanSteps`.
      distillation: a `distill.objective.DistillationObjective` (teacher
        G and D frozen inside).
      pruning: the `PruningPhase` (masks, budget controller); its masks are
        None for a fixed thinner student and after the compact switch.
      bank: a built `distill.bank.TeacherBank` or None; when enabled the G
        steps draw (z, y) and the teacher's outputs from it.
      compact: the `CompactPhase` or None; after the cut its
        `distillation_fraction` of each G micro-batch is distilled.
    """

    def __init__(self, steps, distillation, pruning, bank=None,
                 compact=None):
        super().__init__(steps)
        self.compact = compact
        self.distillation = distillation
        self.pruning = pruning
        self.bank = bank if bank is not None and bank.enabled else None
        self.loss_names = (("g_loss_adversarial",) + distillation.term_names
                           + ("g_loss_budget", "info_param_ratio"))

    def generate(self, z, labels, training, return_features=False,
                 model=None):
        model = model or self.state.generator
        masks = self.pruning.masks
        if masks is None:
            return model(z, labels, training=training,
                         return_features=return_features)
        values = masks()
        return model(z, labels, training=training, masks=values,
                     keep=masks.keep(values),
                     return_features=return_features)

    def g_inputs(self, step):
        """Fresh noise, or with a teacher bank its draw for this step
        (extras: the teacher's images and attention grids)."""
        if self.bank is None:
            return super().g_inputs(step)
        return self.bank.replica_draw(step, self.steps.global_batch_size,
                                      self.steps.per_replica_batch)

    def losses(self, z, labels, step, extras=None):
        fake, student_features = self.generate(z, labels, training=True,
                                               return_features=True)
        discriminator = self.state.discriminator
        if self.steps.adversarial_active:
            logits, d_features = discriminator(fake, labels, training=True,
                                               return_features=True)
            terms = {"g_loss_adversarial":
                     self.steps.scaled_mean(self.steps.g_loss_fn(logits))}
        else:  # D switched off after the cut: distillation alone
            d_features = None
            terms = {"g_loss_adversarial": tf.constant(0.0)}
        terms.update(self.distillation.terms(
            z, labels, step, fake, student_features, d_features,
            discriminator, self.steps.scaled_mean, banked=extras,
            batch_fraction=self.distillation_fraction()))
        if self.pruning.masks is None:
            terms["g_loss_budget"] = tf.constant(0.0)
            terms["info_param_ratio"] = self.steps.global_share(
                self.pruning.param_ratio())
            return terms
        loss, ratio = self.pruning.controller.budget_loss(
            self.pruning.masks.logits)
        terms["g_loss_budget"] = self.steps.global_share(loss)
        terms["info_param_ratio"] = self.steps.global_share(ratio)
        return terms

    def distillation_fraction(self):
        """The share of a G micro-batch the distillation terms see: the
        compact phase's `distillation_fraction` after the cut (the step is
        traced again at the switch), else 1."""
        if self.compact is None or not self.pruning.compacted:
            return 1.0
        return self.compact.distillation_fraction

    def update_groups(self):
        groups = super().update_groups()
        if self.pruning.masks is not None:
            groups.append((self.pruning.mask_optimizer,
                           list(self.pruning.masks.logits.values())))
        return groups

    def after_step(self, step):
        self.pruning.after_step(step)
