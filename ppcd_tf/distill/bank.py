"""A bank of the frozen teacher's outputs, computed once per run and reused.

PPCD's G step distils the student towards the frozen teacher on the same
(z, y). Without a bank every G step runs the teacher G forward on fresh
noise (~15 % of a compact step on our 2-core CPU, BENCHMARKS.md "What a
compact step spends"). With `TeacherBank(size=N)` the run draws N (z, y)
pairs once (a stateless seed: the same bank on every replica and after a
resume), runs the teacher on them once, and each G step draws its batch
from the bank instead of fresh noise: the teacher's images and the
attention grids of its feature taps (`distill.losses.attention_grid`, mean_c
F^2 [h, w, 1]: a few KB per sample, not its feature maps) come from the
bank and the teacher G is not run. TinyGAN (Chang & Lu, 2020) trains its
student on a fixed set of teacher (z, y, image) triples in the same way.

The bank is not checkpointed: a resumed run rebuilds the identical bank
from its seed. The D step keeps drawing fresh noise for its fakes.
"""

import time

import gin
import numpy as np
import tensorflow as tf
from absl import logging

from ppcd_tf import errors
from ppcd_tf.distill import losses

# Stateless-seed purposes of the bank's draws (disjoint from GanSteps').
_BANK_NOISE_PURPOSE = 7001
_BANK_INDEX_PURPOSE = 7002


@gin.configurable
class TeacherBank:
    """N teacher samples, drawn once; G steps draw their batches from them.

    Args:
      size: samples in the bank (0: no bank, the teacher runs every G step).
      build_batch: teacher forward batch while the bank is built.
      seed: seed of the bank's noise and of the per-step draws.
    """

    def __init__(self, size=0, build_batch=256, seed=0):
        for name, value, low in (("size", size, 0),
                                 ("build_batch", build_batch, 1)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise errors.BadInputError(
                    f"TeacherBank.{name} must be an integer >= {low}, got "
                    f"{value!r}.")
        self.size = int(size)
        self.build_batch = int(build_batch)
        self.seed = int(seed)
        self.z = self.labels = self.images = None
        self.grids = None

    @property
    def enabled(self):
        return self.size > 0

    def build(self, teacher_generator):
        """Draws the bank's (z, y) and runs the frozen teacher on them:
        z [N, dim_z], labels [N], images [N, H, W, C] and grids {tap:
        [N, h, w, 1]} (float32, on the host)."""
        if not self.enabled:
            return
        start = time.monotonic()
        seed_z, seed_y = tf.unstack(tf.random.experimental.stateless_split(
            tf.constant([self.seed, _BANK_NOISE_PURPOSE], tf.int64), 2))
        z = tf.random.stateless_normal(
            (self.size, teacher_generator.dim_z), seed_z)
        labels = tf.random.stateless_uniform(
            (self.size,), seed_y, 0, teacher_generator.num_classes,
            dtype=tf.int32)

        @tf.function(autograph=False)
        def teacher(z_batch, label_batch):
            images, features = teacher_generator(
                z_batch, label_batch, training=False, return_features=True)
            return tf.cast(images, tf.float32), {
                name: losses.attention_grid(value)
                for name, value in features.items()}

        images, grids = [], {}
        for begin in range(0, self.size, self.build_batch):
            end = min(begin + self.build_batch, self.size)
            batch_images, batch_grids = teacher(z[begin:end],
                                                labels[begin:end])
            images.append(batch_images.numpy())
            for name, value in batch_grids.items():
                grids.setdefault(name, []).append(value.numpy())
        self.z, self.labels = z, labels
        self.images = tf.constant(np.concatenate(images))
        self.grids = {name: tf.constant(np.concatenate(parts))
                      for name, parts in grids.items()}
        megabytes = (self.images.numpy().nbytes + sum(
            g.numpy().nbytes for g in self.grids.values())) / 2**20
        logging.info("Teacher bank: %s samples (%.0f MB) in %.1f s.",
                     f"{self.size:,}", megabytes, time.monotonic() - start)

    def replica_draw(self, step, global_batch, per_replica_batch):
        """This replica's slice of step `step`'s global draw: (z
        [per_replica, dim_z], labels [per_replica], {"images": [...],
        "grids": {tap: [...]}}); every replica computes the same global
        indices and takes its slice, as `GanSteps.replica_noise` does."""
        seed = tf.stack([tf.constant(self.seed, tf.int64),
                         tf.cast(step, tf.int64) * 4096 + _BANK_INDEX_PURPOSE])
        indices = tf.random.stateless_uniform(
            (global_batch,), seed, 0, self.size, dtype=tf.int32)
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        start = tf.cast(replica, tf.int32) * per_replica_batch
        indices = indices[start:start + per_replica_batch]
        teacher = {"images": tf.gather(self.images, indices),
                   "grids": {name: tf.gather(grid, indices)
                             for name, grid in self.grids.items()}}
        return (tf.gather(self.z, indices), tf.gather(self.labels, indices),
                teacher)
