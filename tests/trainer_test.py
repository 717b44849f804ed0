"""Trainer: a few steps on tiny configs, resume, distribution, errors."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf.training import trainer as trainer_lib
from tests import helpers

DEBUG_FILES = ["debug.gin"]


def _trainer(model_dir, strategy, bindings=(), files=DEBUG_FILES):
    helpers.parse(files, list(helpers.TINY_BINDINGS) + list(bindings))
    return trainer_lib.Trainer(model_dir=model_dir, strategy=strategy)


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


def _assign(model, values):
    for w, v in zip(model.weights, values):
        w.assign(v)


class TrainerTest(tf.test.TestCase):

    def test_trains_writes_everything_and_resumes(self):
        model_dir = self.create_tempdir().full_path
        trainer = _trainer(model_dir, helpers.one_device(),
                           ["TrainLoop.num_steps = 2"])
        g_before = _weights(trainer.generator)
        metrics = trainer.train()
        self.assertEqual(int(trainer.step.numpy()), 2)
        for name in ("d_loss", "g_loss", "d_loss_real", "d_loss_fake"):
            self.assertTrue(np.isfinite(metrics[name]), name)
        self.assertNotAllClose(g_before[0], trainer.generator.weights[0])
        events = glob.glob(os.path.join(model_dir, "train", "events.*"))
        self.assertLen(events, 1)
        ckpts = tf.train.get_checkpoint_state(
            os.path.join(model_dir, "checkpoints"))
        self.assertEqual(os.path.basename(ckpts.model_checkpoint_path),
                         "ckpt-2")
        self.assertTrue(os.path.isfile(
            os.path.join(model_dir, "operative_config.gin")))
        self.assertTrue(os.path.isfile(
            os.path.join(model_dir, "samples", "samples_00000002.png")))
        png = tf.io.decode_png(tf.io.read_file(
            os.path.join(model_dir, "samples", "latest.png")))
        # 2 rows (classes) x 2 columns of 32x32 images with 1-px padding.
        self.assertEqual(png.shape[:2], (2 * 33 + 1, 2 * 33 + 1))

        # A new trainer on the same directory resumes at step 2.
        g_after = _weights(trainer.generator)
        ema_after = _weights(trainer.generator_ema)
        resumed = _trainer(model_dir, helpers.one_device(),
                           ["TrainLoop.num_steps = 3"])
        self.assertEqual(resumed.restore(), 2)
        for a, b in zip(g_after, _weights(resumed.generator)):
            self.assertAllEqual(a, b)
        for a, b in zip(ema_after, _weights(resumed.generator_ema)):
            self.assertAllEqual(a, b)
        self.assertEqual(int(resumed.g_optimizer.iterations.numpy()), 2)
        resumed.train()
        self.assertEqual(int(resumed.step.numpy()), 3)

    def test_gradient_accumulation_and_d_steps(self):
        model_dir = self.create_tempdir().full_path
        trainer = _trainer(model_dir, helpers.one_device(),
                           ["TrainLoop.num_steps = 1",
                            "GanSteps.accumulation_steps = 2",
                            "GanSteps.d_steps_per_g_step = 2"])
        trainer.train()
        self.assertEqual(trainer.steps.micro_batch, 2)
        self.assertEqual(int(trainer.d_optimizer.iterations.numpy()), 2)
        self.assertEqual(int(trainer.g_optimizer.iterations.numpy()), 1)

    def test_ema_follows_weights_before_start_and_lags_after(self):
        model_dir = self.create_tempdir().full_path
        trainer = _trainer(model_dir, helpers.one_device(),
                           ["TrainLoop.num_steps = 1",
                            "GanSteps.ema_start_step = 1",
                            "GanSteps.ema_decay = 0.5"])
        trainer.train()  # step 0 < start: EMA = weights
        kernel = trainer.generator.linear.kernel.numpy()
        self.assertAllClose(trainer.generator_ema.linear.kernel.numpy(),
                            kernel)
        trainer.loop.num_steps = 2
        trainer.train()  # step 1 >= start: EMA = (old + new) / 2
        new_kernel = trainer.generator.linear.kernel.numpy()
        self.assertAllClose(trainer.generator_ema.linear.kernel.numpy(),
                            0.5 * kernel + 0.5 * new_kernel, atol=1e-6)
        self.assertAllEqual(trainer.generator_ema.linear.sn_u.numpy(),
                            trainer.generator.linear.sn_u.numpy())


class DistributedTrainerTest(tf.test.TestCase):

    def test_mirrored_matches_single_device_and_replicas_agree(self):
        bindings = ["TrainLoop.num_steps = 3", "GanSteps.ema_start_step = 1",
                    "GanSteps.ema_decay = 0.5"]
        single = _trainer(self.create_tempdir().full_path,
                          helpers.one_device(), bindings)
        initial = {name: _weights(getattr(single, name))
                   for name in ("generator", "discriminator",
                                "generator_ema")}
        single_metrics = single.train()

        strategy = helpers.two_replicas()
        mirrored = _trainer(self.create_tempdir().full_path, strategy,
                            bindings)
        for name, values in initial.items():
            _assign(getattr(mirrored, name), values)
        mirrored_metrics = mirrored.train()

        for name in ("d_loss", "g_loss", "d_loss_real", "d_loss_fake"):
            self.assertAllClose(single_metrics[name], mirrored_metrics[name],
                                atol=1e-3, rtol=1e-3, msg=name)
        for a, b in zip(_weights(single.generator_ema),
                        _weights(mirrored.generator_ema)):
            self.assertAllClose(a, b, atol=1e-3, rtol=1e-3)

        # Every replica holds the same BN statistics, SN vectors and EMA.
        checked = {"moving": 0, "sn_u": 0, "ema": 0}
        for w in mirrored.generator.weights + mirrored.discriminator.weights:
            key = ("moving" if "moving_" in w.path
                   else "sn_u" if w.path.endswith("sn_u") else None)
            if key:
                values = helpers.local_results(strategy, w)
                self.assertLen(values, 2)
                self.assertAllEqual(values[0], values[1], msg=w.path)
                checked[key] += 1
        for w in mirrored.generator_ema.weights:
            values = helpers.local_results(strategy, w)
            self.assertAllEqual(values[0], values[1], msg=w.path)
            checked["ema"] += 1
        self.assertGreater(min(checked.values()), 0, checked)


class TrainerErrorTest(tf.test.TestCase):

    def test_batch_not_divisible_by_replicas(self):
        with self.assertRaisesRegex(ValueError, "not divisible.*replicas"):
            _trainer(self.create_tempdir().full_path, helpers.two_replicas(),
                     ["GLOBAL_BATCH_SIZE = 5"])

    def test_batch_not_divisible_by_accumulation(self):
        with self.assertRaisesRegex(ValueError, "accumulation_steps"):
            _trainer(self.create_tempdir().full_path, helpers.one_device(),
                     ["GanSteps.accumulation_steps = 3"])

    def test_unknown_dataset(self):
        with self.assertRaisesRegex(ValueError, "fashion_mnist"):
            _trainer(self.create_tempdir().full_path, helpers.one_device(),
                     ["ImageDataset.name = 'mnist_typo'"])

    def test_bad_mixed_precision(self):
        with self.assertRaisesRegex(ValueError, "mixed_precision"):
            _trainer(self.create_tempdir().full_path, helpers.one_device(),
                     ["GanSteps.mixed_precision = 'fp8'"])


@pytest.mark.slow
class MixedPrecisionTest(tf.test.TestCase):

    def test_bfloat16_step_is_finite(self):
        trainer = _trainer(self.create_tempdir().full_path,
                           helpers.one_device(),
                           ["TrainLoop.num_steps = 1",
                            "GanSteps.mixed_precision = 'mixed_bfloat16'"])
        metrics = trainer.train()
        self.assertTrue(np.isfinite(metrics["g_loss"]))
        self.assertEqual(trainer.generator.linear.kernel.dtype, "float32")
