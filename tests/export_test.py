"""Export (DESIGN.md section 5): surgery, the export binary end to end, the
served signatures, refusals and atomic writes.

* `SurgeryTest`: on a tiny masked generator with hard masks (random ones,
  a block reduced to its 1-channel floor, attention widths at 1 channel),
  after training-mode calls (non-trivial BN statistics and SN `u` vectors)
  and with a non-zero attention gamma, the compact generator equals the
  hard-masked one.
* `ExportEndToEndTest` (slow): a tiny teacher and a tiny PPCD run are trained
  in-process once per module (`_e2e`); the export binary then runs in
  subprocesses (in parallel where independent) and the SavedModel is loaded
  in a fresh process without ppcd_tf, and with `saved_model_cli`.
* `AtomicWriteTest`: an export interrupted mid-way leaves neither a partial
  output nor a temporary directory, and never loses an existing export.

Counting the SavedModel's parameters: `loaded.variables` also holds the BN
moving statistics and the SN `u` vectors (non-trainable). Because
`saved_model.make_archive` calls `ExportArchive.track(generator)`, the revived
object carries `trainable_variables` (Keras documents this for tracked
archives); we count those, and check that they equal the variables left
after dropping `moving_mean`, `moving_variance` and `sn_u` by name (the
fallback when the attribute is missing).
"""

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
import unittest
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from ppcd_tf.exporting import pipeline
from ppcd_tf.exporting import saved_model
from ppcd_tf.models import arch
from ppcd_tf.models import complexity
from ppcd_tf.models import generator as generator_lib
from ppcd_tf.pruning import budget as budget_lib
from ppcd_tf.pruning import channel_masks
from ppcd_tf.pruning import surgery
from ppcd_tf.runs import run_dir
from ppcd_tf.training import ppcd_trainer
from tests import helpers

SURGERY_ATOL = 1e-5
OUTPUT_ATOL = 1e-5
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable),
                               "saved_model_cli")
NON_TRAINABLE_NAMES = ("moving_mean", "moving_variance", "sn_u")


# ----------------------------------------------------------------------------
# Surgery on a tiny masked generator.

def _tiny_generator(name="masked"):
    """Two blocks (4 -> 8 -> 16), self-attention after block 1."""
    channels = arch.ChannelConfig(resolution=16, stream=(8, 8, 6),
                                  hidden=(8, 6), attention={1: (4, 4)},
                                  bottom_width=4)
    generator = generator_lib.Generator(channels, num_classes=5, dim_z=12,
                                        shared_dim=8, name=name)
    generator.build()
    return generator


def _random_keep(generator, rng, single=(), keep_all=False):
    """{key: bool [width]}: about half kept (>= 1); `single` keys keep one."""
    widths = channel_masks.mask_widths(generator.channels,
                                       prune_attention=True)
    keep = {}
    for key, width in widths.items():
        if keep_all:
            mask = np.ones(width, bool)
        elif key in single:
            mask = np.zeros(width, bool)
            mask[rng.integers(1, width)] = True  # not channel 0
        else:
            mask = rng.random(width) < 0.5
            mask[rng.integers(width)] = True
        keep[key] = mask
    return keep


def _inputs(generator, batch, seed):
    z = tf.random.stateless_normal((batch, generator.dim_z), (seed, 1))
    labels = tf.random.stateless_uniform((batch,), (seed, 2), 0,
                                         generator.num_classes, tf.int32)
    return z, labels


class SurgeryTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.named_parameters(
        ("random_masks", (), False),
        # Every channel of block 1 (its stream and hidden masks) off but one:
        # the attention after it then reads a 1-channel stream.
        ("block1_at_floor", ("stream1", "hidden1"), False),
        # The last stream (output BN and output conv inputs) at one channel.
        ("block2_at_floor", ("stream2", "hidden2"), False),
        ("attention_at_one_channel", ("attention1_qk", "attention1_value"),
         False),
        ("nothing_removed", (), True))
    def test_compact_equals_hard_masked(self, single, keep_all):
        rng = np.random.default_rng(7)
        generator = _tiny_generator()
        # Non-trivial weights everywhere (biases, output BN gamma/beta, ...),
        # removed channels included: they must not matter.
        for variable in generator.trainable_variables:
            variable.assign(variable + 0.3 * rng.standard_normal(
                variable.shape).astype(np.float32))
        generator.attentions[1].gamma.assign(0.7)
        keep = _random_keep(generator, rng, single, keep_all)
        for key in single:
            self.assertEqual(int(keep[key].sum()), 1, key)
        masks = surgery.masks_from_keep(keep)

        u_before = generator.blocks[0].conv1.sn_u.numpy().copy()
        for step in range(3):
            z, labels = _inputs(generator, 8, 10 + step)
            generator(z, labels, training=True, masks=masks, keep=masks)
        # BN statistics and SN vectors moved away from their initial values.
        self.assertNotAllClose(u_before, generator.blocks[0].conv1.sn_u)
        self.assertGreater(float(tf.reduce_max(tf.abs(
            generator.blocks[1].bn1.bn.moving_mean))), 1e-3)
        self.assertGreater(float(tf.reduce_max(tf.abs(
            generator.output_bn.moving_mean))), 1e-3)

        compact = surgery.build_compact(generator, keep)
        counts = {key: int(k.sum()) for key, k in keep.items()}
        self.assertEqual(compact.channels,
                         budget_lib.kept_channel_config(generator.channels,
                                                        counts))
        self.assertEqual(
            generator_lib.count_trainable_parameters(compact),
            budget_lib.live_parameters(
                generator.channels, complexity.GeneratorShape.of(generator),
                counts))
        self.assertAllClose(compact.attentions[1].gamma.numpy(), 0.7)

        z, labels = _inputs(generator, 6, 99)
        worst, first = surgery.max_abs_difference(
            generator, compact, keep, z, labels, tolerance=SURGERY_ATOL)
        self.assertLessEqual(worst, SURGERY_ATOL)
        self.assertIsNone(first)
        # The same, computed here rather than by the library.
        masked = generator(z, labels, training=False, masks=masks,
                           keep=masks)
        images = compact(z, labels, training=False)
        self.assertEqual(images.shape, (6, 16, 16, 3))
        self.assertAllClose(masked, images, atol=SURGERY_ATOL, rtol=0)
        # Not vacuous: the images vary, and the masks change them.
        self.assertGreater(float(tf.math.reduce_std(images)), 1e-2)
        if not keep_all:
            unmasked = generator(z, labels, training=False)
            self.assertGreater(float(tf.reduce_max(tf.abs(
                unmasked - masked))), 1e-3)

    def test_compare_allows_float32_rounding_and_refuses_surgery_errors(self):
        eps = float(np.finfo(np.float32).eps)
        # A student whose streams reach 2,000: 128 ulps of it (3.1e-2).
        self.assertAlmostEqual(surgery.allowed_difference(1e-4, 2000.0),
                               128 * eps * 2000.0)
        self.assertEqual(surgery.allowed_difference(1e-4, 1.0), 1e-4)
        self.assertEqual(surgery.allowed_difference(1e-4, 2000.0, 0.0), 1e-4)
        generator = _tiny_generator()
        keep = _random_keep(generator, np.random.default_rng(3))
        compact = surgery.build_compact(generator, keep)
        z, labels = _inputs(generator, 6, 5)
        result = surgery.compare(generator, compact, keep, z, labels, 1e-5)
        self.assertLessEqual(result.worst, result.allowed)
        self.assertIsNone(result.first)
        self.assertGreater(result.activation_scale, 0.0)
        self.assertEqual(result.allowed, surgery.allowed_difference(
            1e-5, result.activation_scale))
        # A surgery error: one output filter of block 1's conv2 with its
        # sign flipped (the spectral norm, and so every other filter, is
        # unchanged) is refused and located.
        kernel = compact.blocks[0].conv2.kernel.numpy()
        kernel[..., 0] = -kernel[..., 0]
        compact.blocks[0].conv2.kernel.assign(kernel)
        broken = surgery.compare(generator, compact, keep, z, labels, 1e-5)
        self.assertGreater(broken.worst, 10 * broken.allowed)
        self.assertEqual(broken.first[0], "block1")

    def test_mask_of_wrong_width_is_refused(self):
        generator = _tiny_generator()
        keep = _random_keep(generator, np.random.default_rng(0))
        keep["hidden1"] = np.ones(generator.channels.hidden[0] + 1, bool)
        with self.assertRaisesRegex(surgery.SurgeryError,
                                    r"hidden1.*shape.*width is 8"):
            surgery.build_compact(generator, keep)

    def test_all_false_mask_is_refused(self):
        generator = _tiny_generator()
        keep = _random_keep(generator, np.random.default_rng(0))
        keep["stream1"] = np.zeros(generator.channels.stream[1], bool)
        with self.assertRaisesRegex(surgery.SurgeryError,
                                    r"stream1.*removes every channel"):
            surgery.build_compact(generator, keep)


