"""The end-to-end demo at tiny size, the pruning history it plots, and the
slim-teacher format it starts from."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf.reporting import report as report_lib
from ppcd_tf.runs import run_dir
from ppcd_tf.training import ppcd_trainer
from ppcd_tf.workflows import demo
from ppcd_tf.workflows import teachers
from tests import helpers

PPCD_STEPS = 4
# The demo's PPCD stage at tiny size (the teacher fixes the model sizes).
TINY_DEMO_BINDINGS = ["GLOBAL_BATCH_SIZE = 4", "TrainLoop.steps_per_loop = 1",
                      "SampleGrid.samples_per_class = 2",
                      "SampleGrid.max_sample_classes = 2",
                      "PruningBudget.min_channels = 1"]


def _png_shape(path):
    return tf.io.decode_png(tf.io.read_file(path)).shape


@pytest.mark.slow
class TinyDemoTest(tf.test.TestCase):
    """`python -m ppcd_tf.demo` end to end on a tiny teacher."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        root = tf.compat.v1.test.get_temp_dir()
        run_dir = helpers.tiny_fmnist_teacher_dir()
        cls.teacher_dir = os.path.join(root, "demo_teacher")
        teachers.write_slim_teacher(run_dir, cls.teacher_dir,
                                    record={"command": "tiny test teacher"},
                                    overwrite=True)
        cls.output_dir = os.path.join(root, "demo")
        argv = [sys.executable, "-m", "ppcd_tf.demo",
                "--teacher_dir", cls.teacher_dir,
                "--output_dir", cls.output_dir,
                "--target_ratio", "0.5", "--ppcd_steps", str(PPCD_STEPS),
                "--log_every", "1", "--num_samples", "60", "--seeds", "0,1",
                "--num_real", "300", "--train_repeats", "1",
                "--repeats", "1"]
        for binding in TINY_DEMO_BINDINGS:
            argv += ["--gin_param", binding]
        cls.result = subprocess.run(
            argv, cwd=helpers.REPO_ROOT, env=helpers.python_env(),
            capture_output=True, text=True, timeout=900, check=False)

    def setUp(self):
        super().setUp()
        self.assertEqual(self.result.returncode, 0,
                         self.result.stderr[-4000:])

    def test_writes_every_report_file(self):
        report_dir = os.path.join(self.output_dir, "report")
        # Fresh exports have the interpolate signature: every figure.
        names = os.listdir(report_dir)
        events = [n for n in names if n.startswith("events.out.tfevents.")]
        self.assertCountEqual(sorted(set(names) - set(events)),
                              report_lib.REPORT_FILES
                              + report_lib.OPTIONAL_REPORT_FILES)
        # The report as TensorBoard text (the run `report`).
        self.assertLen(events, 1)
        tags = helpers.read_events(report_dir)
        (step, plugin, text), = tags[report_lib.REPORT_TEXT_TAG]
        self.assertEqual((step, plugin), (0, "text"))
        with open(os.path.join(report_dir, "report.json")) as f:
            measured = {row["name"]: row["measured"]
                        for row in json.load(f)["targets"]}
        for name in ("compression (teacher / student params)",
                     "student FID / teacher FID",
                     "student / teacher images/s"):
            (_, _, value), = tags[report_lib.REPORT_SCALARS[name]]
            self.assertAllClose(float(value), measured[name], rtol=1e-6)
        with open(os.path.join(report_dir, "report.md")) as f:
            self.assertEqual(text.item().decode(), f.read())
        # An HParams session with the PPCD run's settings: the table shows
        # the exported student's figures in a row with what made them.
        tags = helpers.read_events(report_dir, with_metadata=True)
        ppcd_tags = helpers.read_events(
            os.path.join(self.output_dir, "ppcd", "train"), with_metadata=True)
        settings = helpers.session_hparams(tags)
        self.assertIsNotNone(settings)
        self.assertEqual(settings, helpers.session_hparams(ppcd_tags))
        self.assertIn("TARGET_PARAM_RATIO", settings)
        for name in ("ppcd", "teacher_export", "student_export"):
            self.assertTrue(os.path.isdir(os.path.join(self.output_dir,
                                                       name)))
        # Progress of every stage is visible.
        for stage in ("PPCD compression", "teacher export", "student export",
                      "report"):
            self.assertIn(f"[demo] {stage} done", self.result.stderr)
        self.assertIn(f"step {PPCD_STEPS}/{PPCD_STEPS}", self.result.stderr)

    def test_report_json_has_both_sides(self):
        with open(os.path.join(self.output_dir, "report",
                               "report.json")) as f:
            report = json.load(f)
        for side in ("teacher", "student"):
            entry = report[side]
            for key in ("params", "macs", "saved_model",
                        "saved_model_bytes", "images_per_sec", "fid", "kid",
                        "intra_fid", "class_accuracy"):
                self.assertIsNotNone(entry[key], (side, key))
            self.assertTrue(os.path.isdir(entry["saved_model"]))
            self.assertGreater(entry["saved_model_bytes"], 0)
            self.assertTrue(0.0 <= entry["class_accuracy"] <= 1.0)
        self.assertLess(report["student"]["params"],
                        report["teacher"]["params"])
        self.assertLess(report["student"]["macs"], report["teacher"]["macs"])
        self.assertGreater(report["train_step_ratio"], 0.0)
        self.assertEqual(report["computed"]["num_samples_per_seed"], 60)
        self.assertEqual(report["computed"]["seeds"], [0, 1])
        # Both exports timed in TFLite too, with targets of their own.
        tflite = report["generation"]["tflite"]
        for side in ("teacher", "student"):
            self.assertGreater(tflite[side]["images_per_sec"], 0.0)
            self.assertGreater(
                tflite["batch1"][side]["seconds_per_batch"], 0.0)
        names = [row["name"] for row in report["targets"]]
        self.assertIn("student / teacher images/s, TFLite", names)
        self.assertIn("student / teacher images/s at batch 1, TFLite", names)
        self.assertEqual(
            report["computed"]["real_statistics"]["num_examples"], 300)
        names = [t["name"] for t in report["targets"]]
        self.assertIn("student FID / teacher FID", names)
        with open(os.path.join(self.output_dir, "student_export",
                               "assets.extra", "metadata.json")) as f:
            self.assertEqual(json.load(f)["params"],
                             report["student"]["params"])

    def test_report_md_and_images(self):
        with open(os.path.join(self.output_dir, "report", "report.md")) as f:
            text = f.read()
        for row in ("generator parameters", "MACs per image",
                    "SavedModel size", "CPU images/s", "FID", "KID",
                    "intra-FID", "class accuracy of samples"):
            self.assertIn(f"| {row}", text)
        report_dir = os.path.join(self.output_dir, "report")
        teacher = _png_shape(os.path.join(report_dir, "teacher_samples.png"))
        student = _png_shape(os.path.join(report_dir, "student_samples.png"))
        self.assertEqual(teacher, student)
        # One row per class (10), DEFAULT_GRID_COLUMNS columns of 32 px.
        self.assertEqual(teacher[0], 10 * 33 + 1)
        self.assertEqual(teacher[1],
                         report_lib.DEFAULT_GRID_COLUMNS * 33 + 1)
        side = _png_shape(os.path.join(report_dir,
                                       "samples_side_by_side.png"))
        self.assertGreater(side[1], 2 * teacher[1])
        self.assertEqual(len(_png_shape(os.path.join(report_dir,
                                                     "pruning.png"))), 3)
        # Truncation sweep: one row per truncation; interpolation: one row
        # per z, INTERPOLATION_STEPS columns (teacher | student).
        truncation = _png_shape(os.path.join(report_dir,
                                             report_lib.TRUNCATION_FILE))
        self.assertEqual(truncation[0], len(report_lib.TRUNCATIONS) * 33 + 1)
        self.assertEqual(truncation[1], side[1])
        interpolation = _png_shape(os.path.join(
            report_dir, report_lib.INTERPOLATION_FILE))
        self.assertEqual(interpolation[0],
                         report_lib.INTERPOLATION_ROWS * 33 + 1)
        self.assertGreater(interpolation[1],
                           2 * (report_lib.INTERPOLATION_STEPS * 33 + 1))

    def test_pruning_history_reaches_the_budget(self):
        history = run_dir.read_pruning_history(
            os.path.join(self.output_dir, "ppcd"))
        self.assertEqual([h["step"] for h in history],
                         list(range(1, PPCD_STEPS + 1)))
        last = history[-1]
        self.assertTrue(last["hardened"])
        self.assertLessEqual(last["live_params"], last["target_params"])
        self.assertLess(last["live_params"], history[0]["live_params"])
        with open(os.path.join(self.output_dir, "report",
                               "report.json")) as f:
            report = json.load(f)
        self.assertEqual(report["student"]["params"], last["live_params"])

    def test_step_timing_times_the_runs_compact_student(self):
        with open(os.path.join(self.output_dir, "train_steps.json")) as f:
            timing = json.load(f)
        structure = run_dir.read_pruning_structure(
            os.path.join(self.output_dir, "ppcd"))
        # Cut as the run was (pruning.json), with the demo's bindings.
        self.assertEqual(timing["ppcd_compact_channels"],
                         structure["compact_channels"])
        self.assertIn("GLOBAL_BATCH_SIZE = 4", timing["gin_params"])
        self.assertGreater(timing["ppcd_compact_seconds_per_step"], 0)

    def test_rerun_resumes_and_rewrites_the_report(self):
        # The PPCD run is finished: a rerun does not train again.
        argv = demo.commands(self.output_dir, self.teacher_dir, 0.5,
                             PPCD_STEPS, 1, TINY_DEMO_BINDINGS, 60, [0], 0,
                             1, None, 300)[0][1]
        result = subprocess.run(argv, cwd=helpers.REPO_ROOT,
                                env=helpers.python_env(),
                                capture_output=True, text=True, timeout=300,
                                check=False)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertNotIn("step 1/", result.stderr)


