"""PPCDTrainer: teacher copy, pruning to the budget, hardening, resume,
ablations, distribution and errors (DESIGN.md sections 4.2-4.5).

A tiny teacher (debug.gin, ch 4) is trained once per module; every PPCD run
starts from it.
"""

import dataclasses
import functools
import glob
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf import errors
from ppcd_tf.distill import losses as distill_losses
from ppcd_tf.models import complexity
from ppcd_tf.models import discriminator as discriminator_lib
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.models import latency
from ppcd_tf.models import layers
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import compaction
from ppcd_tf.pruning import surgery
from ppcd_tf.runs import run_dir
from ppcd_tf.training import ppcd_trainer
from ppcd_tf.workflows import latency_table
from tests import helpers

TARGET_RATIO = 0.5
# The hardened count is within the target and at most one channel's cost
# below it; one channel of the ch-4 model is <= ~1.5% of its parameters.
RATIO_RTOL = 0.03
ABLATIONS = sorted(
    os.path.relpath(path, helpers.GIN_DIR) for path in glob.glob(
        os.path.join(helpers.GIN_DIR, "stage", "ablation_*.gin")))


def _teacher_dir():
    """The session's tiny teacher (2 steps, its EMA differs from its G)."""
    return helpers.tiny_teacher_dir()


def _bindings(teacher_dir, extra=()):
    return list(helpers.TINY_BINDINGS) + [
        f"TEACHER_DIR = '{teacher_dir}'",
        f"TARGET_PARAM_RATIO = {TARGET_RATIO}",
        "PruningBudget.min_channels = 1",
        "PruningPhase.prune_end_fraction = 0.5",
        "TrainLoop.checkpoint_every = 2",
        "TrainLoop.sample_every = 0",
    ] + list(extra)


def _ppcd(model_dir, strategy=None, extra=(), files=()):
    helpers.parse(["debug.gin", "stage/ppcd.gin"] + list(files),
                  _bindings(_teacher_dir(), extra))
    return ppcd_trainer.PPCDTrainer(
        model_dir=model_dir, strategy=strategy or helpers.one_device())


def _train_to(trainer, step):
    """Trains to `step` (< trainer.num_steps allowed), then restores it."""
    num_steps = trainer.loop.num_steps
    trainer.loop.num_steps = step
    try:
        trainer.train()
    finally:
        trainer.loop.num_steps = num_steps
    assert int(trainer.step.numpy()) == step


def _eager_steps(trainer, num_steps):
    """Runs G steps eagerly, as `Trainer.train` does but without tracing
    the compiled loop (~1 s per step instead of ~15 s of tracing on CPU).
    Returns the last step's loss terms."""
    iterator = trainer.make_iterator(int(trainer.step.numpy()))
    terms = {}
    for _ in range(num_steps):
        trainer.begin_loop(trainer.current_step())
        terms, _ = trainer.steps.one_step(iterator)
    return {name: float(value) for name, value in terms.items()}


def _logits(trainer):
    return {k: v.numpy().copy() for k, v in trainer.pruning.masks.logits.items()}


def _teacher_models():
    """(G, EMA G, D) restored from the teacher's checkpoint."""
    with open(os.path.join(_teacher_dir(), "models.json")) as f:
        configs = json.load(f)
    g = generator_lib.Generator.from_config(
        dict(configs["generator"], name="t_g"))
    ema = generator_lib.Generator.from_config(
        dict(configs["generator"], name="t_ema"))
    d = discriminator_lib.Discriminator.from_config(
        dict(configs["discriminator"], name="t_d"))
    for model in (g, ema, d):
        model.build()
    path = tf.train.latest_checkpoint(
        os.path.join(_teacher_dir(), "checkpoints"))
    tf.train.Checkpoint(generator=g, generator_ema=ema,
                        discriminator=d).restore(path).expect_partial() \
        .assert_existing_objects_matched()
    return g, ema, d


@pytest.mark.slow  # (the first test of the module trains the teacher)
def _normalized_weight(layer):
    """weight / sigma of an SN layer at inference, numpy."""
    if hasattr(layer, "embeddings"):
        return layer._normalized_table(False).numpy()  # pylint: disable=protected-access
    return layer._normalized(layer.kernel, False).numpy()  # pylint: disable=protected-access


