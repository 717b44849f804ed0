"""The ImageNet 128 run book on CPU: the 128x128 ch-96 1,000-class PPCD
trainer from an (imported-style) teacher run, one step at a tiny batch on
fake data; the first step's time (with tracing) and the peak memory are
printed. With PPCD_RUNBOOK_TIMED_STEP=1 in the environment a second,
traced-already step is timed too (BENCHMARKS.md's figure; it costs the suite
another ~40 s, so it is off by default).

The teacher here has freshly initialised weights written as
`ppcd_tf.import_teacher` writes an imported one (the import's own
equivalence is tested in import_teacher_test.py); what is checked is that
the run book's configuration builds, steps and holds the published sizes.
"""

import os
import resource
import time

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf.importing import teacher_run
from ppcd_tf.models import builders
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.training import ppcd_trainer
from tests import helpers

GIN_FILES = ["data/fake.gin", "model/biggan128.gin", "stage/teacher.gin",
             "stage/ppcd.gin", "experiments/imagenet128_ppcd_5x.gin"]
NUM_CLASSES = 1000
TINY_BATCH = 2
# BigGAN-PyTorch's ImageNet 128 G (models/generator.py's table).
TEACHER_G_PARAMS = 70_433_988
INITIALIZER = "random_normal"
TIMED_STEP_ENV = "PPCD_RUNBOOK_TIMED_STEP"


def _write_teacher(path):
    # A cheap initializer (orthogonal init of 1536-wide kernels takes
    # minutes on 2 cores); the student models inherit it from models.json.
    generator = builders.build_generator(
        128, NUM_CLASSES, 3, ch=96, attention="64", name="generator_ema",
        kernel_initializer=INITIALIZER)
    discriminator = builders.build_discriminator(
        128, NUM_CLASSES, 3, ch=96, attention="64", name="discriminator",
        kernel_initializer=INITIALIZER)
    generator.build()
    discriminator.build()
    dataset = {"name": "fake", "resolution": 128,
               "num_classes": NUM_CLASSES, "image_channels": 3,
               "class_names": None}
    teacher_run.write_teacher_run(path, generator, discriminator, dataset,
                                  {"format": "initialised"}, "")
    return generator_lib.count_trainable_parameters(generator)


@pytest.mark.slow
def test_imagenet128_ppcd_trainer_steps_on_cpu(tmp_path, capsys):
    teacher = str(tmp_path / "teacher")
    assert _write_teacher(teacher) == TEACHER_G_PARAMS
    helpers.parse(GIN_FILES, [
        "RESOLUTION = 128", f"GLOBAL_BATCH_SIZE = {TINY_BATCH}",
        f"ImageDataset.fake_num_classes = {NUM_CLASSES}",
        "ImageDataset.fake_num_examples = 8",
        f"TEACHER_DIR = '{teacher}'", "TrainLoop.num_steps = 2",
        "TrainLoop.sample_every = 0", "TrainLoop.validate_every = 0",
        "TrainLoop.checkpoint_every = 2", "TrainLoop.log_every = 1"])
    trainer = ppcd_trainer.PPCDTrainer(model_dir=str(tmp_path / "ppcd"),
                                       strategy=helpers.one_device())
    assert generator_lib.count_trainable_parameters(
        trainer.generator) == TEACHER_G_PARAMS
    iterator = trainer.make_iterator(0)
    start = time.perf_counter()
    first = trainer.run_steps(iterator, 1)  # traces the step
    traced = time.perf_counter() - start
    assert np.isfinite(first["g_loss"])
    assert "g_loss_class_aware" in first and "g_loss_d_features" in first
    timed = ""
    if os.environ.get(TIMED_STEP_ENV) == "1":
        start = time.perf_counter()
        second = trainer.run_steps(iterator, 1)
        timed = f"{time.perf_counter() - start:.1f} s, "
        assert np.isfinite(second["g_loss"])
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    with capsys.disabled():
        print(f"\n[imagenet128 run book] PPCD step at batch {TINY_BATCH} on "
              f"CPU: {timed}first step with tracing {traced:.1f} s, "
              f"peak RSS {peak_gib:.1f} GiB")
    tf.keras.backend.clear_session()
