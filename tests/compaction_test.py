"""The switch to the compact student at the cut (issue: quality at ratio).

A PPCD run (tiny teacher of ppcd_test, 6 steps, cut at step 3) must: replace
the hard-masked student by the compact generator its masks define, equal to
it; carry Adam's moments sliced to the kept channels; record the cut in
pruning.json; checkpoint, resume, export, sample and evaluate the compact
student; and survive a kill between the switch and the next checkpoint.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf.exporting import pipeline
from ppcd_tf.exporting import saved_model
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import compaction
from ppcd_tf.pruning import schedules
from ppcd_tf.pruning import surgery
from ppcd_tf.runs import checkpointing
from ppcd_tf.runs import run_dir
from ppcd_tf.training import summaries
from tests import helpers
from tests import ppcd_test

NUM_STEPS = 6
CUT_STEP = 3
RUN = ["TrainLoop.num_steps = 6", "PruningPhase.prune_end_fraction = 0.5",
       "TrainLoop.checkpoint_every = 2"]


def _inputs(generator, batch=8):
    z = tf.random.stateless_normal((batch, generator.dim_z), (7, 7))
    labels = tf.range(batch, dtype=tf.int32) % generator.num_classes
    return z, labels


def _velocities(optimizer, variables):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return [inner._velocities[inner._get_variable_index(v)].numpy()
            for v in variables]


def _spy_switch(trainer):
    """Records, around the switch, the hard-masked and compact students'
    images for fixed inputs and both optimizers' second moments."""
    record = {}
    original = trainer.compact.switch_to_compact

    def spy(step):
        z, labels = _inputs(trainer.generator)
        keep = run_dir.full_keep(trainer.generator)
        keep.update({k: v.numpy() > 0 for k, v in
                     trainer.pruning.masks.logits.items()})
        masks = surgery.masks_from_keep(keep)
        record["masked_images"] = trainer.generator(
            z, labels, training=False, masks=masks, keep=masks).numpy()
        record["keep"] = keep
        record["masked_generator"] = trainer.generator
        record["masked_velocities"] = _velocities(
            trainer.g_optimizer, trainer.generator.trainable_variables)
        record["iterations"] = int(trainer.g_optimizer.iterations.numpy())
        original(step)
        record["step"] = step
        record["compact_images"] = trainer.generator(
            z, labels, training=False).numpy()
        record["compact_velocities"] = _velocities(
            trainer.g_optimizer, trainer.generator.trainable_variables)
        record["compact_iterations"] = int(
            trainer.g_optimizer.iterations.numpy())

    trainer.compact.switch_to_compact = spy
    return record