def test_slim_teacher_keeps_only_what_ppcd_reads(tmp_path):
    run_dir = helpers.tiny_fmnist_teacher_dir()
    slim = str(tmp_path / "slim")
    path = teachers.write_slim_teacher(run_dir, slim,
                                       record={"command": "x"})
    roots = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
    assert roots == {"generator_ema", "discriminator", "step",
                     "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"}
    record = teachers.read_record(slim)
    assert record["step"] == 2 and record["command"] == "x"
    # The EMA generator is copied exactly.
    for name, _ in tf.train.list_variables(path):
        if name.startswith("generator_ema/"):
            source = tf.train.load_variable(
                tf.train.latest_checkpoint(os.path.join(run_dir,
                                                        "checkpoints")),
                name)
            np.testing.assert_array_equal(tf.train.load_variable(path, name),
                                          source)
    # Relative checkpoint state: the directory can be moved.
    moved = str(tmp_path / "moved")
    os.rename(slim, moved)
    assert tf.train.latest_checkpoint(os.path.join(moved, "checkpoints"))
    with pytest.raises(FileExistsError):
        teachers.write_slim_teacher(run_dir, moved)


def test_validating_pipeline_exports_the_best_student():
    teacher = teachers.shipped_teacher_dir()
    stages = dict(demo.commands(
        "out", teacher, 0.19, 3000, 50, [], 100, [0], 0, 1, None,
        validate_every=150))
    train = stages["PPCD compression"]
    assert "extras/validation.gin" in train
    assert "TrainLoop.validate_every = 150" in train
    assert "TrainLoop.checkpoint_every = 150" in train
    export = stages["student export"]
    assert export[export.index("--checkpoint") + 1] == "best"
    assert "--checkpoint" not in stages["teacher export"]
    # Without validation: the newest checkpoint, no validation file.
    plain = dict(demo.commands(
        "out", teacher, 0.19, 3000, 50, [], 100, [0], 0, 1, None))
    assert "extras/validation.gin" not in plain["PPCD compression"]
    assert "--checkpoint" not in plain["student export"]


