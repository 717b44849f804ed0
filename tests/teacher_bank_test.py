"""The teacher bank (`distill.bank.TeacherBank`): what it holds, how G steps
draw from it, that banked distillation terms equal the live teacher's, and
a PPCD run that trains from it."""

import shutil
import tempfile
import traceback

import numpy as np
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.distill import bank as bank_lib
from ppcd_tf.distill import losses
from ppcd_tf.training import ppcd_trainer
from tests import helpers

BANK_SIZE = 24


def _ppcd(model_dir, bank_size, steps=4, strategy=None):
    helpers.parse(["debug.gin", "stage/ppcd.gin"], list(
        helpers.TINY_BINDINGS) + [
            f"TEACHER_DIR = '{helpers.tiny_teacher_dir()}'",
            "TARGET_PARAM_RATIO = 0.5",
            "PruningBudget.min_channels = 1",
            f"TrainLoop.num_steps = {steps}",
            "TrainLoop.sample_every = 0",
            f"TeacherBank.size = {bank_size}",
            "TeacherBank.build_batch = 10",  # the last batch is partial
        ])
    return ppcd_trainer.PPCDTrainer(
        model_dir=model_dir, strategy=strategy or helpers.one_device())


class TeacherBankTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp(prefix="ppcd_bank_")
        cls.trainer = _ppcd(cls.root + "/run", BANK_SIZE)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def test_holds_the_teachers_outputs(self):
        bank, teacher = self.trainer.bank, self.trainer.teacher_generator
        self.assertEqual(bank.z.shape, (BANK_SIZE, teacher.dim_z))
        self.assertEqual(bank.labels.shape, (BANK_SIZE,))
        self.assertGreater(len(set(bank.labels.numpy().tolist())), 1)
        images, features = teacher(bank.z, bank.labels, training=False,
                                   return_features=True)
        self.assertAllClose(bank.images, images, atol=1e-6)
        self.assertEqual(sorted(bank.grids), sorted(features))
        for name, value in features.items():
            self.assertEqual(bank.grids[name].shape[-1], 1)
            self.assertAllClose(bank.grids[name],
                                losses.attention_grid(value), atol=1e-6,
                                msg=name)

    def test_same_bank_from_the_same_seed(self):
        again = bank_lib.TeacherBank(size=BANK_SIZE, build_batch=7)
        again.build(self.trainer.teacher_generator)
        self.assertAllEqual(again.z, self.trainer.bank.z)
        self.assertAllEqual(again.labels, self.trainer.bank.labels)
        # Built in batches of 7 instead of 10: the same images up to the
        # rounding of other batch shapes and thread splits (1.2e-6 seen).
        self.assertAllClose(again.images, self.trainer.bank.images,
                            atol=1e-5)

    def test_draws_per_step_and_replica_slices(self):
        bank = self.trainer.bank

        def draw(step, global_batch, per_replica):
            return bank.replica_draw(tf.constant(step, tf.int64),
                                     global_batch, per_replica)

        z0, labels0, teacher0 = draw(3, 8, 8)
        z0b, _, _ = draw(3, 8, 8)
        z1, _, _ = draw(4, 8, 8)
        self.assertAllEqual(z0, z0b)
        self.assertNotAllClose(z0, z1)
        # Each row is a bank row with its own label and teacher outputs.
        rows = [int(np.argmin(np.abs(bank.z.numpy() - row).sum(axis=1)))
                for row in z0.numpy()]
        self.assertAllEqual(labels0, tf.gather(bank.labels, rows))
        self.assertAllEqual(teacher0["images"], tf.gather(bank.images, rows))
        # Two replicas take consecutive halves of the same global draw.
        strategy = helpers.two_replicas()
        halves = strategy.experimental_local_results(strategy.run(
            lambda: draw(3, 8, 4)[0]))
        self.assertAllEqual(tf.concat(halves, 0), z0)

    def test_banked_terms_equal_the_live_teachers(self):
        trainer = self.trainer
        z, labels, banked = trainer.bank.replica_draw(
            tf.constant(0, tf.int64), 4, 4)
        # Batch statistics: the student (a copy of the teacher) differs.
        fake, student_features = trainer.generator(
            z, labels, training=True, return_features=True)
        distillation = trainer.objective
        args = (z, labels, 0, fake, student_features, None,
                trainer.discriminator, tf.reduce_sum)
        live = distillation.terms(*args)
        from_bank = distillation.terms(*args, banked=banked)
        self.assertEqual(sorted(live), sorted(from_bank))
        for name in live:
            self.assertGreater(float(live[name]), 0.0, name)
            self.assertAllClose(live[name], from_bank[name], rtol=1e-4,
                                msg=name)

    def test_trains_from_the_bank(self):
        trainer = self.trainer
        calls = []
        teacher_call = trainer.teacher_generator.call

        def spy(*args, **kwargs):
            # Calls from a G step (not the run's final sample grid).
            calls.extend(frame.name for frame in traceback.extract_stack()
                         if frame.name == "g_replica_step")
            return teacher_call(*args, **kwargs)

        trainer.teacher_generator.call = spy
        try:
            metrics = trainer.train()
        finally:
            trainer.teacher_generator.call = teacher_call
        self.assertEqual(int(trainer.step.numpy()), 4)
        self.assertTrue(trainer.compacted)
        self.assertGreater(metrics["g_loss_output_l1"], 0.0)
        self.assertGreater(metrics["g_loss_attention"], 0.0)
        # The G steps took the teacher's outputs from the bank: the teacher
        # G was never traced into a G step.
        self.assertEmpty(calls)


class TeacherBankSettingsTest(tf.test.TestCase):

    def test_bad_settings_are_refused(self):
        for kwargs in ({"size": -1}, {"size": 2.5}, {"build_batch": 0},
                       {"size": True}):
            with self.assertRaisesRegex(errors.BadInputError,
                                        "TeacherBank"):
                bank_lib.TeacherBank(**kwargs)

    def test_no_bank_by_default(self):
        bank = bank_lib.TeacherBank()
        self.assertFalse(bank.enabled)
        bank.build(None)  # nothing to build
        self.assertIsNone(bank.images)


if __name__ == "__main__":
    tf.test.main()