class StudentInitTest(tf.test.TestCase):

    def test_student_is_teacher_ema_copy_and_d_is_teacher_d(self):
        teacher_g, teacher_ema, teacher_d = _teacher_models()
        trainer = _ppcd(self.create_tempdir().full_path,
                        extra=["TrainLoop.num_steps = 8"])
        # The teacher's EMA is not its G (else this test proves nothing).
        self.assertNotAllClose(teacher_g.linear.kernel.numpy(),
                               teacher_ema.linear.kernel.numpy())
        pairs = ((teacher_ema, trainer.generator),
                 (teacher_ema, trainer.generator_ema),
                 (teacher_ema, trainer.teacher_generator),
                 (teacher_d, trainer.discriminator),
                 (teacher_d, trainer.teacher_discriminator))
        frozen = (trainer.teacher_generator, trainer.teacher_discriminator)
        for src, dst in pairs:
            self.assertLen(dst.weights, len(src.weights))
            normalized = {}
            if dst in frozen:  # Its SN weights hold weight / sigma.
                for layer in layers.spectral_norm_layers(src):
                    weight = (layer.embeddings if hasattr(layer, "embeddings")
                              else layer.kernel)
                    normalized[weight.path.split("/", 1)[1]] = (
                        _normalized_weight(layer))
            for s, d in zip(src.weights, dst.weights):
                path = s.path.split("/", 1)[1]
                self.assertEqual(path, d.path.split("/", 1)[1])
                if path in normalized:
                    self.assertAllClose(normalized[path], d.numpy(),
                                        atol=1e-7, msg=d.path)
                else:
                    self.assertAllEqual(s.numpy(), d.numpy(), msg=d.path)
        # The student copied the raw weights, before the teacher froze.
        self.assertNotAllClose(trainer.generator.linear.kernel.numpy(),
                               trainer.teacher_generator.linear.kernel.numpy())
        for model in frozen:
            self.assertTrue(all(layer.serving_frozen for layer in
                                layers.spectral_norm_layers(model)))
        # Frozen, the teacher computes what it computed before.
        z = tf.random.stateless_normal((4, teacher_ema.dim_z), (3, 4))
        labels = tf.constant([0, 1, 2, 3])
        images = teacher_ema(z, labels, training=False)
        self.assertAllClose(
            images, trainer.teacher_generator(z, labels, training=False),
            atol=1e-5)
        want, want_features = teacher_d(images, labels, training=False,
                                        return_features=True)
        got, got_features = trainer.teacher_discriminator(
            images, labels, training=False, return_features=True)
        self.assertAllClose(want, got, atol=1e-5)
        for name in want_features:
            self.assertAllClose(want_features[name], got_features[name],
                                atol=1e-5, msg=name)
        # Masks start open: every mask value is 1 at the initial bound.
        for key, value in trainer.pruning.masks().items():
            self.assertAllEqual(value.numpy(), np.ones_like(value.numpy()),
                                msg=key)
        self.assertFalse(bool(trainer.pruning.hardened.numpy()))
        self.assertEqual(float(trainer.pruning.budget_lambda.numpy()), 0.0)
        self.assertEqual(trainer.pruning.prune_end_step, 4)
        # Teacher is frozen; the student and the masks train.
        self.assertEmpty(trainer.teacher_generator.trainable_variables)
        self.assertEmpty(trainer.teacher_discriminator.trainable_variables)


