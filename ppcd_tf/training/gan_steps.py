"""What one training step computes: the D and G replica steps, gradient
accumulation, loss scaling, the noise, the EMA update, the compiled call.

One G step = `d_steps_per_g_step` D updates (each on a fresh real batch)
followed by one G update, then the EMA update and `step += 1`. Each update
accumulates gradients over `accumulation_steps` micro-batches. From a
schedule's start step on (`set_discriminator_schedule`; PPCD's cut) the D
updates may run only every k-th step, or not at all (G's adversarial term is
then dropped too).

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

What G is trained to (its loss terms, how it generates, which variables its
loss updates) comes from a generator objective (`objectives`); `GanSteps`
knows no distillation and no pruning.
"""

import dataclasses

import gin
import keras
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.training import d_schedule as d_schedule_lib
from ppcd_tf.training import ema as ema_lib
from ppcd_tf.training import gan_losses

MIXED_PRECISION_POLICIES = (None, "mixed_bfloat16", "mixed_float16")
# Stateless-seed purposes: D update k uses k, the G update uses this value.
G_UPDATE_PURPOSE = 1000
D_METRICS = ("d_loss", "d_loss_real", "d_loss_fake", "d_real_logit",
             "d_fake_logit")
# How many of a compiled call's steps updated D (read by `run_steps`, which
# leaves the D terms out of its result when none did).
D_UPDATES = "d_updates"


@dataclasses.dataclass
class GanState:
    """The trained objects one step reads and updates. The compact switch of
    a PPCD run replaces the generator, its EMA copy, the G optimizer and the
    EMA in place (`CompactPhase`)."""
    generator: object
    discriminator: object
    generator_ema: object
    g_optimizer: object
    d_optimizer: object
    ema: object
    step: tf.Variable

    def checkpoint_items(self):
        """Trackables saved in every checkpoint."""
        return dict(step=self.step, generator=self.generator,
                    discriminator=self.discriminator,
                    generator_ema=self.generator_ema,
                    g_optimizer=self.g_optimizer,
                    d_optimizer=self.d_optimizer)


