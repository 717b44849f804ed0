"""Mask placement is real (DESIGN.md section 4.1).

With hard 0/1 masks, a removed channel must have no influence at all:

  * every weight that belongs only to a removed channel (conv filters and
    input slices, biases, conditional-BN gain/bias columns, BN statistics,
    attention slices, the first linear's units, the spectral-norm `u`
    entries) can be overwritten with anything (finite) without changing the
    images -- *provided* the generator is also given the kept-channel
    vectors (`keep=`), which zero removed weights inside every spectral norm;
  * a compact generator built from `budget.kept_channel_config` that holds
    only the kept slices (a plain slice-and-copy, `u` sliced too) computes
    the same images.

Spectral norm divides a whole matrix by its top singular value, so with
masks alone (no `keep`) sigma -- and every live output -- depends on the
removed channels' weights, and a sliced compact network (whose sigma is that
of the sliced matrix) does not reproduce the masked generator. The last two
tests pin that down, since the exporter relies on it.
"""

from unittest import mock

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.models import arch
from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.models import layers
from ppcd_tf.pruning import budget
from ppcd_tf.pruning import channel_masks

# stream 16, hidden 16, attention after block 2 (qk 2, value 8), 32x32.
CHANNELS = arch.generator_channels(32, 4, "16")
NUM_CLASSES = 5
DIM_Z = 16
SHARED_DIM = 8
IMAGE_CHANNELS = 3
BATCH = 6
# Exact invariance: removed weights are multiplied by exactly 0 (inside the
# spectral norms) or meet activations that are exactly 0, so the arithmetic
# on live channels is bit-identical.
EXACT = 0.0
# Compact vs masked full network: the same real numbers, but convolutions
# and matmuls over fewer input channels accumulate in a different order
# (oneDNN blocks by channel count), so float32 round-off differs at ~1e-7
# relative; images are tanh outputs in [-1, 1].
COMPACT_ATOL = 1e-5
# In training mode Keras' synchronized BatchNormalization takes the batch
# variance as E[x^2] - E[x]^2 in float32 over B*H*W values (cancellation),
# summed in a channel-count-dependent order: measured up to ~3e-3 on single
# pixels, ~1e-5 on average. A wrong sigma or a wrong slice is >1e-2.
TRAINING_ATOL = 1e-2
TRAINING_MEAN_ATOL = 2e-4


def _generator(channels=CHANNELS, name="generator"):
    g = generator_lib.Generator(channels, NUM_CLASSES, dim_z=DIM_Z,
                                shared_dim=SHARED_DIM,
                                image_channels=IMAGE_CHANNELS, name=name)
    g.build()
    return g


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    z = tf.constant(rng.normal(size=(BATCH, DIM_Z)), tf.float32)
    labels = tf.constant(rng.integers(0, NUM_CLASSES, BATCH), tf.int32)
    return z, labels


def _bn_layers(g):
    out = [g.output_bn]
    for block in g.blocks:
        out += [block.bn1.bn, block.bn2.bn]
    return out


def _sn_layers(g):
    out = [g.linear, g.output_conv]
    for block in g.blocks:
        out += [block.conv1, block.conv2, block.conv_sc, block.bn1.gain,
                block.bn1.bias, block.bn2.gain, block.bn2.bias]
    for att in g.attentions.values():
        out += [att.theta, att.phi, att.g, att.o]
    return out


def _randomize(g, seed):
    """Non-trivial values everywhere, then BN statistics from training calls.

    Biases and BN affine parameters are zero/one at init and the attention
    gamma is 0 (attention = identity); all are made random so that every
    placement is exercised.
    """
    rng = np.random.default_rng(seed)
    for layer in _sn_layers(g):
        # Orthogonal init gives every column-slice the same sigma (1), which
        # would hide spectral-norm effects; trained kernels are not
        # orthogonal.
        kernel = layer.kernel.numpy()
        layer.kernel.assign(kernel + rng.normal(0, 0.5 * kernel.std(),
                                                kernel.shape))
        if layer.bias is not None:
            layer.bias.assign(rng.normal(0, 0.3, layer.bias.shape))
    g.output_bn.gamma.assign(rng.uniform(0.5, 1.5, g.output_bn.gamma.shape))
    g.output_bn.beta.assign(rng.normal(0, 0.3, g.output_bn.beta.shape))
    for att in g.attentions.values():
        att.gamma.assign(0.7)
    for step in range(3):
        z, labels = _inputs(100 + step)
        g(z, labels, training=True)


