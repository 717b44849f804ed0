"""The GAN trainer: composition root and custom training loop.

One `Trainer` (gin-configurable) builds, inside `strategy.scope()`, the data
pipeline, G, D, the EMA copy of G, both optimizers, the step counter, the
checkpoint manager and the summary writer, then runs

    while step < num_steps:
        train_loop_begin()                # eager: hooks (mask bounds, ...)
        metrics = train_steps(iterator, k) # tf.function: k G steps
        train_loop_end(metrics)            # eager: logs, summaries, ckpt

One G step = `d_steps_per_g_step` D updates (each on a fresh real batch)
followed by one G update, then the EMA update and `step += 1`. Each update
accumulates gradients over `accumulation_steps` micro-batches.

Batch and loss scaling: `global_batch_size` images per optimizer update over
all replicas; each replica receives `global_batch_size / replicas` real
images per D update and splits them into `accumulation_steps` micro-batches.
Per-example losses are summed and divided by `global_batch_size`, so the sum
over micro-batches and replicas (the optimizer all-reduces with SUM) is the
gradient of the global mean.

Noise: z and the fake labels of each update are drawn for the *global* batch
from a stateless seed (seed, step, update), and each replica takes its slice.
The same run on one device or on N replicas therefore sees the same samples,
and a resumed run draws the same noise it would have drawn.

Subclasses (PPCD) extend `extra_generator_losses`, `build_extra`,
`checkpoint_items`, `train_loop_begin` and `extra_summaries`.
"""

import json
import os
import time

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import checkpointing
from ppcd_tf import ema as ema_lib
from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf import losses
from ppcd_tf import run_dir
from ppcd_tf import strategy as strategy_lib
from ppcd_tf import summaries
from ppcd_tf import validation
from ppcd_tf.data import pipeline
from ppcd_tf.models import builders
from ppcd_tf.models import generator as generator_lib

MODELS_FILE = "models.json"
MIXED_PRECISION_POLICIES = (None, "mixed_bfloat16", "mixed_float16")
# Stateless-seed purposes: D update k uses k, the G update uses this value.
_G_UPDATE_PURPOSE = 1000
_SAMPLE_SEED_OFFSET = 7919


def _format_duration(seconds):
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


