"""PPCD's compact phase: after the cut, the compact student trains.

At the first loop after the masks are hardened, the hard-masked student
(and its EMA copy) is replaced by the compact generator its masks define
(surgery, verified equal), the G optimizer's moments are sliced to the kept
channels, the cut is recorded in `pruning.json`, and the rest of the run
trains that student. The learning rates follow `schedules.RetrainSchedule`
from the cut on, and the training D is updated every
`discriminator_interval`-th step from the cut on (0: the D and G's
adversarial term are dropped, the student trains on distillation alone).
"""

import gin
import numpy as np
from absl import logging

from ppcd_tf import errors
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import compaction
from ppcd_tf.pruning import discriminator_thinning
from ppcd_tf.pruning import schedules
from ppcd_tf.pruning import surgery
from ppcd_tf.runs import run_dir
from ppcd_tf.training import gan_steps
from ppcd_tf.training import phases


@gin.configurable
class CompactPhase(phases.Phase):
    """The switch to the compact student and the learning rates after it.

    Args:
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
      discriminator_interval: from the cut on, the training D is updated
        at every k-th step only (1: every step; 0: never, and G's
        adversarial term and the training D's pass it needs are dropped).
        A skipped D update reads no real batch; the whole D step is about
        half of a compact step (BENCHMARKS.md, "What a compact step
        spends").
      discriminator_width: at the cut, the training D is replaced by a
        thinner one (every width times this fraction, started from its
        strongest filters: `pruning.discriminator_thinning`, with a fresh
        optimizer); 1.0 keeps the full-width D.
      distillation_fraction: from the cut on, the distillation terms are
        computed on this share of each G micro-batch only (its first
        ceil(fraction * B) examples; each term scaled by B / that count):
        the frozen teacher G and D, about half of a compact step with a
        thinned D (BENCHMARKS.md), run on that share. The adversarial term
        keeps the whole batch. 1.0: the whole batch.
    """

    def __init__(self, train_compact_after_cut=True,
                 carry_optimizer_state=True, compaction_tolerance=1e-4,
                 compaction_rounding_factor=surgery.DEFAULT_ROUNDING_FACTOR,
                 retrain=schedules.RetrainSchedule,
                 discriminator_interval=1, discriminator_width=1.0,
                 distillation_fraction=1.0):
        if not (compaction_tolerance >= 0 and compaction_rounding_factor >= 0):
            raise errors.BadInputError(
                "CompactPhase.compaction_tolerance and "
                "compaction_rounding_factor must be >= 0, got "
                f"{compaction_tolerance} and {compaction_rounding_factor}.")
        if (isinstance(discriminator_interval, bool)
                or int(discriminator_interval) != discriminator_interval
                or discriminator_interval < 0):
            raise errors.BadInputError(
                "CompactPhase.discriminator_interval must be an integer >= 0"
                " (1: D updated every step after the cut, k: every k-th, 0:"
                f" never), got {discriminator_interval!r}.")
        self.discriminator_interval = int(discriminator_interval)
        if not 0.0 < discriminator_width <= 1.0:
            raise errors.BadInputError(
                "CompactPhase.discriminator_width must be in (0, 1] (1.0: "
                f"the full-width D), got {discriminator_width!r}.")
        self.discriminator_width = float(discriminator_width)
        if not 0.0 < distillation_fraction <= 1.0:
            raise errors.BadInputError(
                "CompactPhase.distillation_fraction must be in (0, 1] (1.0: "
                "the whole G batch is distilled after the cut), got "
                f"{distillation_fraction!r}.")
        self.distillation_fraction = float(distillation_fraction)
        self.train_compact_after_cut = bool(train_compact_after_cut)
        self.carry_optimizer_state = bool(carry_optimizer_state)
        self.compaction_tolerance = float(compaction_tolerance)
        self.compaction_rounding_factor = float(compaction_rounding_factor)
        self.retrain = retrain()
        self.trainer = None
        self.pruning = None
        self.base_learning_rates = None

    def build(self, trainer, pruning):
        """Attaches the phase to its trainer and pruning phase; the
        optimizers' configured rates are the base the schedule scales."""
        self.trainer, self.pruning = trainer, pruning
        if pruning.masks is not None or pruning.compacted:
            trainer.steps.set_discriminator_schedule(
                pruning.prune_end_step, self.discriminator_interval)
        self.base_learning_rates = {
            name: float(np.asarray(
                gan_steps.inner_optimizer(optimizer).learning_rate))
            for name, optimizer in (("g", trainer.g_optimizer),
                                    ("d", trainer.d_optimizer))}

    def boundaries(self):
        """The cut: the D schedule changes there."""
        if self.trainer.steps.d_schedule.start is None:
            return ()
        return (self.trainer.steps.d_schedule.start,)

    def begin_loop(self, step):
        """Switches once the masks are hard; sets the learning rates."""
        pruning = self.pruning
        if (self.train_compact_after_cut and pruning.masks is not None
                and bool(pruning.hardened.numpy())):
            self.switch_to_compact(step)
        self.set_learning_rates(step)

    def set_learning_rates(self, step):
        """G and D learning rates: the optimizers' own before the cut, the
        retraining schedule's (`schedules.RetrainSchedule`) after it."""
        trainer = self.trainer
        for name, optimizer in (("g", trainer.g_optimizer),
                                ("d", trainer.d_optimizer)):
            factor = self.retrain.factor(name, step,
                                         self.pruning.prune_end_step,
                                         trainer.num_steps)
            gan_steps.inner_optimizer(optimizer).learning_rate.assign(
                self.base_learning_rates[name] * factor)

    def _compact(self, model, keep, name):
        return compaction.compact_student(
            model, keep, name, self.compaction_tolerance,
            rounding_factor=self.compaction_rounding_factor)

    def switch_to_compact(self, step):
        """Replaces the hard-masked student, its EMA copy and the G optimizer
        by compact ones (verified equal; optimizer moments sliced when
        `carry_optimizer_state`), records the cut in pruning.json and
        rebuilds the checkpoint and the compiled step around them."""
        trainer = self.trainer
        keep = run_dir.hard_keep(trainer.generator, self.pruning.masks)
        with trainer.strategy.scope():
            compact, difference = self._compact(trainer.generator, keep,
                                                "generator")
            compact_ema, _ = self._compact(trainer.generator_ema, keep,
                                           "generator_ema")
            optimizer = self._fresh_optimizer(
                trainer.g_optimizer, compact, "g_optimizer")
            carried = []
            if self.carry_optimizer_state:
                carried = compaction.carry_optimizer_state(
                    trainer.g_optimizer, optimizer, trainer.generator,
                    compact, keep)
        if self.discriminator_width < 1.0:
            self._thin_discriminator()
        self.pruning.masks = None
        self.pruning.compacted = True
        self.pruning.student_params = (
            generator_lib.count_trainable_parameters(compact))
        trainer.replace_models(generator=compact, generator_ema=compact_ema,
                               g_optimizer=optimizer)
        trainer.write_pruning_structure(step, keep)
        logging.info(
            "Switched to the compact student at step %d: %s trainable G "
            "parameters (max |compact - masked| %.2e), optimizer %s.", step,
            f"{self.pruning.student_params:,}", difference,
            f"state carried ({', '.join(carried)})" if carried
            else "rebuilt")

    def _fresh_optimizer(self, optimizer, model, name):
        """A new optimizer of `optimizer`'s class and settings (its current
        learning rate included), built for `model`'s variables."""
        inner = gan_steps.inner_optimizer(optimizer)
        fresh = self.trainer.steps.make_optimizer(
            lambda name: type(inner).from_config(
                dict(inner.get_config(), name=name)), name)
        fresh.build(model.trainable_variables)
        return fresh

    def _thin_discriminator(self):
        """Replaces the training D (and its optimizer) by a thinner one
        (`discriminator_width`) before the compiled step is rebuilt."""
        trainer = self.trainer
        full = discriminator_thinning.parameter_count(trainer.discriminator)
        with trainer.strategy.scope():
            thin, _ = discriminator_thinning.thin(
                trainer.discriminator, self.discriminator_width)
            optimizer = self._fresh_optimizer(
                trainer.d_optimizer, thin, "d_optimizer")
        trainer.replace_models(discriminator=thin, d_optimizer=optimizer)
        logging.info(
            "Training D thinned to %.2f of its widths: %s -> %s trainable "
            "parameters (fresh optimizer).", self.discriminator_width,
            f"{full:,}", f"{discriminator_thinning.parameter_count(thin):,}")
