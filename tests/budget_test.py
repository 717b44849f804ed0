"""Budget accounting of masked generators (ppcd_tf.pruning.budget).

The analytic live count must equal the variables of the compact generator
that the kept counts define; hardening must meet the budget with the
best-ranked channels; the straight-through counts must be the hard counts
with a gradient that respects the floors.
"""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.models import arch
from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import budget
from ppcd_tf.pruning import channel_masks

NUM_CLASSES = 5
DIM_Z = 16
SHARED_DIM = 8

CH32 = arch.generator_channels(32, 4, "16")   # attention after block 2
CH64 = arch.generator_channels(64, 4, "32")   # attention after block 3


def _shape(channels, image_channels=3):
    slots = channels.num_blocks + 1
    return complexity.GeneratorShape(
        num_classes=NUM_CLASSES, shared_dim=SHARED_DIM,
        z_chunk_size=DIM_Z // slots, image_channels=image_channels)


def _generator(channels, image_channels=3):
    # Zero init: only shapes matter here and it is faster.
    g = generator_lib.Generator(channels, NUM_CLASSES, dim_z=DIM_Z,
                                shared_dim=SHARED_DIM,
                                image_channels=image_channels,
                                kernel_initializer="zeros")
    g.build()
    return g


def _random_counts(channels, seed, drop_keys=0):
    """{key: count in [1, width]}, optionally omitting some keys."""
    rng = np.random.default_rng(seed)
    widths = channel_masks.mask_widths(channels)
    counts = {key: int(rng.integers(1, width + 1))
              for key, width in widths.items()}
    for key in rng.choice(sorted(counts), drop_keys, replace=False):
        del counts[key]  # missing keys keep the full width
    return counts


def _live(channels, keep):
    return budget.live_parameters(channels, _shape(channels),
                                  {k: int(v.sum()) for k, v in keep.items()})


def _random_logits(channels, seed, positive_fraction):
    rng = np.random.default_rng(seed)
    logits = {}
    for key, width in channel_masks.mask_widths(channels).items():
        w = rng.uniform(0.01, 1.0, width)  # distinct magnitudes
        sign = np.where(rng.random(width) < positive_fraction, 1.0, -1.0)
        logits[key] = (w * sign).astype(np.float32)
    return logits


class LiveParametersTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(
        (CH32, 0, 0), (CH32, 1, 0), (CH32, 2, 3), (CH32, 3, 0),
        (CH64, 4, 0), (CH64, 5, 2), (CH64, 6, 0))
    def test_equals_compact_generator_variables(self, channels, seed, drop):
        counts = _random_counts(channels, seed, drop)
        compact = budget.kept_channel_config(channels, counts)
        compact_widths = channel_masks.mask_widths(compact)
        for key, width in channel_masks.mask_widths(channels).items():
            self.assertEqual(compact_widths[key], counts.get(key, width))
        g = _generator(compact)
        self.assertEqual(budget.live_parameters(channels, _shape(channels),
                                                counts),
                         generator_lib.count_trainable_parameters(g))

    def test_full_counts_equal_full_model_and_single_channel_model(self):
        for channels in (CH32, CH64):
            widths = dict(channel_masks.mask_widths(channels))
            self.assertEqual(
                budget.live_parameters(channels, _shape(channels), widths),
                generator_lib.count_trainable_parameters(
                    _generator(channels)))
            ones = {key: 1 for key in widths}
            self.assertEqual(
                budget.live_parameters(channels, _shape(channels), ones),
                generator_lib.count_trainable_parameters(_generator(
                    budget.kept_channel_config(channels, ones))))

    def test_kept_channel_config_widths(self):
        counts = {"stream0": 3, "stream2": 5, "hidden1": 2,
                  "attention2_qk": 1, "attention2_value": 4}
        config = budget.kept_channel_config(CH32, counts)
        self.assertEqual(config.stream, (3, 16, 5, 16))
        self.assertEqual(config.hidden, (2, 16, 16))
        self.assertEqual(config.attention, {2: (1, 4)})
        self.assertEqual(config.resolution, 32)


class HardenToBudgetTest(tf.test.TestCase, parameterized.TestCase):

    def _check_common(self, logits, keep, target, floors, channels=CH32):
        live = _live(channels, keep)
        self.assertLessEqual(live, target)
        for key, k in keep.items():
            self.assertGreaterEqual(int(k.sum()), floors[key], key)
            self.assertEqual(k.shape, logits[key].shape)
        return live

    def _restore_costs(self, keep, channels=CH32):
        """{(key, i): live count if removed channel i of key were kept}."""
        costs = {}
        for key, k in keep.items():
            for i in np.flatnonzero(~k):
                trial = {kk: v.copy() for kk, v in keep.items()}
                trial[key][i] = True
                costs[(key, int(i))] = _live(channels, trial)
        return costs

    @parameterized.parameters((0, 0.35, 1), (1, 0.5, 2), (2, 0.2, 1),
                              (3, 0.6, 3))
    def test_cut_path_global_ranking_and_tight(self, seed, ratio, floor):
        logits = _random_logits(CH32, seed, positive_fraction=0.8)
        widths = channel_masks.mask_widths(CH32)
        floors = {key: min(floor, w) for key, w in widths.items()}
        full = budget.live_parameters(CH32, _shape(CH32), dict(widths))
        initial = {k: v > 0 for k, v in logits.items()}
        self.assertGreater(_live(CH32, initial), ratio * full)  # cut path
        target = int(ratio * full)
        keep = budget.harden_to_budget(logits, CH32, _shape(CH32), target,
                                       floors)
        live = self._check_common(logits, keep, target, floors)
        # Global ranking: a removed channel outranking a kept channel of a
        # layer above its floor is only possible when it no longer fits
        # (the refill after the cut takes cheaper, lower-ranked channels).
        costs = self._restore_costs(keep)
        lowest_kept = min(float(logits[key][k].min())
                          for key, k in keep.items() if k.sum() > floors[key])
        for (key, i), cost in costs.items():
            if initial[key][i] and logits[key][i] > lowest_kept:
                self.assertGreater(cost, target, (key, i))
        # Never keeps a channel the current hard mask removed (cut path),
        # except to reach a floor.
        for key, k in keep.items():
            revived = k & ~initial[key]
            if revived.any():
                self.assertEqual(int(k.sum()), floors[key], key)
        # Tight: putting back some removed channel would exceed the target,
        # so the gap to the target is below the cost of one channel.
        costs = self._restore_costs(keep)
        self.assertGreater(max(costs.values()), target)
        self.assertLess(target - live, max(c - live for c in costs.values()))

    def test_floors_are_respected_and_raised_from_dead_layers(self):
        logits = _random_logits(CH32, 5, positive_fraction=0.5)
        logits["hidden2"] = -np.abs(logits["hidden2"])  # a dead layer
        logits["stream1"][:] = -np.abs(logits["stream1"])
        logits["stream1"][3] = 0.9  # one alive
        widths = channel_masks.mask_widths(CH32)
        floors = {key: min(3, w) for key, w in widths.items()}
        full = budget.live_parameters(CH32, _shape(CH32), dict(widths))
        keep = budget.harden_to_budget(logits, CH32, _shape(CH32),
                                       int(0.3 * full), floors)
        self._check_common(logits, keep, int(0.3 * full), floors)
        # The floor of the dead layer holds its highest-logit channels.
        top = np.argsort(-logits["hidden2"])[:3]
        self.assertAllEqual(np.flatnonzero(keep["hidden2"]), np.sort(top))
        self.assertTrue(keep["stream1"][3])

    @parameterized.parameters((0, 0.7), (1, 0.9), (2, 0.5))
    def test_restore_path_is_maximal(self, seed, ratio):
        logits = _random_logits(CH32, seed, positive_fraction=0.15)
        widths = channel_masks.mask_widths(CH32)
        floors = {key: 1 for key in widths}
        full = budget.live_parameters(CH32, _shape(CH32), dict(widths))
        initial = {k: v > 0 for k, v in logits.items()}
        for key, k in initial.items():
            if not k.any():
                k[np.argmax(logits[key])] = True
        self.assertLess(_live(CH32, initial), ratio * full)  # restore path
        target = int(ratio * full)
        keep = budget.harden_to_budget(logits, CH32, _shape(CH32), target,
                                       floors)
        live = self._check_common(logits, keep, target, floors)
        self.assertGreater(live, _live(CH32, initial))
        for key, k in initial.items():  # nothing positive is dropped
            self.assertTrue(np.all(keep[key][k]), key)
        # Maximal: no removed channel fits any more.
        for (key, i), cost in self._restore_costs(keep).items():
            self.assertGreater(cost, target, (key, i))
        # The highest-logit removed channel was tried first: if the
        # best-ranked channel of all would fit alone, it is kept.
        best_key, best_i = max(
            ((k, int(i)) for k, v in initial.items()
             for i in np.flatnonzero(~v)),
            key=lambda ki: logits[ki[0]][ki[1]])
        trial = {k: v.copy() for k, v in initial.items()}
        trial[best_key][best_i] = True
        if _live(CH32, trial) <= target:
            self.assertTrue(keep[best_key][best_i])

    @parameterized.parameters((0.5, 1), (0.3, 2), (0.7, 1))
    def test_tied_logits_cut_layers_in_proportion(self, ratio, floor):
        """Logits that never moved carry no ranking: every layer then loses
        the same fraction of its channels (+-1), not whole layers in key
        order."""
        widths = channel_masks.mask_widths(CH32)
        logits = {key: np.ones(w, np.float32) for key, w in widths.items()}
        floors = {key: min(floor, w) for key, w in widths.items()}
        full = budget.live_parameters(CH32, _shape(CH32), dict(widths))
        target = int(ratio * full)
        keep = budget.harden_to_budget(logits, CH32, _shape(CH32), target,
                                       floors)
        self.assertLessEqual(_live(CH32, keep), target)
        # The refill after the cut may give back cheap attention channels
        # that still fit, so proportionality is checked on the stream and
        # hidden widths, which hold almost all of the parameters.
        fractions = {k: v.sum() / widths[k] for k, v in keep.items()
                     if v.sum() > floors[k] and not k.startswith("attention")}
        self.assertNotEmpty(fractions)
        for a in fractions:
            for b in fractions:
                self.assertLessEqual(
                    abs(fractions[a] - fractions[b]),
                    1.0 / widths[a] + 1.0 / widths[b] + 1e-9, (a, b, {
                        k: int(v.sum()) for k, v in keep.items()}))

    def test_does_not_modify_inputs(self):
        logits = _random_logits(CH32, 9, positive_fraction=0.6)
        copy = {k: v.copy() for k, v in logits.items()}
        widths = channel_masks.mask_widths(CH32)
        budget.harden_to_budget(logits, CH32, _shape(CH32), 10_000,
                                {k: 1 for k in widths})
        for key in logits:
            self.assertAllEqual(logits[key], copy[key])


class HardenUniformTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters((0, 0.5, 1), (1, 0.3, 1), (2, 0.6, 2),
                              (3, 0.25, 1))
    def test_equal_fractions_within_target(self, seed, ratio, floor):
        for channels in (CH32, CH64):
            logits = _random_logits(channels, seed, positive_fraction=0.5)
            widths = channel_masks.mask_widths(channels)
            floors = {key: min(floor, w) for key, w in widths.items()}
            full = budget.live_parameters(channels, _shape(channels),
                                          dict(widths))
            target = int(ratio * full)
            keep = budget.harden_uniform(logits, channels, _shape(channels),
                                         target, floors)
            counts = {k: int(v.sum()) for k, v in keep.items()}
            live = _live(channels, keep)
            self.assertLessEqual(live, target)
            # One fraction f with count == floor(f * width) for every layer
            # above its floor: the intervals [c/w, (c+1)/w) intersect.
            free = [k for k in counts if counts[k] > floors[k]]
            self.assertNotEmpty(free)
            low = max(counts[k] / widths[k] for k in free)
            high = min((counts[k] + 1) / widths[k] for k in free)
            self.assertLess(low, high)
            for key in counts:  # +-1 channel of the common fraction
                self.assertLessEqual(abs(counts[key] - low * widths[key]),
                                     max(1.0, floors[key]), key)
            # Highest-logit channels of each layer.
            for key, k in keep.items():
                if (~k).any():
                    self.assertGreaterEqual(float(logits[key][k].min()),
                                            float(logits[key][~k].max()))
            # Largest such fraction: the next breakpoint exceeds the target.
            next_fraction = min((counts[k] + 1) / widths[k]
                                for k in counts if counts[k] < widths[k])
            bigger = {k: min(widths[k], max(floors[k], int(np.floor(
                next_fraction * widths[k] + 1e-9)))) for k in counts}
            self.assertGreater(budget.live_parameters(
                channels, _shape(channels), bigger), target)


class FloorsAndStraightThroughTest(tf.test.TestCase):

    def test_channel_floors(self):
        widths = {"a": 16, "b": 3, "c": 10, "d": 1}
        self.assertEqual(budget.channel_floors(widths, 4, 0.0),
                         {"a": 4, "b": 3, "c": 4, "d": 1})
        self.assertEqual(budget.channel_floors(widths, 1, 0.25),
                         {"a": 4, "b": 1, "c": 3, "d": 1})
        self.assertEqual(budget.channel_floors(widths, 2, 0.5),
                         {"a": 8, "b": 2, "c": 5, "d": 1})
        self.assertEqual(budget.channel_floors(widths, 0, 0.0),
                         {"a": 0, "b": 0, "c": 0, "d": 0})

    def test_values_are_hard_counts_and_gradients_respect_floors(self):
        width = 0.5
        values = {
            # 3 kept of 6, floor 3: at its floor -> no gradient.
            "at_floor": [0.3, -0.2, 0.1, 0.4, -0.9, -0.05],
            # 1 kept of 4, floor 2: below floor -> no gradient.
            "below_floor": [0.2, -0.1, -0.3, -0.4],
            # 4 kept of 5, floor 1: free.
            "free": [0.2, 0.45, -0.1, 0.7, 0.05],
            # 2 kept of 3, no floor entry beyond 0.
            "free2": [1.0, 0.3, -2.0],
        }
        floors = {"at_floor": 3, "below_floor": 2, "free": 1, "free2": 0}
        logits = {k: tf.Variable(np.array(v, np.float32))
                  for k, v in values.items()}
        with tf.GradientTape(persistent=True) as tape:
            counts = budget.straight_through_counts(logits, width, floors)
        for key, v in values.items():
            self.assertEqual(float(counts[key].numpy()),
                             float(np.sum(np.array(v) > 0)), key)
            grad = tape.gradient(counts[key], logits[key])
            expected = np.where(np.abs(np.array(v)) < width,
                                0.5 / width, 0.0).astype(np.float32)
            if key in ("at_floor", "below_floor"):
                self.assertTrue(grad is None or not np.any(grad.numpy()),
                                key)
            else:
                self.assertAllClose(grad.numpy(), expected, atol=0)
                self.assertGreater(float(np.abs(grad.numpy()).sum()), 0.0)
        # Without floors every layer gets the surrogate gradient.
        with tf.GradientTape() as tape:
            total = tf.add_n(list(budget.straight_through_counts(
                logits, width).values()))
        grads = tape.gradient(total, list(logits.values()))
        for (key, v), grad in zip(values.items(), grads):
            expected = np.where(np.abs(np.array(v)) < width, 0.5 / width,
                                0.0)
            self.assertAllClose(grad.numpy(), expected, atol=0)

    def test_live_parameters_of_straight_through_counts_is_exact(self):
        logits = {k: tf.Variable(v) for k, v in
                  _random_logits(CH32, 11, 0.6).items()}
        counts = budget.straight_through_counts(logits, 1.0)
        hard = {k: int(np.sum(v.numpy() > 0)) for k, v in logits.items()}
        with tf.GradientTape() as tape:
            counts = budget.straight_through_counts(logits, 1.0)
            live = budget.live_parameters(
                CH32, _shape(CH32), {k: tf.cast(v, tf.float64)
                                     for k, v in counts.items()})
        self.assertEqual(float(live.numpy()),
                         float(budget.live_parameters(CH32, _shape(CH32),
                                                      hard)))
        grads = tape.gradient(live, list(logits.values()))
        # More channels never cost fewer parameters: gradients are >= 0.
        for grad in grads:
            self.assertTrue(np.all(grad.numpy() >= 0))
        self.assertGreater(sum(float(g.numpy().sum()) for g in grads), 0.0)
