"""PPCD: progressive channel pruning with class-aware distillation, one run.

`PPCDTrainer` is the GAN trainer with a teacher, a PPCD objective and two
phases (DESIGN.md sections 4.1-4.5):

  1. It loads a trained teacher (G, EMA G, D) from `teacher_dir`; the
     student G starts as a copy of the teacher's EMA G, the student D as a
     copy of the teacher's D; a frozen teacher G (and D, for class
     activation maps) stays.
  2. `PruningPhase` (pruning_phase.py): channel masks after every prunable
     width, pushed from soft to hard over the first `prune_end_fraction` of
     the run, a budget controller (`PruningBudget`), the cut.
  3. `PPCDObjective` (objectives.py): the adversarial term plus attention
     transfer, the class-aware term, output L1 and teacher-D features
     (`distill.objective.DistillationObjective`) and the budget term.
  4. `CompactPhase` (compact_phase.py): after the cut the compact student
     the hard masks define trains for the rest of the run; the exporter
     turns it into a plain generator.

D is not pruned.
"""

import inspect

import gin
import numpy as np
from absl import logging

from ppcd_tf import config as config_lib
from ppcd_tf import errors
from ppcd_tf.distill import bank as bank_lib
from ppcd_tf.distill import losses as distill_losses
from ppcd_tf.distill import objective as distill_objective
from ppcd_tf.models import biggan_deep
from ppcd_tf.models import builders
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.models import layers as layers_lib
from ppcd_tf.pruning import architectures
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import compaction
from ppcd_tf.pruning import costs
from ppcd_tf.runs import run_dir
from ppcd_tf.training import compact_phase
from ppcd_tf.training import objectives
from ppcd_tf.training import pruning_phase
from ppcd_tf.training import run_summaries
from ppcd_tf.training import trainer as trainer_lib

# The frozen teacher's Keras dtype policies (None: the run's own).
TEACHER_PRECISIONS = (None, "float32", "mixed_bfloat16", "mixed_float16")


