"""When things happen in a training run: the loop driver.

`TrainLoop` (gin-configurable) runs a trainer to `num_steps`:

    restore; write models.json
    while step < num_steps:
        trainer.begin_loop(step)            # eager: the phases (masks, cut)
        k = steps to the next boundary      # log / sample / checkpoint /
                                            # validate period, a phase point
        metrics = trainer.run_steps(k)      # compiled: k G steps
        non-finite loss -> DivergedError (the last good checkpoint is kept)
        log + summaries, samples, checkpoint, validation at their periods

It knows no losses and no models: the trainer it drives provides
`restore`, `make_iterator`, `write_model_configs`, `begin_loop`,
`boundaries`, `run_steps`, `current_step`, `write_summaries`,
`write_samples`, `save_checkpoint`, `validate`, `summary_dir`,
`write_operative_config`, `images_per_step` and `is_chief`.
"""

import time

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import errors
from ppcd_tf.training import profiling


def format_duration(seconds):
    """'1h02m' or '3m05s'."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


@gin.configurable
class TrainLoop:
    """The cadence of a run.

    Args:
      num_steps: number of G steps to train to.
      steps_per_loop: G steps per call of the compiled training function.
      log_every: G steps between progress lines and scalar summaries.
      sample_every: G steps between sample grids (0: only at the end).
      checkpoint_every: G steps between checkpoints.
      max_checkpoints: checkpoints kept.
      validator: a `validation.QuickValidator` (None: no validation); the
        run then keeps its best EMA generator in <model_dir>/best/.
      validate_every: G steps between validations (a multiple of
        checkpoint_every; 0: off).
      profile_steps: None, or (first, stop): trace G steps first .. stop - 1
        for TensorBoard's Profile tab (`profiling.StepProfiler`).
    """

    def __init__(self, num_steps=gin.REQUIRED, steps_per_loop=10,
                 log_every=50, sample_every=500, checkpoint_every=500,
                 max_checkpoints=3, validator=None, validate_every=0,
                 profile_steps=None):
        for name, value in (("num_steps", num_steps),
                            ("steps_per_loop", steps_per_loop),
                            ("log_every", log_every),
                            ("checkpoint_every", checkpoint_every)):
            if int(value) < 1:
                raise errors.BadInputError(
                    f"TrainLoop.{name} must be >= 1, got {value}.")
        self.num_steps = int(num_steps)
        self.steps_per_loop = int(steps_per_loop)
        self.log_every = int(log_every)
        self.sample_every = int(sample_every)
        self.checkpoint_every = int(checkpoint_every)
        self.max_checkpoints = int(max_checkpoints)
        self.validator = validator
        self.validate_every = int(validate_every) if validator else 0
        self.profiler = profiling.StepProfiler(profile_steps)
        if self.validate_every % self.checkpoint_every:
            raise errors.BadInputError(
                f"TrainLoop.validate_every ({validate_every}) must be a "
                f"multiple of TrainLoop.checkpoint_every "
                f"({checkpoint_every}): the best checkpoint is a copy of a "
                "saved one.")

    def steps_until_boundary(self, step, points=()):
        """G steps to run in the next compiled call: up to steps_per_loop,
        stopping at every period and at the `points` beyond `step`."""
        k = min(self.steps_per_loop, self.num_steps - step)
        for period in (self.log_every, self.checkpoint_every,
                       self.sample_every, self.validate_every):
            if period:
                k = min(k, period - step % period)
        for point in points:
            if point > step:
                k = min(k, point - step)
        return max(k, 1)

    def run(self, trainer):
        """Trains `trainer` from its newest checkpoint to num_steps; returns
        the last loss terms ({} when there was nothing to do)."""
        start_step = trainer.restore()
        if start_step >= self.num_steps:
            logging.info("Already at step %d >= num_steps %d; nothing to do.",
                         start_step, self.num_steps)
            return {}
        iterator = trainer.make_iterator(start_step)
        if trainer.is_chief:
            trainer.write_model_configs()
        writer = tf.summary.create_file_writer(trainer.summary_dir())
        logging.info("Training from step %d to %d.", start_step,
                     self.num_steps)
        wall_start = time.monotonic()
        with writer.as_default():
            trainer.write_run_start(start_step)
            try:
                step, metrics = self._steps(trainer, iterator, start_step)
            finally:
                self.profiler.stop()
            if not self.sample_every or self.num_steps % self.sample_every:
                trainer.write_samples(step)
            trainer.write_run_end(step)
            writer.flush()
        if trainer.is_chief:
            trainer.write_operative_config()
        logging.info("Finished at step %d in %s.", step,
                     format_duration(time.monotonic() - wall_start))
        return metrics

    def _steps(self, trainer, iterator, start_step):
        metrics = {}
        window = (time.monotonic(), start_step)
        step = start_step
        while step < self.num_steps:
            trainer.begin_loop(step)
            k = self.steps_until_boundary(
                step, trainer.boundaries() + self.profiler.boundaries())
            self.profiler.before(step, trainer.summary_dir())
            metrics = trainer.run_steps(iterator, k)
            step = trainer.current_step()
            self.profiler.after(step)
            check_finite(metrics, step)
            if step % self.log_every == 0 or step == self.num_steps:
                now = time.monotonic()
                rate = (step - window[1]) / max(now - window[0], 1e-9)
                window = (now, step)
                self.log_progress(step, rate, metrics,
                                  trainer.images_per_step)
                trainer.write_summaries(step, metrics, rate)
            if self.sample_every and step % self.sample_every == 0:
                trainer.write_samples(step)
            if step % self.checkpoint_every == 0 or step == self.num_steps:
                trainer.save_checkpoint(step)
            if self.validate_every and step % self.validate_every == 0:
                trainer.validate(step)
            if step - start_step == k and trainer.is_chief:
                trainer.write_operative_config()
        return step, metrics

    def log_progress(self, step, rate, metrics, images_per_step):
        """One progress line: step, %, speed, ETA and the main losses."""
        remaining = (self.num_steps - step) / max(rate, 1e-9)
        shown = ", ".join(f"{name} {value:.4f}" for name, value in
                          sorted(metrics.items())
                          if name in ("d_loss", "g_loss")
                          or name.startswith("g_loss_"))
        logging.info(
            "step %d/%d (%.1f%%) | %.2f steps/s, %.1f img/s | ETA %s | %s",
            step, self.num_steps, 100.0 * step / self.num_steps, rate,
            rate * images_per_step, format_duration(remaining), shown)


def check_finite(metrics, step):
    """Raises DivergedError when a loss term is not finite."""
    bad = [name for name, value in metrics.items() if not np.isfinite(value)]
    if bad:
        raise errors.DivergedError(
            f"Non-finite losses {bad} at step {step}: {metrics}. Lower the "
            "learning rates or enable gradient accumulation; the last good "
            "checkpoint is kept.")