# ----------------------------------------------------------------------------
# Atomic writes.

class _FakeArchive:
    """Stands in for the ExportArchive (no tracing: fast): `write_out`
    writes part of a SavedModel, then raises unless `fail` is False."""

    def __init__(self, fail=True):
        self.fail = fail

    def write_out(self, path, *args, **kwargs):
        del args, kwargs
        os.makedirs(os.path.join(path, "variables"))
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"partial")
        if self.fail:
            raise RuntimeError("interrupted while writing the SavedModel")


def _export_temp_dirs(parent):
    return [name for name in os.listdir(parent)
            if ".tmp-" in name]


class AtomicWriteTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.generator = _tiny_generator("generator")
        self.parent = self.create_tempdir().full_path
        self.output = os.path.join(self.parent, "export")
        self.assets = {"metadata.json": {"a": 1}, "notes.gin": "x = 1\n"}

    def test_interrupted_write_leaves_nothing(self):
        with mock.patch.object(saved_model, "make_archive",
                               lambda generator, jit_compile=False: _FakeArchive()):
            with self.assertRaisesRegex(RuntimeError, "interrupted"):
                saved_model.write_saved_model(self.generator, self.output,
                                          self.assets)
        self.assertFalse(os.path.exists(self.output))
        self.assertEmpty(_export_temp_dirs(self.parent))
        self.assertEmpty(os.listdir(self.parent))

    def test_interrupted_overwrite_keeps_the_old_export(self):
        os.makedirs(self.output)
        sentinel = os.path.join(self.output, "old.txt")
        with open(sentinel, "w") as f:
            f.write("old export")
        with mock.patch.object(saved_model, "make_archive",
                               lambda generator, jit_compile=False: _FakeArchive()):
            with self.assertRaisesRegex(RuntimeError, "interrupted"):
                saved_model.write_saved_model(self.generator, self.output,
                                          self.assets, overwrite=True)
        self.assertTrue(os.path.isfile(sentinel))
        self.assertEmpty(_export_temp_dirs(self.parent))

    def test_failed_final_rename_keeps_the_old_export(self):
        """Atomic replace: if moving the new export into place fails, the
        old export must still be there (not deleted with the temp dir)."""
        os.makedirs(self.output)
        sentinel = os.path.join(self.output, "old.txt")
        with open(sentinel, "w") as f:
            f.write("old export")
        real_rename = os.rename

        def rename(src, dst, *args, **kwargs):
            if os.path.normpath(dst) == self.output and ".tmp-" in src \
                    and not src.endswith(".old"):
                raise OSError("simulated failure of the final rename")
            return real_rename(src, dst, *args, **kwargs)

        with mock.patch.object(saved_model.os, "rename", rename), \
                mock.patch.object(saved_model, "make_archive",
                                  lambda generator, jit_compile=False: _FakeArchive(False)):
            with self.assertRaisesRegex(OSError, "final rename"):
                saved_model.write_saved_model(self.generator, self.output,
                                          self.assets, overwrite=True)
        self.assertEmpty(_export_temp_dirs(self.parent))
        self.assertTrue(os.path.isfile(sentinel),
                        "the old export was deleted by a failed overwrite")


# ----------------------------------------------------------------------------
# End to end: training runs (in-process, once per module) and the binary.

_E2E = {}

