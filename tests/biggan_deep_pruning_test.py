"""PPCD on BigGAN-deep's blocks (issue 35, item 3): where the masks act, the
parameter and MAC polynomials, and the surgery that cuts the compact
generator equal to the hard-masked one."""

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.models import biggan_deep
from ppcd_tf.models import deep_complexity
from ppcd_tf.models import deep_widths
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import deep_surgery
from ppcd_tf.pruning import surgery
from tests.biggan_deep_test import PORT_PARAMETERS

RESOLUTION = 32
LAYERS = biggan_deep.DEEP_LAYERS[RESOLUTION]


def _tiny(truncation_rows=0, seed=0):
    """A 32x32 deep generator (ch 8) whose BN statistics, gains and
    attention are not at their initial values, so that every slice
    matters."""
    keras_seed = np.random.default_rng(seed)
    generator = biggan_deep.DeepGenerator(
        resolution=RESOLUTION, ch=8, num_classes=5, dim_z=6, embed_dim=4,
        image_channels=1, truncation_rows=truncation_rows)
    generator.build()
    for variable in generator.weights:
        name = variable.path
        if "moving_variance" in name or "variances" in name:
            value = keras_seed.uniform(0.5, 2.0, variable.shape)
        elif ("moving_mean" in name or "means" in name or "gamma" in name
              or "beta" in name or "bias" in name):
            value = keras_seed.normal(0.0, 0.3, variable.shape)
        else:
            continue
        variable.assign(value.astype(np.float32))
    return generator


def _inputs(generator, batch=4):
    z = tf.random.stateless_normal((batch, generator.dim_z), (3, 4))
    labels = tf.constant([0, 1, 4, 2][:batch])
    return z, labels


def _random_keep(generator, seed=1, keep_fraction=0.6):
    """Random hard masks over every mask key (at least one channel each)."""
    rng = np.random.default_rng(seed)
    keep = {}
    for key, width in deep_widths.mask_widths(generator.widths,
                                              generator.stages).items():
        mask = rng.random(width) < keep_fraction
        mask[rng.integers(width)] = True
        keep[key] = mask
    return keep


def test_stages_follow_the_width_changes():
    assert deep_widths.stages_of(LAYERS) == (0, 0, 0, 0, 1, 1, 2)
    generator = _tiny()
    widths = deep_widths.mask_widths(generator.widths, generator.stages)
    assert list(widths)[:3] == ["stage0", "stage1", "stage2"]
    assert [widths[f"stage{k}"] for k in range(3)] == [32, 16, 8]
    assert widths["inner6_2"] == 4  # block 6: 16 input channels / 4
    assert widths["attention2_qk"] == 4 and widths["attention2_value"] == 16
    assert len(widths) == 3 + 3 * 6 + 2


def test_parameter_polynomial_counts_the_built_variables():
    generator = _tiny()
    shape = deep_complexity.DeepShape.of(generator, LAYERS)
    assert deep_complexity.deep_generator_parameters(
        generator.widths, shape) == \
        generator_lib.count_trainable_parameters(generator)
    compact = deep_surgery.build_compact(generator, _random_keep(generator))
    assert deep_complexity.deep_generator_parameters(
        compact.widths, shape) == \
        generator_lib.count_trainable_parameters(compact)
    # The released configurations, from the polynomial alone.
    for resolution, expected in PORT_PARAMETERS.items():
        layers = biggan_deep.DEEP_LAYERS[resolution]
        widths = deep_widths.full_widths(
            layers, 128, biggan_deep.ATTENTION_POSITION[resolution])
        released = deep_complexity.DeepShape(
            num_classes=1000, embed_dim=128, dim_z=128,
            upsample=tuple(row[0] for row in layers))
        assert deep_complexity.deep_generator_parameters(
            widths, released) == expected