@gin.configurable(denylist=["strategy", "seed", "num_classes"])
class GanSteps:
    """The step code of a class-conditional GAN with hinge (or another) loss.

    Args:
      strategy: the tf.distribute strategy.
      seed: seed of the noise draws.
      num_classes: classes of the fake labels.
      global_batch_size: real images per D update over all replicas.
      d_steps_per_g_step: D updates per G update (BigGAN's num_D_steps).
      accumulation_steps: micro-batches per update (gradient accumulation).
      loss: GAN loss name (`gan_losses.LOSSES`).
      mixed_precision: None, 'mixed_bfloat16' or 'mixed_float16'.
      jit_compile: XLA-compile the training function.
      g_optimizer_cls, d_optimizer_cls: optimizer classes (gin binds
        learning rates and betas under the `generator/` and `discriminator/`
        scopes).
      ema_decay, ema_start_step: EMA of G (decay 0 before the start step).
    """

    G_UPDATE_PURPOSE = G_UPDATE_PURPOSE

    def __init__(self, strategy, seed, num_classes,
                 global_batch_size=gin.REQUIRED, d_steps_per_g_step=1,
                 accumulation_steps=1, loss="hinge", mixed_precision=None,
                 jit_compile=False, g_optimizer_cls=keras.optimizers.Adam,
                 d_optimizer_cls=keras.optimizers.Adam, ema_decay=0.9999,
                 ema_start_step=20000):
        if mixed_precision not in MIXED_PRECISION_POLICIES:
            raise errors.BadInputError(
                f"GanSteps.mixed_precision must be one of "
                f"{MIXED_PRECISION_POLICIES}, got {mixed_precision!r}.")
        for name, value in (("global_batch_size", global_batch_size),
                            ("d_steps_per_g_step", d_steps_per_g_step),
                            ("accumulation_steps", accumulation_steps)):
            if int(value) < 1:
                raise errors.BadInputError(
                    f"GanSteps.{name} must be >= 1, got {value}.")
        self.strategy = strategy
        self.seed = int(seed)
        self.num_classes = int(num_classes)
        self.num_replicas = strategy.num_replicas_in_sync
        self.global_batch_size = int(global_batch_size)
        self.accumulation_steps = int(accumulation_steps)
        per_update = self.num_replicas * self.accumulation_steps
        if self.global_batch_size % per_update:
            raise errors.BadInputError(
                f"global_batch_size {self.global_batch_size} is not divisible"
                f" by replicas ({self.num_replicas}) x accumulation_steps "
                f"({accumulation_steps}) = {per_update}. Choose a global "
                f"batch that is a multiple of {per_update}, e.g. "
                f"{per_update * max(1, self.global_batch_size // per_update)}"
                ".")
        self.per_replica_batch = self.global_batch_size // self.num_replicas
        self.micro_batch = self.per_replica_batch // self.accumulation_steps
        self.d_steps = int(d_steps_per_g_step)
        self.d_loss_fn, self.g_loss_fn = gan_losses.get_gan_loss(loss)
        self.mixed_precision = mixed_precision
        self.jit_compile = bool(jit_compile)
        self.optimizer_classes = {"g": g_optimizer_cls, "d": d_optimizer_cls}
        self.ema_decay, self.ema_start_step = ema_decay, ema_start_step
        self.state = None
        self.objective = None
        self.dim_z = None
        self.d_schedule = d_schedule_lib.DiscriminatorSchedule()
        # Whether the G step being traced has an adversarial term (False
        # only after the schedule's start with D updates switched off).
        self.adversarial_active = True
        self._train_fns = {}

    @property
    def images_per_step(self):
        """Real images one D-updating G step consumes (over all replicas)."""
        return self.global_batch_size * self.d_steps

    def set_discriminator_schedule(self, start_step, interval):
        """D updated every `interval`-th G step from `start_step` on (see
        `d_schedule.DiscriminatorSchedule`); recompiles when it changes."""
        schedule = d_schedule_lib.DiscriminatorSchedule(
            None if start_step is None else int(start_step), interval)
        if schedule != self.d_schedule:
            self.d_schedule = schedule
            self.reset()

    def make_optimizer(self, optimizer_cls, name):
        """An optimizer (wrapped for fp16 loss scaling when needed)."""
        optimizer = optimizer_cls(name=name)
        if self.mixed_precision == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer,
                                                            name=name)
        return optimizer

    def build_state(self, generator, discriminator, generator_ema):
        """The GanState of built models (call inside the strategy scope):
        both optimizers built, the step counter, the EMA."""
        g_optimizer = self.make_optimizer(self.optimizer_classes["g"],
                                          "g_optimizer")
        d_optimizer = self.make_optimizer(self.optimizer_classes["d"],
                                          "d_optimizer")
        g_optimizer.build(generator.trainable_variables)
        d_optimizer.build(discriminator.trainable_variables)
        step = tf.Variable(
            0, dtype=tf.int64, trainable=False, name="step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        ema = ema_lib.ExponentialMovingAverage(
            generator, generator_ema, self.ema_decay, self.ema_start_step)
        self.state = GanState(generator, discriminator, generator_ema,
                              g_optimizer, d_optimizer, ema, step)
        self.dim_z = generator.dim_z
        return self.state

    def set_objective(self, objective):
        """The generator objective the G step optimises (`objectives`)."""
        self.objective = objective
        self.reset()

    def reset(self):
        """Forgets the compiled steps (after the models changed)."""
        self._train_fns = {}

    # ------------------------------------------------------------------
    # Noise and batch arithmetic.

    def noise(self, step, purpose):
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

    def replica_noise(self, step, purpose):
        """This replica's slice of the global noise: [per_replica, ...]."""
        z, labels = self.noise(step, purpose)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        start = tf.cast(replica, tf.int32) * self.per_replica_batch
        return (z[start:start + self.per_replica_batch],
                labels[start:start + self.per_replica_batch])

    def scaled_mean(self, per_example):
        """Sum of per-example values / global batch (a scalar)."""
        return tf.reduce_sum(tf.cast(per_example, tf.float32)) / (
            self.global_batch_size)

    def global_share(self, value):
        """A whole-batch scalar as this replica's / micro-batch's share."""
        return value / float(self.num_replicas * self.accumulation_steps)

    def micro(self, tensor, index):
        """Micro-batch `index` of a per-replica tensor."""
        size = self.micro_batch
        return tensor[index * size:(index + 1) * size]

    # ------------------------------------------------------------------
    # Gradients.

    def _micro_gradients(self, variables, optimizer, tape_fn, index):
        with tf.GradientTape() as tape:
            loss, terms = tape_fn(index)
            scaled = (optimizer.scale_loss(loss)
                      if self.mixed_precision == "mixed_float16" else loss)
        grads = tape.gradient(scaled, variables)
        return [tf.zeros_like(v) if g is None
                # Sparse (embedding) gradients are summed densely.
                else tf.convert_to_tensor(g) if (
                    self.accumulation_steps > 1
                    and isinstance(g, tf.IndexedSlices)) else g
                for g, v in zip(grads, variables)], terms

    def apply(self, groups, tape_fn):
        """Accumulates gradients of tape_fn(micro) over micro-batches, applies.

        groups: [(optimizer, variables)]; each optimizer gets the gradients
        of its variables. tape_fn(index) returns (loss, terms) for
        micro-batch `index`; loss is already divided by the global batch
        size. Returns the terms summed over micro-batches.
        """
        optimizer = groups[0][0]
        variables = [v for _, group in groups for v in group]
        total, terms_sum = None, {}
        for index in range(self.accumulation_steps):
            grads, terms = self._micro_gradients(variables, optimizer,
                                                 tape_fn, index)
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
                grads = unscaled(grads, optimizer)
            group_optimizer.apply_gradients(zip(grads, group))
            start += len(group)
        return terms_sum

    # ------------------------------------------------------------------
    # Replica steps.

    def d_replica_step(self, batch, step, update_index):
        """One D update on this replica's real batch; its loss terms."""
        images, labels = batch
        z, fake_labels = self.replica_noise(step, update_index)
        discriminator = self.state.discriminator

        def loss_fn(index):
            real = self.micro(images, index)
            real_labels = self.micro(labels, index)
            fake = tf.stop_gradient(self.objective.generate(
                self.micro(z, index), self.micro(fake_labels, index),
                training=True))
            logits = discriminator(
                tf.concat([real, tf.cast(fake, real.dtype)], axis=0),
                tf.concat([real_labels, self.micro(fake_labels, index)],
                          axis=0), training=True)
            real_logits, fake_logits = tf.split(logits, 2, axis=0)
            loss_real, loss_fake = self.d_loss_fn(real_logits, fake_logits)
            loss_real = self.scaled_mean(loss_real)
            loss_fake = self.scaled_mean(loss_fake)
            terms = {"d_loss_real": loss_real, "d_loss_fake": loss_fake,
                     "d_real_logit": self.scaled_mean(real_logits),
                     "d_fake_logit": self.scaled_mean(fake_logits)}
            return loss_real + loss_fake, terms

        terms = self.apply(
            [(self.state.d_optimizer, discriminator.trainable_variables)],
            loss_fn)
        terms["d_loss"] = terms["d_loss_real"] + terms["d_loss_fake"]
        return terms

    def g_replica_step(self, step):
        """One G update on this replica's inputs (the objective's
        `g_inputs`: fresh noise, or a teacher bank's draw); its terms."""
        z, labels, extras = self.objective.g_inputs(step)

        def loss_fn(index):
            terms = self.objective.losses(
                self.micro(z, index), self.micro(labels, index), step,
                None if extras is None else tf.nest.map_structure(
                    lambda t: self.micro(t, index), extras))
            total = tf.add_n([value for name, value in terms.items()
                              if not name.startswith("info_")])
            terms["g_loss"] = total
            return total, terms

        return self.apply(self.objective.update_groups(), loss_fn)

    # ------------------------------------------------------------------
    # The compiled call.

    def reduce(self, per_replica_terms):
        return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                           value, axis=None)
                for name, value in per_replica_terms.items()}

    def one_step(self, iterator, after_start=False):
        """One G step (its D updates first, as the schedule says), EMA,
        step += 1; (the terms, whether D was updated)."""
        step = self.state.step.read_value()
        terms, d_updated = scheduled_d_updates(self, iterator, step,
                                               after_start)
        terms = dict(terms)
        terms.update(self.reduce(self.strategy.run(self.g_replica_step,
                                                    args=(step,))))
        self.state.ema.update(step)
        self.objective.after_step(step)
        self.state.step.assign_add(1)
        return terms, d_updated

    def metric_names(self, after_start=False):
        """Names of the loss terms one G step reports (no D terms once
        the schedule has dropped D)."""
        d_names = ([] if after_start and self.d_schedule.drops_discriminator
                   else list(D_METRICS))
        return d_names + ["g_loss"] + list(self.objective.loss_names)

    def run_steps(self, iterator, num_steps):
        """Runs `num_steps` G steps; returns the mean loss terms (floats;
        no D terms when none of the steps updated D). The caller keeps a
        call on one side of the D schedule's start (a loop boundary)."""
        after_start = self.d_schedule.after_start(
            int(self.state.step.numpy()))
        if after_start not in self._train_fns:
            self._train_fns[after_start] = compiled_steps(self, after_start)
        means = {name: float(value) for name, value in
                 self._train_fns[after_start](
                     iterator, tf.constant(num_steps)).items()}
        if not means.pop(D_UPDATES):
            means = {name: value for name, value in means.items()
                     if name not in D_METRICS}
        return means


