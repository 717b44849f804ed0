"""tools/benchmark.py --exports: teacher vs student generation at several
batch sizes, side by side in one process. Timings are not asserted (the
machine is shared); the arithmetic of the rows and the command's contract
(table, JSON, exit statuses) are."""

import json
import os
import subprocess
import sys

import tensorflow as tf

from ppcd_tf.workflows import benchmark
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GenerationSweepTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The same generator exported two ways (BN unfolded, folded).
        cls.exports = [helpers.tiny_teacher_export(fold_batch_norm=False),
                       helpers.tiny_teacher_export()]

    def test_rows(self):
        from ppcd_tf.workflows import equal_macs
        floor = equal_macs.write_width_export(
            equal_macs.teacher_generator(helpers.tiny_teacher_dir()), 2,
            os.path.join(self.create_tempdir().full_path, "floor"))
        self.assertEqual(max(floor["counts"].values()), 2)
        rows = benchmark.generation_sweep(
            *self.exports, [1, 3], repeats=2, warmup=1,
            runtimes=("tensorflow", "tflite"), floor_export=floor["path"])
        self.assertEqual([(r["runtime"], r["batch_size"]) for r in rows],
                         [("tensorflow", 1), ("tensorflow", 3),
                          ("tflite", 1), ("tflite", 3)])
        for r in rows:
            self.assertAllClose(r["floor_time_fraction"],
                                r["floor_seconds_per_batch"]
                                / r["teacher_seconds_per_batch"])
            self.assertAllClose(r["floor_gmacs_per_sec"],
                                r["floor_images_per_sec"]
                                * floor["macs_per_image"] / 1e9)
            self.assertAllClose(r["speedup"], r["student_images_per_sec"]
                                / r["teacher_images_per_sec"])
            self.assertEqual(r["mac_ratio"], 1.0)  # the same generator
            self.assertAllClose(r["fraction_of_mac_limit"], r["speedup"])
            self.assertAllClose(r["teacher_images_per_sec"],
                                r["batch_size"]
                                / r["teacher_seconds_per_batch"])
            self.assertGreater(r["student_gmacs_per_sec"], 0.0)
        table = benchmark.sweep_markdown(rows)
        self.assertLen(table.splitlines(), 6)
        self.assertIn("| tflite | 3 |", table)
        self.assertIn("floor / teacher time", table)

    def _run(self, *flags):
        return subprocess.run(
            [sys.executable, os.path.join(ROOT, "tools", "benchmark.py"),
             *flags], capture_output=True, text=True, cwd=ROOT, check=False,
            timeout=600)

    def test_command(self):
        output = os.path.join(self.create_tempdir().full_path, "sweep.json")
        # One batch: test_rows covers several batches in both runtimes
        # (each TFLite model is converted per batch, a few seconds each).
        result = self._run("--exports", ",".join(self.exports), "--batches",
                           "1", "--repeats", "1", "--warmup", "1",
                           "--teacher_dir", helpers.tiny_teacher_dir(),
                           "--runtimes", "tensorflow,tflite",
                           "--floor_width", "3", "--output", output)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("fraction of MAC limit", result.stdout)
        self.assertIn("batch-1 latency (tensorflow)", result.stdout)
        self.assertIn("batch-1 latency (tflite)", result.stdout)
        self.assertIn("student / uniform", result.stdout)
        self.assertIn("batch 1, each in its fastest runtime", result.stdout)
        with open(output) as f:
            record = json.load(f)
        self.assertEqual([(r["runtime"], r["batch_size"])
                          for r in record["rows"]],
                         [("tensorflow", 1), ("tflite", 1)])
        self.assertEqual(record["best_runtime"],
                         benchmark.best_runtime_speedups(record["rows"]))
        self.assertEqual(record["floor"]["width"], 3)
        # Layers narrower than 3 (the tiny attention's) keep their width.
        self.assertEqual(max(record["floor"]["counts"].values()), 3)
        # The student is the teacher itself: its equal-MAC uniform
        # thinning keeps every channel.
        reference = record["uniform_reference"]
        self.assertEqual(reference["fraction"], 1.0)
        teacher_macs = json.load(open(os.path.join(
            self.exports[0], "assets.extra", "metadata.json")))[
                "macs_per_image"]
        self.assertEqual(reference["macs_per_image"], teacher_macs)
        for r in record["rows"]:
            self.assertAllClose(r["student_vs_reference"],
                                r["student_images_per_sec"]
                                / r["reference_images_per_sec"])

    def _refusals(self):
        """Results of the refused invocations, run in one batch (one
        interpreter start for all; tests/cli_batch.py): {name: result}."""
        if not hasattr(type(self), "_refused"):
            pair = ",".join(self.exports)
            cases = {
                # The default --teacher_dir (the shipped teacher) is not the
                # tiny teacher these exports came from.
                "another_architecture": ["--exports", pair, "--batches", "1",
                                         "--repeats", "1"],
                "batches": ["--exports", pair, "--batches", "0"],
                "one_export": ["--exports", self.exports[0]],
                "missing_export": ["--exports",
                                   f"{self.exports[0]},/nonexistent"],
                "runtimes": ["--exports", pair, "--runtimes", "onnx"],
                "floor_width": ["--exports", pair, "--floor_width", "-1"],
                "no_teacher": ["--exports", pair, "--teacher_dir",
                               "/nonexistent"],
            }
            results = helpers.run_cli_batch({
                "script": os.path.join(ROOT, "tools", "benchmark.py"),
                "cases": list(cases.values())})
            type(self)._refused = dict(zip(cases, results))
        return type(self)._refused

    def test_reference_of_another_architecture_is_refused(self):
        """Exit 2 before any timing, with what to give instead."""
        result = self._refusals()["another_architecture"]
        self.assertEqual(result["status"], 2, result["stderr"][-2000:])
        self.assertIn("give --teacher_dir the teacher run it was exported "
                      "from", result["stderr"])
        self.assertNotIn("Traceback", result["stderr"])

    def test_bad_input(self):
        refused = self._refusals()
        self.assertEqual(refused["batches"]["status"], 2)
        self.assertIn("--batches", refused["batches"]["stderr"])
        self.assertEqual(refused["one_export"]["status"], 2)
        missing = refused["missing_export"]
        self.assertEqual(missing["status"], 3, missing["stderr"][-2000:])
        for flag in ("--runtimes", "--floor_width"):
            result = refused[flag.strip("-")]
            self.assertEqual(result["status"], 2, result["stderr"][-2000:])
            self.assertIn(flag, result["stderr"])
        no_teacher = refused["no_teacher"]
        self.assertEqual(no_teacher["status"], 3,
                         no_teacher["stderr"][-2000:])
        self.assertIn("--nouniform_reference", no_teacher["stderr"])
        for name, result in refused.items():
            self.assertNotIn("Traceback", result["stderr"], name)