def _counted_macs(generator, z, labels):
    """MACs from the built kernels and the feature maps' sizes (an
    independent count of what `deep_generator_macs` computes)."""
    _, features = generator(z, labels, return_features=True)
    size = biggan_deep.BOTTOM_WIDTH
    total = int(np.prod(generator.linear.kernel.shape))

    def conv(layer, pixels):
        return pixels * int(np.prod(layer.kernel.shape))

    for index, block in enumerate(generator.blocks):
        attention = generator.attentions.get(index)
        if attention is not None:
            pixels = size * size
            total += sum(conv(layer, pixels) for layer in
                         (attention.theta, attention.phi, attention.g,
                          attention.o))
            total += pixels * pixels // 4 * (attention.qk_width
                                             + attention.value_width)
        out_size = int(features[f"block{index + 1}"].shape[1])
        total += sum(int(np.prod(bn.gain.kernel.shape)) * 2
                     for bn in block.bns)
        total += conv(block.convs[0], size * size)
        total += sum(conv(c, out_size ** 2) for c in block.convs[1:])
        size = out_size
    return total + conv(generator.conv_to_rgb, size * size)


def test_mac_polynomial_counts_the_built_layers():
    generator = _tiny()
    shape = deep_complexity.DeepShape.of(generator, LAYERS)
    z, labels = _inputs(generator)
    assert deep_complexity.deep_generator_macs(generator.widths, shape) == \
        _counted_macs(generator, z, labels)
    compact = deep_surgery.build_compact(generator, _random_keep(generator))
    assert deep_complexity.deep_generator_macs(compact.widths, shape) == \
        _counted_macs(compact, z, labels)


def test_polynomials_take_real_valued_widths():
    generator = _tiny()
    shape = deep_complexity.DeepShape.of(generator, LAYERS)
    full = deep_complexity.deep_generator_parameters(generator.widths, shape)
    half = deep_complexity.deep_generator_parameters(
        generator.widths, shape,
        stream=[w / 2 for w in generator.widths.stream])
    assert isinstance(half, float) and half < full


def test_compact_generator_equals_the_hard_masked_one():
    generator = _tiny()
    keep = _random_keep(generator)
    # Stage 1 keeps a channel whose input channel in stage 0 was pruned,
    # so the halving block's skip must add zero there.
    keep["stage0"][3] = False
    keep["stage1"][3] = True
    compact = deep_surgery.build_compact(generator, keep)
    assert -1 in compact.blocks[3].skip_index  # block 4 halves 32 -> 16
    assert compact.conv_to_rgb.kernel.shape[-1] == 1
    z, labels = _inputs(generator)
    result = deep_surgery.compare(generator, compact, keep, z, labels, 1e-5)
    assert result.first is None, result
    assert result.worst <= result.allowed
    assert result.activation_scale > 0.1
    # The compact widths are the kept counts.
    assert compact.widths.stream[0] == int(keep["stage0"].sum())
    assert compact.widths.inner[5] == tuple(
        int(keep[f"inner6_{j}"].sum()) for j in range(3))


def test_a_wrong_slice_is_caught():
    generator = _tiny()
    keep = _random_keep(generator)
    compact = deep_surgery.build_compact(generator, keep)
    kernel = compact.blocks[2].convs[1].kernel
    kernel.assign(tf.reverse(kernel, axis=[-1]))
    z, labels = _inputs(generator)
    result = deep_surgery.compare(generator, compact, keep, z, labels, 1e-5)
    assert result.first is not None and result.first[0] == "block3"
    assert result.worst > 1e-3


def test_compact_generator_equals_the_masked_one_at_a_truncation():
    generator = _tiny(truncation_rows=3)
    for table in [t for b in generator.blocks for t in b.tables] + [
            generator.output_stats]:
        rng = np.random.default_rng(table.means.shape[1])
        table.means.assign(rng.normal(0, 0.2, table.means.shape))
        table.variances.assign(rng.uniform(0.5, 2.0, table.means.shape))
    keep = _random_keep(generator, seed=5)
    compact = deep_surgery.build_compact(generator, keep)
    masks = surgery.masks_from_keep(keep)
    z, labels = _inputs(generator)
    for truncation in (0.4, 1.0):
        masked = generator(z, labels, truncation=truncation, masks=masks,
                           keep=masks)
        cut = compact(z, labels, truncation=truncation)
        np.testing.assert_allclose(cut.numpy(), masked.numpy(), atol=1e-5)