# Runs in a fresh interpreter without the repository on its path: loads the
# SavedModel, counts its parameters, runs serving_default on saved inputs.
_LOAD_SCRIPT = r"""
import json, os, sys
import numpy as np
import tensorflow as tf

export_dir, z_path, labels_path, out_dir = sys.argv[1:5]
loaded = tf.saved_model.load(export_dir)
size = lambda v: int(np.prod(v.shape))
by_name = [v for v in loaded.variables
           if not any(s in v.name for s in %r)]
has_attribute = hasattr(loaded, "trainable_variables")
trainable = list(loaded.trainable_variables) if has_attribute else by_name
images = loaded.signatures["serving_default"](
    z=tf.constant(np.load(z_path)),
    labels=tf.constant(np.load(labels_path)))["images"].numpy()
np.save(os.path.join(out_dir, "images.npy"), images)
with open(os.path.join(out_dir, "load.json"), "w") as f:
    json.dump({
        "has_trainable_attribute": has_attribute,
        "trainable_params": sum(size(v) for v in trainable),
        "trainable_names": sorted(v.name for v in trainable),
        "name_filtered_params": sum(size(v) for v in by_name),
        "all_params": sum(size(v) for v in loaded.variables),
        "ppcd_modules": sorted(m for m in sys.modules
                               if m.split(".")[0] == "ppcd_tf"),
    }, f)
""" % (NON_TRAINABLE_NAMES,)


def _shared_teacher():
    """The session's tiny teacher run with its EMA and G restored."""
    model_dir = helpers.tiny_teacher_dir()
    restored = run_dir.restore_generator(model_dir)
    generator = generator_lib.Generator.from_config(
        dict(restored.generator.get_config(), name="generator"))
    generator.build()
    return types.SimpleNamespace(model_dir=model_dir,
                                 generator_ema=restored.generator,
                                 generator=generator)


def _train_ppcd(root, name, teacher_dir, extra):
    helpers.parse(["debug.gin", "stage/ppcd.gin"],
                  list(helpers.TINY_BINDINGS) + [
                      f"TEACHER_DIR = '{teacher_dir}'",
                      "TARGET_PARAM_RATIO = 0.5",
                      "PruningBudget.min_channels = 1",
                      "TrainLoop.sample_every = 0"] + list(extra))
    trainer = ppcd_trainer.PPCDTrainer(model_dir=os.path.join(root, name),
                                       strategy=helpers.one_device())
    # Eagerly: the subject here is the export of what the run wrote, not
    # the compiled step (traced in ppcd_test and the command-line tests).
    helpers.train_eagerly(trainer)
    return trainer


def _export_command(model_dir, output, *extra):
    return [sys.executable, "-m", "ppcd_tf.export", "--model_dir", model_dir,
            "--output", output] + list(extra)


