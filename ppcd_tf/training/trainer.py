"""The GAN trainer: the composition root of a training run.

`Trainer` (gin-configurable) builds, inside `strategy.scope()`, the data
pipeline, G, D, the EMA copy of G, both optimizers and the step counter,
then hands them to its parts:

  TrainLoop   (loop.py)        when: cadence, progress, divergence, resume
  GanSteps    (gan_steps.py)   what a step computes (D and G updates, EMA)
  objective   (objectives.py)  what G is trained to (adversarial; PPCD adds
                               distillation and the budget)
  phases      (phases.py)      parts called at boundaries (PPCD's pruning
                               and compact phases; none for a teacher)
  SampleGrid  (samples.py)     the sample grids
  RunValidation (validation.py) quick validation and the best checkpoint
  Checkpointer (runs/checkpointing.py)

Settings live with the part they configure (`TrainLoop.num_steps`,
`GanSteps.global_batch_size`, `SampleGrid.samples_per_class`, ...);
`Trainer` itself takes the data and model factories and the seed.
`PPCDTrainer` (ppcd_trainer.py) builds the student from a teacher and adds
its objective and phases.
"""

import contextlib
import os

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import files
from ppcd_tf.data import pipeline
from ppcd_tf.models import builders
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import architectures
from ppcd_tf.runs import checkpointing
from ppcd_tf.runs import run_dir
from ppcd_tf.training import ema as ema_lib
from ppcd_tf.training import gan_steps
from ppcd_tf.training import loop as loop_lib
from ppcd_tf.training import objectives
from ppcd_tf.training import run_summaries
from ppcd_tf.training import samples as samples_lib
from ppcd_tf.training import strategy as strategy_lib
from ppcd_tf.training import summaries
from ppcd_tf.training import validation

MODELS_FILE = "models.json"