@pytest.mark.slow
class PPCDRunTest(tf.test.TestCase):

    def test_prunes_to_budget_hardens_freezes_and_resumes(self):
        # The masked student is trained on after hardening (the option
        # without the switch to the compact student, see compaction_test).
        model_dir = self.create_tempdir().full_path
        masked = ["TrainLoop.num_steps = 8",
                  "CompactPhase.train_compact_after_cut = False"]
        trainer = _ppcd(model_dir, extra=masked)
        self.assertEqual(trainer.pruning.prune_end_step, 4)
        initial = _logits(trainer)
        hardened_logits = []
        original_harden = trainer.pruning.harden

        def spy_harden():
            original_harden()
            hardened_logits.append(_logits(trainer))

        trainer.pruning.harden = spy_harden

        # Pruning phase: soft masks, lambda controller running.
        _train_to(trainer, 4)
        self.assertEmpty(hardened_logits)
        self.assertFalse(bool(trainer.pruning.hardened.numpy()))
        mid_logits = _logits(trainer)
        # Checked last (so that the rest still runs): the logits must move
        # during the pruning phase, else hardening ranks identical logits.
        logits_moved = any(np.any(mid_logits[k] != initial[k])
                           for k in initial)
        mid_lambda = float(trainer.pruning.budget_lambda.numpy())
        self.assertGreater(mid_lambda, 0.0)  # over budget during the ramp
        mid_bound = float(trainer.pruning.masks.bound.numpy())
        self.assertGreater(mid_bound, 0.0)

        # Resume mid-pruning: a second trainer restores everything.
        resumed = _ppcd(model_dir, extra=masked)
        self.assertEqual(resumed.restore(), 4)
        for key, value in mid_logits.items():
            self.assertAllEqual(resumed.pruning.masks.logits[key].numpy(), value)
        self.assertEqual(float(resumed.pruning.budget_lambda.numpy()), mid_lambda)
        self.assertEqual(float(resumed.pruning.masks.bound.numpy()), mid_bound)
        self.assertFalse(bool(resumed.pruning.hardened.numpy()))
        del resumed

        # Hardening at the start of step 4, then 4 steps of the hard student.
        g_before = trainer.generator.blocks[0].conv1.kernel.numpy().copy()
        trainer.train()
        self.assertEqual(int(trainer.step.numpy()), 8)
        self.assertLen(hardened_logits, 1)
        self.assertTrue(bool(trainer.pruning.hardened.numpy()))
        self.assertEqual(float(trainer.pruning.masks.bound.numpy()), 0.0)
        self.assertEqual(float(trainer.pruning.budget_lambda.numpy()), 0.0)
        final = _logits(trainer)
        for key, value in final.items():
            self.assertAllEqual(value, hardened_logits[0][key], msg=key)
            self.assertAllEqual(np.abs(value), np.ones_like(value), msg=key)
            mask = trainer.pruning.masks()[key].numpy()
            self.assertAllEqual(mask, (value > 0).astype(np.float32))
        # The student kept training after hardening.
        self.assertNotAllClose(
            trainer.generator.blocks[0].conv1.kernel.numpy(), g_before)

        # The budget: within the target, close to it, floors kept.
        kept = trainer.pruning.kept_channels()
        for key, count in kept.items():
            self.assertGreaterEqual(count, trainer.pruning.floors[key], key)
            self.assertGreaterEqual(trainer.pruning.floors[key], 1)
        ratio = float(trainer.pruning.param_ratio().numpy())
        self.assertLessEqual(ratio, TARGET_RATIO + 1e-7)
        self.assertLessEqual(abs(ratio / TARGET_RATIO - 1.0), RATIO_RTOL)
        self.assertLess(sum(kept.values()), sum(
            channel_masks.mask_widths(trainer.generator.channels).values()))
        # The compact generator the exporter builds has exactly that many
        # parameters.
        compact = generator_lib.Generator.from_config(dict(
            trainer.generator.get_config(), name="compact",
            channels=trainer.pruning.compact_channel_config()))
        compact.build()
        self.assertEqual(
            generator_lib.count_trainable_parameters(compact),
            round(ratio * trainer.pruning.full_params))
        self.assertEqual(trainer.pruning.full_params,
                         generator_lib.count_trainable_parameters(
                             trainer.generator))

        # Resume after hardening.
        resumed = _ppcd(model_dir, extra=masked)
        self.assertEqual(resumed.restore(), 8)
        self.assertTrue(bool(resumed.pruning.hardened.numpy()))
        self.assertEqual(float(resumed.pruning.masks.bound.numpy()), 0.0)
        self.assertEqual(float(resumed.pruning.budget_lambda.numpy()), 0.0)
        for key, value in final.items():
            self.assertAllEqual(resumed.pruning.masks.logits[key].numpy(), value)
        # Nothing is hardened again on resume (already at num_steps).
        resumed.pruning.harden = lambda: self.fail("hardened twice")
        self.assertEqual(resumed.train(), {})

        self.assertTrue(
            logits_moved,
            "Mask logits did not change in the whole pruning phase (e.g. "
            "mask_init on the edge of both the smooth-step band (w >= b: "
            "slope 0) and the budget surrogate band (|w| < width, strict)).")


