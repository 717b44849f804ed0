"""What one compact PPCD training step spends its time on.

`compact_step_parts(trainer)` returns compiled pieces of a PPCD trainer's
step after the cut, each a zero-argument callable that runs one piece at
the step's own micro-batch (one device), so that `benchmark.
measure_train_steps(..., parts=True)` times them alternately with the
whole step:

  d_step            the D update (student G forward for its fakes, the
                    training D forward and backward on real + fake, Adam)
  g_step            the G update (everything below, the distillation
                    losses, the mask-free budget bookkeeping, Adam)
  teacher_g         the frozen teacher G's forward (images and feature taps)
  teacher_d         the frozen teacher D's forwards on the teacher's and
                    the student's images (left out when the recipe does
                    not run it: `DistillationObjective.needs_teacher_d`)
  student_g         the student G's forward and backward (a sum of its
                    images as the loss)
  training_d_input  the training D's forward and backward to its input (what
                    the G step's adversarial term costs)

With a teacher bank (`TeacherBank.size > 0`) teacher_g is left out (the G
step takes the teacher's outputs from the bank). With
`CompactPhase.discriminator_interval = 0` (no training D after the
cut) d_step and training_d_input are left out and g_step has no
adversarial term; with an interval k > 1 d_step is the cost of the steps
that update D (the whole step's timing averages over k steps).

The pieces overlap (the G step contains the last four), so their shares of
the whole step do not add up to 1; the D step plus the G step does, up to
the EMA update and the loop's bookkeeping.
"""

import tensorflow as tf

PART_NAMES = ("d_step", "g_step", "teacher_g", "teacher_d", "student_g",
              "training_d_input")


def _compiled(fn):
    return tf.function(fn, autograph=False)


def compact_step_parts(trainer, seed=0):
    """{part name: callable} of a PPCD trainer after its compact switch
    (`trainer.compacted`), run on `trainer.steps.strategy`'s one device;
    'teacher_d' is left out when the recipe never runs the teacher D,
    'd_step' and 'training_d_input' when it has no D after the cut."""
    steps = trainer.steps
    distillation = trainer.objective
    batch = steps.micro_batch
    generator = trainer.generator
    z = tf.random.stateless_normal((batch, generator.dim_z), (seed, 1))
    labels = tf.random.stateless_uniform((batch,), (seed, 2), 0,
                                         generator.num_classes, tf.int32)
    step = trainer.state.step
    iterator = trainer.make_iterator(int(step.numpy()))
    strategy = steps.strategy
    d_step = _compiled(lambda: strategy.run(
        steps.d_replica_step, args=(next(iterator), step.read_value(), 0)))
    with_d = steps.d_schedule.interval != 0  # the recipe keeps a D

    def g_replica_step():
        steps.adversarial_active = with_d
        try:
            return strategy.run(steps.g_replica_step,
                                args=(step.read_value(),))
        finally:
            steps.adversarial_active = True

    g_step = _compiled(g_replica_step)
    teacher_g = _compiled(lambda: distillation.teacher_outputs(z, labels))
    teacher_images = teacher_g()[0]
    fake = generator(z, labels, training=False)

    def student_g():
        with tf.GradientTape() as tape:
            images = generator(z, labels, training=True)
            loss = tf.reduce_sum(tf.cast(images, tf.float32))
        return tape.gradient(loss, generator.trainable_variables)

    def training_d_input():
        with tf.GradientTape() as tape:
            tape.watch(fake)
            logits = trainer.discriminator(fake, labels, training=True)
            loss = tf.reduce_sum(tf.cast(logits, tf.float32))
        return tape.gradient(loss, fake)

    parts = {"g_step": lambda: _fetch(g_step())}
    if not trainer.bank.enabled:  # with a bank the G step never runs it
        parts["teacher_g"] = lambda: _fetch(teacher_g())
    if with_d:
        parts["d_step"] = lambda: _fetch(d_step())
    if distillation.needs_teacher_d():
        teacher_d = _compiled(lambda: distillation.teacher_d_features(
            fake, teacher_images, labels))
        parts["teacher_d"] = lambda: _fetch(teacher_d())
    student_g = _compiled(student_g)
    training_d_input = _compiled(training_d_input)
    parts["student_g"] = lambda: _fetch(student_g())
    if with_d:
        parts["training_d_input"] = lambda: _fetch(training_d_input())
    return parts


def _fetch(structure):
    """Waits for every tensor of a result (the timing covers the work)."""
    for tensor in tf.nest.flatten(structure):
        if isinstance(tensor, tf.Tensor):
            tensor.numpy()
    return structure


def shares(part_seconds, step_seconds):
    """{part: its seconds / the whole compact step's seconds}."""
    return {name: seconds / step_seconds
            for name, seconds in part_seconds.items()}


def markdown(part_seconds, step_seconds, teacher_seconds):
    """The parts as a markdown table (seconds, share of the compact step,
    share of a teacher step)."""
    lines = ["| part of a compact step | s (median) | of the compact step |"
             " of a teacher step |", "|---|---:|---:|---:|"]
    rows = [("whole compact step", step_seconds)] + [
        (name, part_seconds[name]) for name in PART_NAMES
        if name in part_seconds]
    for name, seconds in rows:
        lines.append(f"| {name} | {seconds:.4f} | "
                     f"{seconds / step_seconds:.2f} | "
                     f"{seconds / teacher_seconds:.2f} |")
    return "\n".join(lines)