def test_stage_mask_zeroes_its_channel_in_every_stream_of_the_stage():
    generator = _tiny()
    keep = {key: np.ones(width, bool) for key, width in
            deep_widths.mask_widths(generator.widths,
                                    generator.stages).items()}
    keep["stage0"][5] = False
    masks = surgery.masks_from_keep(keep)
    z, labels = _inputs(generator)
    _, features = generator(z, labels, masks=masks, keep=masks,
                            return_features=True)
    for name in ("block1", "block2", "attention2", "block3"):
        assert float(tf.reduce_max(tf.abs(features[name][..., 5]))) == 0.0
        assert float(tf.reduce_max(tf.abs(features[name][..., 4]))) > 0.0
    # Stage 1 starts at block 4: its channel 5 is its own.
    assert float(tf.reduce_max(tf.abs(features["block4"][..., 5]))) > 0.0


def test_soft_masks_train_and_pass_gradients_to_the_logits():
    generator = _tiny()
    widths = deep_widths.mask_widths(generator.widths, generator.stages)
    logits = {key: tf.Variable(tf.fill([w], 0.3)) for key, w in
              widths.items()}
    z, labels = _inputs(generator)
    with tf.GradientTape() as tape:
        masks = {k: tf.sigmoid(v) for k, v in logits.items()}
        images = generator(z, labels, training=True, masks=masks)
        loss = tf.reduce_mean(images ** 2)
    grads = tape.gradient(loss, logits)
    assert images.shape == (4, 32, 32, 1)
    missing = [k for k, g in grads.items()
               if g is None or float(tf.reduce_max(tf.abs(g))) == 0.0]
    assert not missing


def test_skip_index():
    assert deep_surgery.skip_index([0, 1, 2, 5], [0, 1]) is None
    assert deep_surgery.skip_index([0, 2, 5], [0, 1, 2]) == (0, -1, 1)
    assert deep_surgery.skip_index([1, 2], [2]) == (1,)


def test_widths_round_trip_and_refusals():
    generator = _tiny()
    compact = deep_surgery.build_compact(generator, _random_keep(generator))
    clone = biggan_deep.DeepGenerator.from_config(compact.get_config())
    clone.build()
    assert clone.widths == compact.widths
    assert [w.shape for w in clone.weights] == \
        [w.shape for w in compact.weights]
    good = compact.widths.to_dict()
    for change, message in (
            (dict(stream=good["stream"][:-1]), "stream widths"),
            (dict(rgb=0), ">= 1"),
            (dict(skips=[[9]] + good["skips"][1:]), "input index"),
            (dict(attention={"6": [1, 1]}), "before one of")):
        with pytest.raises(errors.BadInputError, match=message):
            deep_widths.DeepWidths.from_dict(dict(good, **change))


def test_surgery_refuses_bad_masks():
    generator = _tiny()
    keep = _random_keep(generator)
    keep["inner2_1"] = np.zeros_like(keep["inner2_1"])
    with pytest.raises(surgery.SurgeryError, match="removes every channel"):
        deep_surgery.build_compact(generator, keep)
    keep = {"stage1": np.ones(3, bool)}
    with pytest.raises(surgery.SurgeryError, match="width is 16"):
        deep_surgery.build_compact(generator, keep)


# ---------------------------------------------------------------------------
# The budget, the cut and the optimizer's moments on the deep blocks.

def _controller(generator, ratio, mac_ratio=None):
    from ppcd_tf.pruning import architectures
    from ppcd_tf.pruning import controller as controller_lib
    from ppcd_tf.pruning import costs
    architecture = architectures.of(generator)
    widths = dict(architecture.mask_widths())
    limits = [costs.parameter_limit_of(architecture.live_parameters, widths,
                                       ratio)]
    if mac_ratio is not None:
        limits.append(costs.mac_limit_of(architecture.live_macs, widths,
                                         mac_ratio))
    return architecture, controller_lib.BudgetController(
        limits, widths, min_channels=1, min_channel_fraction=0.0,
        surrogate_width=1.0, ramp_fraction=0.5, lambda_rate=0.1,
        lambda_max=1.0, prune_end_step=10)