@gin.configurable(denylist=["model_dir", "strategy"])
class Trainer:
    """Trains a class-conditional BigGAN (teacher).

    Args:
      model_dir: directory for checkpoints, summaries, configs and samples.
      strategy: a tf.distribute strategy (`strategy.get_strategy`).
      dataset_cls: class of the real data (`data.pipeline.ImageDataset`),
        called without arguments (gin binds them).
      generator_fn, discriminator_fn: model factories, called with
        (resolution, num_classes, image_channels) from the dataset.
      seed: seed of noise draws, sample grids and data order.
      loop, steps, samples: the part classes (`TrainLoop`, `GanSteps`,
        `SampleGrid`), called here; gin binds their settings.
    """

    def __init__(self, model_dir, strategy,
                 dataset_cls=pipeline.ImageDataset,
                 generator_fn=builders.build_generator,
                 discriminator_fn=builders.build_discriminator, seed=0,
                 loop=loop_lib.TrainLoop, steps=gan_steps.GanSteps,
                 samples=samples_lib.SampleGrid):
        self.model_dir = model_dir
        self.strategy = strategy
        self.seed = int(seed)
        self.is_chief = strategy_lib.is_chief(strategy)
        self.loop = loop()
        self.dataset = dataset_cls()
        self.num_classes = self.dataset.num_classes
        self.resolution = self.dataset.resolution
        self.image_channels = self.dataset.image_channels
        self.steps = steps(strategy=strategy, seed=self.seed,
                           num_classes=self.num_classes)
        self.phases = []
        self._generator_fn = generator_fn
        self._discriminator_fn = discriminator_fn
        self._build()
        self.dim_z = self.generator.dim_z
        self.samples = samples(num_classes=self.num_classes, dim_z=self.dim_z,
                               seed=self.seed)
        self.validation = (validation.RunValidation(
            self.loop.validator, model_dir, self.dataset)
            if self.loop.validate_every else None)
        self.checkpointer = self._make_checkpointer()
        log_run_summary(self)

    def _build(self):
        with dtype_policy(self.steps.mixed_precision), self.strategy.scope():
            generator, discriminator = self.build_models(
                resolution=self.resolution, num_classes=self.num_classes,
                image_channels=self.image_channels)
            generator_ema = type(generator).from_config(
                dict(generator.get_config(), name="generator_ema"))
            for model in (generator, discriminator, generator_ema):
                model.build()
            self.steps.build_state(generator, discriminator, generator_ema)
            self.steps.set_objective(objectives.AdversarialObjective(
                self.steps))
            self.build_parts()
            self.state.ema.copy_weights()

    # ------------------------------------------------------------------
    # What a subclass builds.

    def build_models(self, **model_kwargs):
        """(generator, discriminator), built in the strategy scope."""
        return (self._generator_fn(**model_kwargs),
                self._discriminator_fn(**model_kwargs))

    def build_parts(self):
        """Objective and phases beyond the adversarial default (in the
        strategy scope, after the GanState exists)."""

    # ------------------------------------------------------------------
    # The trained objects (GanState) and the objective.

    @property
    def state(self):
        return self.steps.state

    @property
    def generator(self):
        return self.state.generator

    @property
    def discriminator(self):
        return self.state.discriminator

    @property
    def generator_ema(self):
        return self.state.generator_ema

    @property
    def g_optimizer(self):
        return self.state.g_optimizer

    @property
    def d_optimizer(self):
        return self.state.d_optimizer

    @property
    def step(self):
        return self.state.step

    @property
    def num_steps(self):
        return self.loop.num_steps

    @property
    def images_per_step(self):
        return self.steps.images_per_step

    def generate(self, z, labels, training, return_features=False,
                 model=None):
        """Images [B, H, W, C] of z [B, dim_z], labels [B] the way the
        objective generates (PPCD: through the masks); `model` defaults to
        the trained generator."""
        return self.steps.objective.generate(
            z, labels, training, return_features=return_features,
            model=model)

    def replace_models(self, **trained):
        """Trains the given GanState objects from now on (PPCD's cut: the
        compact G, EMA G, G optimizer; a thinner D and its optimizer); EMA,
        checkpoint and compiled step are rebuilt around them."""
        state = self.state
        for name, value in trained.items():
            setattr(state, name, value)
        state.ema = ema_lib.ExponentialMovingAverage(
            state.generator, state.generator_ema, state.ema.decay,
            state.ema.start_step)
        self.checkpointer = self._make_checkpointer()
        self.steps.reset()

    # ------------------------------------------------------------------
    # Checkpoints and the run directory.

    def checkpoint_items(self):
        """Trackables saved in every checkpoint."""
        items = self.state.checkpoint_items()
        for phase in self.phases:
            items.update(phase.checkpoint_items())
        return items

    def _make_checkpointer(self):
        if self.is_chief:
            directory = os.path.join(self.model_dir, "checkpoints")
        else:  # non-chief workers take part in saving, in a scratch dir
            directory = os.path.join(
                self.model_dir, "tmp_workers",
                f"worker{strategy_lib.worker_id(self.strategy)}")
        return checkpointing.Checkpointer(
            directory, max_to_keep=self.loop.max_checkpoints,
            **self.checkpoint_items())

    def save_checkpoint(self, step):
        self.checkpointer.save(step)

    def restore(self):
        """Restores the latest checkpoint if any; returns the step.

        The checkpoint holds the optimizers' learning rates; the configured
        ones win (a lower rate bound on resume, e.g. after a divergence,
        takes effect and is logged), so the operative config records what
        runs."""
        configured = _constant_learning_rates(self.g_optimizer,
                                              self.d_optimizer)
        restored = self.checkpointer.restore_latest()
        step = self.current_step()
        if restored:
            logging.info("Resumed from %s at step %d.", restored, step)
            for name, (inner, rate) in configured.items():
                saved = float(np.asarray(inner.learning_rate))
                if saved != rate:
                    inner.learning_rate.assign(rate)
                    logging.info("%s learning rate %.6g (configured) "
                                 "replaces the checkpoint's %.6g.",
                                 name.upper(), rate, saved)
        return step

    def current_step(self):
        return int(self.step.numpy())

    def model_configs(self):
        """models.json: the configs that rebuild G and D (and the family)."""
        return {**architecture_record(self.generator),
                "generator": self.generator.get_config(),
                "discriminator": self.discriminator.get_config(),
                "dataset": {"name": self.dataset.name,
                            "resolution": self.resolution,
                            "num_classes": self.num_classes,
                            "image_channels": self.image_channels,
                            "class_names": self.dataset.class_names}}

    def write_model_configs(self):
        """Writes <model_dir>/models.json (`model_configs`)."""
        files.write_json(os.path.join(self.model_dir, MODELS_FILE),
                         self.model_configs())

    def write_operative_config(self):
        write_operative_config(self.model_dir)

    def write_run_start(self, step):
        """The run's settings (HParams) and operative configuration (text)
        for TensorBoard, from the chief, when training starts or resumes."""
        if self.is_chief:
            run_summaries.write_run_start(
                os.path.basename(os.path.normpath(self.model_dir)), step)

    def final_figures(self):
        """{name: number or None} for TensorBoard: the best validation."""
        return validation.best_figures(self.model_dir)

    def write_run_end(self, step):
        """The final figures as scalars `final/*` (chief, at the end)."""
        if self.is_chief:
            run_summaries.write_run_end(self.final_figures(), step)

    def summary_dir(self):
        if self.is_chief:
            return os.path.join(self.model_dir, "train")
        return os.path.join(self.model_dir, "tmp_workers", "summaries")

    # ------------------------------------------------------------------
    # What the loop calls.

    def make_iterator(self, start_step):
        """Iterator over distributed real batches from G step `start_step`
        (after the real batches its D updates read before it)."""
        read = self.steps.d_schedule.updating_steps_before(start_step)
        return iter(self.dataset.make_distributed(
            self.strategy, self.steps.global_batch_size,
            start_example=read * self.steps.images_per_step))

    def run_steps(self, iterator, num_steps):
        """Runs `num_steps` G steps; returns the mean loss terms (floats)."""
        return self.steps.run_steps(iterator, num_steps)

    def begin_loop(self, step):
        for phase in self.phases:
            phase.begin_loop(step)

    def boundaries(self):
        return tuple(point for phase in self.phases
                     for point in phase.boundaries())

    def write_summaries(self, step, metrics, rate):
        """Loss, learning-rate and speed scalars, then the phases'."""
        if self.is_chief:
            summaries.write_scalars(metrics, step, "losses/")
            summaries.write_scalars(_learning_rates(self.g_optimizer,
                                                    self.d_optimizer), step)
            tf.summary.scalar("speed/steps_per_sec", rate, step=step)
            tf.summary.scalar("speed/images_per_sec",
                              rate * self.images_per_step, step=step)
        for phase in self.phases:
            phase.write_summaries(step)

    def generate_samples(self, model=None):
        """Images [rows*cols, H, W, C] from the EMA generator (or `model`)."""
        z, labels = self.samples.inputs()
        return self.generate(z, labels, training=False,
                             model=model or self.generator_ema)

    def write_samples(self, step):
        """Draws and (chief) writes the EMA sample grid; returns the images."""
        images = self.generate_samples().numpy()
        if self.is_chief:
            self.samples.write(images, step, self.model_dir)
        return images

    def validate(self, step):
        """Quick validation of the EMA generator where the phases allow it
        (chief only); returns the figures or None."""
        if (self.validation is None or not self.is_chief
                or not all(p.allows_validation(step) for p in self.phases)):
            return None

        def generate(z, labels):
            return self.generate(z, labels, training=False,
                                 model=self.generator_ema)

        # validate_every is a multiple of checkpoint_every: the newest
        # checkpoint is this step's.
        return self.validation(step, generate, self.dim_z, self.num_classes,
                               self.checkpointer.latest)

    def train(self):
        """Trains to num_steps, resuming from the latest checkpoint. The
        chief holds the run directory's lock meanwhile (one trainer per
        directory; run_dir.locked)."""
        if not self.is_chief:
            return self.loop.run(self)
        with run_dir.locked_once(self.model_dir):
            self.checkpointer.remove_leftovers()
            return self.loop.run(self)