@pytest.mark.slow
class AblationTest(tf.test.TestCase, parameterized.TestCase):

    def test_ablation_files_exist(self):
        self.assertContainsSubset(
            {"stage/ablation_no_masks.gin",
             "stage/ablation_uniform_pruning.gin",
             "stage/ablation_no_distillation.gin",
             "stage/ablation_no_class_aware.gin",
             "stage/ablation_attention_only.gin"}, set(ABLATIONS))

    @parameterized.named_parameters(
        *[(os.path.splitext(os.path.basename(path))[0], path)
          for path in ABLATIONS])
    def test_builds_and_trains(self, relpath):
        # (The compiled loop of every ablation file is exercised by
        # gin_configs_test; here the steps run eagerly to save tracing.)
        trainer = _ppcd(self.create_tempdir().full_path, files=[relpath],
                        extra=["TrainLoop.num_steps = 2"])
        g_before = trainer.generator.output_conv.kernel.numpy().copy()
        metrics = _eager_steps(trainer, 2)
        self.assertEqual(int(trainer.step.numpy()), 2)
        self.assertNotAllClose(trainer.generator.output_conv.kernel.numpy(),
                               g_before)
        self.assertTrue(all(np.isfinite(v) for v in metrics.values()),
                        metrics)
        name = os.path.basename(relpath)
        weights = trainer.weights
        if name == "ablation_no_masks.gin":
            self.assertIsNone(trainer.pruning.masks)
            student = generator_lib.count_trainable_parameters(
                trainer.generator)
            teacher = trainer.pruning.full_params  # (the teacher is frozen)
            self.assertEqual(teacher, sum(
                int(np.prod(w.shape)) for w in
                trainer.teacher_generator.weights
                if "moving_" not in w.path and "sn_u" not in w.path))
            self.assertLessEqual(student, TARGET_RATIO * teacher)
            # Uniform widths are coarse at ch 4, but not far off.
            self.assertGreater(student, 0.7 * TARGET_RATIO * teacher)
            self.assertAllClose(metrics["info_param_ratio"],
                                student / teacher, rtol=1e-5)
            widths = channel_masks.mask_widths(trainer.generator.channels)
            full = channel_masks.mask_widths(
                trainer.teacher_generator.channels)
            fractions = [widths[k] / full[k] for k in full]
            self.assertLessEqual(max(fractions) - min(fractions),
                                 max(1.0 / full[k] for k in full) + 1e-9)
            # The run directory reads the thin student back as trained
            # (models.json holds it; there are no masks and no cut).
            trainer.write_model_configs()
            trainer.checkpointer.save(2)
            restored = run_dir.restore_generator(trainer.model_dir)
            self.assertEqual(restored.generator.channels,
                             trainer.generator_ema.channels)
            z = tf.random.stateless_normal((4, trainer.generator.dim_z),
                                           (0, 1))
            labels = tf.range(4) % trainer.generator.num_classes
            self.assertAllClose(
                restored.generator(z, labels, training=False),
                trainer.generator_ema(z, labels, training=False), atol=1e-6)
        elif name == "ablation_uniform_pruning.gin":
            self.assertTrue(bool(trainer.pruning.hardened.numpy()))
            kept = trainer.pruning.kept_channels()
            widths = channel_masks.mask_widths(trainer.generator.channels)
            ratio = float(trainer.pruning.param_ratio().numpy())
            self.assertLessEqual(ratio, TARGET_RATIO + 1e-7)
            free = [k for k in kept if kept[k] > trainer.pruning.floors[k]]
            self.assertNotEmpty(free)
            # One fraction f with kept == floor(f * width): +-1 channel.
            low = max(kept[k] / widths[k] for k in free)
            high = min((kept[k] + 1) / widths[k] for k in free)
            self.assertLess(low, high, kept)
            for key in kept:
                self.assertLessEqual(abs(kept[key] - low * widths[key]),
                                     max(1.0, trainer.pruning.floors[key]), key)
        elif name == "ablation_no_distillation.gin":
            self.assertEqual((weights.attention, weights.class_aware,
                              weights.output_l1), (0.0, 0.0, 0.0))
            for term in ("g_loss_attention", "g_loss_class_aware",
                         "g_loss_output_l1"):
                self.assertEqual(metrics[term], 0.0, term)
        elif name == "ablation_no_class_aware.gin":
            self.assertEqual(weights.class_aware, 0.0)
            self.assertEqual(metrics["g_loss_class_aware"], 0.0)
            self.assertGreater(metrics["g_loss_output_l1"], 0.0)
        elif name == "ablation_attention_only.gin":
            self.assertEqual((weights.class_aware, weights.output_l1),
                             (0.0, 0.0))
            self.assertEqual(metrics["g_loss_output_l1"], 0.0)
            self.assertGreater(weights.attention, 0.0)

    def test_teacher_d_feature_matching_term(self):
        trainer = _ppcd(self.create_tempdir().full_path,
                        extra=["TrainLoop.num_steps = 2",
                               "DistillationWeights.d_features = 2.0"])
        self.assertIn("g_loss_d_features", trainer.steps.metric_names())
        metrics = _eager_steps(trainer, 1)
        self.assertGreater(metrics["g_loss_d_features"], 0.0)
        # The term is the weight times the per-example loss over the batch.
        z = tf.random.normal((4, trainer.dim_z))
        labels = tf.constant([0, 1, 2, 3])
        fake = trainer.generate(z, labels, training=False)
        teacher_images, _ = trainer.objective.teacher_outputs(z, labels)
        teacher_half, student_half = trainer.objective.teacher_d_features(
            fake, teacher_images, labels)
        expected = distill_losses.feature_matching_loss(
            student_half["blocks"], teacher_half["blocks"])
        self.assertEqual(len(student_half["blocks"]),
                         len(trainer.teacher_discriminator.blocks))
        self.assertAllGreater(expected, 0.0)

    def test_teacher_d_passes_equal_one_pass_over_both_halves(self):
        """The teacher D runs once per half (the teacher half without a
        gradient): the features and the student's gradient equal those of
        one pass over the concatenated batch."""
        trainer = _ppcd(self.create_tempdir().full_path,
                        extra=["TrainLoop.num_steps = 2",
                               "DistillationWeights.d_features = 2.0"])
        objective = trainer.objective
        labels = tf.constant([0, 1, 2, 3])
        # The student starts as the teacher: from the teacher's z its
        # features would equal the teacher's up to rounding (a loss of ~0,
        # whose gradient is rounding noise). Another z makes them differ.
        z = tf.random.normal((4, trainer.dim_z), seed=3)
        teacher_images, _ = objective.teacher_outputs(
            tf.random.normal((4, trainer.dim_z), seed=4), labels)
        variables = trainer.generator.trainable_variables

        def one_pass_blocks(fake):
            _, feats = trainer.teacher_discriminator(
                tf.concat([teacher_images, fake], axis=0),
                tf.concat([labels, labels], axis=0), training=False,
                return_features=True)
            halves = [tf.split(block, 2, axis=0) for block in feats["blocks"]]
            return [h[0] for h in halves], [h[1] for h in halves]

        def two_pass_blocks(fake):
            teacher_half, student_half = objective.teacher_d_features(
                fake, teacher_images, labels)
            return teacher_half["blocks"], student_half["blocks"]

        results = []
        for blocks_fn in (one_pass_blocks, two_pass_blocks):
            with tf.GradientTape() as tape:
                fake = trainer.generate(z, labels, training=False)
                teacher_blocks, student_blocks = blocks_fn(fake)
                loss = tf.reduce_sum(distill_losses.feature_matching_loss(
                    student_blocks, teacher_blocks))
            results.append((loss, teacher_blocks,
                            tape.gradient(loss, variables)))
        (loss_a, blocks_a, grads_a), (loss_b, blocks_b, grads_b) = results
        self.assertGreater(loss_a, 1e-2)
        self.assertAllClose(loss_a, loss_b, rtol=1e-5)
        for block_a, block_b in zip(blocks_a, blocks_b):
            self.assertAllClose(block_a, block_b, atol=1e-5)
        compared = 0
        for grad_a, grad_b in zip(grads_a, grads_b):
            if grad_a is None:
                self.assertIsNone(grad_b)
                continue
            # (Embedding gradients are IndexedSlices.)
            np.testing.assert_allclose(
                tf.convert_to_tensor(grad_a).numpy(),
                tf.convert_to_tensor(grad_b).numpy(), rtol=1e-4, atol=1e-6)
            compared += 1
        self.assertGreater(compared, 10)