def _random_keep(seed, forced=None):
    """{key: bool [width]}: random kept channels, >= 1 per key."""
    rng = np.random.default_rng(seed)
    keep = {}
    for key, width in channel_masks.mask_widths(CHANNELS).items():
        k = rng.random(width) < 0.5
        if (forced or {}).get(key) is not None:
            k = np.zeros(width, bool)
            k[rng.choice(width, forced[key], replace=False)] = True
        if not k.any():
            k[rng.integers(width)] = True
        keep[key] = k
    return keep


def _as_tensors(keep):
    return {key: tf.constant(k, tf.float32) for key, k in keep.items()}


def _removed_slices(g, keep):
    """[(variable, index)]: everything that belongs only to removed channels.

    `index` is a numpy index tuple into the variable's value.
    """
    ch = g.channels
    n = ch.num_blocks
    bw2 = ch.bottom_width ** 2
    out_cols = lambda r: (Ellipsis, r)                  # noqa: E731
    in_rows = lambda r: (Ellipsis, r, slice(None))      # noqa: E731

    def sn(layer, index, rows=False):
        items = [(layer.kernel, in_rows(index) if rows else out_cols(index))]
        if not rows:  # output channels also own bias and u entries
            items.append((layer.sn_u, out_cols(index)))
            if layer.bias is not None:
                items.append((layer.bias, out_cols(index)))
        return items

    def bn(layer, index):
        return [(v, out_cols(index)) for v in (
            layer.gamma, layer.beta, layer.moving_mean,
            layer.moving_variance) if v is not None]

    slices = []
    for i in range(n + 1):
        r = np.flatnonzero(~keep[generator_lib.stream_mask_name(i)])
        if not len(r):
            continue
        if i == 0:
            # The linear's output is reshaped to [B, bw, bw, C]: unit
            # p * C + c is channel c at position p.
            units = np.array([p * ch.stream[0] + c for p in range(bw2)
                              for c in r])
            slices += sn(g.linear, units)
        else:
            block = g.blocks[i - 1]
            slices += sn(block.conv2, r) + sn(block.conv_sc, r)
            if i in g.attentions:
                att = g.attentions[i]
                for conv in (att.theta, att.phi, att.g):
                    slices += sn(conv, r, rows=True)
                slices += sn(att.o, r)
        if i < n:
            nxt = g.blocks[i]
            slices += sn(nxt.bn1.gain, r) + sn(nxt.bn1.bias, r)
            slices += bn(nxt.bn1.bn, r)
            slices += sn(nxt.conv1, r, rows=True)
            slices += sn(nxt.conv_sc, r, rows=True)
        else:
            slices += bn(g.output_bn, r)
            slices += sn(g.output_conv, r, rows=True)
    for i, block in enumerate(g.blocks, start=1):
        r = np.flatnonzero(~keep[generator_lib.hidden_mask_name(i)])
        if not len(r):
            continue
        slices += sn(block.conv1, r)
        slices += sn(block.bn2.gain, r) + sn(block.bn2.bias, r)
        slices += bn(block.bn2.bn, r)
        slices += sn(block.conv2, r, rows=True)
    for i, att in g.attentions.items():
        qk_name, value_name = generator_lib.attention_mask_names(i)
        r = np.flatnonzero(~keep[qk_name])
        if len(r):
            slices += sn(att.theta, r) + sn(att.phi, r)
        r = np.flatnonzero(~keep[value_name])
        if len(r):
            slices += sn(att.g, r) + sn(att.o, r, rows=True)
    return slices


def _overwrite(slices, seed):
    """Random finite values into every slice; returns the scalars changed."""
    rng = np.random.default_rng(seed)
    changed = 0
    for variable, index in slices:
        value = variable.numpy()
        part = value[index]
        if "moving_variance" in variable.path:
            new = rng.uniform(0.05, 20.0, part.shape)  # must stay > 0
        else:
            new = rng.normal(0.0, 5.0, part.shape)
        value[index] = new
        variable.assign(value)
        changed += part.size
    return changed


