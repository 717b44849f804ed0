"""Budgets beyond parameters (ppcd_tf.pruning.costs, the controller, and
hardening within several limits and to width multiples).

Every limit that is set must hold after hardening, each layer's kept count
must be a multiple of the width multiple (or its full width), the kept
channels of a layer are its best-ranked ones, and the result is maximal:
no further group of channels fits. The latency table's prediction must
interpolate its measurements exactly at the grid points and linearly
between them, and pass gradients to straight-through counts.
"""

import json
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf import errors
from ppcd_tf.models import arch
from ppcd_tf.models import complexity
from ppcd_tf.models import latency
from ppcd_tf.pruning import budget
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import controller as controller_lib
from ppcd_tf.pruning import costs

CH32 = arch.generator_channels(32, 4, "16")   # widths 16, attention 2 / 8
SHAPE = complexity.GeneratorShape(num_classes=5, shared_dim=8,
                                  z_chunk_size=4, image_channels=1)
WIDTHS = dict(channel_masks.mask_widths(CH32))


def _random_logits(seed, positive_fraction=0.9):
    rng = np.random.default_rng(seed)
    logits = {}
    for key, width in WIDTHS.items():
        w = rng.uniform(0.01, 1.0, width)
        sign = np.where(rng.random(width) < positive_fraction, 1.0, -1.0)
        logits[key] = (w * sign).astype(np.float32)
    return logits


def _counts(keep):
    return {key: int(k.sum()) for key, k in keep.items()}


def _synthetic_table(grid_step=16):
    """A latency table whose terms are known functions of their widths: a
    conv-like term costs a*w1*w2 + b, a one-axis term c*w + d."""
    terms = []
    for name, axes in latency.term_names(CH32):
        grid = tuple(tuple(sorted({4} | set(range(grid_step, WIDTHS[a] + 1,
                                                  grid_step))
                                  | {WIDTHS[a]})) for a in axes)
        if len(axes) == 2:
            seconds = [[1e-6 * w1 * w2 + 1e-4 for w2 in grid[1]]
                       for w1 in grid[0]]
        else:
            seconds = [2e-6 * w + 5e-5 for w in grid[0]]
        terms.append(latency.Term(name, tuple(axes), grid, seconds))
    return latency.LatencyTable(
        terms=terms, offset_seconds=1e-3, batch_size=64,
        generator={"channels": CH32.to_dict(), "num_classes": 5,
                   "shared_dim": 8, "z_chunk_size": 4, "image_channels": 1},
        measured_full_seconds=0.0, device="synthetic")


