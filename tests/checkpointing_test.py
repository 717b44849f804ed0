"""Checkpointer: newest-first restore, fallback past damaged checkpoints, and
never an empty candidate list while ckpt-N files exist (a lost or damaged
`checkpoint` index must not restart a run over its checkpoints)."""

import os

import tensorflow as tf

from ppcd_tf.runs import checkpointing


class CheckpointerTest(tf.test.TestCase):

    def _saved(self, steps=(1, 2, 3)):
        directory = self.create_tempdir().full_path
        value = tf.Variable(0.0)
        checkpointer = checkpointing.Checkpointer(directory, max_to_keep=5,
                                                  value=value)
        for step in steps:
            value.assign(float(step))
            checkpointer.save(step)
        return directory

    def _restored(self, directory):
        value = tf.Variable(-1.0)
        path = checkpointing.Checkpointer(directory,
                                          value=value).restore_latest()
        return path, float(value.numpy())

    def test_restores_newest(self):
        directory = self._saved()
        path, value = self._restored(directory)
        self.assertEqual(os.path.basename(path), "ckpt-3")
        self.assertEqual(value, 3.0)

    def test_lost_index_file_still_restores_newest(self):
        directory = self._saved()
        os.remove(os.path.join(directory, "checkpoint"))
        path, value = self._restored(directory)
        self.assertEqual(os.path.basename(path), "ckpt-3")
        self.assertEqual(value, 3.0)

    def test_garbled_index_file_still_restores_newest(self):
        directory = self._saved()
        with open(os.path.join(directory, "checkpoint"), "wb") as f:
            f.write(b"\x86\x00garbage{")
        path, value = self._restored(directory)
        self.assertEqual(value, 3.0)

    def test_index_without_timestamps(self):
        # As written by hand or by tools that copy a run: no timestamps.
        directory = self._saved()
        with open(os.path.join(directory, "checkpoint"), "w") as f:
            f.write('model_checkpoint_path: "ckpt-2"\n'
                    'all_model_checkpoint_paths: "ckpt-2"\n')
        path, value = self._restored(directory)
        self.assertEqual(value, 3.0)  # ckpt-3 is on disk and newer

    def test_damaged_newest_falls_back(self):
        directory = self._saved()
        with open(os.path.join(directory,
                               "ckpt-3.data-00000-of-00001"), "wb") as f:
            f.write(b"\x00" * 7)
        path, value = self._restored(directory)
        self.assertEqual(os.path.basename(path), "ckpt-2")
        self.assertEqual(value, 2.0)

    def test_empty_directory(self):
        path, value = self._restored(self.create_tempdir().full_path)
        self.assertIsNone(path)
        self.assertEqual(value, -1.0)
