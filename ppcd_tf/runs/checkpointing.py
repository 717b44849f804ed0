"""Checkpoints: a thin wrapper over tf.train.CheckpointManager.

TensorFlow writes a checkpoint's data files first and updates the
`checkpoint` index file last (write to a temporary file, then rename), so a
process killed mid-save leaves the previous checkpoint as the latest valid
one. `restore_latest` falls back to older checkpoints if the newest cannot be
read.
"""

import os

import tensorflow as tf
from absl import logging

from ppcd_tf import errors


def candidates(directory):
    """Checkpoint prefixes to try, newest first: those of the index file
    `checkpoint` and, should it be missing, damaged or incomplete, every
    `ckpt-N.index` in the directory (by step N). Never silently empty while
    checkpoints exist, so a run never restarts over them."""
    found = {}
    pattern = tf.io.gfile.join(directory, "ckpt-*.index")
    for index in tf.io.gfile.glob(pattern):
        prefix = index[:-len(".index")]
        number = prefix.rsplit("-", 1)[-1]
        if number.isdigit():
            found[prefix] = int(number)
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (UnicodeDecodeError, tf.errors.OpError,
            ValueError) as error:  # a damaged text proto
        logging.warning("The checkpoint index of %s cannot be read (%s);"
                        " using the ckpt-N files found.", directory,
                        error)
        state = None
    if state is not None:
        for path in list(state.all_model_checkpoint_paths) + [
                state.model_checkpoint_path]:
            if not os.path.isabs(path):
                path = os.path.join(directory, path)
            number = path.rsplit("-", 1)[-1]
            if tf.io.gfile.exists(path + ".index") and number.isdigit():
                found[path] = int(number)
    return sorted(found, key=found.get, reverse=True)


def warn_without_index(directory, found):
    """Warns about checkpoints whose data files are there but whose
    `.index` is not (`found`: the candidates): they cannot be restored, so
    a restore skips them. Called by the readers that restore, not by
    `candidates` (a save in progress looks the same for a moment, and the
    kill probe polls `candidates` while the run saves)."""
    pattern = tf.io.gfile.join(directory, "ckpt-*.data-*")
    orphans = sorted({path.rsplit(".data-", 1)[0]
                      for path in tf.io.gfile.glob(pattern)} - set(found))
    for prefix in orphans:
        logging.warning("Skipping checkpoint %s: its data files are there but"
                        " %s.index is missing, so it cannot be restored.",
                        prefix, os.path.basename(prefix))


class Checkpointer:
    """Saves and restores a set of trackables under `directory`."""

    def __init__(self, directory, max_to_keep=3, **trackables):
        self.directory = directory
        self.max_to_keep = max_to_keep
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self._set_aside_damaged_index()
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, directory, max_to_keep=max_to_keep,
            checkpoint_name="ckpt")

    def _set_aside_damaged_index(self):
        """Renames an unreadable `checkpoint` index file to
        `checkpoint.damaged` (kept for inspection) so the manager starts
        from the ckpt-N files themselves (see `candidates`)."""
        try:
            tf.train.get_checkpoint_state(self.directory)
        except (UnicodeDecodeError, tf.errors.OpError, ValueError) as error:
            index = os.path.join(self.directory, "checkpoint")
            logging.warning("The checkpoint index %s cannot be read (%s); "
                            "moved to %s.damaged, restoring from the "
                            "ckpt-N files.", index, error, index)
            tf.io.gfile.rename(index, index + ".damaged", overwrite=True)

    def remove_leftovers(self):
        """Removes what killed saves leave behind: TensorFlow's temporary
        `ckpt-N_temp*` directories (a save writes there, then renames).
        Call it only while holding the run's lock (run_dir.locked): no
        other save can be in progress. Returns the removed paths."""
        removed = self._remove_staging("*")
        if removed:
            logging.info("Removed leftovers of interrupted saves: %s",
                         removed)
        return removed

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def save(self, step):
        """Saves checkpoint `step`; a save that fails (a full disk, a
        permission taken away) removes its own staging directory before
        the error goes on, so no half-written checkpoint stays behind."""
        try:
            path = self.manager.save(checkpoint_number=step)
        except BaseException:
            try:
                self._remove_staging(f"ckpt-{step}")
            except tf.errors.OpError as error:
                logging.warning("Could not remove the failed save's staging "
                                "directory: %s", error)
            raise
        logging.info("Saved checkpoint %s.", path)
        return path

    def _remove_staging(self, prefix):
        """Removes the `<prefix>_temp*` staging directories TensorFlow's
        saves write into (`*`: every save's); returns the removed paths."""
        removed = []
        pattern = tf.io.gfile.join(self.directory, f"{prefix}_temp*")
        for path in tf.io.gfile.glob(pattern):
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
                removed.append(path)
        return removed

    def candidates(self):
        """`candidates(self.directory)`."""
        return candidates(self.directory)

    def restore_latest(self):
        """Restores the newest readable checkpoint; returns its path or None."""
        paths = self.candidates()
        warn_without_index(self.directory, paths)
        for path in paths:
            try:
                self.checkpoint.restore(path).expect_partial()
                return path
            except (tf.errors.OpError, ValueError,
                    IndexError) as error:  # IndexError: a truncated file
                logging.warning("Could not restore %s (%s); trying an older "
                                "checkpoint.", path, error)
        if paths:
            raise errors.DamagedInputError(
                f"No checkpoint in {self.directory} could be restored "
                f"(tried {paths}): they are damaged. Restore the run from a "
                "copy, or move the directory aside to start afresh.")
        return None

    def restore(self, path):
        """Restores checkpoint `path` (all saved objects must match)."""
        self.checkpoint.restore(path).expect_partial()
        return path