@gin.configurable(denylist=["model_dir", "strategy"])
class PPCDTrainer(trainer_lib.Trainer):
    """Compresses a teacher generator by progressive pruning + distillation.

    Args (beyond `Trainer`'s, which gin binds as `Trainer.*`):
      teacher_dir: model_dir of a finished teacher run.
      distillation: `DistillationWeights` (class; gin binds its weights).
      cam_discriminator: 'teacher' (frozen teacher D) or 'student' (the D
        being fine-tuned) computes the class activation maps.
      pruning, compact: the phase classes (`PruningPhase`,
        `CompactPhase`), called here; gin binds their settings.
      teacher_bank: `distill.bank.TeacherBank` (class; gin binds its size,
        0 by default: no bank): the teacher's outputs on a fixed set of
        (z, y), computed once, which the G steps draw from.
      teacher_precision: the frozen teacher G and D's Keras dtype policy
        (`TEACHER_PRECISIONS`; None: the run's, `GanSteps.mixed_precision`
        or float32). 'mixed_bfloat16' runs them in bfloat16 (weights and
        the distillation terms stay float32).
    """

    def __init__(self, model_dir, strategy, teacher_dir=gin.REQUIRED,
                 distillation=distill_losses.DistillationWeights,
                 cam_discriminator="teacher",
                 pruning=pruning_phase.PruningPhase,
                 compact=compact_phase.CompactPhase,
                 teacher_bank=bank_lib.TeacherBank, teacher_precision=None,
                 **kwargs):
        _check_trainer_settings(kwargs)
        _check_teacher_settings(teacher_dir, cam_discriminator,
                                teacher_precision)
        self.teacher_precision = teacher_precision
        self.teacher_dir = teacher_dir
        self.teacher_configs = run_dir.read_model_configs(teacher_dir)
        self.teacher_checkpoint = run_dir.latest_checkpoint(teacher_dir)
        self.weights = distillation()
        self.cam_discriminator = cam_discriminator
        self.pruning = pruning()
        self.compact = compact()
        self.bank = teacher_bank()
        _check_recipe(self)
        self.structure = run_dir.read_pruning_structure(model_dir)
        self.pruning.compacted = self._resumes_compact(model_dir)
        super().__init__(model_dir, strategy, **kwargs)

    @property
    def compacted(self):
        """Whether the student is the compact one (after the cut)."""
        return self.pruning.compacted

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

    # ------------------------------------------------------------------
    # Construction.

    def build_models(self, resolution, num_classes, image_channels):
        g_config = self.teacher_configs["generator"]
        d_config = self.teacher_configs["discriminator"]
        teacher = builders.generator_from_config(g_config)
        if (teacher.resolution != resolution
                or teacher.num_classes != num_classes
                or teacher.image_channels != image_channels):
            raise errors.BadInputError(
                f"The teacher in {self.teacher_dir} generates "
                f"{teacher.resolution}x{teacher.resolution}"
                f"x{teacher.image_channels} images of {teacher.num_classes} "
                f"classes, the data is {resolution}x{resolution}x"
                f"{image_channels} with {num_classes} classes: use the data "
                "gin file the teacher was trained with.")
        student_config = dict(g_config, name="generator")
        if student_config.get("truncation_rows"):
            # An imported BigGAN-deep's per-truncation statistics stay with
            # the teacher: the student trains its own.
            student_config["truncation_rows"] = 0
        self.full_student_config = dict(student_config)
        architecture = architectures.of(teacher)
        if self.compacted:
            student_config = architecture.with_widths(
                student_config, self.structure["compact_channels"])
        elif not self.pruning.use_masks:
            student_config = architecture.with_widths(
                student_config, self._thin_channels(teacher))
            # A fixed thinner student has no full width: models.json holds
            # it as trained, so exports and evaluations read it back.
            self.full_student_config = dict(student_config)
        student = type(teacher).from_config(student_config)
        if d_config is None:  # a teacher without D: a fresh one from gin
            return student, self._discriminator_fn(
                resolution=resolution, num_classes=num_classes,
                image_channels=image_channels)
        if self._resumes_thin_discriminator():
            d_config = dict(d_config,
                            config=self.structure["compact_discriminator"])
        discriminator = builders.discriminator_from_config(
            dict(d_config, name="discriminator"))
        return student, discriminator

    def _resumes_thin_discriminator(self):
        """Whether the run resumes after a cut that thinned the D."""
        return bool(self.compacted
                    and self.structure.get("compact_discriminator"))

    def _thin_channels(self, teacher):
        """The widths dict of a uniformly thinner student within the
        budgets (the no-masks ablation)."""
        architecture = architectures.of(teacher)
        widths = dict(self.pruning.mask_widths(teacher))
        limits = self.pruning.budget.limits(architecture, widths)
        floors = {key: min(width, self.pruning.budget.min_channels)
                  for key, width in widths.items()}
        counts = budget_lib.uniform_counts_within(
            widths, lambda c: costs.all_hold(limits, c), floors,
            self.pruning.budget.width_multiple)
        return architecture.uniform_widths(counts)

    def build_parts(self):
        """The frozen teacher, the phases and the PPCD objective."""
        g_config = self.teacher_configs["generator"]
        d_config = self.teacher_configs["discriminator"]
        with trainer_lib.dtype_policy(self.teacher_precision):
            self.teacher_generator = builders.generator_from_config(
                dict(g_config, name="teacher_generator"))
            # Without a teacher D (unread, `_check_recipe`), a frozen copy
            # of the training D's architecture stands in.
            self.teacher_discriminator = builders.discriminator_from_config(
                dict(d_config or self.discriminator.get_config(),
                     name="teacher_discriminator"))
            for model in (self.teacher_generator,
                          self.teacher_discriminator):
                model.build()
                model.trainable = False
        self._load_teacher()
        self._freeze_teacher()
        self.bank.build(self.teacher_generator)
        self.objective = distill_objective.DistillationObjective(
            self.weights, self.teacher_generator,
            self.teacher_discriminator, self.cam_discriminator)
        self.pruning.build(self, self.teacher_generator)
        self.compact.build(self, self.pruning)
        self.phases = [self.pruning, self.compact]
        self.steps.set_objective(objectives.PPCDObjective(
            self.steps, self.objective, self.pruning, self.bank,
            self.compact))

    def _load_teacher(self):
        """Teacher EMA G and D from the teacher checkpoint; student copies
        (by weight name, shapes checked). A resumed run overwrites the
        copies from its own checkpoint."""
        has_d = self.teacher_configs["discriminator"] is not None
        items = dict(generator_ema=self.teacher_generator)
        if has_d:
            items["discriminator"] = self.teacher_discriminator
        self.teacher_checkpoint = run_dir.restore_newest(
            self.teacher_dir, items, "teacher")
        # A thinned D (resumed after the cut) comes from the run's own
        # checkpoint.
        pairs = ([] if self._resumes_thin_discriminator() or not has_d
                 else [(self.teacher_discriminator, self.discriminator)])
        # A thinner or compact student cannot copy the teacher.
        if self.pruning.use_masks and not self.compacted:
            pairs.append((self.teacher_generator, self.generator))
        for src, dst in pairs:
            compaction.copy_weights_by_name(
                src, dst, skip_source=biggan_deep.is_statistics_table)
        logging.info("Teacher loaded from %s (student starts as its copy).",
                     self.teacher_checkpoint)

    def _freeze_teacher(self):
        """The frozen teacher's spectral norms as constants (weight / sigma
        once, after the student copied the raw weights): the teacher never
        trains and is only called at inference, where sigma comes from the
        same stored vector every step; frozen, its G and D skip the power
        iteration and sigma of every layer in every step (a tiny PPCD step
        traces 14,508 operations instead of 16,435)."""
        frozen = sum(layers_lib.freeze_spectral_norms(model) for model in (
            self.teacher_generator, self.teacher_discriminator))
        logging.info("Teacher's spectral norms frozen: %d layers.", frozen)

    # ------------------------------------------------------------------
    # The run directory.

    def model_configs(self):
        """models.json holds the full-width student and D (the compact
        channels and a thinned D after a cut are in pruning.json; a fixed
        thinner student, without masks, as it is)."""
        return dict(super().model_configs(),
                    generator=self.full_student_config,
                    discriminator=dict(self.teacher_configs["discriminator"]
                                       or self.discriminator.get_config(),
                                       name="discriminator"))

    def write_model_configs(self):
        """models.json; PPCD runs also write pruning.json, the pruning
        structure, before their first step."""
        super().write_model_configs()
        if self.pruning.use_masks and not self.pruning.compacted:
            self.write_pruning_structure(None, None)

    def write_pruning_structure(self, cut_step, keep):
        """pruning.json: the masks' set-up and, after a cut at `cut_step`
        with hard masks `keep`, the compact channel configuration."""
        widths = self.pruning.mask_widths(self.teacher_generator)
        structure = {
            "mask_widths": dict(widths),
            "mask_function": self.pruning.mask_function,
            "prune_attention": self.pruning.prune_attention,
            "phase": (run_dir.PHASE_MASKS if cut_step is None
                      else run_dir.PHASE_COMPACT),
            "cut_step": cut_step,
            "compact_channels": (None if cut_step is None else
                                 self.pruning.architecture.widths_config(
                                     self.generator)),
            "kept_indices": (None if keep is None else
                             compaction.kept_index_lists(
                                 self.teacher_generator, keep)),
            "compact_discriminator": (
                None if cut_step is None or self.compact.discriminator_width
                == 1.0 else self.discriminator.config.to_dict()),
        }
        self.structure = structure
        if self.is_chief:
            run_dir.write_pruning_structure(self.model_dir, structure)
            if cut_step is not None:
                self._write_cut_summary(cut_step, structure)

    def write_run_start(self, step):
        """Beside the run's settings: the Custom Scalars charts of the
        pruning curves (all layers' kept channels in one chart)."""
        super().write_run_start(step)
        if self.is_chief:
            run_summaries.write_pruning_layout(step)

    def final_figures(self):
        """Beside the best validation: the student's parameter and MAC
        compression against the teacher, once its widths are final (after
        the cut, or a fixed thinner student)."""
        figures = super().final_figures()
        if self.pruning.use_masks and not self.pruning.compacted:
            return figures
        architecture = self.pruning.architecture
        figures["param_compression"] = (
            self.pruning.full_params
            / generator_lib.count_trainable_parameters(self.generator))
        figures["mac_compression"] = (
            architecture.macs(self.teacher_generator)
            / architecture.macs(self.generator))
        return figures

    def _write_cut_summary(self, cut_step, structure):
        """The cut of pruning.json's `structure` as a TensorBoard text table
        (kept / total channels per layer, parameters and MACs against the
        full student)."""
        kept = structure["kept_indices"]
        architecture = self.pruning.architecture
        run_summaries.write_cut(run_summaries.cut_table(
            [(key, len(kept[key]), width)
             for key, width in structure["mask_widths"].items()
             if key in kept],
            generator_lib.count_trainable_parameters(self.generator),
            self.pruning.full_params,
            architecture.macs(self.generator),
            architecture.macs(self.teacher_generator)), cut_step)

    def write_samples(self, step):
        """The EMA grid, and teacher and student side by side: each row
        shows the class once from the teacher (left half) and once from the
        student (right half)."""
        images = super().write_samples(step)
        z, labels = self.samples.inputs()
        teacher = np.asarray(self.teacher_generator(
            z, labels, training=False), np.float32)
        rows, cols = self.samples.rows, self.samples.columns
        pair = np.concatenate([
            teacher.reshape((rows, cols) + teacher.shape[1:]),
            images.reshape((rows, cols) + images.shape[1:])], axis=1)
        if self.is_chief:
            self.samples.write(
                pair.reshape((-1,) + images.shape[1:]), step,
                self.model_dir, name="teacher_vs_student",
                row_labels=self.samples.row_labels(self.dataset.class_names),
                headers=("teacher", "student"))
        return images