@pytest.mark.slow
class PPCDMultiBudgetTest(tf.test.TestCase):

    def test_mac_budget_and_width_multiple_hold_at_the_cut(self):
        """With a MAC budget beside the parameter budget and kept counts in
        multiples of 4, the cut meets both targets with such counts, the MAC
        multiplier is checkpointed and the history records the MAC ratio."""
        model_dir = self.create_tempdir().full_path
        trainer = _ppcd(model_dir, extra=[
            "TrainLoop.num_steps = 4", "TARGET_MAC_RATIO = 0.3",
            "PruningBudget.width_multiple = 4",
            "CompactPhase.train_compact_after_cut = False"])
        self.assertEqual([limit.name for limit in trainer.pruning.controller.limits],
                         ["params", "macs"])
        self.assertIn("budget_lambda_macs", trainer.checkpoint_items())
        _eager_steps(trainer, 2)
        # Both quantities are above their lines during the ramp: both
        # multipliers push.
        for name in ("params", "macs"):
            self.assertGreater(
                float(trainer.pruning.controller.lambdas[name].numpy()), 0.0, name)
        trainer.step.assign(trainer.pruning.prune_end_step)
        trainer.begin_loop(trainer.current_step())
        self.assertTrue(bool(trainer.pruning.hardened.numpy()))
        kept = trainer.pruning.kept_channels()
        ratios = trainer.pruning.budget_ratios()
        self.assertLessEqual(ratios["params"], TARGET_RATIO + 1e-7)
        self.assertLessEqual(ratios["macs"], 0.3 + 1e-7)
        widths = channel_masks.mask_widths(trainer.generator.channels)
        for key, count in kept.items():
            self.assertTrue(count % 4 == 0 or count == widths[key],
                            (key, count))
        for variable in trainer.pruning.controller.lambdas.values():
            self.assertEqual(float(variable.numpy()), 0.0)
        trainer.pruning.write_summaries(trainer.pruning.prune_end_step)
        history = run_dir.read_pruning_history(model_dir)
        self.assertAllClose(history[-1]["macs_ratio"], ratios["macs"])

    def test_latency_budget_holds_at_the_cut(self):
        """A latency budget from a table measured here (beside the parameter
        budget, widths in multiples of 4): the multiplier pushes during the
        ramp and the cut meets the predicted-latency target."""
        model_dir = self.create_tempdir().full_path
        teacher = run_dir.restore_generator(_teacher_dir()).generator
        measured = latency_table.measure_table(
            teacher, batch_size=2, grid_step=8, min_width=4, repeats=1,
            calls=1)
        # The measured structure with deterministic seconds (the product of
        # each grid point's widths, in microseconds), so that the floors'
        # share of the full latency does not depend on this machine's noise.
        def synthetic(grid):
            widths = np.ix_(*[np.asarray(g, float) for g in grid])
            return (functools.reduce(np.multiply, widths) * 1e-6).tolist()
        terms = [dataclasses.replace(term, seconds=synthetic(term.grid))
                 for term in measured.terms]
        table = latency.LatencyTable(terms, 0.0, measured.batch_size,
                                     measured.generator, 0.0)
        table_path = os.path.join(self.create_tempdir().full_path,
                                  "latency.json")
        table.write(table_path)
        trainer = _ppcd(model_dir, extra=[
            "TrainLoop.num_steps = 4", "TARGET_LATENCY_RATIO = 0.6",
            f"LATENCY_TABLE = '{table_path}'",
            "PruningBudget.width_multiple = 4",
            "CompactPhase.train_compact_after_cut = False"])
        self.assertEqual([limit.name for limit in trainer.pruning.controller.limits],
                         ["params", "latency"])
        _eager_steps(trainer, 2)
        self.assertGreater(
            float(trainer.pruning.controller.lambdas["latency"].numpy()), 0.0)
        trainer.step.assign(trainer.pruning.prune_end_step)
        trainer.begin_loop(trainer.current_step())
        self.assertTrue(bool(trainer.pruning.hardened.numpy()))
        ratios = trainer.pruning.budget_ratios()
        self.assertLessEqual(ratios["params"], TARGET_RATIO + 1e-7)
        self.assertLessEqual(ratios["latency"], 0.6 + 1e-7)
        kept = trainer.pruning.kept_channels()
        widths = channel_masks.mask_widths(trainer.generator.channels)
        for key, count in kept.items():
            self.assertTrue(count % 4 == 0 or count == widths[key],
                            (key, count))

    def test_latency_budget_needs_a_table(self):
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      _bindings(_teacher_dir(), [
                          "TrainLoop.num_steps = 2",
                          "TARGET_LATENCY_RATIO = 0.5"]))
        with self.assertRaisesRegex(errors.BadInputError, "latency_table"):
            ppcd_trainer.PPCDTrainer(
                model_dir=self.create_tempdir().full_path,
                strategy=helpers.one_device())
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      _bindings(_teacher_dir(), [
                          "TrainLoop.num_steps = 2",
                          "TARGET_LATENCY_RATIO = 0.5",
                          "LATENCY_TABLE = '/nonexistent/latency.json'"]))
        with self.assertRaisesRegex(errors.MissingInputError,
                                    "tools/latency_table.py"):
            ppcd_trainer.PPCDTrainer(
                model_dir=self.create_tempdir().full_path,
                strategy=helpers.one_device())