def _gin_files_of(argv):
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--gin_file"]


def test_ppcd_run_reads_the_teachers_model_file_and_extra_files(tmp_path):
    """The PPCD run's model gin file follows the teacher's family
    (models.json); --gin_file's files come after the package's, before the
    demo's bindings."""
    shipped = dict(demo.commands(
        "out", teachers.shipped_teacher_dir(), 0.19, 1200, 25, [], 100, [0],
        0, 1, None))["PPCD compression"]
    assert _gin_files_of(shipped) == [
        "data/fashion_mnist32.gin", "model/biggan32.gin",
        "stage/teacher.gin", "stage/ppcd.gin"]
    deep_teacher = tmp_path / "deep_teacher"
    deep_teacher.mkdir()
    (deep_teacher / "models.json").write_text(json.dumps({
        "architecture": "biggan_deep", "discriminator": None,
        "generator": {"ch": 16, "num_classes": 10, "dim_z": 128,
                      "resolution": 32}}))
    experiment = "experiments/fashion_mnist32_deep_ppcd_5x.gin"
    deep = dict(demo.commands(
        "out", str(deep_teacher), 0.19, 1200, 25, [], 100, [0], 0, 1, None,
        gin_files=[experiment]))["PPCD compression"]
    assert _gin_files_of(deep) == [
        "data/fashion_mnist32.gin", "model/biggan_deep32.gin",
        "stage/teacher.gin", "stage/ppcd.gin", experiment]
    assert deep.index(experiment) < deep.index("--gin_param")
    # The step timing reads the same extra files after its stage file.
    timing = dict(demo.commands(
        "out", str(deep_teacher), 0.19, 1200, 25, [], 100, [0], 1, 1, None,
        gin_files=[experiment]))["training step timing"]
    assert timing[timing.index("--extra_gin_file") + 1] == experiment
    assert timing.count("--extra_gin_file") == 1


@pytest.mark.parametrize("cut, steps, expected", [
    (300, 1800, 300), (300, 2000, 300), (300, 1500, 300), (300, 301, 300),
    (300, 300, 50), (300, 4, 1), (1, 2, 1)])
def test_cut_fraction_puts_the_cut_at_the_step(cut, steps, expected):
    fraction = demo.cut_fraction(cut, steps)
    # As PPCDTrainer computes its cut step from the fraction.
    assert max(1, int(round(fraction * steps))) == expected


def test_cut_fraction_refuses_non_positive_steps():
    with pytest.raises(errors.BadInputError):
        demo.cut_fraction(0, 100)
    with pytest.raises(errors.BadInputError):
        demo.cut_fraction(300, 0)