def _compact_copy(full, keep, name="compact"):
    """Builds the compact generator and copies the kept slices (no rescale)."""
    kept = {key: int(k.sum()) for key, k in keep.items()}
    compact = _generator(budget.kept_channel_config(full.channels, kept),
                         name=name)
    idx = {key: np.flatnonzero(k) for key, k in keep.items()}
    ch = full.channels
    n = ch.num_blocks
    stream = [idx[generator_lib.stream_mask_name(i)] for i in range(n + 1)]

    def sn(src, dst, rows=None, cols=None):
        kernel = src.kernel.numpy()
        u = src.sn_u.numpy()
        bias = None if src.bias is None else src.bias.numpy()
        if rows is not None:
            kernel = np.take(kernel, rows, axis=-2)
        if cols is not None:
            kernel = np.take(kernel, cols, axis=-1)
            u = u[:, cols]
            bias = None if bias is None else bias[cols]
        dst.kernel.assign(kernel)
        dst.sn_u.assign(u)
        if bias is not None:
            dst.bias.assign(bias)

    def bn(src, dst, cols):
        for attr in ("gamma", "beta", "moving_mean", "moving_variance"):
            s = getattr(src, attr)
            if s is not None:
                getattr(dst, attr).assign(s.numpy()[cols])

    compact.shared.embeddings.assign(full.shared.embeddings)
    bw2 = ch.bottom_width ** 2
    units = np.array([p * ch.stream[0] + c for p in range(bw2)
                      for c in stream[0]])
    sn(full.linear, compact.linear, cols=units)
    for i in range(1, n + 1):
        src, dst = full.blocks[i - 1], compact.blocks[i - 1]
        cin, cout = stream[i - 1], stream[i]
        hid = idx[generator_lib.hidden_mask_name(i)]
        for cbn_src, cbn_dst, cols in ((src.bn1, dst.bn1, cin),
                                       (src.bn2, dst.bn2, hid)):
            sn(cbn_src.gain, cbn_dst.gain, cols=cols)
            sn(cbn_src.bias, cbn_dst.bias, cols=cols)
            bn(cbn_src.bn, cbn_dst.bn, cols)
        sn(src.conv1, dst.conv1, rows=cin, cols=hid)
        sn(src.conv2, dst.conv2, rows=hid, cols=cout)
        sn(src.conv_sc, dst.conv_sc, rows=cin, cols=cout)
        if i in full.attentions:
            a_src, a_dst = full.attentions[i], compact.attentions[i]
            qk_name, value_name = generator_lib.attention_mask_names(i)
            sn(a_src.theta, a_dst.theta, rows=cout, cols=idx[qk_name])
            sn(a_src.phi, a_dst.phi, rows=cout, cols=idx[qk_name])
            sn(a_src.g, a_dst.g, rows=cout, cols=idx[value_name])
            sn(a_src.o, a_dst.o, rows=idx[value_name], cols=cout)
            a_dst.gamma.assign(a_src.gamma)
    bn(full.output_bn, compact.output_bn, stream[n])
    sn(full.output_conv, compact.output_conv, rows=stream[n])
    return compact


KEEP_CASES = [
    dict(testcase_name="random", seed=1, forced=None),
    dict(testcase_name="one_channel_streams", seed=2,
         forced={"stream0": 1, "stream2": 1, "hidden1": 1,
                 "attention2_qk": 1, "attention2_value": 1}),
    dict(testcase_name="one_channel_last_stream", seed=3,
         forced={"stream3": 1, "hidden3": 1}),
]