def _check_teacher_settings(teacher_dir, cam_discriminator,
                            teacher_precision=None):
    """BadInputError for a missing teacher_dir, an unknown
    cam_discriminator or teacher_precision."""
    if teacher_precision not in TEACHER_PRECISIONS:
        raise errors.BadInputError(
            f"PPCDTrainer.teacher_precision must be one of "
            f"{TEACHER_PRECISIONS}, got {teacher_precision!r}.")
    if teacher_dir is gin.REQUIRED or not teacher_dir:
        raise errors.BadInputError(
            "PPCDTrainer needs teacher_dir: bind "
            "TEACHER_DIR = '/path/to/teacher_run'.")
    if cam_discriminator not in distill_objective.CAM_DISCRIMINATORS:
        raise errors.BadInputError(
            f"cam_discriminator must be one of "
            f"{distill_objective.CAM_DISCRIMINATORS}, got "
            f"{cam_discriminator!r}.")


def _check_recipe(trainer):
    """BadInputError for settings that contradict each other or the
    teacher: no training D after the cut but class activation maps from
    it; a teacher without a D (an imported BigGAN-deep) whose D the
    distillation would read."""
    if (trainer.compact.discriminator_interval == 0
            and trainer.cam_discriminator == "student"
            and trainer.weights.class_aware > 0):
        raise errors.BadInputError(
            "CompactPhase.discriminator_interval = 0 drops the training "
            "D after the cut, but PPCDTrainer.cam_discriminator = "
            "'student' takes the class activation maps from it: use "
            "cam_discriminator = 'teacher' or an interval >= 1.")
    if trainer.teacher_configs["discriminator"] is None and (
            trainer.cam_discriminator != "student"
            or trainer.weights.d_features > 0):
        raise errors.BadInputError(
            f"The teacher in {trainer.teacher_dir} has no discriminator "
            "(an imported generator): the training D starts from its "
            "initialisation and the distillation must not read a teacher "
            "D. Add gin/extras/teacher_without_d.gin after stage/ppcd.gin "
            "(PPCDTrainer.cam_discriminator = 'student', "
            "DistillationWeights.d_features = 0).")


def _check_trainer_settings(kwargs):
    """Refuses settings bound on PPCDTrainer that `Trainer` does not take
    (gin passes any `PPCDTrainer.x` binding through **kwargs), naming
    where a moved one lives now."""
    known = set(inspect.signature(
        trainer_lib.Trainer.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        moved = [new for new in (config_lib.moved_binding("PPCDTrainer", name)
                                 for name in unknown) if new]
        raise errors.BadInputError(
            f"PPCDTrainer has no setting {', '.join(unknown)}"
            + (f"; it moved: bind {', '.join(moved)} instead" if moved
               else "") + f" {config_lib.WHERE_SETTINGS_LIVE}.")