class _Processes:
    """Subprocesses started now and collected later, so that they overlap
    the in-process training (the machine has 2 cores)."""

    def __init__(self):
        self._running = {}
        self.results = {}

    def start(self, name, argv, cwd=helpers.REPO_ROOT, env=None):
        self._running[name] = subprocess.Popen(
            argv, cwd=cwd, env=env or helpers.python_env(),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait(self, name, timeout=300):
        proc = self._running.pop(name)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        self.results[name] = subprocess.CompletedProcess(
            proc.args, proc.returncode, out, err)
        return self.results[name]

    def wait_all(self):
        for name in list(self._running):
            self.wait(name)
        return self.results


def _e2e():
    """Trains the runs in-process, exports them with the binary and loads
    the PPCD export (once per module)."""
    if _E2E:
        return _E2E
    root = tempfile.mkdtemp(prefix="export_test_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    exports = os.path.join(root, "exports")
    out = {name: os.path.join(exports, name)
           for name in ("ppcd", "soft_refused", "soft_binarized", "teacher")}
    # An existing output: refused without --overwrite, replaced with it.
    os.makedirs(out["teacher"])
    with open(os.path.join(out["teacher"], "old.txt"), "w") as f:
        f.write("old")
    procs = _Processes()

    teacher = _shared_teacher()
    procs.start("teacher_refused",
                _export_command(teacher.model_dir, out["teacher"]))
    # Hardened at the start of step 2 (prune_end_fraction 0.5 of 4 steps);
    # the hard-masked student is trained on (the export's surgery path; a
    # run trained compact after the cut is exported in compaction_test).
    hard = _train_ppcd(root, "ppcd", teacher.model_dir,
                       ["TrainLoop.num_steps = 4",
                        "CompactPhase.train_compact_after_cut = False"])
    procs.start("ppcd", _export_command(hard.model_dir, out["ppcd"]))
    # prune_end_step = num_steps = 2: hardening would happen at the start of
    # a loop at step >= 2, which never runs, so the last checkpoint (step 2)
    # is still in the soft phase.
    soft = _train_ppcd(root, "soft", teacher.model_dir,
                       ["TrainLoop.num_steps = 2",
                        "PruningPhase.prune_end_fraction = 1.0"])
    procs.start("soft_refused",
                _export_command(soft.model_dir, out["soft_refused"]))
    procs.start("soft_binarized",
                _export_command(soft.model_dir, out["soft_binarized"],
                                "--binarize_threshold", "0"))

    generator = hard.generator_ema
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, generator.dim_z)).astype(np.float32)
    labels = np.array([0, 3, 9, 9, 1], np.int32)
    inputs = os.path.join(root, "inputs")
    os.makedirs(inputs)
    z_path = os.path.join(inputs, "z.npy")
    labels_path = os.path.join(inputs, "labels.npy")
    np.save(z_path, z)
    np.save(labels_path, labels)

    procs.wait("teacher_refused")
    teacher_untouched = (
        os.listdir(out["teacher"]) == ["old.txt"]
        and not os.path.exists(out["teacher"] + ".report.json"))
    procs.start("teacher", _export_command(teacher.model_dir, out["teacher"],
                                           "--overwrite"))

    procs.wait("ppcd")
    # The fresh process must not see ppcd_tf: no repo on its path, run
    # from an empty directory.
    fresh_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    fresh_env.pop("PYTHONPATH", None)
    loaded_dir = os.path.join(root, "loaded")
    cli_dir = os.path.join(root, "cli_out")
    os.makedirs(loaded_dir)
    procs.start("load", [sys.executable, "-c", _LOAD_SCRIPT, out["ppcd"],
                         z_path, labels_path, loaded_dir],
                cwd=loaded_dir, env=fresh_env)
    procs.start("show", [SAVED_MODEL_CLI, "show", "--dir", out["ppcd"],
                         "--all"], cwd=root)
    procs.start("run", [SAVED_MODEL_CLI, "run", "--dir", out["ppcd"],
                        "--tag_set", "serve", "--signature_def",
                        "serving_default", "--inputs",
                        f"z={z_path};labels={labels_path}",
                        "--outdir", cli_dir], cwd=root)

    # In memory: the compact generator of the trained student's EMA and its
    # hard masks, and the hard-masked EMA generator itself.
    keep = hard.pruning.masks.hard_masks()
    compact = surgery.build_compact(generator, keep)
    expected = compact(z, labels, training=False).numpy()
    masked = hard.generate(z, labels, training=False,
                           model=generator).numpy()
    results = procs.wait_all()
    _E2E.update(root=root, teacher=teacher, hard=hard, soft=soft, out=out,
                exports=exports, results=results, z=z, labels=labels,
                expected=expected, masked=masked, keep=keep,
                loaded_dir=loaded_dir, cli_dir=cli_dir,
                teacher_untouched=teacher_untouched)
    return _E2E


def _report(output):
    with open(output + ".report.json") as f:
        return json.load(f)


def _metadata(output):
    with open(os.path.join(output, saved_model.ASSETS_DIR, "metadata.json")) as f:
        return json.load(f)