@pytest.mark.slow
class CompactSwitchTest(tf.test.TestCase):

    def test_switch_resume_export_and_readers(self):
        model_dir = self.create_tempdir().full_path
        trainer = ppcd_test._ppcd(model_dir, extra=RUN)
        full_channels = trainer.generator.channels
        record = _spy_switch(trainer)
        trainer.train()
        self.assertEqual(int(trainer.step.numpy()), NUM_STEPS)

        # The switch happened once, at the cut, and was exact.
        self.assertEqual(record["step"], CUT_STEP)
        self.assertTrue(trainer.compacted)
        self.assertIsNone(trainer.pruning.masks)
        self.assertAllClose(record["compact_images"],
                            record["masked_images"], atol=1e-4)
        # Adam's second moments: the kept slices of the masked student's.
        scratch = generator_lib.Generator.from_config(dict(
            record["masked_generator"].get_config(), name="scratch"))
        scratch.build()
        for variable, value in zip(scratch.trainable_variables,
                                   record["masked_velocities"]):
            variable.assign(value)
        sliced = surgery.build_compact(scratch, record["keep"])
        expected = [v.numpy() for v in sliced.trainable_variables]
        self.assertLen(record["compact_velocities"], len(expected))
        for got, want in zip(record["compact_velocities"], expected):
            self.assertAllEqual(got, want)
        self.assertGreater(sum(float(np.sum(v)) for v in expected), 0.0)
        self.assertEqual(record["compact_iterations"], record["iterations"])

        # The compact student has the budget's parameter count.
        kept = {k: int(v.sum()) for k, v in record["keep"].items()}
        live = trainer.pruning.architecture.live_parameters(kept)
        self.assertEqual(
            generator_lib.count_trainable_parameters(trainer.generator), live)
        self.assertLessEqual(live / trainer.pruning.full_params,
                             ppcd_test.TARGET_RATIO + 1e-7)
        self.assertAllClose(float(trainer.pruning.param_ratio().numpy()),
                            live / trainer.pruning.full_params)

        # The run's records: full config in models.json, the cut in
        # pruning.json, compact weights in the checkpoints after the cut.
        configs = run_dir.read_model_configs(model_dir)
        self.assertEqual(configs["generator"]["channels"],
                         full_channels.to_dict())
        structure = run_dir.read_pruning_structure(model_dir)
        self.assertEqual(structure["phase"], run_dir.PHASE_COMPACT)
        self.assertEqual(structure["cut_step"], CUT_STEP)
        self.assertEqual(structure["compact_channels"],
                         trainer.generator.channels.to_dict())
        for key, indices in structure["kept_indices"].items():
            self.assertEqual(indices,
                             np.flatnonzero(record["keep"][key]).tolist())
        # TensorBoard: the cut as a text table at the cut's step, and the
        # PPCD settings in the HParams session.
        events = helpers.read_events(os.path.join(model_dir, "train"),
                                     with_metadata=True)
        (step, plugin, table, _), = events["pruning/cut"]
        self.assertEqual((step, plugin), (CUT_STEP, "text"))
        table = table.item().decode()
        for key, indices in structure["kept_indices"].items():
            self.assertIn(f"| {key} | {len(indices)} |", table)
        self.assertIn(f"G parameters: {live:,} of "
                      f"{trainer.pruning.full_params:,}", table)
        self.assertEqual(events["custom_scalars__config__"][0][1],
                         "custom_scalars")
        # The teacher-vs-student grid is labelled: a header band over the
        # two halves and the class names in a margin.
        _, plugin, value, _ = events["samples/teacher_vs_student"][-1]
        self.assertEqual(plugin, "images")
        cell = trainer.resolution + summaries.GRID_PADDING
        self.assertEqual(
            [int(v) for v in value[:2]],
            [2 * trainer.samples.columns * cell + summaries.GRID_PADDING
             + summaries.LABEL_MARGIN_CHARS * summaries.LABEL_CHAR_WIDTH,
             trainer.samples.rows * cell + summaries.GRID_PADDING
             + summaries.LABEL_BAND])
        settings = helpers.session_hparams(events)
        self.assertEqual(settings["PruningPhase.mask_function"],
                         trainer.pruning.mask_function)
        self.assertIn("DistillationWeights.output_l1", settings)
        latest = run_dir.latest_checkpoint(model_dir)
        self.assertEqual(run_dir.checkpoint_step(latest), NUM_STEPS)
        shapes = dict(tf.train.list_variables(latest))
        stored = sum(int(np.prod(shape)) for name, shape in shapes.items()
                     if name.startswith("generator_ema/")
                     and name.endswith("VARIABLE_VALUE"))
        self.assertEqual(stored, sum(int(np.prod(v.shape)) for v in
                                     trainer.generator_ema.weights))
        self.assertFalse(any(name.startswith("channel_masks/")
                             for name in shapes))
        self.assertLess(stored, sum(int(np.prod(v.shape)) for v in
                                    record["masked_generator"].weights))

        # Resume: a new trainer builds the compact student and restores it.
        resumed = ppcd_test._ppcd(model_dir, extra=RUN)
        self.assertTrue(resumed.compacted)
        self.assertIsNone(resumed.pruning.masks)
        self.assertEqual(resumed.restore(), NUM_STEPS)
        for a, b in zip(trainer.generator_ema.weights,
                        resumed.generator_ema.weights):
            self.assertAllEqual(a.numpy(), b.numpy(), msg=a.path)
        for a, b in zip(_velocities(trainer.g_optimizer,
                                    trainer.generator.trainable_variables),
                        _velocities(resumed.g_optimizer,
                                    resumed.generator.trainable_variables)):
            self.assertAllEqual(a, b)
        del resumed

        # A save killed while writing the newest checkpoint's index (the
        # kill probe found it): the resume decides the phase from, and
        # restores, the newest readable checkpoint.
        damaged_dir = os.path.join(self.create_tempdir().full_path, "run")
        shutil.copytree(model_dir, damaged_dir)
        newest = run_dir.latest_checkpoint(damaged_dir)
        with open(newest + ".index", "r+b") as f:
            f.truncate(10)  # "file is too short to be an sstable"
        candidates = checkpointing.candidates(
            run_dir.checkpoint_dir(damaged_dir))
        older = run_dir.checkpoint_step(candidates[1])
        self.assertGreater(older, CUT_STEP)
        resumed = ppcd_test._ppcd(damaged_dir, extra=RUN)
        self.assertTrue(resumed.compacted)
        self.assertEqual(resumed.restore(), older)
        del resumed

        # The readers: restore_generator, export.
        z, labels = _inputs(trainer.generator_ema)
        want = trainer.generator_ema(z, labels, training=False).numpy()
        restored = run_dir.restore_generator(model_dir)
        self.assertEqual(restored.kind, "ppcd")
        self.assertIsNone(restored.keep)
        self.assertAllEqual(restored.generate(z, labels).numpy(), want)
        output = os.path.join(self.create_tempdir().full_path, "export")
        report = pipeline.export_run(model_dir, output)
        self.assertEqual(report["params"],
                         generator_lib.count_trainable_parameters(
                             trainer.generator))
        self.assertEqual(report["source_params"], trainer.pruning.full_params)
        self.assertEqual(report["step"], NUM_STEPS)
        with open(os.path.join(output, saved_model.ASSETS_DIR,
                               "metadata.json")) as f:
            metadata = json.load(f)
        self.assertEqual(metadata["source"]["kind"], "ppcd")
        self.assertTrue(metadata["source"]["trained_compact"])
        served = tf.saved_model.load(output).signatures["serving_default"]
        self.assertAllClose(served(z=z, labels=labels)["images"].numpy(),
                            want, atol=1e-5)
        kept_layers = {row["layer"]: row["kept"] for row in report["layers"]}
        self.assertEqual(kept_layers, kept)

    @pytest.mark.eager
    def test_kill_between_switch_and_next_checkpoint(self):
        model_dir = self.create_tempdir().full_path
        trainer = ppcd_test._ppcd(model_dir, extra=RUN)
        original = trainer.write_pruning_structure

        def killed_after_writing(cut_step, keep):
            original(cut_step, keep)
            if cut_step is not None:
                raise KeyboardInterrupt("killed during the switch")

        trainer.write_pruning_structure = killed_after_writing
        with self.assertRaises(KeyboardInterrupt):
            trainer.train()
        self.assertEqual(int(trainer.step.numpy()), CUT_STEP)
        first = run_dir.read_pruning_structure(model_dir)
        self.assertEqual(first["phase"], run_dir.PHASE_COMPACT)
        del trainer

        # pruning.json records the cut, but the newest checkpoint (step 3)
        # is the masked student before it: the resumed run restores that
        # and cuts again, to the same channels.
        resumed = ppcd_test._ppcd(model_dir, extra=RUN)
        self.assertFalse(resumed.compacted)
        self.assertIsNotNone(resumed.pruning.masks)
        resumed.train()
        self.assertEqual(int(resumed.step.numpy()), NUM_STEPS)
        self.assertTrue(resumed.compacted)
        self.assertEqual(run_dir.read_pruning_structure(model_dir), first)
        self.assertEqual(resumed.generator.channels.to_dict(),
                         first["compact_channels"])

    @pytest.mark.eager
    def test_fresh_optimizer_without_carry(self):
        trainer = ppcd_test._ppcd(
            self.create_tempdir().full_path,
            extra=RUN + ["CompactPhase.carry_optimizer_state = False"])
        record = _spy_switch(trainer)
        ppcd_test._train_to(trainer, CUT_STEP + 1)
        self.assertEqual(record["compact_iterations"], 0)
        for value in record["compact_velocities"]:
            self.assertAllEqual(value, np.zeros_like(value))

    def test_mask_state_and_compact_student_identical_across_replicas(self):
        """Two replicas: mask logits, bound, budget multiplier and the
        hardening agree before and at the cut; the compact student and its
        EMA copy agree after it."""
        strategy = helpers.two_replicas()
        trainer = ppcd_test._ppcd(
            self.create_tempdir().full_path, strategy,
            extra=["TrainLoop.num_steps = 3",
                   "PruningPhase.prune_end_fraction = 0.34"])
        self.assertEqual(trainer.steps.num_replicas, 2)
        self.assertEqual(trainer.pruning.prune_end_step, 1)

        def mask_state():
            variables = dict(trainer.pruning.masks.logits)
            variables.update(bound=trainer.pruning.masks.bound,
                             budget_lambda=trainer.pruning.budget_lambda,
                             hardened=trainer.pruning.hardened)
            state = {}
            for name, variable in variables.items():
                values = helpers.local_results(strategy, variable)
                self.assertLen(values, 2)
                self.assertAllEqual(values[0], values[1], msg=name)
                state[name] = values[0]
            return state

        at_cut = {}
        original = trainer.compact.switch_to_compact

        def spy(step):
            at_cut.update(mask_state())
            original(step)

        trainer.compact.switch_to_compact = spy
        ppcd_test._train_to(trainer, 1)
        self.assertFalse(bool(mask_state()["hardened"]))
        trainer.train()
        # Hardened on every replica before the switch: binary masks.
        self.assertTrue(bool(at_cut["hardened"]))
        self.assertEqual(float(at_cut["bound"]), 0.0)
        for key, value in at_cut.items():
            if key not in ("bound", "budget_lambda", "hardened"):
                self.assertAllEqual(np.abs(value), np.ones_like(value),
                                    msg=key)
        self.assertTrue(trainer.compacted)
        ratio = float(trainer.pruning.param_ratio().numpy())
        self.assertLessEqual(ratio, ppcd_test.TARGET_RATIO + 1e-7)
        self.assertLessEqual(abs(ratio / ppcd_test.TARGET_RATIO - 1.0),
                             ppcd_test.RATIO_RTOL)
        for model in (trainer.generator, trainer.generator_ema):
            for variable in model.weights:
                values = helpers.local_results(strategy, variable)
                self.assertLen(values, 2)
                self.assertAllEqual(values[0], values[1], msg=variable.path)