@gin.configurable(denylist=["model_dir", "strategy"])
class Trainer:
    """Trains a class-conditional BigGAN (teacher) with hinge loss.

    Args:
      model_dir: directory for checkpoints, summaries, configs and samples.
      strategy: a tf.distribute strategy (`ppcd_tf.strategy.get_strategy`).
      dataset_cls: class of the real data (`ppcd_tf.data.pipeline.
        ImageDataset`), called without arguments (gin binds them).
      generator_fn, discriminator_fn: model factories, called with
        (resolution, num_classes, image_channels) from the dataset.
      g_optimizer_cls, d_optimizer_cls: optimizer classes (gin binds
        learning rates and betas under the `generator/` and `discriminator/`
        scopes).
      global_batch_size: real images per D update over all replicas.
      num_steps: number of G steps to train to.
      d_steps_per_g_step: D updates per G update (BigGAN's num_D_steps).
      accumulation_steps: micro-batches per update (gradient accumulation).
      loss: GAN loss name (`ppcd_tf.losses.LOSSES`).
      ema_decay, ema_start_step: EMA of G (decay 0 before the start step).
      mixed_precision: None, 'mixed_bfloat16' or 'mixed_float16'.
      jit_compile: XLA-compile the training function.
      steps_per_loop: G steps per call of the compiled training function.
      log_every: G steps between progress lines and scalar summaries.
      sample_every: G steps between sample grids (0: only at the end).
      checkpoint_every: G steps between checkpoints.
      max_checkpoints: checkpoints kept.
      sample_classes: classes shown in sample grids (one row each; default
        the first min(num_classes, max_sample_classes)).
      max_sample_classes: cap of the default sample classes.
      samples_per_class: columns of the sample grid.
      seed: seed of noise draws and data order.
      validator: a `validation.QuickValidator` (None: no validation); the
        run then keeps its best EMA generator in <model_dir>/best/.
      validate_every: G steps between validations (a multiple of
        checkpoint_every; 0: off).
    """

    def __init__(self, model_dir, strategy,
                 dataset_cls=pipeline.ImageDataset,
                 generator_fn=builders.build_generator,
                 discriminator_fn=builders.build_discriminator,
                 g_optimizer_cls=keras.optimizers.Adam,
                 d_optimizer_cls=keras.optimizers.Adam,
                 global_batch_size=gin.REQUIRED, num_steps=gin.REQUIRED,
                 d_steps_per_g_step=1, accumulation_steps=1, loss="hinge",
                 ema_decay=0.9999, ema_start_step=20000,
                 mixed_precision=None, jit_compile=False, steps_per_loop=10,
                 log_every=50, sample_every=500, checkpoint_every=500,
                 max_checkpoints=3, sample_classes=None,
                 max_sample_classes=10, samples_per_class=8, seed=0,
                 validator=None, validate_every=0):
        if mixed_precision not in MIXED_PRECISION_POLICIES:
            raise errors.BadInputError(
                f"mixed_precision must be one of "
                f"{MIXED_PRECISION_POLICIES}, got "
                f"{mixed_precision!r}.")
        for name, value in (("global_batch_size", global_batch_size),
                            ("num_steps", num_steps),
                            ("d_steps_per_g_step", d_steps_per_g_step),
                            ("accumulation_steps", accumulation_steps),
                            ("steps_per_loop", steps_per_loop),
                            ("log_every", log_every),
                            ("checkpoint_every", checkpoint_every)):
            if int(value) < 1:
                raise errors.BadInputError(
                    f"Trainer.{name} must be >= 1, got {value}.")
        self.model_dir = model_dir
        self.strategy = strategy
        self.num_replicas = strategy.num_replicas_in_sync
        self.global_batch_size = int(global_batch_size)
        per_update = self.num_replicas * int(accumulation_steps)
        if self.global_batch_size % per_update:
            raise errors.BadInputError(
                f"global_batch_size {self.global_batch_size} is not divisible"
                f" by replicas ({self.num_replicas}) x accumulation_steps "
                f"({accumulation_steps}) = {per_update}. Choose a global "
                f"batch that is a multiple of {per_update}, e.g. "
                f"{per_update * max(1, self.global_batch_size // per_update)}"
                ".")
        self.per_replica_batch = self.global_batch_size // self.num_replicas
        self.accumulation_steps = int(accumulation_steps)
        self.micro_batch = self.per_replica_batch // self.accumulation_steps
        self.num_steps = int(num_steps)
        self.d_steps = int(d_steps_per_g_step)
        self.d_loss_fn, self.g_loss_fn = losses.get_gan_loss(loss)
        self.mixed_precision = mixed_precision
        self.jit_compile = bool(jit_compile)
        self.steps_per_loop = int(steps_per_loop)
        self.log_every = int(log_every)
        self.sample_every = int(sample_every)
        self.checkpoint_every = int(checkpoint_every)
        self.seed = int(seed)
        self.is_chief = strategy_lib.is_chief(strategy)
        self.validator = validator
        self.validate_every = int(validate_every) if validator else 0
        if self.validate_every % self.checkpoint_every:
            raise errors.BadInputError(
                f"Trainer.validate_every ({validate_every}) must be a "
                f"multiple of Trainer.checkpoint_every "
                f"({checkpoint_every}): the best checkpoint is a copy of a "
                "saved one.")
        self._best = None

        self.dataset = dataset_cls()
        self.num_classes = self.dataset.num_classes
        self.resolution = self.dataset.resolution
        self.image_channels = self.dataset.image_channels
        if sample_classes is None:
            sample_classes = list(range(min(self.num_classes,
                                            max_sample_classes)))
        bad = [c for c in sample_classes if not 0 <= c < self.num_classes]
        if bad:
            raise errors.BadInputError(
                f"sample_classes {bad} outside [0, "
                f"{self.num_classes}).")
        self.sample_classes = list(sample_classes)
        self.samples_per_class = int(samples_per_class)

        if mixed_precision:
            keras.mixed_precision.set_dtype_policy(mixed_precision)
        model_kwargs = dict(resolution=self.resolution,
                            num_classes=self.num_classes,
                            image_channels=self.image_channels)
        self._generator_fn = generator_fn
        self._discriminator_fn = discriminator_fn
        with strategy.scope():
            self.generator, self.discriminator = self.build_models(
                **model_kwargs)
            self.generator_ema = generator_lib.Generator.from_config(
                dict(self.generator.get_config(), name="generator_ema"))
            for model in (self.generator, self.discriminator,
                          self.generator_ema):
                model.build()
            self.g_optimizer = self._make_optimizer(g_optimizer_cls,
                                                    "g_optimizer")
            self.d_optimizer = self._make_optimizer(d_optimizer_cls,
                                                    "d_optimizer")
            self.g_optimizer.build(self.generator.trainable_variables)
            self.d_optimizer.build(self.discriminator.trainable_variables)
            self.step = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="step",
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
            self.ema = ema_lib.ExponentialMovingAverage(
                self.generator, self.generator_ema, ema_decay, ema_start_step)
            self.build_extra()
            self.ema.copy_weights()
        if mixed_precision:
            keras.mixed_precision.set_dtype_policy("float32")
        self.dim_z = self.generator.dim_z

        self.checkpointer = checkpointing.Checkpointer(
            self._checkpoint_dir(), max_to_keep=max_checkpoints,
            **self.checkpoint_items())
        self._summary_writer = None
        self._train_fn = None
        self._sample_fn = None
        self._log_model_summary()

    # ------------------------------------------------------------------
    # Construction hooks.

    def _make_optimizer(self, optimizer_cls, name):
        optimizer = optimizer_cls(name=name)
        if self.mixed_precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer,
                                                            name=name)
        return optimizer

    def build_models(self, **model_kwargs):
        """(generator, discriminator), built in the strategy scope (hook)."""
        return (self._generator_fn(**model_kwargs),
                self._discriminator_fn(**model_kwargs))

    def build_extra(self):
        """Creates subclass state inside the strategy scope (hook)."""

    def generator_update_groups(self):
        """[(optimizer, variables)] updated from the G loss (hook)."""
        return [(self.g_optimizer, self.generator.trainable_variables)]

    def generate(self, z, labels, training, return_features=False,
                 model=None):
        """Images from the student/teacher generator being trained (hook).

        z [B, dim_z], labels int [B] -> images [B, H, W, C] (and features).
        `model` defaults to the trained generator; the EMA copy is passed for
        samples.
        """
        model = model or self.generator
        return model(z, labels, training=training,
                     return_features=return_features)

    def after_step(self, step):
        """Cross-replica work after each G step, inside tf.function (hook)."""
        del step

    def extra_boundaries(self):
        """Extra step periods/points the compiled loop must stop at (hook)."""
        return ()

    def checkpoint_items(self):
        """Trackables saved in every checkpoint."""
        return dict(step=self.step, generator=self.generator,
                    discriminator=self.discriminator,
                    generator_ema=self.generator_ema,
                    g_optimizer=self.g_optimizer,
                    d_optimizer=self.d_optimizer)

    def _checkpoint_dir(self):
        if self.is_chief:
            return os.path.join(self.model_dir, "checkpoints")
        # Non-chief workers take part in saving but write to a scratch dir.
        return os.path.join(self.model_dir, "tmp_workers",
                            f"worker{strategy_lib.worker_id(self.strategy)}")

    def _log_model_summary(self):
        g_params = generator_lib.count_trainable_parameters(self.generator)
        d_params = generator_lib.count_trainable_parameters(
            self.discriminator)
        logging.info(
            "Generator: %s params, channels %s, dim_z %d. Discriminator: %s "
            "params. Data: %s, %dx%dx%d, %d classes, %s examples.",
            f"{g_params:,}", self.generator.channels.to_id(), self.dim_z,
            f"{d_params:,}", self.dataset.name, self.resolution,
            self.resolution, self.image_channels, self.num_classes,
            self.dataset.num_examples)
        logging.info("Global batch %d (%d replica(s) x %d, %d accumulation "
                     "step(s)), %d D step(s) per G step.",
                     self.global_batch_size, self.num_replicas,
                     self.per_replica_batch, self.accumulation_steps,
                     self.d_steps)

    # ------------------------------------------------------------------
    # Noise.

    def _noise(self, step, purpose):
        """Global-batch z [G, dim_z] and labels [G] for one update."""
        seed = tf.stack([tf.cast(self.seed, tf.int64),
                         tf.cast(step, tf.int64) * 4096 + purpose])
        seed_z, seed_y = tf.unstack(
            tf.random.experimental.stateless_split(seed, 2))
        z = tf.random.stateless_normal(
            (self.global_batch_size, self.dim_z), seed_z)
        labels = tf.random.stateless_uniform(
            (self.global_batch_size,), seed_y, 0, self.num_classes,
            dtype=tf.int32)
        return z, labels

    def _replica_noise(self, step, purpose):
        """This replica's slice of the global noise: [per_replica, ...]."""
        z, labels = self._noise(step, purpose)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        start = tf.cast(replica, tf.int32) * self.per_replica_batch
        return (z[start:start + self.per_replica_batch],
                labels[start:start + self.per_replica_batch])

    # ------------------------------------------------------------------
    # Replica steps.

    def _scaled_mean(self, per_example):
        return tf.reduce_sum(tf.cast(per_example, tf.float32)) / (
            self.global_batch_size)

    def _apply(self, groups, tape_fn):
        """Accumulates gradients of tape_fn(micro) over micro-batches, applies.

        groups: [(optimizer, variables)]; each optimizer gets the gradients
        of its variables. tape_fn(index) returns (loss, terms) for
        micro-batch `index`; loss is already divided by the global batch
        size.
        """
        optimizer = groups[0][0]
        variables = [v for _, group in groups for v in group]
        total = None
        terms_sum = {}
        for index in range(self.accumulation_steps):
            with tf.GradientTape() as tape:
                loss, terms = tape_fn(index)
                scaled = (optimizer.scale_loss(loss)
                          if self.mixed_precision == "mixed_float16"
                          else loss)
            grads = tape.gradient(scaled, variables)
            grads = [tf.zeros_like(v) if g is None
                     # Sparse (embedding) gradients are summed densely.
                     else tf.convert_to_tensor(g) if (
                         self.accumulation_steps > 1
                         and isinstance(g, tf.IndexedSlices)) else g
                     for g, v in zip(grads, variables)]
            total = grads if total is None else [
                a + b for a, b in zip(total, grads)]
            for name, value in terms.items():
                terms_sum[name] = terms_sum.get(name, 0.0) + value
        start = 0
        for group_optimizer, group in groups:
            grads = total[start:start + len(group)]
            if (self.mixed_precision == "mixed_float16"
                    and group_optimizer is not optimizer
                    and not isinstance(group_optimizer,
                                       keras.optimizers.LossScaleOptimizer)):
                grads = self._unscaled(grads, optimizer)
            group_optimizer.apply_gradients(zip(grads, group))
            start += len(group)
        return terms_sum

    @staticmethod
    def _unscaled(grads, scaled_optimizer):
        """Gradients of the loss `scaled_optimizer` scaled (fp16 loss
        scaling), for an optimizer without its own scaling (the PPCD mask
        logits): divided by the scale; when any is not finite the loss-scale
        optimizer skips this step, so these become zeros."""
        scale = tf.cast(scaled_optimizer.dynamic_scale, tf.float32)
        grads = [tf.cast(g, tf.float32) / scale for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g))
                                for g in grads])
        return [tf.where(finite, g, tf.zeros_like(g)) for g in grads]

    def _micro(self, tensor, index):
        size = self.micro_batch
        return tensor[index * size:(index + 1) * size]

    def _d_replica_step(self, batch, step, update_index):
        images, labels = batch
        z, fake_labels = self._replica_noise(step, update_index)

        def loss_fn(index):
            real = self._micro(images, index)
            real_labels = self._micro(labels, index)
            fake = tf.stop_gradient(self.generate(
                self._micro(z, index), self._micro(fake_labels, index),
                training=True))
            logits = self.discriminator(
                tf.concat([real, tf.cast(fake, real.dtype)], axis=0),
                tf.concat([real_labels, self._micro(fake_labels, index)],
                          axis=0), training=True)
            real_logits, fake_logits = tf.split(logits, 2, axis=0)
            loss_real, loss_fake = self.d_loss_fn(real_logits, fake_logits)
            loss_real = self._scaled_mean(loss_real)
            loss_fake = self._scaled_mean(loss_fake)
            terms = {"d_loss_real": loss_real, "d_loss_fake": loss_fake,
                     "d_real_logit": self._scaled_mean(real_logits),
                     "d_fake_logit": self._scaled_mean(fake_logits)}
            return loss_real + loss_fake, terms

        terms = self._apply(
            [(self.d_optimizer, self.discriminator.trainable_variables)],
            loss_fn)
        terms["d_loss"] = terms["d_loss_real"] + terms["d_loss_fake"]
        return terms

    def adversarial_generator_loss(self, fake, labels):
        """G's GAN loss on its images: a scalar divided by the global batch."""
        logits = self.discriminator(fake, labels, training=True)
        return self._scaled_mean(self.g_loss_fn(logits))

    def generator_losses(self, z, labels, step):
        """Loss terms of one G micro-batch (hook): dict name -> scalar.

        Every term is already a per-example sum divided by the global batch.
        Terms whose name starts with 'info_' are reported, not optimised.
        """
        del step
        fake = self.generate(z, labels, training=True)
        return {"g_loss_adversarial":
                self.adversarial_generator_loss(fake, labels)}

    def _g_replica_step(self, step):
        z, labels = self._replica_noise(step, _G_UPDATE_PURPOSE)

        def loss_fn(index):
            terms = self.generator_losses(self._micro(z, index),
                                          self._micro(labels, index), step)
            total = tf.add_n([value for name, value in terms.items()
                              if not name.startswith("info_")])
            terms["g_loss"] = total
            return total, terms

        return self._apply(self.generator_update_groups(), loss_fn)

    # ------------------------------------------------------------------
    # Compiled loop.

    def _reduce(self, per_replica_terms):
        return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                           value, axis=None)
                for name, value in per_replica_terms.items()}

    def _one_step(self, iterator):
        step = self.step.read_value()
        terms = {}
        for update in range(self.d_steps):
            batch = next(iterator)
            d_terms = self._reduce(self.strategy.run(
                self._d_replica_step, args=(batch, step, update)))
            for name, value in d_terms.items():
                terms[name] = terms.get(name, 0.0) + value / self.d_steps
        terms.update(self._reduce(self.strategy.run(self._g_replica_step,
                                                    args=(step,))))
        self.ema.update(step)
        self.after_step(step)
        self.step.assign_add(1)
        return terms

    def metric_names(self):
        """Names of the loss terms one G step reports."""
        names = ["d_loss", "d_loss_real", "d_loss_fake", "d_real_logit",
                 "d_fake_logit", "g_loss", "g_loss_adversarial"]
        return names + list(self.extra_generator_loss_names())

    def extra_generator_loss_names(self):
        """Names of `generator_losses` terms beyond the adversarial (hook)."""
        return ()

    def _build_train_fn(self):
        names = self.metric_names()

        def train_steps(iterator, num_steps):
            sums = {name: tf.constant(0.0) for name in names}
            for _ in tf.range(num_steps):
                terms = self._one_step(iterator)
                sums = {name: sums[name] + tf.cast(terms[name], tf.float32)
                        for name in names}
            count = tf.cast(num_steps, tf.float32)
            return {name: value / count for name, value in sums.items()}

        return tf.function(train_steps, jit_compile=self.jit_compile)

    # ------------------------------------------------------------------
    # Hooks around the compiled loop.

    def train_loop_begin(self):
        """Eager work before each compiled loop (hook)."""

    def extra_summaries(self, step):
        """Writes subclass summaries at a log step (hook)."""
        del step

    # ------------------------------------------------------------------
    # Samples.

    def sample_inputs(self):
        """Fixed (z, labels) of the sample grid: one row per sample class."""
        rows = len(self.sample_classes)
        cols = self.samples_per_class
        z = tf.random.stateless_normal(
            (cols, self.dim_z), (self.seed, _SAMPLE_SEED_OFFSET))
        z = tf.tile(z, (rows, 1))  # same z in every row
        labels = tf.repeat(tf.constant(self.sample_classes, tf.int32), cols)
        return z, labels

    def generate_samples(self, model=None):
        """Images [rows*cols, H, W, C] from the EMA generator (or `model`)."""
        z, labels = self.sample_inputs()
        return self.generate(z, labels, training=False,
                             model=model or self.generator_ema)

    def write_samples(self, step):
        images = self.generate_samples().numpy()
        grid = summaries.image_grid(images, rows=len(self.sample_classes))
        if self.is_chief:
            tf.summary.image("samples/ema", grid, step=step)
            path = os.path.join(self.model_dir, "samples",
                                f"samples_{step:08d}.png")
            summaries.write_png(grid, path)
            summaries.write_png(grid, os.path.join(self.model_dir, "samples",
                                                   "latest.png"))
        return images

    # ------------------------------------------------------------------
    # Validation and the best checkpoint.

    def validation_allowed(self, step):
        """Whether the EMA generator of `step` may become the best one
        (PPCDTrainer: only once the student has its final structure)."""
        return True

    def validate(self, step):
        """Measures the EMA generator on the held-out slice; a new best
        score copies this step's checkpoint to <model_dir>/best/."""
        if not self.is_chief:
            return None
        if self._best is None:
            self.validator.prepare(self.dataset.name, self.resolution,
                                   self.dataset.data_dir)
            self._best = validation.BestKeeper(self.model_dir)

        def generate(z, labels):
            return self.generate(z, labels, training=False,
                                 model=self.generator_ema)

        figures = self.validator.measure(generate, self.dim_z,
                                         self.num_classes)
        # validate_every is a multiple of checkpoint_every: the newest
        # checkpoint is this step's.
        improved = self._best.offer(step, figures, self.checkpointer.latest)
        for name in ("fid", "class_accuracy", "score"):
            if figures[name] is not None:
                tf.summary.scalar(f"validation/{name}", figures[name],
                                  step=step)
        accuracy = figures["class_accuracy"]
        logging.info(
            "validation at step %d: FID %.4f, class accuracy %s, score %.4f "
            "(%d samples of %s, %.1f s)%s", step, figures["fid"],
            "n/a" if accuracy is None else f"{accuracy:.4f}",
            figures["score"], figures["num_samples"], figures["split"],
            figures["seconds"],
            " -> new best, kept in best/" if improved else
            f" (best: step {self._best.best['step']})")
        return figures

    # ------------------------------------------------------------------
    # Main loop.

    def _summary_dir(self):
        if self.is_chief:
            return os.path.join(self.model_dir, "train")
        return os.path.join(self.model_dir, "tmp_workers", "summaries")

    def _learning_rates(self):
        rates = {}
        for name, optimizer in (("g", self.g_optimizer),
                                ("d", self.d_optimizer)):
            inner = getattr(optimizer, "inner_optimizer", optimizer)
            rates[f"learning_rate/{name}"] = float(
                np.asarray(inner.learning_rate))
        return rates

    def _constant_learning_rates(self):
        """{name: (optimizer, rate)} of the optimizers with a constant
        learning rate (a schedule's rate follows its step)."""
        rates = {}
        for name, optimizer in (("g", self.g_optimizer),
                                ("d", self.d_optimizer)):
            inner = getattr(optimizer, "inner_optimizer", optimizer)
            schedule = inner._learning_rate  # pylint: disable=W0212
            if isinstance(schedule,
                          keras.optimizers.schedules.LearningRateSchedule):
                continue
            rates[name] = (inner, float(np.asarray(inner.learning_rate)))
        return rates

    def restore(self):
        """Restores the latest checkpoint if any; returns the step.

        The checkpoint holds the optimizers' learning rates; the configured
        ones win (a lower rate bound on resume, e.g. after a divergence,
        takes effect and is logged), so the operative config records what
        runs."""
        configured = self._constant_learning_rates()
        restored = self.checkpointer.restore_latest()
        step = int(self.step.numpy())
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

    def write_model_configs(self):
        """Writes <model_dir>/models.json: the configs that rebuild G and D."""
        path = os.path.join(self.model_dir, MODELS_FILE)
        content = {"generator": self.generator.get_config(),
                   "discriminator": self.discriminator.get_config(),
                   "dataset": {"name": self.dataset.name,
                               "resolution": self.resolution,
                               "num_classes": self.num_classes,
                               "image_channels": self.image_channels,
                               "class_names": self.dataset.class_names}}
        files.write_text(path, json.dumps(content, indent=2, default=list))

    def make_iterator(self, start_step):
        """Iterator over distributed real batches from G step `start_step`."""
        examples_per_step = self.d_steps * self.global_batch_size
        distributed = self.dataset.make_distributed(
            self.strategy, self.global_batch_size,
            start_example=start_step * examples_per_step)
        return iter(distributed)

    def run_steps(self, iterator, num_steps):
        """Runs `num_steps` G steps; returns the mean loss terms (floats)."""
        if self._train_fn is None:
            self._train_fn = self._build_train_fn()
        return {name: float(value) for name, value in
                self._train_fn(iterator, tf.constant(num_steps)).items()}

    def train(self):
        """Trains to `num_steps`, resuming from the latest checkpoint. The
        chief holds the run directory's lock meanwhile (one trainer per
        directory; run_dir.locked)."""
        if not self.is_chief:
            return self._train()
        with run_dir.locked(self.model_dir):
            self.checkpointer.remove_leftovers()
            return self._train()

    def _train(self):
        start_step = self.restore()
        if start_step >= self.num_steps:
            logging.info("Already at step %d >= num_steps %d; nothing to do.",
                         start_step, self.num_steps)
            return {}
        iterator = self.make_iterator(start_step)
        if self.is_chief:
            self.write_model_configs()
        self._summary_writer = tf.summary.create_file_writer(
            self._summary_dir())
        logging.info("Training from step %d to %d.", start_step,
                     self.num_steps)
        metrics = {}
        wall_start = time.monotonic()
        window_start, window_step = wall_start, start_step
        step = start_step
        with self._summary_writer.as_default():
            while step < self.num_steps:
                self.train_loop_begin()
                k = self._steps_until_boundary(step)
                metrics = self.run_steps(iterator, k)
                step = int(self.step.numpy())
                bad = [n for n, v in metrics.items() if not np.isfinite(v)]
                if bad:
                    raise errors.DivergedError(
                        f"Non-finite losses {bad} at step {step}: "
                        f"{metrics}. Lower the learning rates or enable "
                        "gradient accumulation; the last good checkpoint "
                        "is kept.")
                if step % self.log_every == 0 or step == self.num_steps:
                    now = time.monotonic()
                    rate = (step - window_step) / max(now - window_start,
                                                      1e-9)
                    window_start, window_step = now, step
                    self._log_progress(step, rate, metrics)
                    if self.is_chief:
                        summaries.write_scalars(metrics, step, "losses/")
                        summaries.write_scalars(self._learning_rates(), step)
                        tf.summary.scalar("speed/steps_per_sec", rate,
                                          step=step)
                        tf.summary.scalar(
                            "speed/images_per_sec",
                            rate * self.global_batch_size * self.d_steps,
                            step=step)
                    self.extra_summaries(step)
                if self.sample_every and step % self.sample_every == 0:
                    self.write_samples(step)
                if (step % self.checkpoint_every == 0
                        or step == self.num_steps):
                    self.checkpointer.save(step)
                if (self.validate_every and step % self.validate_every == 0
                        and self.validation_allowed(step)):
                    self.validate(step)
                if step - start_step == k and self.is_chief:
                    write_operative_config(self.model_dir)
            if not self.sample_every or self.num_steps % self.sample_every:
                self.write_samples(step)
            self._summary_writer.flush()
        if self.is_chief:
            write_operative_config(self.model_dir)
        logging.info("Finished at step %d in %s.", step,
                     _format_duration(time.monotonic() - wall_start))
        return metrics

    def _steps_until_boundary(self, step):
        """G steps to run in the next compiled call (stops at boundaries)."""
        k = min(self.steps_per_loop, self.num_steps - step)
        for period in (self.log_every, self.checkpoint_every,
                       self.sample_every, self.validate_every):
            if period:
                k = min(k, period - step % period)
        for point in self.extra_boundaries():
            if point > step:
                k = min(k, point - step)
        return max(k, 1)

    def _log_progress(self, step, rate, metrics):
        remaining = (self.num_steps - step) / max(rate, 1e-9)
        shown = ", ".join(f"{name} {value:.4f}" for name, value in
                          sorted(metrics.items())
                          if name in ("d_loss", "g_loss")
                          or name.startswith("g_loss_"))
        logging.info(
            "step %d/%d (%.1f%%) | %.2f steps/s, %.1f img/s | ETA %s | %s",
            step, self.num_steps, 100.0 * step / self.num_steps, rate,
            rate * self.global_batch_size * self.d_steps,
            _format_duration(remaining), shown)


@gin.configurable(denylist=["model_dir", "strategy"])
def run(model_dir, strategy, trainer_cls=Trainer):
    """Builds the trainer class named in gin and trains it."""
    trainer = trainer_cls(model_dir=model_dir, strategy=strategy)
    return trainer.train()


def write_operative_config(model_dir):
    """Writes gin's operative config (only parameters actually used)."""
    path = os.path.join(model_dir, "operative_config.gin")
    files.write_text(path, gin.operative_config_str())