@contextlib.contextmanager
def dtype_policy(name):
    """Keras models built inside take the dtype policy `name` (None: the
    current one); the previous global policy comes back after, also when
    the build fails."""
    previous = keras.config.dtype_policy()
    if name is not None:
        keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def architecture_record(generator):
    """models.json's architecture entry: {} for BigGAN (runs before
    BigGAN-deep have none), {"architecture": "biggan_deep"} for it."""
    if builders.architecture_of(generator) == builders.BIGGAN_DEEP:
        return {run_dir.ARCHITECTURE_KEY: run_dir.BIGGAN_DEEP}
    return {}


def log_run_summary(trainer):
    """Logs the models' sizes, the data and the batch arithmetic."""
    g_params = generator_lib.count_trainable_parameters(trainer.generator)
    d_params = generator_lib.count_trainable_parameters(
        trainer.discriminator)
    dataset = trainer.dataset
    logging.info(
        "Generator: %s params, channels %s, dim_z %d. Discriminator: %s "
        "params. Data: %s, %dx%dx%d, %d classes, %s examples.",
        f"{g_params:,}", architectures.of(trainer.generator).describe(
            trainer.generator), trainer.dim_z,
        f"{d_params:,}", dataset.name, trainer.resolution,
        trainer.resolution, trainer.image_channels, trainer.num_classes,
        dataset.num_examples)
    steps = trainer.steps
    logging.info("Global batch %d (%d replica(s) x %d, %d accumulation "
                 "step(s)), %d D step(s) per G step.",
                 steps.global_batch_size, steps.num_replicas,
                 steps.per_replica_batch, steps.accumulation_steps,
                 steps.d_steps)


def _learning_rates(g_optimizer, d_optimizer):
    return {f"learning_rate/{name}": float(np.asarray(
        gan_steps.inner_optimizer(optimizer).learning_rate))
        for name, optimizer in (("g", g_optimizer), ("d", d_optimizer))}


def _constant_learning_rates(g_optimizer, d_optimizer):
    """{name: (optimizer, rate)} of the optimizers with a constant learning
    rate (a schedule's rate follows its step)."""
    rates = {}
    for name, optimizer in (("g", g_optimizer), ("d", d_optimizer)):
        inner = gan_steps.inner_optimizer(optimizer)
        schedule = inner._learning_rate  # pylint: disable=W0212
        if isinstance(schedule,
                      keras.optimizers.schedules.LearningRateSchedule):
            continue
        rates[name] = (inner, float(np.asarray(inner.learning_rate)))
    return rates


@gin.configurable(denylist=["model_dir", "strategy"])
def run(model_dir, strategy, trainer_cls=Trainer):
    """Builds the trainer class named in gin and trains it."""
    trainer = trainer_cls(model_dir=model_dir, strategy=strategy)
    return trainer.train()


def write_operative_config(model_dir):
    """Writes gin's operative config (only parameters actually used)."""
    path = os.path.join(model_dir, "operative_config.gin")
    files.write_text(path, gin.operative_config_str())