class CopyWeightsByNameTest(tf.test.TestCase):

    def _generator(self, name):
        generator = generator_lib.Generator.from_config(dict(
            run_dir.read_model_configs(
                ppcd_test._teacher_dir())["generator"], name=name))
        generator.build()
        return generator

    def test_copies_by_name_and_rejects_other_shapes(self):
        source = self._generator("source")
        for variable in source.trainable_variables:
            variable.assign(tf.random.normal(variable.shape))
        target = self._generator("target")
        compaction.copy_weights_by_name(source, target)
        for s, t in zip(source.weights, target.weights):
            self.assertAllEqual(s.numpy(), t.numpy())
        keep = run_dir.full_keep(source)
        first = sorted(keep)[0]
        keep[first][0] = False
        thinner = surgery.build_compact(source, keep, name="thin")
        with self.assertRaisesRegex(ValueError, "shapes differ"):
            compaction.copy_weights_by_name(source, thinner)


class RetrainScheduleTest(tf.test.TestCase):

    def test_factors(self):
        schedule = schedules.RetrainSchedule(
            g_lr_scale=2.0, d_lr_scale=0.5, decay="linear",
            final_fraction=0.1)
        # Before the cut: the optimizers' own rates.
        self.assertEqual(schedule.factor("g", 99, 100, 200), 1.0)
        self.assertEqual(schedule.factor("g", 100, 100, 200), 2.0)
        self.assertAllClose(schedule.factor("g", 150, 100, 200),
                            2.0 * (0.1 + 0.9 * 0.5))
        self.assertAllClose(schedule.factor("d", 200, 100, 200), 0.05)
        cosine = schedules.RetrainSchedule(decay="cosine")
        self.assertAllClose(cosine.factor("g", 150, 100, 200), 0.5)
        self.assertAllClose(cosine.factor("g", 200, 100, 200), 0.0)
        constant_d = schedules.RetrainSchedule(decay="linear",
                                               decay_discriminator=False)
        self.assertEqual(constant_d.factor("d", 190, 100, 200), 1.0)

    def test_bad_arguments(self):
        with self.assertRaisesRegex(ValueError, "decay"):
            schedules.RetrainSchedule(decay="step")
        with self.assertRaisesRegex(ValueError, "final_fraction"):
            schedules.RetrainSchedule(final_fraction=1.5)
        with self.assertRaisesRegex(ValueError, "g_lr_scale"):
            schedules.RetrainSchedule(g_lr_scale=0.0)