class LimitsTest(tf.test.TestCase):

    def test_parameter_and_mac_limits_follow_complexity(self):
        params = costs.parameter_limit(CH32, SHAPE, WIDTHS, ratio=0.25)
        macs = costs.mac_limit(CH32, SHAPE, WIDTHS, ratio=0.1)
        self.assertEqual(params.full, complexity.generator_parameters(
            CH32, SHAPE))
        self.assertEqual(macs.full, complexity.generator_macs(CH32, SHAPE))
        self.assertEqual(params.target, round(0.25 * params.full))
        self.assertAllClose(macs.target_ratio, 0.1)
        half = {key: w // 2 for key, w in WIDTHS.items()}
        self.assertEqual(macs.cost(half), budget.live_macs(CH32, SHAPE,
                                                           half))
        absolute = costs.parameter_limit(CH32, SHAPE, WIDTHS, absolute=5000)
        self.assertEqual(absolute.target, 5000)

    def test_bad_targets_are_bad_input(self):
        for ratio in (0.0, 1.5, -0.2):
            with self.assertRaises(errors.BadInputError):
                costs.mac_limit(CH32, SHAPE, WIDTHS, ratio)
        with self.assertRaises(errors.BadInputError):
            costs.parameter_limit(CH32, SHAPE, WIDTHS, absolute=0)


class HardenWithinLimitsTest(tf.test.TestCase, parameterized.TestCase):

    def _check(self, logits, keep, limits, floors, multiple):
        counts = _counts(keep)
        for limit in limits:
            self.assertLessEqual(limit.cost(counts), limit.target,
                                 limit.name)
        for key, k in keep.items():
            width = len(logits[key])
            count = counts[key]
            self.assertGreaterEqual(count, min(floors[key], width), key)
            self.assertTrue(count % multiple == 0 or count == width,
                            (key, count))
            # The kept channels are the layer's best-ranked ones.
            if 0 < count < width:
                self.assertGreaterEqual(logits[key][k].min(),
                                        logits[key][~k].max(), key)
        return counts

    @parameterized.parameters((0, 0.3, 0.15, 1), (1, 0.5, 0.4, 8),
                              (2, 0.5, 0.1, 4), (3, 0.3, 0.2, 2))
    def test_every_limit_holds_and_counts_are_multiples(self, seed, p, m,
                                                        multiple):
        logits = _random_logits(seed)
        floors = budget.channel_floors(WIDTHS, 4, 0.0)
        limits = [costs.parameter_limit(CH32, SHAPE, WIDTHS, p),
                  costs.mac_limit(CH32, SHAPE, WIDTHS, m)]
        keep = budget.harden(logits, lambda c: costs.all_hold(limits, c),
                             floors, multiple)
        counts = self._check(logits, keep, limits, floors, multiple)
        # Maximal: one more group in any layer breaks a limit.
        for key, count in counts.items():
            width = len(logits[key])
            if count == width:
                continue
            bigger = dict(counts)
            bigger[key] = min(width, (count // multiple + 1) * multiple)
            self.assertFalse(costs.all_hold(limits, bigger), key)

    def test_mac_budget_cuts_the_last_stream_a_parameter_budget_keeps(self):
        """The speed issue's cause: at 0.19 of the parameters the last
        stream (cheap in parameters, expensive in MACs at 32x32) stays
        wide; a MAC budget cuts it."""
        logits = {key: np.linspace(1.0, 0.01, w).astype(np.float32)
                  for key, w in WIDTHS.items()}
        floors = budget.channel_floors(WIDTHS, 4, 0.0)
        params = costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.19)
        macs = costs.mac_limit(CH32, SHAPE, WIDTHS, 0.1)
        by_params = _counts(budget.harden(logits, params.holds, floors))
        both = _counts(budget.harden(
            logits, lambda c: costs.all_hold([params, macs], c), floors))
        self.assertGreater(macs.cost(by_params), macs.target)
        self.assertLessEqual(macs.cost(both), macs.target)
        self.assertLess(both["stream3"], by_params["stream3"])

    def test_multiple_one_equals_parameter_hardening(self):
        logits = _random_logits(7)
        floors = budget.channel_floors(WIDTHS, 2, 0.0)
        target = int(0.25 * complexity.generator_parameters(CH32, SHAPE))
        by_wrapper = budget.harden_to_budget(logits, CH32, SHAPE, target,
                                             floors)
        by_core = budget.harden(
            logits, budget.parameters_within(CH32, SHAPE, target), floors,
            multiple=1)
        for key in logits:
            self.assertAllEqual(by_wrapper[key], by_core[key])

    def test_uniform_within_limits_and_multiples(self):
        logits = _random_logits(4)
        floors = budget.channel_floors(WIDTHS, 4, 0.0)
        limits = [costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.4),
                  costs.mac_limit(CH32, SHAPE, WIDTHS, 0.3)]
        keep = budget.harden_uniform_within(
            logits, lambda c: costs.all_hold(limits, c), floors, 8)
        self._check(logits, keep, limits, floors, 8)

    def test_infeasible_budget_is_bad_input(self):
        floors = budget.channel_floors(WIDTHS, 8, 0.0)
        limit = costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.05)
        with self.assertRaisesRegex(errors.BadInputError, "floor"):
            budget.harden(_random_logits(0), limit.holds, floors)

    def test_bad_multiple(self):
        with self.assertRaises(errors.BadInputError):
            budget.harden(_random_logits(0), lambda c: True,
                          budget.channel_floors(WIDTHS, 1, 0.0), 0)

    def test_floor_count_rounds_up_to_the_multiple(self):
        self.assertEqual(budget.harden_floor_count(64, 4, 8), 8)
        self.assertEqual(budget.harden_floor_count(64, 16, 8), 16)
        self.assertEqual(budget.harden_floor_count(6, 4, 8), 6)
        self.assertEqual(budget.harden_floor_count(64, 4, 1), 4)


