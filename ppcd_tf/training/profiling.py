"""A short trace of training steps for TensorBoard's profile plugin.

`TrainLoop.profile_steps = (first, stop)` traces the G steps first ..
stop - 1 (the loop stops its compiled calls at both ends, so the trace
holds exactly those steps) into <model_dir>/train/plugins/profile/, which
TensorBoard's Profile tab opens (`pip install tensorboard-plugin-profile`).
A run resumed past `first` takes no trace.
"""

import tensorflow as tf
from absl import logging

from ppcd_tf import errors


class StepProfiler:
    """Starts and stops TensorFlow's profiler around a window of steps."""

    def __init__(self, profile_steps):
        """profile_steps: None (off) or (first, stop) with
        0 <= first < stop."""
        self.window = None
        if profile_steps is not None:
            try:
                first, stop = (int(v) for v in profile_steps)
            except (TypeError, ValueError) as error:
                raise errors.BadInputError(
                    "TrainLoop.profile_steps must be a pair (first, stop) "
                    f"of G steps, e.g. (100, 110); got {profile_steps!r}."
                ) from error
            if not 0 <= first < stop:
                raise errors.BadInputError(
                    f"TrainLoop.profile_steps ({first}, {stop}) must have "
                    "0 <= first < stop.")
            self.window = (first, stop)
        self.active = False

    def boundaries(self):
        """Steps the compiled calls must stop at (the window's ends)."""
        return self.window or ()

    def before(self, step, logdir):
        """Starts the trace when `step` is the window's first step."""
        if self.window and step == self.window[0] and not self.active:
            tf.profiler.experimental.start(logdir)
            self.active = True
            logging.info("Profiling G steps %d to %d into %s.",
                         self.window[0], self.window[1] - 1, logdir)

    def after(self, step):
        """Stops the trace once `step` reached the window's end."""
        if self.active and step >= self.window[1]:
            self.stop()

    def stop(self):
        """Stops a running trace (also when training ends early)."""
        if self.active:
            tf.profiler.experimental.stop()
            self.active = False
            logging.info("Profile written; open TensorBoard's Profile tab.")