if __name__ == "__main__":
    tf.test.main()


def test_step_parts_table_gives_each_share_of_both_steps():
    from ppcd_tf.workflows import step_parts
    parts = {"g_step": 0.3, "d_step": 0.1, "teacher_g": 0.05}
    text = step_parts.markdown(parts, step_seconds=0.4, teacher_seconds=0.5)
    lines = text.splitlines()
    # Header, rule, the whole step, then the parts in PART_NAMES order.
    assert lines[2] == "| whole compact step | 0.4000 | 1.00 | 0.80 |"
    assert lines[3] == "| d_step | 0.1000 | 0.25 | 0.20 |"
    assert lines[4] == "| g_step | 0.3000 | 0.75 | 0.60 |"
    assert lines[5] == "| teacher_g | 0.0500 | 0.12 | 0.10 |"
    assert len(lines) == 6
    shares = step_parts.shares(parts, 0.4)
    assert sorted(shares) == sorted(parts)
    for name, share in {"g_step": 0.75, "d_step": 0.25,
                        "teacher_g": 0.125}.items():
        assert abs(shares[name] - share) < 1e-12, (name, shares)


def test_uniform_counts_meet_a_mac_target_at_one_fraction():
    """The equal-MAC reference of the shipped 12x student: the shipped
    teacher's layers all kept at one fraction, MACs within 1 % of the
    student's; the teacher's own MACs keep every channel."""
    from ppcd_tf.models import complexity
    from ppcd_tf.pruning import channel_masks
    from ppcd_tf.workflows import equal_macs
    from ppcd_tf.workflows import teachers
    teacher = equal_macs.teacher_generator(teachers.shipped_teacher_dir())
    shape = complexity.GeneratorShape.of(teacher)
    full = dict(channel_masks.mask_widths(teacher.channels,
                                          prune_attention=True))
    target = 2_598_444  # the shipped 12x student's MACs per image
    counts, macs, fraction = equal_macs.uniform_counts(teacher.channels,
                                                       shape, target)
    # Integer widths move in steps of a few percent of the MACs here: the
    # closest, 10 channels a layer, is 3.8 % above.
    assert abs(macs - target) / target < 0.05
    assert 0.1 < fraction < 0.2
    # One fraction for every layer: each count within one channel of the
    # kept share of its width.
    for key, width in full.items():
        assert abs(counts[key] - fraction * width) <= 1.0, key
    everything = complexity.generator_macs(teacher.channels, shape)
    counts, macs, fraction = equal_macs.uniform_counts(teacher.channels,
                                                       shape, everything)
    assert counts == full and macs == everything