class PlacementTest(tf.test.TestCase, parameterized.TestCase):

    def _setup(self, seed, forced):
        g = _generator()
        _randomize(g, seed)
        keep = _random_keep(seed, forced)
        for key, count in (forced or {}).items():
            self.assertEqual(int(keep[key].sum()), count)
        return g, keep

    @parameterized.named_parameters(*KEEP_CASES)
    def test_removed_weights_have_no_influence(self, seed, forced):
        g, keep = self._setup(seed, forced)
        masks = _as_tensors(keep)
        z, labels = _inputs()
        before = g(z, labels, training=False, masks=masks, keep=masks).numpy()
        # Non-trivial output: the images vary over the batch.
        self.assertGreater(float(np.std(before)), 1e-3)
        changed = _overwrite(_removed_slices(g, keep), seed + 10)
        self.assertGreater(changed, 100)
        after = g(z, labels, training=False, masks=masks, keep=masks).numpy()
        self.assertLessEqual(float(np.max(np.abs(after - before))), EXACT)

    def test_kept_weights_do_influence(self):
        """Non-vacuity: overwriting a *kept* channel's slice does change."""
        g, keep = self._setup(4, None)
        masks = _as_tensors(keep)
        z, labels = _inputs()
        before = g(z, labels, training=False, masks=masks, keep=masks).numpy()
        for key in ("stream0", "hidden2", "stream2", "stream3",
                    "attention2_qk", "attention2_value"):
            # Select the slices of `key`'s *kept* channels only.
            single = {k: np.ones_like(v) for k, v in keep.items()}
            single[key] = ~keep[key]
            slices = [(v, i) for v, i in _removed_slices(g, single)
                      if v.trainable]
            self.assertNotEmpty(slices)
            saved = [(v, v.numpy()) for v, _ in slices]
            _overwrite(slices, 7)
            after = g(z, labels, training=False, masks=masks,
                      keep=masks).numpy()
            self.assertGreater(float(np.max(np.abs(after - before))), 1e-3,
                               key)
            for v, value in saved:
                v.assign(value)

    @parameterized.named_parameters(*KEEP_CASES)
    def test_removed_weights_get_zero_gradient(self, seed, forced):
        g, keep = self._setup(seed, forced)
        masks = _as_tensors(keep)
        z, labels = _inputs()
        with tf.GradientTape() as tape:
            images = g(z, labels, training=False, masks=masks, keep=masks)
            loss = tf.reduce_sum(tf.square(images + 0.3))
        variables = g.trainable_variables
        grads = dict(zip([v.path for v in variables],
                         tape.gradient(loss, variables)))
        checked = 0
        for variable, index in _removed_slices(g, keep):
            if not variable.trainable:
                continue
            grad = tf.convert_to_tensor(grads[variable.path]).numpy()
            self.assertAllEqual(grad[index], np.zeros_like(grad[index]),
                                msg=variable.path)
            checked += grad[index].size
        self.assertGreater(checked, 100)
        # Kept weights do get gradient.
        self.assertGreater(float(np.max(np.abs(tf.convert_to_tensor(
            grads[g.blocks[1].conv1.kernel.path]).numpy()))), 0.0)

    @parameterized.named_parameters(*KEEP_CASES)
    def test_compact_copy_matches_masked_generator(self, seed, forced):
        g, keep = self._setup(seed, forced)
        masks = _as_tensors(keep)
        compact = _compact_copy(g, keep)
        kept = {key: int(k.sum()) for key, k in keep.items()}
        self.assertEqual(
            generator_lib.count_trainable_parameters(compact),
            budget.live_parameters(CHANNELS, _shape(g), kept))
        z, labels = _inputs()
        full = g(z, labels, training=False, masks=masks, keep=masks).numpy()
        small = compact(z, labels, training=False).numpy()
        self.assertAllClose(small, full, atol=COMPACT_ATOL, rtol=0)
        # Training mode too (batch statistics, one power iteration each).
        full_t = g(z, labels, training=True, masks=masks, keep=masks).numpy()
        small_t = compact(z, labels, training=True).numpy()
        diff = np.abs(small_t - full_t)
        self.assertLessEqual(float(diff.max()), TRAINING_ATOL)
        self.assertLessEqual(float(diff.mean()), TRAINING_MEAN_ATOL)
        # ... and both updated their BN statistics and u identically.
        self.assertAllClose(
            compact.output_bn.moving_mean.numpy(),
            g.output_bn.moving_mean.numpy()[keep["stream3"]], atol=1e-4)
        self.assertAllClose(
            compact.blocks[1].conv1.sn_u.numpy()[0],
            g.blocks[1].conv1.sn_u.numpy()[0][keep["hidden2"]], atol=1e-5)
        self.assertAllEqual(
            g.blocks[1].conv1.sn_u.numpy()[0][~keep["hidden2"]],
            np.zeros(int((~keep["hidden2"]).sum()), np.float32))


def _shape(g):
    return complexity.GeneratorShape.of(g)