def d_updates(steps, iterator, step):
    """The D updates of one G step of `steps` (a GanSteps): their mean
    terms."""
    terms = {}
    for update in range(steps.d_steps):
        batch = next(iterator)
        d_terms = steps.reduce(steps.strategy.run(
            steps.d_replica_step, args=(batch, step, update)))
        for name, value in d_terms.items():
            terms[name] = terms.get(name, 0.0) + value / steps.d_steps
    return terms


def scheduled_d_updates(steps, iterator, step, after_start):
    """(D terms, 1.0 or 0.0: whether D was updated) of one G step under
    `steps.d_schedule`; `after_start` says (statically) whether the
    compiled steps lie after the schedule's start."""
    schedule = steps.d_schedule
    if not after_start or schedule.interval == 1:
        return d_updates(steps, iterator, step), tf.constant(1.0)
    if schedule.interval == 0:
        return {}, tf.constant(0.0)
    due = tf.equal((step - schedule.start) % schedule.interval, 0)
    return tf.cond(due, lambda: (
        {name: tf.cast(value, tf.float32) for name, value in
         d_updates(steps, iterator, step).items()}, tf.constant(1.0)),
        lambda: ({name: tf.constant(0.0) for name in D_METRICS},
                 tf.constant(0.0)))


def compiled_steps(steps, after_start):
    """The compiled loop of `num_steps` G steps of `steps` (a GanSteps),
    before or after its D schedule's start. Written with an explicit
    tf.while_loop and traced without AutoGraph: the step code has no
    tensor-dependent Python control flow besides the D schedule's tf.cond,
    and converting it and every Keras layer it calls cost ~4 s of each
    trace (a quarter of a tiny PPCD step's start-up on 2 cores). D terms
    are averaged over the steps that updated D (their count is returned as
    `D_UPDATES`)."""
    names = steps.metric_names(after_start)
    d_names = set(D_METRICS) & set(names)

    def train_steps(iterator, num_steps):
        steps.adversarial_active = not (
            after_start and steps.d_schedule.drops_discriminator)

        def body(index, sums, d_count):
            terms, d_updated = steps.one_step(iterator, after_start)
            return index + 1, {
                name: sums[name] + tf.cast(terms[name], tf.float32)
                for name in names}, d_count + d_updated

        sums = {name: tf.constant(0.0) for name in names}
        try:
            _, sums, d_count = tf.while_loop(
                lambda index, *_: index < num_steps, body,
                (tf.constant(0, num_steps.dtype), sums, tf.constant(0.0)))
        finally:
            steps.adversarial_active = True
        count = tf.cast(num_steps, tf.float32)
        means = {name: value / (tf.maximum(d_count, 1.0)
                                if name in d_names else count)
                 for name, value in sums.items()}
        means[D_UPDATES] = d_count
        return means

    return tf.function(train_steps, jit_compile=steps.jit_compile,
                       autograph=False)


def inner_optimizer(optimizer):
    """The optimizer a loss-scale wrapper holds (or `optimizer` itself):
    the one whose learning rate is read and set."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def unscaled(grads, scaled_optimizer):
    """Gradients of the loss `scaled_optimizer` scaled (fp16 loss scaling),
    for an optimizer without its own scaling (the PPCD mask logits): divided
    by the scale; when any is not finite the loss-scale optimizer skips this
    step, so these become zeros."""
    scale = tf.cast(scaled_optimizer.dynamic_scale, tf.float32)
    grads = [tf.cast(g, tf.float32) / scale for g in grads]
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g))
                            for g in grads])
    return [tf.where(finite, g, tf.zeros_like(g)) for g in grads]
