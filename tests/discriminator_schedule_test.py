"""The training D's schedule after PPCD's cut (`CompactPhase.
discriminator_interval`): which steps update D, what they report, where a
resumed run's data continues, and the refusals."""

import numpy as np
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.training import compact_phase
from ppcd_tf.training import gan_steps
from ppcd_tf.training import ppcd_trainer
from tests import helpers

CUT = 4  # prune_end_fraction 0.5 of 8 steps


def _steps(start, interval):
    steps = gan_steps.GanSteps(helpers.one_device(), seed=0, num_classes=2,
                               global_batch_size=4)
    steps.set_discriminator_schedule(start, interval)
    return steps.d_schedule


def _ppcd(model_dir, interval, strategy=None, extra=()):
    helpers.parse(["debug.gin", "stage/ppcd.gin"], list(
        helpers.TINY_BINDINGS) + [
            f"TEACHER_DIR = '{helpers.tiny_teacher_dir()}'",
            "TARGET_PARAM_RATIO = 0.5",
            "PruningBudget.min_channels = 1",
            "PruningPhase.prune_end_fraction = 0.5",
            "TrainLoop.num_steps = 8",
            "TrainLoop.sample_every = 0",
            f"CompactPhase.discriminator_interval = {interval}",
        ] + list(extra))
    return ppcd_trainer.PPCDTrainer(
        model_dir=model_dir, strategy=strategy or helpers.one_device())


def _d_weights(trainer):
    return [np.array(v.numpy()) for v in
            trainer.discriminator.trainable_variables]


def _equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _train_recording(trainer, num_steps):
    """Trains to `num_steps`; [(step, metrics, D weights)] after each
    compiled call (one step each: steps_per_loop = 1)."""
    record = []
    run_steps = trainer.run_steps

    def spy(iterator, k):
        metrics = run_steps(iterator, k)
        record.append((trainer.current_step(), metrics, _d_weights(trainer)))
        return metrics

    trainer.run_steps = spy
    trainer.loop.num_steps = num_steps
    trainer.train()
    return record


class ScheduleArithmeticTest(tf.test.TestCase):

    def test_which_steps_update_d(self):
        every = _steps(None, 3)
        self.assertTrue(all(every.updates(s) for s in range(9)))
        third = _steps(4, 3)
        self.assertEqual([s for s in range(12) if
                          third.updates(s)],
                         [0, 1, 2, 3, 4, 7, 10])
        never = _steps(4, 0)
        self.assertEqual([s for s in range(12) if
                          never.updates(s)], [0, 1, 2, 3])

    def test_data_position_counts_d_updating_steps(self):
        for start, interval in ((None, 1), (4, 1), (4, 3), (4, 0), (0, 2)):
            steps = _steps(start, interval)
            for step in range(14):
                self.assertEqual(
                    steps.updating_steps_before(step),
                    sum(steps.updates(s) for s in range(step)),
                    (start, interval, step))

    def test_bad_intervals_are_refused(self):
        for bad in (-1, 1.5):
            with self.assertRaisesRegex(errors.BadInputError, ">= 0"):
                _steps(4, bad)
        for bad in (-1, 1.5, True):
            with self.assertRaisesRegex(errors.BadInputError,
                                        "discriminator_interval"):
                compact_phase.CompactPhase(discriminator_interval=bad)

    def test_student_cams_need_the_training_d(self):
        with self.assertRaisesRegex(errors.BadInputError,
                                    "cam_discriminator = 'teacher'"):
            _ppcd(self.create_tempdir().full_path, 0, extra=[
                "PPCDTrainer.cam_discriminator = 'student'"])


class ScheduledTrainingTest(tf.test.TestCase):

    def test_no_d_after_the_cut(self):
        trainer = _ppcd(self.create_tempdir().full_path, 0)
        record = _train_recording(trainer, 8)
        self.assertEqual([step for step, _, _ in record], list(range(1, 9)))
        before_cut = [metrics for step, metrics, _ in record if step <= CUT]
        after_cut = [metrics for step, metrics, _ in record if step > CUT]
        for metrics in before_cut:
            self.assertIn("d_loss", metrics)
            self.assertNotEqual(metrics["g_loss_adversarial"], 0.0)
        for metrics in after_cut:
            self.assertNotIn("d_loss", metrics)
            self.assertEqual(metrics["g_loss_adversarial"], 0.0)
            self.assertGreater(metrics["g_loss_output_l1"], 0.0)
        weights = {step: w for step, _, w in record}
        self.assertFalse(_equal(weights[CUT - 1], weights[CUT]))
        for step in range(CUT + 1, 9):
            self.assertTrue(_equal(weights[CUT], weights[step]), step)
        self.assertTrue(trainer.compacted)
        self.assertEqual(trainer.steps.d_schedule.updating_steps_before(8), CUT)

    def test_every_second_step_on_two_replicas(self):
        trainer = _ppcd(self.create_tempdir().full_path, 2,
                        strategy=helpers.two_replicas())
        record = _train_recording(trainer, 7)
        weights = {step: w for step, _, w in record}
        metrics = {step: m for step, m, _ in record}
        # Steps 4 and 6 update D (ending at 5 and 7), step 5 does not.
        self.assertFalse(_equal(weights[CUT], weights[CUT + 1]))
        self.assertTrue(_equal(weights[CUT + 1], weights[CUT + 2]))
        self.assertFalse(_equal(weights[CUT + 2], weights[CUT + 3]))
        self.assertIn("d_loss", metrics[CUT + 1])
        self.assertNotIn("d_loss", metrics[CUT + 2])
        self.assertIn("d_loss", metrics[CUT + 3])
        for step in (CUT + 1, CUT + 2, CUT + 3):
            self.assertNotEqual(metrics[step]["g_loss_adversarial"], 0.0)
        # A resumed run reads its data after the 6 D-updating steps.
        self.assertEqual(trainer.steps.d_schedule.updating_steps_before(7), 6)


if __name__ == "__main__":
    tf.test.main()
