"""Checkpoints: a thin wrapper over tf.train.CheckpointManager.

TensorFlow writes a checkpoint's data files first and updates the
`checkpoint` index file last (write to a temporary file, then rename), so a
process killed mid-save leaves the previous checkpoint as the latest valid
one. `restore_latest` falls back to older checkpoints if the newest cannot be
read.
"""

import tensorflow as tf
from absl import logging


class Checkpointer:
    """Saves and restores a set of trackables under `directory`."""

    def __init__(self, directory, max_to_keep=3, **trackables):
        self.directory = directory
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep,
            checkpoint_name="ckpt")

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def save(self, step):
        path = self.manager.save(checkpoint_number=step)
        logging.info("Saved checkpoint %s.", path)
        return path

    def restore_latest(self):
        """Restores the newest readable checkpoint; returns its path or None."""
        candidates = list(reversed(self.manager.checkpoints))
        for path in candidates:
            try:
                self.checkpoint.restore(path).expect_partial()
                return path
            except (tf.errors.NotFoundError, tf.errors.DataLossError,
                    ValueError) as error:
                logging.warning("Could not restore %s (%s); trying an older "
                                "checkpoint.", path, error)
        if candidates:
            raise RuntimeError(
                f"No checkpoint in {self.directory} could be restored "
                f"(tried {candidates}). Move the directory aside to start "
                "afresh.")
        return None

    def restore(self, path):
        """Restores a specific checkpoint path (all saved objects must match)."""
        self.checkpoint.restore(path).expect_partial()
        return path
