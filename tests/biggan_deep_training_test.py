"""A BigGAN-deep teacher trained from gin (gin/model/biggan_deep32.gin), and
PPCD on its bottleneck blocks through the cut, the compact switch and a
resume (issue 35, item 3)."""

import gin
import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.exporting import pipeline
from ppcd_tf.exporting import saved_model
from ppcd_tf.models import biggan_deep
from ppcd_tf.models import biggan_deep_discriminator
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import architectures
from ppcd_tf.runs import run_dir
from ppcd_tf.training import ppcd_trainer
from ppcd_tf.training import trainer as trainer_lib
from ppcd_tf.workflows import benchmark
from tests import helpers

DEEP_FILES = ["data/fake.gin", "model/biggan_deep32.gin",
              "stage/teacher.gin"]
DEEP_BINDINGS = list(helpers.TINY_BINDINGS) + [
    "build_deep_generator.dim_z = 8", "build_deep_generator.embed_dim = 8",
    "TrainLoop.sample_every = 0"]
TARGET_RATIO = 0.5

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deep_teacher(tmp_path_factory):
    """A ch-4 BigGAN-deep teacher trained 2 steps (EMA from step 1)."""
    model_dir = str(tmp_path_factory.mktemp("deep") / "teacher")
    helpers.parse(DEEP_FILES, DEEP_BINDINGS + [
        "TrainLoop.num_steps = 2", "GanSteps.ema_start_step = 1",
        "GanSteps.ema_decay = 0.5"])
    helpers.train_eagerly(trainer_lib.Trainer(model_dir=model_dir,
                                              strategy=helpers.one_device()))
    gin.clear_config()
    return model_dir


def _inputs(generator, batch=4):
    z = tf.random.stateless_normal((batch, generator.dim_z), (5, 6))
    return z, tf.constant([0, 3, 7, 9][:batch])


def test_deep_teacher_run_is_recorded_and_restored(deep_teacher):
    configs = run_dir.read_model_configs(deep_teacher)
    assert configs["architecture"] == run_dir.BIGGAN_DEEP
    assert configs["generator"]["ch"] == 4
    assert configs["discriminator"]["depth"] == 2
    restored = run_dir.restore_generator(deep_teacher)
    assert isinstance(restored.generator, biggan_deep.DeepGenerator)
    assert restored.kind == "teacher" and restored.step == 2
    images = restored.generate(*_inputs(restored.generator))
    assert images.shape == (4, 32, 32, configs["dataset"]["image_channels"])
    generator, discriminator, _ = run_dir.restore_teacher(deep_teacher)
    assert isinstance(discriminator,
                      biggan_deep_discriminator.DeepDiscriminator)
    np.testing.assert_allclose(
        generator(*_inputs(generator)).numpy(), images.numpy(), atol=1e-6)


def _ppcd(teacher_dir, model_dir, num_steps):
    helpers.parse(DEEP_FILES + ["stage/ppcd.gin"], DEEP_BINDINGS + [
        f"TEACHER_DIR = '{teacher_dir}'",
        f"TARGET_PARAM_RATIO = {TARGET_RATIO}",
        "PruningBudget.min_channels = 1",
        "PruningPhase.prune_end_fraction = 0.5",
        "TrainLoop.checkpoint_every = 2",
        f"TrainLoop.num_steps = {num_steps}"])
    return ppcd_trainer.PPCDTrainer(model_dir=model_dir,
                                    strategy=helpers.one_device())


def test_ppcd_prunes_the_deep_blocks_through_the_cut_and_resumes(
        deep_teacher, tmp_path):
    model_dir = str(tmp_path / "ppcd")
    trainer = _ppcd(deep_teacher, model_dir, 2)  # cut at step 1
    assert trainer.pruning.architecture.kind == "biggan_deep"
    assert "stage2" in trainer.pruning.masks.widths
    helpers.train_eagerly(trainer)
    gin.clear_config()
    assert int(trainer.step.numpy()) == 2 and trainer.compacted
    student = trainer.generator
    assert isinstance(student, biggan_deep.DeepGenerator) and student.compact
    # The compact student has the budget's parameter count, within it.
    structure = run_dir.read_pruning_structure(model_dir)
    assert structure["phase"] == run_dir.PHASE_COMPACT
    assert structure["compact_channels"] == student.widths.to_dict()
    kept = {key: len(index) for key, index in
            structure["kept_indices"].items()}
    architecture = architectures.of(trainer.teacher_generator)
    params = generator_lib.count_trainable_parameters(student)
    assert params == architecture.live_parameters(kept)
    assert params <= TARGET_RATIO * architecture.live_parameters({})
    # The run's newest checkpoint restores the compact EMA student.
    restored = run_dir.restore_generator(model_dir)
    assert restored.kind == "ppcd" and restored.generator.compact
    assert restored.generator.widths == student.widths
    z, labels = _inputs(student)
    np.testing.assert_allclose(
        restored.generate(z, labels).numpy(),
        trainer.steps.state.generator_ema(z, labels).numpy(), atol=1e-6)
    # A resumed run continues the compact student from its checkpoint.
    resumed = _ppcd(deep_teacher, model_dir, 3)
    helpers.train_eagerly(resumed)
    gin.clear_config()
    assert int(resumed.step.numpy()) == 3
    assert resumed.generator.widths == student.widths
    # The export: the compact EMA student as a SavedModel, its images equal
    # to the run's, its widths and sizes recorded.
    export_dir = str(tmp_path / "export")
    report = pipeline.export_run(model_dir, export_dir)
    assert report["params"] == params
    assert report["source_params"] == generator_lib.count_trainable_parameters(
        run_dir.restore_generator(deep_teacher).generator)
    assert 0 < report["macs_per_image"] < report["source_macs_per_image"]
    assert {row["layer"]: row["kept"] for row in report["layers"]} == kept
    assert saved_model.read_channel_config(export_dir) == \
        student.widths.to_dict()
    loaded = saved_model.load_export(export_dir)
    restored = run_dir.restore_generator(model_dir)
    np.testing.assert_allclose(loaded.generate(z, labels).numpy(),
                               restored.generate(z, labels).numpy(),
                               atol=1e-5)
    mixed = loaded.interpolate(z, labels, tf.constant([1, 1, 2, 2]),
                               tf.zeros([4]))
    np.testing.assert_allclose(mixed.numpy(),
                               loaded.generate(z, labels).numpy(), atol=1e-5)
    # Step timing (time_training, the demo's fourth stage) cuts its timed
    # student as the run was cut (its steps are not run here: the subject
    # is what is built; the command is timed end to end in demo_test).
    helpers.parse(DEEP_FILES + ["stage/ppcd.gin"], DEEP_BINDINGS + [
        f"TARGET_PARAM_RATIO = {TARGET_RATIO}",
        "PruningBudget.min_channels = 1"])
    timers, channels = benchmark._step_timers(
        "ppcd_compact", str(tmp_path / "timed"), helpers.one_device(),
        deep_teacher, model_dir, cut=True, parts=False)
    gin.clear_config()
    assert channels == structure["compact_channels"]
    assert sorted(timers) == ["ppcd_compact"]


