"""A thinner training D after PPCD's cut (`CompactPhase.discriminator_width`,
`pruning.discriminator_thinning`): the thin config, the kept filters, the
sliced weights, and a PPCD run that cuts, trains and resumes with it and
the other levers of a cheaper compact step (a distilled share of each G
batch, a bfloat16 teacher: `PPCDTrainer.teacher_precision`)."""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.distill import losses as distill_losses
from ppcd_tf.models import arch
from ppcd_tf.models import discriminator as discriminator_lib
from ppcd_tf.pruning import discriminator_thinning as thinning
from ppcd_tf.runs import run_dir
from ppcd_tf.training import compact_phase
from ppcd_tf.training import ppcd_trainer
from tests import helpers


def _discriminator(seed=0):
    config = arch.discriminator_channels(32, 4, attention="")
    d = discriminator_lib.Discriminator(config, num_classes=3,
                                        image_channels=1)
    d.build()
    rng = np.random.default_rng(seed)
    for v in d.trainable_variables:
        v.assign(rng.normal(size=v.shape).astype(np.float32))
    return d


class ThinningTest(tf.test.TestCase):

    def test_config_and_refusals(self):
        config = arch.DiscriminatorConfig(32, (64, 64, 3), (True, True,
                                                             False))
        thin = thinning.thinned_config(config, 0.5)
        self.assertEqual(thin.out, (32, 32, 2))
        self.assertEqual(thin.downsample, config.downsample)
        for bad in (0.0, 1.5):
            with self.assertRaisesRegex(errors.BadInputError, r"\(0, 1\]"):
                thinning.thinned_config(config, bad)
        with_attention = arch.DiscriminatorConfig(
            32, (64, 64), (True, True), attention={1: (8, 32)})
        with self.assertRaisesRegex(errors.BadInputError, "self-attention"):
            thinning.thinned_config(with_attention, 0.5)
        with self.assertRaisesRegex(errors.BadInputError,
                                    "discriminator_width"):
            compact_phase.CompactPhase(discriminator_width=0.0)
        for bad in (0.0, 1.5):
            with self.assertRaisesRegex(errors.BadInputError,
                                        "distillation_fraction"):
                compact_phase.CompactPhase(distillation_fraction=bad)

    def test_keeps_the_strongest_filters_as_slices(self):
        d = _discriminator()
        thin, config = thinning.thin(d, 0.5, name="thin")
        self.assertEqual(config.out, tuple(w // 2 for w in d.config.out))
        kept = thinning.kept_channels(d, config)
        previous = None
        for i, (block, new, (hidden, out)) in enumerate(
                zip(d.blocks, thin.blocks, kept)):
            conv2 = block.conv2.kernel.numpy()
            if block.conv_sc is not None:
                sc = block.conv_sc.kernel.numpy()
                scores = (np.linalg.norm(conv2.reshape(-1, conv2.shape[-1]),
                                         axis=0)
                          + np.linalg.norm(sc.reshape(-1, sc.shape[-1]),
                                           axis=0))
                # Every kept filter scores at least as high as every
                # dropped one.
                dropped = np.setdiff1d(np.arange(scores.size), out)
                self.assertGreaterEqual(scores[out].min(),
                                        scores[dropped].max())
            else:  # an identity shortcut keeps its input's channels
                self.assertAllEqual(out, previous)
            want = conv2[:, :, hidden][..., out]
            self.assertAllEqual(new.conv2.kernel.numpy(), want, msg=i)
            conv1 = block.conv1.kernel.numpy()
            if previous is not None:
                conv1 = conv1[:, :, previous]
            self.assertAllEqual(new.conv1.kernel.numpy(), conv1[..., hidden])
            self.assertAllEqual(new.conv2.bias.numpy(),
                                block.conv2.bias.numpy()[out])
            previous = out
        self.assertAllEqual(thin.embed.embeddings.numpy(),
                            d.embed.embeddings.numpy()[:, previous])
        self.assertAllEqual(thin.linear.kernel.numpy(),
                            d.linear.kernel.numpy()[previous])
        self.assertLess(thinning.parameter_count(thin),
                        0.3 * thinning.parameter_count(d))
        images = tf.random.stateless_uniform((2, 32, 32, 1), (1, 2), -1, 1)
        self.assertEqual(thin(images, tf.constant([0, 2])).shape, (2,))

    def test_full_width_is_the_same_network(self):
        d = _discriminator(1)
        same, _ = thinning.thin(d, 1.0)
        images = tf.random.stateless_uniform((3, 32, 32, 1), (3, 4), -1, 1)
        labels = tf.constant([0, 1, 2])
        self.assertAllClose(d(images, labels), same(images, labels),
                            rtol=1e-5, atol=1e-5)


class ThinDiscriminatorRunTest(tf.test.TestCase):

    def _ppcd(self, model_dir, steps, precision="'mixed_bfloat16'"):
        helpers.parse(["debug.gin", "stage/ppcd.gin"], list(
            helpers.TINY_BINDINGS) + [
                f"PPCDTrainer.teacher_precision = {precision}",
                f"TEACHER_DIR = '{helpers.tiny_teacher_dir()}'",
                "TARGET_PARAM_RATIO = 0.5",
                "PruningBudget.min_channels = 1",
                "PruningPhase.prune_end_fraction = 0.5",
                f"TrainLoop.num_steps = {steps}",
                "TrainLoop.sample_every = 0",
                "CompactPhase.discriminator_width = 0.5",
                "CompactPhase.distillation_fraction = 0.5",
            ])
        return ppcd_trainer.PPCDTrainer(model_dir=model_dir,
                                        strategy=helpers.one_device())

    def test_a_bfloat16_teacher_is_the_float32_one_rounded(self):
        exact = self._ppcd(self.create_tempdir().full_path, 4, "None")
        rounded = self._ppcd(self.create_tempdir().full_path, 4)
        self.assertEqual(keras.config.dtype_policy().name, "float32")
        for trainer, policy in ((exact, "float32"),
                                (rounded, "mixed_bfloat16")):
            for model in (trainer.teacher_generator,
                          trainer.teacher_discriminator):
                self.assertEqual(model.dtype_policy.name, policy)
            # The student and the training D keep float32.
            for model in (trainer.generator, trainer.discriminator):
                self.assertEqual(model.dtype_policy.name, "float32")
        z = tf.random.stateless_normal((4, exact.dim_z), seed=(2, 3))
        labels = tf.constant([0, 1, 2, 3]) % exact.num_classes
        want, want_taps = exact.objective.teacher_outputs(z, labels)
        got, got_taps = rounded.objective.teacher_outputs(z, labels)
        # Computed in bfloat16 (the distillation losses cast to float32).
        got = tf.cast(got, tf.float32)
        self.assertNotAllEqual(got, want)
        self.assertAllClose(got, want, atol=0.05, rtol=0.0)
        for tap, value in want_taps.items():
            self.assertAllClose(tf.cast(got_taps[tap], tf.float32), value,
                                atol=0.1, rtol=0.05)
        l1 = distill_losses.output_l1_loss(got, tf.cast(got, tf.bfloat16))
        self.assertEqual(l1.dtype, tf.float32)
        with self.assertRaisesRegex(errors.BadInputError,
                                    "teacher_precision"):
            self._ppcd(self.create_tempdir().full_path, 4, "'bfloat16'")

    def test_cuts_trains_and_resumes_with_a_thin_d(self):
        model_dir = self.create_tempdir().full_path
        trainer = self._ppcd(model_dir, 6)
        full = trainer.discriminator.config.out
        objective = trainer.steps.objective
        self.assertEqual(objective.distillation_fraction(), 1.0)
        metrics = trainer.train()
        self.assertTrue(trainer.compacted)
        # After the cut half of each G batch is distilled.
        self.assertEqual(objective.distillation_fraction(), 0.5)
        for name in ("g_loss_output_l1", "g_loss_d_features"):
            self.assertTrue(np.isfinite(metrics[name]), name)
        thin = tuple(w // 2 for w in full)
        self.assertEqual(trainer.discriminator.config.out, thin)
        self.assertIn("d_loss", metrics)
        self.assertTrue(np.isfinite(metrics["d_loss"]))
        structure = run_dir.read_pruning_structure(model_dir)
        self.assertEqual(structure["compact_discriminator"]["out"],
                         list(thin))
        with open(os.path.join(model_dir, "models.json")) as f:
            self.assertEqual(json.load(f)["discriminator"]["config"]["out"],
                             list(full))
        weights = [v.numpy() for v in trainer.discriminator.weights]
        # Resumed after the cut: the thin D comes back from the checkpoint.
        resumed = self._ppcd(model_dir, 8)
        self.assertEqual(resumed.restore(), 6)
        self.assertEqual(resumed.discriminator.config.out, thin)
        for want, got in zip(weights, resumed.discriminator.weights):
            self.assertAllEqual(want, got.numpy())
        resumed.train()
        self.assertEqual(int(resumed.step.numpy()), 8)


if __name__ == "__main__":
    tf.test.main()