def test_hardening_meets_the_budget_and_the_cut_has_those_parameters():
    from ppcd_tf.pruning import architectures
    generator = _tiny()
    architecture, controller = _controller(generator, 0.25, mac_ratio=0.3)
    assert architecture.kind == "biggan_deep"
    rng = np.random.default_rng(0)
    logits = {key: rng.normal(0.0, 1.0, width) for key, width in
              architecture.mask_widths().items()}
    keep = controller.harden(logits, "global")
    counts = {key: int(k.sum()) for key, k in keep.items()}
    assert controller.holds(counts)
    compact = architectures.of(generator).build_compact(generator, keep)
    live = architecture.live_parameters(counts)
    assert live == generator_lib.count_trainable_parameters(compact)
    assert live <= 0.25 * architecture.live_parameters({})
    assert architecture.live_macs(counts) == \
        deep_complexity.deep_generator_macs(compact.widths,
                                            architecture.shape)
    # The full count differs from the generator's only by conv_to_rgb's
    # unused outputs (8 inputs, ch 8 outputs of which one is used).
    assert generator_lib.count_trainable_parameters(generator) - \
        architecture.live_parameters({}) == 9 * 8 * 7 + 7


def test_budget_loss_passes_gradients_to_every_deep_mask():
    generator = _tiny()
    architecture, controller = _controller(generator, 0.25)
    logits = {key: tf.Variable(tf.fill([width], 0.2)) for key, width in
              architecture.mask_widths().items()}
    controller.lambdas["params"].assign(1.0)
    with tf.GradientTape() as tape:
        loss, ratio = controller.budget_loss(logits)
    assert float(ratio) == 1.0  # every logit > 0: all kept
    grads = tape.gradient(loss, logits)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0.0
               for g in grads.values()), grads


def test_compact_student_and_optimizer_moments_on_a_deep_generator():
    import keras
    from ppcd_tf.pruning import compaction
    generator = _tiny()
    keep = _random_keep(generator, seed=3)
    compact, difference = compaction.compact_student(
        generator, keep, name="student", tolerance=1e-5)
    assert difference <= 1e-4 and compact.name == "student"
    old = keras.optimizers.Adam(1e-3)
    old.build(generator.trainable_variables)
    for i, variable in enumerate(generator.trainable_variables):
        slot = old._momentums[old._get_variable_index(variable)]
        slot.assign(tf.fill(slot.shape, float(i)))
    new = keras.optimizers.Adam(1e-3)
    new.build(compact.trainable_variables)
    carried = compaction.carry_optimizer_state(old, new, generator, compact,
                                               keep)
    assert "momentums" in carried
    for index, target in enumerate(compact.trainable_variables):
        slot = new._momentums[new._get_variable_index(target)]
        np.testing.assert_array_equal(slot.numpy(),
                                      np.full(slot.shape, float(index)))
    indices = compaction.kept_index_lists(generator, keep)
    assert indices["stage2"] == [int(i) for i in
                                 np.flatnonzero(keep["stage2"])]


def test_uniform_widths_build_a_thinner_deep_generator():
    from ppcd_tf.pruning import architectures
    generator = _tiny()
    architecture = architectures.of(generator)
    counts = {key: max(1, width // 2) for key, width in
              architecture.mask_widths().items()}
    counts["stage1"] = 14  # wider than half of stage 0 (16): zero skips
    widths = architecture.uniform_widths(counts)
    thin = biggan_deep.DeepGenerator.from_config(
        architecture.with_widths(generator.get_config(), widths))
    thin.build()
    assert thin.widths.stream == (16, 16, 16, 16, 14, 14, 4)
    assert thin.widths.skips[3] is None  # 14 of 16: the first 14
    assert generator_lib.count_trainable_parameters(thin) == \
        architecture.live_parameters(counts)
    z, labels = _inputs(generator)
    assert thin(z, labels).shape == (4, 32, 32, 1)