class SpectralNormWithoutKeepTest(tf.test.TestCase):
    """Masks alone (no `keep`): sigma sees the removed weights.

    These pin down a property of spectral norm, not a bug in the masks: the
    masked activations are exactly 0, but `W / sigma(W)` divides the live
    columns by the top singular value of the *whole* matrix. So (1) the
    images change when a removed filter changes, and (2) a compact network
    that slices W (and so uses sigma of the slice) does not match. A student
    trained without `keep` could therefore not be exported exactly; the
    trainer must pass `keep` and the exporter must slice-and-copy.
    """

    def test_masks_alone_depend_on_removed_filters(self):
        g = _generator()
        _randomize(g, 5)
        keep = _random_keep(5, {"hidden2": 4})
        masks = _as_tensors(keep)
        z, labels = _inputs()
        before = g(z, labels, training=False, masks=masks).numpy()
        removed = np.flatnonzero(~keep["hidden2"])
        _overwrite([(g.blocks[1].conv1.kernel, (Ellipsis, removed))], 9)
        after = g(z, labels, training=False, masks=masks).numpy()
        self.assertGreater(float(np.max(np.abs(after - before))), 1e-3)

    def test_masks_alone_sigma_scales_live_channels(self):
        """The effect is exactly a rescaling of the whole normalised matrix."""
        g = _generator()
        _randomize(g, 6)
        conv = g.blocks[1].conv1
        keep = np.zeros(conv.filters, bool)
        keep[:4] = True
        full = conv._normalized(conv.kernel, False).numpy()
        kept_only = conv._normalized(
            conv.kernel, False, out_keep=tf.constant(keep, tf.float32)).numpy()
        ratio = kept_only[..., keep] / full[..., keep]
        # One scalar (sigma_full / sigma_kept) relates the two ...
        self.assertAllClose(ratio, np.full_like(ratio, ratio.flat[0]),
                            rtol=1e-4)
        # ... and it is not 1: the full matrix has the larger sigma.
        self.assertGreater(float(ratio.flat[0]), 1.01)

    def test_compact_copy_does_not_match_masks_alone(self):
        g = _generator()
        _randomize(g, 7)
        keep = _random_keep(7)
        masks = _as_tensors(keep)
        compact = _compact_copy(g, keep)
        z, labels = _inputs()
        masked_only = g(z, labels, training=False, masks=masks).numpy()
        small = compact(z, labels, training=False).numpy()
        self.assertGreater(float(np.max(np.abs(small - masked_only))), 1e-2)


class SpectralNormOverrideTest(tf.test.TestCase):
    """Sanity of the harness: with sigma frozen, masks alone suffice."""

    def test_fixed_sigma_masks_alone_are_invariant(self):
        g = _generator()
        _randomize(g, 8)
        keep = _random_keep(8)
        masks = _as_tensors(keep)
        z, labels = _inputs()
        sigmas = {}
        original = layers.spectral_normalize

        def record(kernel_2d, u_var, training, eps):
            normalized, sigma = original(kernel_2d, u_var, training, eps)
            sigmas[u_var.path] = float(sigma.numpy())
            return normalized, sigma

        def frozen(kernel_2d, u_var, training, eps):
            del training, eps
            sigma = tf.constant(sigmas[u_var.path], tf.float32)
            return kernel_2d / sigma, sigma

        with mock.patch.object(layers, "spectral_normalize", record):
            g(z, labels, training=False, masks=masks)
        self.assertLen(sigmas, len(_sn_layers(g)))
        with mock.patch.object(layers, "spectral_normalize", frozen):
            before = g(z, labels, training=False, masks=masks).numpy()
            _overwrite(_removed_slices(g, keep), 11)
            after = g(z, labels, training=False, masks=masks).numpy()
        self.assertLessEqual(float(np.max(np.abs(after - before))), EXACT)


class SoftPhaseKeepTest(tf.test.TestCase):
    """During the pruning phase (bound > 0) `keep` must not remove channels
    whose soft mask is still non-zero (DESIGN.md 4.2: the true derivative
    of the quadratics inside (-b, b)); PPCDTrainer.generate passes
    `keep=masks.keep()` at every step."""

    def test_partially_open_channel_still_contributes(self):
        g = _generator()
        _randomize(g, 12)
        masks = channel_masks.ChannelMasks(
            channel_masks.mask_widths(CHANNELS), initial_value=1.0,
            initial_bound=0.5)
        logit = masks.logits["hidden2"]
        value = logit.numpy()
        value[3] = -0.1   # soft mask (0.5 - 0.1)^2 / (2 * 0.25) = 0.32
        value[5] = -0.6   # below -b: mask exactly 0
        logit.assign(value)
        z, labels = _inputs()
        with tf.GradientTape() as tape:
            values = masks()
            images = g(z, labels, training=True, masks=values,
                       keep=masks.keep())
            loss = tf.reduce_sum(tf.square(images + 0.3))
        grad = tape.gradient(loss, logit).numpy()
        self.assertAllClose(values["hidden2"].numpy()[[3, 5]], [0.32, 0.0])
        self.assertEqual(float(grad[5]), 0.0)  # m == 0: no gradient
        # m == 0.32: the channel is live, its logit must feel the task.
        self.assertGreater(abs(float(grad[3])), 1e-3,
                           "keep() zeroes a channel whose soft mask is 0.32")