def _largest_activation(generator, keep):
    """The largest |activation| of the hard-masked generator's taps."""
    masks = surgery.masks_from_keep(keep)
    z = tf.random.stateless_normal((16, generator.dim_z), (5, 6))
    labels = tf.range(16) % generator.num_classes
    _, features = generator(z, labels, training=False, masks=masks,
                            keep=masks, return_features=True)
    return max(float(tf.reduce_max(tf.abs(f))) for f in features.values())


class HardeningTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(("one_device", helpers.one_device),
                                    ("two_replicas", helpers.two_replicas))
    def test_top_up_resets_the_statistics_reopened_channels_feed(
            self, make_strategy):
        """Masks below the budget are topped up with their best closed
        channels; a closed stream channel fed zeros to the BatchNorms after
        it (variance ~0), so those statistics are reset for the reopened
        channels (mean 0, variance 1) in G and its EMA copy, and the
        others kept: the masked student's activations stay at their scale
        and the compact student still matches it."""
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      _bindings(_teacher_dir(), ["TrainLoop.num_steps = 2"]))
        strategy = make_strategy()
        trainer = ppcd_trainer.PPCDTrainer(
            model_dir=self.create_tempdir().full_path, strategy=strategy)
        pruning = trainer.pruning
        rng = np.random.default_rng(0)
        for key, variable in pruning.masks.logits.items():
            width = int(variable.shape[0])
            logits = -rng.uniform(0.05, 0.5, width)
            logits[rng.choice(width, max(1, width // 4), replace=False)] = 0.3
            variable.assign(logits.astype(np.float32))
        closed = {key: v.numpy() <= 0 for key, v in
                  pruning.masks.logits.items()}
        models = (trainer.generator, trainer.generator_ema)
        norms = [pruning.architecture.masked_batch_norms(m) for m in models]
        for by_key in norms:  # what training with those masks leaves
            for key, layers_of_key in by_key.items():
                for norm in layers_of_key:
                    variance = norm.moving_variance.numpy()
                    variance[closed[key]] = 1e-12
                    norm.moving_variance.assign(variance)
        before = {id(n): (n.moving_mean.numpy(), n.moving_variance.numpy())
                  for by_key in norms for ns in by_key.values() for n in ns}
        self.assertLess(float(pruning.param_ratio().numpy()), TARGET_RATIO)
        open_keep = run_dir.hard_keep(trainer.generator, pruning.masks)
        scale_before = _largest_activation(trainer.generator, open_keep)

        pruning.harden()
        ratio = float(pruning.param_ratio().numpy())
        self.assertLessEqual(ratio, TARGET_RATIO + 1e-7)
        self.assertLessEqual(abs(ratio / TARGET_RATIO - 1.0), RATIO_RTOL)
        keep = run_dir.hard_keep(trainer.generator, pruning.masks)
        reopened = {key: keep[key] & closed[key] for key in closed}
        self.assertTrue(any(
            reopened[key].any() for key in norms[0]))  # a stream reopened
        for by_key in norms:
            for key, layers_of_key in by_key.items():
                for norm in layers_of_key:
                    mean0, variance0 = before[id(norm)]
                    want_mean = np.where(reopened[key], 0.0, mean0)
                    want_variance = np.where(reopened[key], 1.0, variance0)
                    for mean, variance in zip(
                            helpers.local_results(strategy, norm.moving_mean),
                            helpers.local_results(strategy,
                                                  norm.moving_variance)):
                        self.assertAllEqual(mean, want_mean)
                        self.assertAllEqual(variance, want_variance)
        # Reopened channels come back at the network's scale, not
        # ~1/sqrt(epsilon) = 316 times it.
        self.assertLess(_largest_activation(trainer.generator, keep),
                        10.0 * scale_before)
        compact, difference = compaction.compact_student(
            trainer.generator, keep, "compact", 1e-4)
        self.assertLess(difference, 1e-4)
        del compact


class PPCDErrorTest(tf.test.TestCase):

    def test_empty_teacher_dir(self):
        empty = self.create_tempdir().full_path
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      _bindings(empty, ["TrainLoop.num_steps = 2"]))
        with self.assertRaisesRegex(run_dir.RunDirError,
                                    "models.json"):
            ppcd_trainer.PPCDTrainer(model_dir=self.create_tempdir().full_path,
                                     strategy=helpers.one_device())

    def test_teacher_dir_without_checkpoint(self):
        partial = self.create_tempdir().full_path
        shutil.copy(os.path.join(_teacher_dir(), "models.json"), partial)
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      _bindings(partial, ["TrainLoop.num_steps = 2"]))
        with self.assertRaisesRegex(run_dir.RunDirError,
                                    "checkpoint"):
            ppcd_trainer.PPCDTrainer(model_dir=self.create_tempdir().full_path,
                                     strategy=helpers.one_device())

    def test_missing_teacher_dir_binding(self):
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      list(helpers.TINY_BINDINGS) + ["TrainLoop.num_steps = 2"])
        with self.assertRaisesRegex(ValueError, "TEACHER_DIR"):
            ppcd_trainer.PPCDTrainer(model_dir=self.create_tempdir().full_path,
                                     strategy=helpers.one_device())

    def test_mask_init_outside_budget_band(self):
        # At |mask_init| >= the surrogate width the budget gradient is 0 at
        # the start, and with mask_init >= initial_bound so is the task's:
        # the masks would never move.
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      _bindings(_teacher_dir(), [
                          "TrainLoop.num_steps = 2",
                          "PruningPhase.budget_surrogate_width = 1.0",
                          "PruningPhase.mask_init = 1.0"]))
        with self.assertRaisesRegex(ValueError, "surrogate"):
            ppcd_trainer.PPCDTrainer(model_dir=self.create_tempdir().full_path,
                                     strategy=helpers.one_device())

    def test_target_below_floors(self):
        # Default floor 4 channels per layer: 2% of the parameters is less
        # than the floors alone keep.
        trainer_dir = _teacher_dir()
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      _bindings(trainer_dir, [
                          "TrainLoop.num_steps = 2",
                          "PruningBudget.min_channels = 4",
                          "TARGET_PARAM_RATIO = 0.02"]))
        with self.assertRaisesRegex(ValueError, "floors"):
            ppcd_trainer.PPCDTrainer(model_dir=self.create_tempdir().full_path,
                                     strategy=helpers.one_device())

    def test_target_at_floors_is_accepted(self):
        """The boundary: a target equal to the floors' count is valid."""
        with open(os.path.join(_teacher_dir(), "models.json")) as f:
            g_config = json.load(f)["generator"]
        teacher = generator_lib.Generator.from_config(g_config)
        channels = teacher.channels
        widths = channel_masks.mask_widths(channels)
        shape = complexity.GeneratorShape.of(teacher)
        floors = budget_lib.channel_floors(widths, 4, 0.0)
        floor_params = budget_lib.live_parameters(channels, shape, floors)
        helpers.parse(["debug.gin", "stage/ppcd.gin"],
                      _bindings(_teacher_dir(), [
                          "TrainLoop.num_steps = 2",
                          "PruningBudget.min_channels = 4",
                          f"PruningBudget.target_params = {floor_params}"]))
        trainer = ppcd_trainer.PPCDTrainer(
            model_dir=self.create_tempdir().full_path,
            strategy=helpers.one_device())
        self.assertEqual(trainer.pruning.target_params, floor_params)