@pytest.mark.slow
class ExportEndToEndTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.e2e = _e2e()
        self.results = self.e2e["results"]
        self.out = self.e2e["out"]

    def assertSucceeded(self, name):
        result = self.results[name]
        self.assertEqual(result.returncode, 0,
                         f"{name} failed:\n{result.stderr[-4000:]}")

    def assertRefused(self, name, pattern):
        result = self.results[name]
        self.assertEqual(result.returncode, 2,
                         f"{name}: exit {result.returncode}\n"
                         f"{result.stderr[-4000:]}")
        self.assertRegex(result.stderr, pattern)
        self.assertNotIn("Traceback", result.stderr)

    def test_ppcd_export_report_and_parameter_count(self):
        self.assertSucceeded("ppcd")
        self.assertSucceeded("load")
        hard = self.e2e["hard"]
        self.assertTrue(bool(hard.pruning.hardened.numpy()))
        self.assertEqual(int(hard.step.numpy()), 4)
        report = _report(self.out["ppcd"])
        with open(os.path.join(self.e2e["loaded_dir"], "load.json")) as f:
            loaded = json.load(f)
        self.assertEmpty(loaded["ppcd_modules"])
        self.assertTrue(loaded["has_trainable_attribute"])
        for name in loaded["trainable_names"]:
            self.assertFalse(any(s in name for s in NON_TRAINABLE_NAMES),
                             name)
        self.assertEqual(loaded["trainable_params"],
                         loaded["name_filtered_params"])
        self.assertGreater(loaded["all_params"], loaded["trainable_params"])

        live = int(round(float(hard.pruning.param_ratio().numpy())
                         * hard.pruning.full_params))
        self.assertEqual(report["params"], loaded["trainable_params"])
        self.assertEqual(report["params"], live)
        self.assertEqual(report["source_params"], hard.pruning.full_params)
        self.assertLessEqual(report["params"], hard.pruning.target_params)
        self.assertLess(report["params"], hard.pruning.full_params)
        self.assertEqual(report["step"], 4)
        self.assertLessEqual(report["verified_max_abs_diff"],
                             pipeline.DEFAULT_TOLERANCE)
        kept = {row["layer"]: row["kept"] for row in report["layers"]}
        self.assertEqual(kept, hard.pruning.kept_channels())
        self.assertIn("parameters:", self.results["ppcd"].stdout)

    def test_fresh_process_and_cli_outputs_equal_in_memory_compact(self):
        self.assertSucceeded("load")
        self.assertSucceeded("run")
        expected = self.e2e["expected"]
        self.assertEqual(expected.shape, (5, 32, 32, 3))
        self.assertGreater(float(np.std(expected)), 1e-3)
        loaded = np.load(os.path.join(self.e2e["loaded_dir"], "images.npy"))
        self.assertAllClose(loaded, expected, atol=OUTPUT_ATOL, rtol=0)
        served = np.load(os.path.join(self.e2e["cli_dir"], "images.npy"))
        self.assertAllClose(served, expected, atol=OUTPUT_ATOL, rtol=0)
        # And the hard-masked student (what was trained) within the
        # exporter's tolerance.
        self.assertAllClose(loaded, self.e2e["masked"],
                            atol=pipeline.DEFAULT_TOLERANCE, rtol=0)

    def test_saved_model_cli_show_lists_serving_default(self):
        self.assertSucceeded("show")
        text = self.results["show"].stdout
        self.assertIn("signature_def['sample']", text)
        start = text.index("signature_def['serving_default']")
        end = text.find("signature_def[", start + 1)
        section = text[start:] if end < 0 else text[start:end]
        for line in ("inputs['z']", "inputs['labels']", "outputs['images']",
                     "DT_FLOAT", "DT_INT32"):
            self.assertIn(line, section)
        self.assertRegex(section, r"inputs\['labels'\][^\n]*\n\s*dtype: "
                                  r"DT_INT32")
        self.assertRegex(section, r"inputs\['z'\][^\n]*\n\s*dtype: DT_FLOAT")

    def test_assets_and_metadata(self):
        self.assertSucceeded("ppcd")
        output = self.out["ppcd"]
        extra = os.path.join(output, saved_model.ASSETS_DIR)
        for name in ("metadata.json", "channel_config.json",
                     "operative_config.gin"):
            self.assertTrue(os.path.isfile(os.path.join(extra, name)), name)
        metadata = _metadata(output)
        report = _report(output)
        generator = self.e2e["hard"].generator_ema
        self.assertEqual(metadata["resolution"], 32)
        self.assertEqual(metadata["dim_z"], generator.dim_z)
        self.assertEqual(metadata["num_classes"], 10)
        self.assertEqual(metadata["params"], report["params"])
        self.assertEqual(metadata["macs_per_image"], report["macs_per_image"])
        self.assertGreater(metadata["macs_per_image"], 0)
        self.assertEqual(metadata["output_range"], [-1.0, 1.0])
        with open(os.path.join(extra, "channel_config.json")) as f:
            config = arch.ChannelConfig.from_dict(json.load(f))
        self.assertEqual(config.to_dict(),
                         self.e2e["hard"].pruning.compact_channel_config())
        with open(os.path.join(extra, "operative_config.gin")) as f:
            self.assertIn("PPCDTrainer", f.read())
        self.assertEmpty(_export_temp_dirs(self.e2e["exports"]))

    def test_soft_phase_checkpoint_refused_unless_binarized(self):
        soft = self.e2e["soft"]
        self.assertEqual(soft.pruning.prune_end_step, 2)
        self.assertEqual(int(soft.step.numpy()), 2)
        self.assertFalse(bool(soft.pruning.hardened.numpy()))
        checkpoint = tf.train.latest_checkpoint(
            os.path.join(soft.model_dir, "checkpoints"))
        self.assertEqual(os.path.basename(checkpoint), "ckpt-2")
        reader = tf.train.load_checkpoint(checkpoint)
        self.assertFalse(reader.get_tensor("hardened/.ATTRIBUTES/"
                                           "VARIABLE_VALUE"))
        self.assertEqual(reader.get_tensor("step/.ATTRIBUTES/"
                                           "VARIABLE_VALUE"), 2)

        self.assertRefused("soft_refused", "--binarize_threshold")
        self.assertFalse(os.path.exists(self.out["soft_refused"]))
        self.assertFalse(os.path.exists(self.out["soft_refused"]
                                        + ".report.json"))

        self.assertSucceeded("soft_binarized")
        report = _report(self.out["soft_binarized"])
        counts = {key: int((logit.numpy() > 0.0).sum())
                  for key, logit in soft.pruning.masks.logits.items()}
        self.assertEqual(
            report["params"],
            int(round(budget_lib.live_parameters(
                soft.teacher_generator.channels,
                soft.pruning.architecture.shape, counts))))
        self.assertLessEqual(report["verified_max_abs_diff"],
                             pipeline.DEFAULT_TOLERANCE)
        source = _metadata(self.out["soft_binarized"])["source"]
        self.assertEqual(source["binarize_threshold"], 0.0)
        self.assertEqual(source["step"], 2)

    def test_existing_output_refused_then_overwritten_teacher_export(self):
        self.assertRefused("teacher_refused", "--overwrite")
        # Left untouched (checked before the --overwrite run started).
        self.assertTrue(self.e2e["teacher_untouched"])
        self.assertSucceeded("teacher")
        output = self.out["teacher"]
        self.assertFalse(os.path.exists(os.path.join(output, "old.txt")))
        self.assertTrue(os.path.isfile(os.path.join(output,
                                                    "saved_model.pb")))
        teacher = self.e2e["teacher"]
        g_params = generator_lib.count_trainable_parameters(
            teacher.generator_ema)
        self.assertEqual(
            g_params,
            generator_lib.count_trainable_parameters(teacher.generator))
        report = _report(output)
        self.assertEqual(report["params"], g_params)
        self.assertEqual(report["source_params"], g_params)
        self.assertEqual(report["params"], self.e2e["hard"].pruning.full_params)
        for row in report["layers"]:
            self.assertEqual(row["kept"], row["original"], row)
        self.assertEqual(_metadata(output)["source"]["kind"], "teacher")
        self.assertEmpty(_export_temp_dirs(self.e2e["exports"]))


    def test_interrupted_export_run_leaves_nothing(self):
        parent = self.create_tempdir().full_path
        output = os.path.join(parent, "export")
        with mock.patch.object(saved_model, "make_archive",
                               lambda generator, jit_compile=False: _FakeArchive()):
            with self.assertRaisesRegex(RuntimeError, "interrupted"):
                pipeline.export_run(self.e2e["hard"].model_dir, output)
        self.assertFalse(os.path.exists(output))
        self.assertEmpty(os.listdir(parent))