class ControllerTest(tf.test.TestCase):

    def _controller(self, limits, multiple=1, min_channels=4,
                    cost_exponent=1.0):
        return controller_lib.BudgetController(
            limits, WIDTHS, min_channels, 0.0, surrogate_width=2.0,
            ramp_fraction=0.5, lambda_rate=0.1, lambda_max=10.0,
            prune_end_step=100, width_multiple=multiple,
            cost_exponent=cost_exponent)

    def _push_per_channel(self, controller):
        """{mask key: the budget's gradient on one open channel's logit}."""
        logits = {k: tf.Variable(np.full(w, 0.5, np.float32))
                  for k, w in WIDTHS.items()}
        controller.budget_lambda.assign(1.0)
        with tf.GradientTape() as tape:
            loss, ratio = controller.budget_loss(logits)
        grads = tape.gradient(loss, logits)
        return float(ratio), {k: float(g.numpy()[0]) for k, g in
                              grads.items() if WIDTHS[k] >
                              controller.floors[k]}

    def test_cost_exponent_sets_how_the_push_follows_the_cost(self):
        params = costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.5)
        ratio, priced = self._push_per_channel(self._controller([params]))
        self.assertAllClose(ratio, 1.0)
        # Exponent 1: in proportion to the marginal cost of a channel,
        # which differs between layers (the attention's is small).
        self.assertGreater(max(priced.values()) / min(priced.values()), 4.0)
        ratio, even = self._push_per_channel(
            self._controller([params], cost_exponent=0.0))
        self.assertAllClose(ratio, 1.0)  # the values are the same
        # Exponent 0: the same push on every layer, the mean of the priced.
        self.assertAllClose(list(even.values()),
                            [np.mean(list(even.values()))] * len(even),
                            rtol=1e-5)
        self.assertTrue(all(value > 0 for value in even.values()))
        _, half = self._push_per_channel(
            self._controller([params], cost_exponent=0.5))
        for key in priced:
            # Geometric in between: half^2 = priced * even.
            self.assertAllClose(half[key] ** 2, priced[key] * even[key],
                                rtol=1e-4)

    def test_negative_cost_exponent_is_refused(self):
        params = costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.5)
        with self.assertRaisesRegex(errors.BadInputError, "cost_exponent"):
            self._controller([params], cost_exponent=-1.0)

    def test_uniform_floors_follow_the_uniform_cut_at_the_budget(self):
        params = costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.25)
        holds = lambda counts: costs.all_hold([params], counts)
        floors = budget.channel_floors(WIDTHS, 1, 0.0)
        uniform = budget.uniform_counts_within(WIDTHS, holds, floors)
        self.assertTrue(holds(uniform))
        self.assertEqual(budget.uniform_floors(WIDTHS, holds, floors, 0.0),
                         floors)
        self.assertEqual(budget.uniform_floors(WIDTHS, holds, floors, 1.0),
                         uniform)
        half = budget.uniform_floors(WIDTHS, holds, floors, 0.5)
        self.assertEqual(half, {k: max(1, -(-uniform[k] // 2))
                                for k in WIDTHS})
        with self.assertRaisesRegex(errors.BadInputError,
                                    "uniform_floor_fraction"):
            budget.uniform_floors(WIDTHS, holds, floors, 1.5)
        # The controller's floors, and a global cut that respects them.
        controller = controller_lib.BudgetController(
            [params], WIDTHS, 1, 0.0, surrogate_width=2.0,
            ramp_fraction=0.5, lambda_rate=0.1, lambda_max=10.0,
            prune_end_step=100, uniform_floor_fraction=0.75)
        expected = {k: max(1, int(np.ceil(0.75 * uniform[k] - 1e-9)))
                    for k in WIDTHS}
        self.assertEqual(controller.floors, expected)
        rng = np.random.default_rng(0)
        logits = {k: rng.uniform(-1.0, 1.0, w).astype(np.float32)
                  for k, w in WIDTHS.items()}
        # One layer's logits all far below the others': unfloored, the
        # global ranking would cut it first.
        starved = max(sorted(WIDTHS), key=WIDTHS.get)
        logits[starved] = logits[starved] - 10.0
        keep = controller.harden(logits, "global")
        counts = {k: int(v.sum()) for k, v in keep.items()}
        self.assertTrue(holds(counts))
        for key in WIDTHS:
            self.assertGreaterEqual(counts[key], expected[key], key)
        unfloored = budget.harden(logits, holds, floors)
        self.assertLess(int(unfloored[starved].sum()), expected[starved])

    def test_one_lambda_per_limit_in_the_checkpoint(self):
        limits = [costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.19),
                  costs.mac_limit(CH32, SHAPE, WIDTHS, 0.1)]
        controller = self._controller(limits)
        self.assertEqual(sorted(controller.checkpoint_items()),
                         ["budget_lambda", "budget_lambda_macs"])
        self.assertIs(controller.budget_lambda, controller.lambdas["params"])

    def test_each_lambda_tracks_its_own_excess(self):
        params = costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.5)
        macs = costs.mac_limit(CH32, SHAPE, WIDTHS, 0.1)
        controller = self._controller([params, macs])
        # Half of every width: about 0.25 of params and MACs. At the ramp's
        # end (step 50) the lines are at 0.5 and 0.1: only MACs exceed.
        half = {key: tf.constant(float(w // 2)) for key, w in WIDTHS.items()}
        controller.update(tf.constant(50), half, tf.constant(True))
        self.assertEqual(float(controller.lambdas["params"].numpy()), 0.0)
        excess = float(macs.ratio({k: w // 2 for k, w in WIDTHS.items()})
                       - 0.1)
        self.assertAllClose(float(controller.lambdas["macs"].numpy()),
                            0.1 * excess, rtol=1e-5)
        # After the pruning phase every lambda is 0.
        controller.update(tf.constant(50), half, tf.constant(False))
        self.assertEqual(float(controller.lambdas["macs"].numpy()), 0.0)

    def test_budget_loss_pushes_masks_for_every_limit(self):
        params = costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.5)
        macs = costs.mac_limit(CH32, SHAPE, WIDTHS, 0.1)
        controller = self._controller([params, macs])
        logits = {k: tf.Variable(np.full(w, 0.5, np.float32))
                  for k, w in WIDTHS.items()}
        controller.lambdas["macs"].assign(1.0)
        with tf.GradientTape() as tape:
            loss, ratio = controller.budget_loss(logits)
        self.assertAllClose(float(ratio), 1.0)
        grads = tape.gradient(loss, logits)
        # Every width costs MACs, so every mask above its floor is pushed
        # down (attention2_qk, 2 channels, is at its floor of 2).
        for key, grad in grads.items():
            if WIDTHS[key] > controller.floors[key]:
                self.assertTrue(np.all(grad.numpy() > 0), key)
            else:
                self.assertTrue(grad is None or not np.any(grad.numpy()))

    def test_targets_below_the_floors_are_refused(self):
        macs = costs.mac_limit(CH32, SHAPE, WIDTHS, 0.001)
        with self.assertRaisesRegex(errors.BadInputError, "macs target"):
            self._controller(
                [costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.5), macs])

    def test_harden_respects_every_limit_and_the_multiple(self):
        limits = [costs.parameter_limit(CH32, SHAPE, WIDTHS, 0.3),
                  costs.mac_limit(CH32, SHAPE, WIDTHS, 0.2)]
        controller = self._controller(limits, multiple=4)
        keep = controller.harden(_random_logits(3), "global")
        counts = _counts(keep)
        self.assertTrue(controller.holds(counts))
        for key, count in counts.items():
            self.assertTrue(count % 4 == 0 or count == WIDTHS[key])


class LatencyTableTest(tf.test.TestCase):

    def test_exact_at_grid_points_and_linear_between(self):
        table = _synthetic_table()
        full = table.predict(dict(WIDTHS))
        expected = 1e-3
        for name, axes in latency.term_names(CH32):
            if len(axes) == 2:
                expected += 1e-6 * WIDTHS[axes[0]] * WIDTHS[axes[1]] + 1e-4
            else:
                expected += 2e-6 * WIDTHS[axes[0]] + 5e-5
        self.assertAllClose(full, expected, rtol=1e-12)
        # Between grid points of a one-axis term: linear (exact here).
        term = next(t for t in table.terms if t.name == "block1.mid")
        one = latency.LatencyTable([term], 0.0, 64, table.generator, 0.0)
        self.assertEqual(term.grid, ((4, 16),))
        self.assertAllClose(one.predict({"hidden1": 10.0}),
                            2e-6 * 10 + 5e-5, rtol=1e-9)
        # Beyond the grid: constant.
        self.assertAllClose(one.predict({"hidden1": 20.0}),
                            2e-6 * 16 + 5e-5, rtol=1e-9)
        # Below the grid: constant.
        self.assertAllClose(one.predict({"hidden1": 1.0}),
                            2e-6 * 4 + 5e-5, rtol=1e-9)

    def test_prediction_of_tensors_has_gradients(self):
        table = _synthetic_table()
        # Widths strictly inside their grids (attention2_qk's grid is [2]).
        counts = {k: tf.Variable(float(w) - 1.0) for k, w in WIDTHS.items()
                  if w > 4}
        counts["attention2_qk"] = tf.Variable(2.0)
        with tf.GradientTape() as tape:
            value = table.predict(counts)
        grads = tape.gradient(value, list(counts.values()))
        self.assertAllClose(
            float(value), table.predict({k: float(v.numpy())
                                         for k, v in counts.items()}),
            rtol=1e-5)
        for key, grad in zip(counts, grads):
            if key != "attention2_qk":
                self.assertGreater(float(grad), 0.0, key)

    def test_latency_limit_and_round_trip(self):
        table = _synthetic_table()
        path = os.path.join(self.get_temp_dir(), "latency.json")
        table.write(path)
        read = latency.LatencyTable.read(path)
        self.assertEqual(read.to_json(), json.loads(json.dumps(
            table.to_json())))
        limit = costs.latency_limit(CH32, SHAPE, WIDTHS, read, 0.7)
        self.assertAllClose(limit.full, table.predict(dict(WIDTHS)))
        keep = budget.harden(_random_logits(1), limit.holds,
                             budget.channel_floors(WIDTHS, 4, 0.0))
        self.assertLessEqual(limit.cost(_counts(keep)), limit.target)

    def test_mismatched_missing_and_damaged_tables(self):
        table = _synthetic_table()
        other = complexity.GeneratorShape(num_classes=7, shared_dim=8,
                                          z_chunk_size=4, image_channels=1)
        with self.assertRaisesRegex(errors.BadInputError, "different"):
            costs.latency_limit(CH32, other, WIDTHS, table, 0.5)
        with self.assertRaises(errors.MissingInputError):
            latency.LatencyTable.read(os.path.join(self.get_temp_dir(),
                                                   "none.json"))
        path = os.path.join(self.get_temp_dir(), "bad.json")
        with open(path, "w") as f:
            f.write('{"format": "something else"}')
        with self.assertRaises(errors.DamagedInputError):
            latency.LatencyTable.read(path)
        with open(path, "w") as f:
            f.write("{not json")
        with self.assertRaises(errors.DamagedInputError):
            latency.LatencyTable.read(path)


if __name__ == "__main__":
    tf.test.main()
