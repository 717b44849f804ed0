"""When the training D is updated: every G step, or from a start step on
(PPCD's cut) only every k-th step, or never (`CompactPhase.
discriminator_interval`).

A G step that skips its D updates reads no real batch, so where a resumed
run's data continues is the number of D-updating steps before it. With no
D updates at all (interval 0) G's adversarial term is dropped too: the
objective's other terms train G alone.
"""

import dataclasses

from ppcd_tf import errors


@dataclasses.dataclass(frozen=True)
class DiscriminatorSchedule:
    """D updated at every G step before `start` (None: always) and at the
    steps `start + k * interval` from it on (interval 0: never)."""
    start: object = None
    interval: int = 1

    def __post_init__(self):
        if int(self.interval) != self.interval or self.interval < 0:
            raise errors.BadInputError(
                f"The discriminator interval must be an integer >= 0 (0: no"
                f" D updates after step {self.start}), got "
                f"{self.interval!r}.")

    @property
    def drops_discriminator(self):
        """Whether D (and G's adversarial term) stops at `start`."""
        return self.start is not None and self.interval == 0

    def after_start(self, step):
        """Whether G step `step` lies at or after the start."""
        return self.start is not None and step >= self.start

    def updates(self, step):
        """Whether G step `step` runs its D updates (a Python bool)."""
        if not self.after_start(step) or self.interval == 1:
            return True
        return self.interval > 0 and (step - self.start) % self.interval == 0

    def updating_steps_before(self, step):
        """How many of the G steps 0 .. step-1 ran D updates."""
        if not self.after_start(step) or self.interval == 1:
            return int(step)
        if self.interval == 0:
            return self.start
        return self.start + -(-(step - self.start) // self.interval)