@pytest.mark.slow
class ServedSignatureTest(tf.test.TestCase):
    """Bad inputs and the `sample` endpoint, on the PPCD export (loaded
    in-process with tf.saved_model.load)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        e2e = _e2e()
        if e2e["results"]["ppcd"].returncode != 0:
            raise unittest.SkipTest("the PPCD export failed (see other "
                                    "tests)")
        cls.loaded = tf.saved_model.load(e2e["out"]["ppcd"])
        cls.dim_z = e2e["hard"].generator_ema.dim_z
        cls.num_classes = 10

    def serve(self, z, labels):
        return self.loaded.signatures["serving_default"](
            z=tf.constant(z, tf.float32),
            labels=tf.constant(labels, tf.int32))["images"]

    def sample(self, labels, truncation, seed):
        return self.loaded.signatures["sample"](
            labels=tf.constant(labels, tf.int32),
            truncation=tf.constant(truncation, tf.float32),
            seed=tf.constant(seed, tf.int32))["images"]

    def test_valid_inputs(self):
        images = self.serve(np.zeros((2, self.dim_z)), [0, 9])
        self.assertEqual(images.shape, (2, 32, 32, 3))

    def test_bad_labels(self):
        z = np.zeros((2, self.dim_z))
        for labels in ([0, self.num_classes], [-1, 0]):
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                        r"labels must be in \[0, 10\)"):
                self.serve(z, labels)

    def test_wrong_z_width(self):
        # The signature declares z as [None, dim_z] (consumers read the
        # width from it): a wrong width is refused by the signature itself.
        signature = self.loaded.signatures["serving_default"]
        z_spec = signature.structured_input_signature[1]["z"]
        self.assertEqual(z_spec.shape.as_list(), [None, self.dim_z])
        for width in (self.dim_z + 1, self.dim_z - 1):
            with self.assertRaisesRegex(
                    (tf.errors.InvalidArgumentError, TypeError, ValueError),
                    rf"z must have shape \[batch, {self.dim_z}\]"):
                self.serve(np.zeros((2, width)), [0, 1])

    def test_batch_mismatch(self):
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    "same batch size"):
            self.serve(np.zeros((3, self.dim_z)), [0, 1])

    def test_sample_truncation_out_of_range(self):
        for truncation in (0.0, 1.5, -0.5):
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                        r"truncation must be in \(0, 1\]"):
                self.sample([0, 1], truncation, [1, 2])

    def test_sample_bad_labels(self):
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    r"labels must be in \[0, 10\)"):
            self.sample([self.num_classes], 1.0, [1, 2])

    def interpolate(self, z, labels_a, labels_b, alpha):
        return self.loaded.signatures["interpolate"](
            z=tf.constant(z, tf.float32),
            labels_a=tf.constant(labels_a, tf.int32),
            labels_b=tf.constant(labels_b, tf.int32),
            alpha=tf.constant(alpha, tf.float32))["images"]

    def test_interpolate_ends_are_the_two_classes(self):
        z = np.random.RandomState(0).randn(3, self.dim_z)
        a, b = [0, 4, 9], [9, 2, 1]
        self.assertAllClose(self.interpolate(z, a, b, [0.0] * 3),
                            self.serve(z, a), atol=1e-5, rtol=0)
        self.assertAllClose(self.interpolate(z, a, b, [1.0] * 3),
                            self.serve(z, b), atol=1e-5, rtol=0)
        middle = self.interpolate(z, a, b, [0.5] * 3)
        self.assertNotAllClose(middle, self.serve(z, a))
        self.assertNotAllClose(middle, self.serve(z, b))

    def test_interpolate_bad_inputs(self):
        z = np.zeros((2, self.dim_z))
        for alpha, pattern in (([0.5, 1.5], r"alpha must be in \[0, 1\]"),
                               ([0.5, np.nan], "alpha must be finite"),
                               ([0.5], "one value per row")):
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                        pattern):
                self.interpolate(z, [0, 1], [1, 2], alpha)
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                    r"labels must be in \[0, 10\)"):
            self.interpolate(z, [0, 1], [1, self.num_classes], [0.5, 0.5])

    def test_sample_is_deterministic_per_seed(self):
        first = self.sample([0, 5, 9], 0.5, [4, 2])
        second = self.sample([0, 5, 9], 0.5, [4, 2])
        self.assertAllEqual(first, second)
        self.assertEqual(first.shape, (3, 32, 32, 3))
        self.assertLessEqual(float(tf.reduce_max(tf.abs(first))), 1.0)
        other = self.sample([0, 5, 9], 0.5, [4, 3])
        self.assertNotAllClose(first, other)
        # truncation = 1 is allowed (the interval is closed at 1).
        self.assertEqual(self.sample([1], 1.0, [0, 0]).shape,
                         (1, 32, 32, 3))
