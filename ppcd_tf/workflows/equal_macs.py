"""The speed reference of a pruned student: its teacher's architecture thinned
uniformly to the student's MACs.

A learned allocation is worth its widths only if they run about as fast as
the simplest choice of equal cost: every prunable layer kept at the same
fraction of its width. `uniform_counts` finds that fraction for a MAC target
(bisection over the fraction; each layer keeps round(fraction x width), at
least one channel), and `write_uniform_export` writes the thinned generator
(random weights: speed does not depend on them) as a SavedModel prepared as
the exporter prepares a student (spectral norms frozen, BatchNorm folded), so
`tools/benchmark.py --exports` can time it in the same run as the teacher and
the student. `write_width_export` writes the other reference the benchmark
times: the architecture with every prunable layer at a few channels (the
floor, what no choice of widths removes).
"""

from ppcd_tf import errors
from ppcd_tf.exporting import graph as serving_graph
from ppcd_tf.exporting import saved_model
from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.runs import run_dir

# Bisection steps over the kept fraction: 2**-40 of the width is far below
# one channel, so the search ends at the closest integer widths.
BISECTION_STEPS = 40


def uniform_counts(channels, shape, target_macs):
    """{mask key: kept count} keeping the same fraction of every prunable
    layer of `channels` (a ChannelConfig), with MACs per image (for
    `shape`, a complexity.GeneratorShape) as close to `target_macs` as
    integer widths allow.

    Returns:
      (counts, macs, fraction): the counts, their MACs per image and the
      fraction of the prunable channels they keep.
    """
    widths = dict(channel_masks.mask_widths(channels, prune_attention=True))

    def counts_at(fraction):
        return {key: max(1, int(round(fraction * width)))
                for key, width in widths.items()}

    def macs_at(fraction):
        return complexity.generator_macs(
            budget_lib.kept_channel_config(channels, counts_at(fraction)),
            shape)

    low, high = 0.0, 1.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if macs_at(middle) < target_macs:
            low = middle
        else:
            high = middle
    chosen = min((low, high), key=lambda f: abs(macs_at(f) - target_macs))
    counts = counts_at(chosen)
    kept = sum(counts.values()) / sum(widths.values())
    return counts, macs_at(chosen), kept


def teacher_generator(teacher_dir):
    """The built generator of the teacher run `teacher_dir` (its
    models.json; random weights)."""
    configs = run_dir.read_model_configs(teacher_dir)
    run_dir.refuse_biggan_deep(teacher_dir, configs, "the equal-MAC reference")
    generator = generator_lib.Generator.from_config(configs["generator"])
    generator.build()
    return generator


def check_same_architecture(teacher, teacher_export):
    """Refuses a teacher export whose channels differ from `teacher`'s (the
    thinned reference would then not be a cut of the exported teacher)."""
    exported = saved_model.read_channel_config(teacher_export)
    own = teacher.channels.to_dict()
    if exported != own:
        raise errors.BadInputError(
            f"The teacher export {teacher_export} has channels {exported}, "
            f"the --teacher_dir generator {own}: give --teacher_dir the "
            "teacher run it was exported from, or --nouniform_reference.")


def constant_width_counts(channels, width):
    """{mask key: kept count}: every prunable layer of `channels` (a
    ChannelConfig) cut to `width` channels (layers narrower than that
    keep theirs)."""
    widths = channel_masks.mask_widths(channels, prune_attention=True)
    return {key: min(width, layer_width)
            for key, layer_width in widths.items()}


def write_uniform_export(teacher, target_macs, output_dir):
    """Writes the uniformly thinned `teacher` (a built Generator) of MACs
    closest to `target_macs` to `output_dir` (replaced if present).

    Returns:
      {"path", "counts", "macs_per_image", "params", "fraction"}.
    """
    shape = complexity.GeneratorShape.of(teacher)
    counts, macs, fraction = uniform_counts(teacher.channels, shape,
                                            target_macs)
    return _write_thinned(teacher, counts, macs, fraction, output_dir,
                          "uniform thinning of the teacher, random weights "
                          "(a speed reference)")


def write_width_export(teacher, width, output_dir):
    """Writes `teacher`'s architecture with every prunable layer cut to
    `width` channels (random weights) to `output_dir`: the speed floor of
    the architecture, the cost that does not shrink with the widths.

    Returns:
      {"path", "counts", "macs_per_image", "params", "fraction", "width"}.
    """
    counts = constant_width_counts(teacher.channels, width)
    macs = complexity.generator_macs(
        budget_lib.kept_channel_config(teacher.channels, counts),
        complexity.GeneratorShape.of(teacher))
    widths = dict(channel_masks.mask_widths(teacher.channels,
                                            prune_attention=True))
    fraction = sum(counts.values()) / sum(widths.values())
    return dict(_write_thinned(
        teacher, counts, macs, fraction, output_dir,
        f"the teacher's architecture at width {width}, random weights (the "
        "speed floor)"), width=width)


def _write_thinned(teacher, counts, macs, fraction, output_dir, source):
    """Writes `teacher` cut to `counts` (random weights) as an export."""
    thinned = generator_lib.Generator.from_config(dict(
        teacher.get_config(), name="uniform",
        channels=budget_lib.kept_channel_config(teacher.channels,
                                                counts).to_dict()))
    thinned.build()
    serving_graph.prepare(thinned)
    params = generator_lib.count_trainable_parameters(thinned)
    metadata = {"dim_z": thinned.dim_z, "num_classes": thinned.num_classes,
                "resolution": thinned.channels.resolution,
                "image_channels": thinned.image_channels, "params": params,
                "macs_per_image": int(macs),
                "source": {"kind": source, "kept_fraction": fraction}}
    saved_model.write_saved_model(thinned, output_dir,
                                  {"metadata.json": metadata},
                                  overwrite=True)
    return {"path": output_dir, "counts": counts,
            "macs_per_image": int(macs), "params": params,
            "fraction": fraction}