def test_best_runtime_pairs_each_side_with_its_fastest_runtime():
    """The teacher's fastest runtime is used for the teacher even when the
    student's is another one."""
    rows = [
        {"runtime": "tensorflow", "batch_size": 1,
         "teacher_seconds_per_batch": 3.0, "student_seconds_per_batch": 1.5},
        {"runtime": "tflite", "batch_size": 1,
         "teacher_seconds_per_batch": 1.2, "student_seconds_per_batch": 0.2},
        {"runtime": "tensorflow", "batch_size": 64,
         "teacher_seconds_per_batch": 80.0, "student_seconds_per_batch": 14.0},
        {"runtime": "tflite", "batch_size": 64,
         "teacher_seconds_per_batch": 85.0, "student_seconds_per_batch": 10.0},
    ]
    assert benchmark.best_runtime_speedups(rows) == [
        {"batch_size": 1, "teacher_runtime": "tflite",
         "teacher_seconds_per_batch": 1.2, "student_runtime": "tflite",
         "student_seconds_per_batch": 0.2, "speedup": 1.2 / 0.2},
        {"batch_size": 64, "teacher_runtime": "tensorflow",
         "teacher_seconds_per_batch": 80.0, "student_runtime": "tflite",
         "student_seconds_per_batch": 10.0, "speedup": 8.0}]


def test_constant_width_counts_cut_every_layer_to_the_width():
    from ppcd_tf.pruning import channel_masks
    from ppcd_tf.workflows import equal_macs
    from ppcd_tf.workflows import teachers
    teacher = equal_macs.teacher_generator(teachers.shipped_teacher_dir())
    full = channel_masks.mask_widths(teacher.channels, prune_attention=True)
    counts = equal_macs.constant_width_counts(teacher.channels, 4)
    assert list(counts) == list(full)
    assert counts == {key: min(4, width) for key, width in full.items()}
    assert min(full.values()) >= 4 and set(counts.values()) == {4}


def test_step_timing_builds_the_teacher_of_either_family():
    """The timed teacher is built as its models.json says: a BigGAN-deep
    run's G and D (not a BigGAN G from a deep config); a run without a D
    (an imported generator) leaves the D to the parsed configuration."""
    from ppcd_tf.models import biggan_deep
    from ppcd_tf.models import biggan_deep_discriminator
    from ppcd_tf.models import builders
    shape = dict(resolution=32, num_classes=3, image_channels=1)
    configs = {
        "generator": builders.build_deep_generator(
            ch=4, dim_z=8, embed_dim=8, **shape).get_config(),
        "discriminator": builders.build_deep_discriminator(
            ch=4, **shape).get_config()}
    factories = benchmark._models_from_json(configs)
    generator = factories["generator_fn"]()
    discriminator = factories["discriminator_fn"]()
    assert isinstance(generator, biggan_deep.DeepGenerator)
    assert isinstance(discriminator,
                      biggan_deep_discriminator.DeepDiscriminator)
    assert generator.get_config() == dict(configs["generator"],
                                          name="generator")
    without_d = benchmark._models_from_json(dict(configs,
                                                 discriminator=None))
    assert sorted(without_d) == ["generator_fn"]
