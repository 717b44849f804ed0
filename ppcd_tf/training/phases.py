"""The parts a trainer calls at its boundaries (PPCD's pruning and compact
phases). Each contributes checkpoint items, eager work before a compiled
call, the steps the compiled loop must stop at, whether validation may keep
a best generator yet, and summaries; the base class contributes nothing."""


class Phase:
    """A part of a training run, called by the trainer (no-op defaults)."""

    def checkpoint_items(self):
        """{name: trackable} saved in every checkpoint."""
        return {}

    def begin_loop(self, step):
        """Eager work before the compiled call that starts at `step`."""
        del step

    def boundaries(self):
        """G steps the compiled loop must stop at."""
        return ()

    def allows_validation(self, step):
        """Whether the EMA generator of `step` may become the best one."""
        del step
        return True

    def write_summaries(self, step):
        """Scalars, histograms and records at a log step (chief only)."""
        del step
