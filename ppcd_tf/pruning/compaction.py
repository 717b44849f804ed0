"""Switching a hard-masked student to its compact generator mid-run.

Once the masks are hardened, the masked full-width student computes every
removed channel only to multiply it by zero. `compact_student(...)` turns
the student (and its EMA copy) into compact generators by surgery
(`surgery.build_compact`, verified equal to the hard-masked network), and
`carry_optimizer_state(...)` slices the optimizer's per-weight slots (Adam's
first and second moments) with the same kept indices, so training continues
as if the removed channels had never existed.

Also: `copy_weights_by_name`, the teacher-to-student copy, which pairs
weights by their path below the model's name and checks every shape.
"""

import tensorflow as tf
from absl import logging

from ppcd_tf import errors
from ppcd_tf.pruning import architectures
from ppcd_tf.pruning import surgery

# Optimizer slot lists sliced when the state is carried (Keras 3 names).
SLOT_ATTRIBUTES = ("_momentums", "_velocities", "_velocity_hats")


class CompactionError(ValueError):
    """The compact student does not equal the hard-masked one."""


def _relative_path(variable):
    return variable.path.split("/", 1)[1]


def copy_weights_by_name(source, target, skip_source=None):
    """target's weights := source's, paired by path below the model name;
    source weights whose path `skip_source(path)` accepts are left out.

    Raises ValueError listing missing, unexpected and mis-shaped weights.
    """
    by_name = {_relative_path(v): v for v in source.weights
               if skip_source is None or not skip_source(_relative_path(v))}
    missing, shapes = [], []
    for variable in target.weights:
        name = _relative_path(variable)
        if name not in by_name:
            missing.append(name)
        elif tuple(by_name[name].shape) != tuple(variable.shape):
            shapes.append(f"{name}: {tuple(by_name[name].shape)} -> "
                          f"{tuple(variable.shape)}")
    unexpected = sorted(set(by_name) - {_relative_path(v)
                                        for v in target.weights})
    if missing or shapes or unexpected:
        raise errors.BadInputError(
            f"Cannot copy {source.name} into {target.name}: missing "
            f"{missing}, unexpected {unexpected}, shapes differ {shapes}.")
    for variable in target.weights:
        variable.assign(by_name[_relative_path(variable)])


def compact_student(generator, keep, name, tolerance, verify_batch=16,
                    seed=0, rounding_factor=surgery.DEFAULT_ROUNDING_FACTOR):
    """The compact copy of a hard-masked `generator` (verified).

    Args:
      generator: a built Generator trained with hard masks `keep`.
      keep: {mask key: bool [width]}.
      name: the compact model's name (the student's, so checkpoints and
        summaries keep their names).
      tolerance: largest allowed |compact - masked| on a verify batch, or
        float32 rounding at the activations' scale when larger
        (`surgery.allowed_difference` with `rounding_factor`).

    Returns:
      (compact Generator, max abs difference).
    """
    architecture = architectures.of(generator)
    compact = architecture.build_compact(generator, keep, name=name)
    z = tf.random.stateless_normal((verify_batch, generator.dim_z),
                                   (seed, 1))
    labels = tf.range(verify_batch, dtype=tf.int32) % generator.num_classes
    result = architecture.compare(generator, compact, keep, z, labels,
                                  tolerance, rounding_factor)
    if result.worst > result.allowed:
        raise CompactionError(
            f"The compact student differs from the hard-masked one by "
            f"{result.worst:.3g} > {result.allowed:.3g} (the tolerance "
            f"{tolerance:g}, or {rounding_factor:g} float32 ulps of the "
            f"largest activation, {result.activation_scale:.3g}; "
            + (f"first beyond its own allowance at {result.first[0]}, by "
               f"{result.first[1]:.3g}" if result.first else
               "every feature tap within its allowance, only the images "
               "beyond it") + "). A surgery error differs by a sizeable "
            "fraction of the activations; a difference this small is "
            "float32 rounding: raise CompactPhase.compaction_rounding_factor"
            " or compaction_tolerance.")
    logging.info("Compact student verified: max |difference| %.3g <= %.3g "
                 "(largest activation %.3g).", result.worst, result.allowed,
                 result.activation_scale)
    return compact, result.worst


def _slots(optimizer):
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    return inner, {attr: getattr(inner, attr) for attr in SLOT_ATTRIBUTES
                   if getattr(inner, attr, None)}


def carry_optimizer_state(old_optimizer, new_optimizer, generator, compact,
                          keep):
    """Slices `old_optimizer`'s slots of `generator`'s trainable weights into
    `new_optimizer`'s slots of `compact`'s (built on them), and carries the
    iteration count. Returns the names of the carried slot lists."""
    old, old_slots = _slots(old_optimizer)
    new, new_slots = _slots(new_optimizer)
    new.iterations.assign(old.iterations)
    carried = []
    for attr, old_list in old_slots.items():
        if attr not in new_slots:
            continue
        # A scratch generator holding the slot values in place of weights:
        # surgery slices it exactly as it sliced the weights.
        scratch = type(generator).from_config(
            dict(generator.get_config(), name="slot_scratch"))
        scratch.build()
        for source, variable in zip(generator.trainable_variables,
                                    scratch.trainable_variables):
            variable.assign(old_list[old._get_variable_index(source)])
        sliced = architectures.of(scratch).build_compact(
            scratch, keep, name="slot_compact")
        for target, value in zip(compact.trainable_variables,
                                 sliced.trainable_variables):
            slot = new_slots[attr][new._get_variable_index(target)]
            slot.assign(value)
        carried.append(attr.strip("_"))
    logging.info("Optimizer state carried to the compact student: %s "
                 "(iterations %d).", carried, int(new.iterations.numpy()))
    return carried


def kept_index_lists(generator, keep):
    """{mask key: [int]} kept channel indices (for the run's records)."""
    return {key: [int(i) for i in index] for key, index in
            architectures.of(generator).kept_indices(generator,
                                                     keep).items()}