def test_imported_deep_generator_without_d_is_refused_as_a_teacher(
        deep_teacher, tmp_path):
    import json
    import shutil
    copy = str(tmp_path / "no_d")
    shutil.copytree(deep_teacher, copy)
    path = f"{copy}/{run_dir.MODELS_FILE}"
    with open(path) as f:
        configs = json.load(f)
    configs["discriminator"] = None
    with open(path, "w") as f:
        json.dump(configs, f)
    with pytest.raises(errors.BadInputError, match="without a discriminator"):
        run_dir.restore_teacher(copy)


def test_ppcd_compresses_an_imported_deep_generator_without_a_d(tmp_path):
    """The PyTorch port's BigGAN-deep (the 128x128 ch-4 fixture: no D,
    per-truncation statistics) as PPCD's teacher: a fresh BigGAN-deep D
    from gin, the student without the tables, through the cut to a run
    the exporter takes."""
    import os
    from ppcd_tf.importing import biggan_deep_pytorch
    from ppcd_tf.importing import teacher_run
    fixtures = os.path.join(helpers.REPO_ROOT, "tests", "fixtures",
                            "biggan_deep_128_ch4")
    imported, config = biggan_deep_pytorch.import_generator(fixtures)
    teacher_dir = str(tmp_path / "imported")
    teacher_run.write_teacher_run(
        teacher_dir, imported, None,
        {"name": "fake", "resolution": 128, "num_classes": 10,
         "image_channels": 3, "class_names": None},
        {"format": "biggan_deep_pytorch"},
        teacher_run.deep_model_bindings(config),
        architecture=run_dir.BIGGAN_DEEP)
    files = DEEP_FILES + ["stage/ppcd.gin"]
    bindings = DEEP_BINDINGS + [
        "RESOLUTION = 128", "GLOBAL_BATCH_SIZE = 2",
        f"TEACHER_DIR = '{teacher_dir}'", "TARGET_PARAM_RATIO = 0.5",
        "PruningBudget.min_channels = 1",
        "PruningPhase.prune_end_fraction = 0.5",
        "TrainLoop.checkpoint_every = 2", "TrainLoop.num_steps = 2"]
    # Without teacher_without_d.gin the distillation would read a teacher D.
    helpers.parse(files, bindings)
    with pytest.raises(errors.BadInputError, match="teacher_without_d.gin"):
        ppcd_trainer.PPCDTrainer(model_dir=str(tmp_path / "refused"),
                                 strategy=helpers.one_device())
    gin.clear_config()
    helpers.parse(files + ["extras/teacher_without_d.gin"], bindings)
    model_dir = str(tmp_path / "ppcd")
    trainer = ppcd_trainer.PPCDTrainer(model_dir=model_dir,
                                       strategy=helpers.one_device())
    assert isinstance(trainer.discriminator,
                      biggan_deep_discriminator.DeepDiscriminator)
    assert trainer.generator.truncation_rows == 0
    assert trainer.teacher_generator.truncation_rows == imported.truncation_rows
    helpers.train_eagerly(trainer)
    gin.clear_config()
    assert int(trainer.step.numpy()) == 2 and trainer.compacted
    params = generator_lib.count_trainable_parameters(trainer.generator)
    assert params <= TARGET_RATIO * architectures.of(
        trainer.teacher_generator).live_parameters({})
    # Its student has no tables; the exporter takes it (the export itself
    # is the one tested above), and the imported generator with its tables
    # too (its export: tests/biggan_deep_import_test.py).
    restored = pipeline.load_run(model_dir)
    assert restored.generator.truncation_rows == 0
    assert generator_lib.count_trainable_parameters(
        restored.compact_generator()) == params
    assert pipeline.load_run(teacher_dir).generator.truncation_rows == 51
