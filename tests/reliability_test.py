"""Reliability and security probes (a hostile but realistic user).

No code runs from a file a user may download (torch files, a run's gin
config); nothing is replaced without --overwrite; a run directory has one
trainer at a time; damaged files give a message, not a traceback.
"""

import contextlib
import io
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from ppcd_tf import errors
from ppcd_tf import files
from ppcd_tf.exporting import saved_model
from ppcd_tf.importing import torch_files
from ppcd_tf.runs import checkpointing
from ppcd_tf.runs import run_dir
from ppcd_tf.training import gan_steps
from ppcd_tf.training import trainer as trainer_lib
from tests import helpers


class _RunsCode:
    """Pickles to a call of os.system (what a malicious file would hold)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("position", ["magic", "protocol", "sys_info"])
def test_legacy_torch_header_runs_no_code(tmp_path, position):
    marker = tmp_path / "ran"
    path = str(tmp_path / "weights.pth")
    with open(path, "wb") as f:
        objects = {"magic": [_RunsCode(marker)],
                   "protocol": [torch_files._LEGACY_MAGIC_NUMBER,
                                _RunsCode(marker)],
                   "sys_info": [torch_files._LEGACY_MAGIC_NUMBER,
                                torch_files._LEGACY_PROTOCOL_VERSION,
                                _RunsCode(marker)]}[position]
        for obj in objects:
            pickle.dump(obj, f, protocol=2)
    with pytest.raises(errors.DamagedInputError, match="Refusing"):
        torch_files.read_torch_state_dict(path)
    assert not marker.exists()


def test_zip_torch_file_runs_no_code(tmp_path):
    marker = tmp_path / "ran"
    path = str(tmp_path / "weights.pt")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl",
                         pickle.dumps({"w": _RunsCode(marker)}, protocol=2))
    with pytest.raises(errors.DamagedInputError, match="Refusing"):
        torch_files.read_torch_state_dict(path)
    assert not marker.exists()


def test_truncated_torch_file_is_a_damaged_input(tmp_path):
    path = str(tmp_path / "weights.pth")
    buffer = io.BytesIO()
    pickle.dump(torch_files._LEGACY_MAGIC_NUMBER, buffer, protocol=2)
    with open(path, "wb") as f:
        f.write(buffer.getvalue()[:-1])
    with pytest.raises(errors.DamagedInputError):
        torch_files.read_torch_state_dict(path)


MALICIOUS_GIN = ("from __gin__ import dynamic_registration\n"
                 "import os\n"
                 "TrainLoop.num_steps = @os.system('touch {marker}')\n")


@pytest.mark.slow
@pytest.mark.eager
def test_step_timing_never_parses_a_run_config(tmp_path):
    """time_training / benchmark --compare_dir time steps from models.json
    and pruning.json with the package's gin files: a downloaded run's
    config.gin that would run a command (gin's dynamic registration) is
    never read."""
    from ppcd_tf.workflows import benchmark
    from ppcd_tf.workflows import step_parts
    marker = tmp_path / "ran"
    teacher = str(tmp_path / "teacher")
    shutil.copytree(helpers.tiny_teacher_dir(), teacher)
    ppcd = tmp_path / "ppcd"
    ppcd.mkdir()
    for directory in (teacher, str(ppcd)):
        _write(os.path.join(directory, "config.gin"),
               MALICIOUS_GIN.format(marker=marker))
    result = benchmark.measure_train_steps(
        teacher, str(ppcd), gin_params=list(helpers.TINY_BINDINGS) + [
            "PruningBudget.min_channels = 1"], repeats=1, warmup=0,
        parts=True)
    assert not marker.exists()
    # The compact step's pieces were timed in the same rounds (the
    # recipe's CAMs come from the frozen teacher D: every piece runs).
    assert sorted(result["compact_parts"]) == sorted(step_parts.PART_NAMES)
    assert all(seconds > 0 for seconds in result["compact_parts"].values())
    assert len(result["step_times"]["part_g_step"]) == 1
    # The recipe is the package's: the data file of the teacher's dataset
    # ('fake', from its models.json) and the teacher stage.
    assert result["gin_files"] == ["data/fake.gin", "stage/teacher.gin"]
    for key in ("teacher_seconds_per_step", "ppcd_seconds_per_step",
                "ppcd_compact_seconds_per_step"):
        assert result[key] > 0
    assert len(result["step_times"]["ppcd_compact"]) == 1
    assert result["extra_gin_files"] == []
    # Extra files (the run's experiment files) are parsed after the stage
    # file of the timed recipe: one naming no configurable is refused.
    extra = tmp_path / "experiment.gin"
    extra.write_text("NoSuchConfigurable.value = 1\n")
    with pytest.raises(errors.PPCDError, match="NoSuchConfigurable"):
        benchmark.measure_train_steps(
            teacher, str(ppcd), gin_params=list(helpers.TINY_BINDINGS),
            repeats=1, warmup=0, extra_gin_files=[str(extra)])


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_staged_directory_never_replaces_without_overwrite(tmp_path):
    out = str(tmp_path / "report")
    with files.staged_directory(out) as tmp:
        _write(os.path.join(tmp, "a.txt"), "first")
    with pytest.raises(errors.OutputExistsError, match="--overwrite"):
        with files.staged_directory(out):
            pytest.fail("the block must not run")
    # Another writer creates the directory while this one works: kept.
    with pytest.raises(errors.OutputExistsError):
        with files.staged_directory(str(tmp_path / "race")) as tmp:
            _write(os.path.join(tmp, "mine.txt"), "mine")
            os.makedirs(tmp_path / "race")
            _write(str(tmp_path / "race" / "theirs.txt"), "theirs")
    assert os.listdir(tmp_path / "race") == ["theirs.txt"]
    with files.staged_directory(out, overwrite=True) as tmp:
        _write(os.path.join(tmp, "b.txt"), "second")
    assert os.listdir(out) == ["b.txt"]
    # Nothing is left behind: no temporary siblings.
    assert sorted(os.listdir(tmp_path)) == ["race", "report"]


def test_staged_directory_keeps_the_old_output_when_the_block_fails(
        tmp_path):
    out = str(tmp_path / "report")
    with files.staged_directory(out) as tmp:
        _write(os.path.join(tmp, "a.txt"), "first")
    with pytest.raises(RuntimeError):
        with files.staged_directory(out, overwrite=True) as tmp:
            _write(os.path.join(tmp, "b.txt"), "half")
            raise RuntimeError("killed")
    assert os.listdir(out) == ["a.txt"]
    assert sorted(os.listdir(tmp_path)) == ["report"]


def test_the_json_reader_names_the_file_and_the_fix(tmp_path):
    good = tmp_path / "good.json"
    good.write_text('{"fid": {"mean": 1.5}}')
    assert files.read_json(str(good), "--x", "give one.") == {
        "fid": {"mean": 1.5}}
    missing = str(tmp_path / "missing.json")
    with pytest.raises(errors.MissingInputError) as caught:
        files.read_json(missing, "--x", "give one.", "write it again.")
    assert str(caught.value) == f"--x {missing} does not exist; give one."
    assert not isinstance(caught.value, errors.DamagedInputError)
    with pytest.raises(errors.MissingInputError, match="is a directory"):
        files.read_json(str(tmp_path), "--x", "give one.")
    for name, content in (("bad.json", b"{ not json"),
                          ("latin1.json", b'{"a": "\xe9"}')):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(errors.DamagedInputError,
                           match=r"is not valid JSON .*; write it again\.$"):
            files.read_json(str(path), "--x", "give one.", "write it again.")
    # A run directory's and an export's own error classes.
    with pytest.raises(run_dir.RunDirError, match="restore it"):
        run_dir.read_run_json(str(tmp_path / "bad.json"), "pruning structure")
    with pytest.raises(saved_model.ExportNotFoundError,
                       match="export the run again"):
        saved_model.read_metadata(str(_export_with_metadata(tmp_path, b"{")))


def _export_with_metadata(tmp_path, content):
    export = tmp_path / "export"
    (export / saved_model.ASSETS_DIR).mkdir(parents=True)
    (export / saved_model.ASSETS_DIR / "metadata.json").write_bytes(content)
    return export


def test_one_trainer_per_run_directory(tmp_path):
    model_dir = str(tmp_path / "run")
    with run_dir.locked(model_dir):
        with pytest.raises(run_dir.RunLockedError,
                           match=f"pid {os.getpid()}"):
            with run_dir.locked(model_dir):
                pytest.fail("a second holder")
    with run_dir.locked(model_dir):  # released by the first block
        pass


@contextlib.contextmanager
def _lock_holder(model_dir):
    """Another process holding the run lock of `model_dir` for the block
    (yields it); SIGKILLed at the end."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time\n"
         "from ppcd_tf.runs import run_dir\n"
         f"with run_dir.locked({str(model_dir)!r}):\n"
         "    print('locked', flush=True)\n"
         "    time.sleep(120)\n"],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(),
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)


def test_a_killed_holder_releases_the_lock(tmp_path):
    model_dir = str(tmp_path / "run")
    with _lock_holder(model_dir) as holder:
        with pytest.raises(errors.BadInputError,
                           match=f"pid {holder.pid}"):
            with run_dir.locked(model_dir):
                pass
    with run_dir.locked(model_dir):
        pass


@pytest.mark.slow
@pytest.mark.eager
def test_a_learning_rate_given_on_resume_takes_effect(tmp_path):
    model_dir = str(tmp_path / "run")

    def trainer(steps, bindings=()):
        helpers.parse(["debug.gin"], list(helpers.TINY_BINDINGS) + [
            f"TrainLoop.num_steps = {steps}"] + list(bindings))
        return trainer_lib.Trainer(model_dir=model_dir,
                                   strategy=helpers.one_device())

    first = trainer(2)
    first.train()
    assert float(first.g_optimizer.learning_rate) == pytest.approx(1e-4)
    resumed = trainer(2, ["generator/keras.optimizers.Adam.learning_rate"
                          " = 1e-5",
                          "discriminator/keras.optimizers.Adam."
                          "learning_rate = 2e-5"])
    assert resumed.restore() == 2
    assert float(resumed.g_optimizer.learning_rate) == pytest.approx(1e-5)
    assert float(resumed.d_optimizer.learning_rate) == pytest.approx(2e-5)


def test_leftovers_of_a_killed_save_are_removed(tmp_path):
    directory = str(tmp_path / "checkpoints")
    checkpointer = checkpointing.Checkpointer(
        directory, step=tf.Variable(3, dtype=tf.int64))
    checkpointer.save(3)
    leftover = os.path.join(directory, "ckpt-4_temp", "part-00000-of-00001")
    os.makedirs(leftover)
    removed = checkpointer.remove_leftovers()
    assert removed == [os.path.join(directory, "ckpt-4_temp")]
    assert sorted(os.listdir(directory)) == [
        "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]


@pytest.fixture(scope="module")
def two_checkpoint_run(tmp_path_factory):
    """A tiny teacher run with checkpoints at steps 1 and 2."""
    model_dir = str(tmp_path_factory.mktemp("damage") / "run")
    helpers.parse(["debug.gin"], list(helpers.TINY_BINDINGS) + [
        "TrainLoop.num_steps = 2", "TrainLoop.checkpoint_every = 1",
        "TrainLoop.sample_every = 0"])
    helpers.train_eagerly(trainer_lib.Trainer(
        model_dir=model_dir, strategy=helpers.one_device()))
    return model_dir


def _copy_run(source, tmp_path):
    target = str(tmp_path / "copy")
    shutil.copytree(source, target)
    return target, os.path.join(target, "checkpoints")


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated_data", "empty_index"])
def test_a_damaged_newest_checkpoint_falls_back(two_checkpoint_run,
                                                tmp_path, damage):
    model_dir, directory = _copy_run(two_checkpoint_run, tmp_path)
    if damage == "truncated_data":
        path = os.path.join(directory, "ckpt-2.data-00000-of-00001")
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            f.truncate(size // 2)
    else:
        open(os.path.join(directory, "ckpt-2.index"), "w").close()
    assert run_dir.restore_generator(model_dir).step == 1
    step = tf.Variable(0, dtype=tf.int64)
    checkpointer = checkpointing.Checkpointer(directory, step=step)
    assert checkpointer.restore_latest().endswith("ckpt-1")


@pytest.mark.slow
def test_checkpoints_without_their_state_file_are_found(two_checkpoint_run,
                                                        tmp_path):
    model_dir, directory = _copy_run(two_checkpoint_run, tmp_path)
    os.remove(os.path.join(directory, "checkpoint"))
    assert run_dir.latest_checkpoint(model_dir).endswith("ckpt-2")
    assert run_dir.restore_generator(model_dir).step == 2


@pytest.mark.slow
def test_a_checkpoint_without_its_index_is_skipped_with_a_warning(
        two_checkpoint_run, tmp_path, caplog):
    model_dir, directory = _copy_run(two_checkpoint_run, tmp_path)
    os.remove(os.path.join(directory, "ckpt-2.index"))
    with caplog.at_level("WARNING"):
        assert run_dir.latest_checkpoint(model_dir).endswith("ckpt-1")
    assert any("Skipping checkpoint" in r.getMessage()
               and "ckpt-2.index is missing" in r.getMessage()
               for r in caplog.records), caplog.text
    assert run_dir.restore_generator(model_dir).step == 1


@pytest.mark.slow
def test_no_readable_checkpoint_is_a_damaged_input(two_checkpoint_run,
                                                   tmp_path):
    model_dir, directory = _copy_run(two_checkpoint_run, tmp_path)
    for step in (1, 2):
        open(os.path.join(directory, f"ckpt-{step}.index"), "w").close()
    with pytest.raises(errors.MissingInputError, match="ckpt-2, ckpt-1"):
        run_dir.restore_generator(model_dir)
    checkpointer = checkpointing.Checkpointer(
        directory, step=tf.Variable(0, dtype=tf.int64))
    with pytest.raises(errors.DamagedInputError, match="damaged"):
        checkpointer.restore_latest()


@pytest.fixture(scope="module")
def tiny_export():
    return saved_model.load_export(helpers.tiny_teacher_export())


@pytest.mark.slow
@pytest.mark.parametrize("batch, bad, message", [
    (2, "nan", "z must be finite"),
    (2, "inf", "z must be finite"),
    (0, None, "at least one example"),
])
def test_serving_refuses_bad_requests_with_what_it_expects(
        tiny_export, batch, bad, message):
    z = np.zeros((batch, tiny_export.dim_z), np.float32)
    if bad:
        z[0, 0] = float(bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        tiny_export.signature()(z=tf.constant(z),
                                labels=tf.zeros((batch,), tf.int32))


@pytest.mark.slow
def test_serving_batch_limit_and_client_side_split(tiny_export):
    assert tiny_export.metadata["max_batch"] == saved_model.MAX_BATCH
    z = tf.random.normal((7, tiny_export.dim_z), seed=1)
    labels = tf.constant([0, 1, 2, 3, 4, 5, 6]) % tiny_export.num_classes
    whole = tiny_export.generate(z, labels).numpy()
    tiny_export.max_batch = 3  # split into 3 + 3 + 1
    try:
        split = tiny_export.generate(z, labels).numpy()
    finally:
        tiny_export.max_batch = saved_model.MAX_BATCH
    # (batch-size-dependent float32 kernels: agreement to ~1e-6)
    np.testing.assert_allclose(split, whole, atol=1e-5)


def _cli(module, args, tmp_path):
    return subprocess.run(
        [sys.executable, "-m", module] + args, cwd=helpers.REPO_ROOT,
        env=helpers.python_env(), capture_output=True, text=True,
        timeout=120, check=False)


SHIPPED_TEACHER = os.path.join(helpers.REPO_ROOT, "ppcd_tf", "assets",
                               "teacher_fashion_mnist32")
SHIPPED_STUDENT = os.path.join(helpers.REPO_ROOT, "ppcd_tf", "assets",
                               "student_fashion_mnist32_5x")


def _damaged_artefacts(tmp_path):
    """Paths of broken copies: an export with garbled metadata, an export
    whose SavedModel is gone, a PPCD-like run dir, an invalid JSON file."""
    damaged = tmp_path / "damaged_export" / "assets.extra"
    damaged.mkdir(parents=True)
    (damaged / "metadata.json").write_text("{ not json")
    no_pb = tmp_path / "no_pb_export"
    shutil.copytree(os.path.join(SHIPPED_STUDENT, "assets.extra"),
                    no_pb / "assets.extra")
    fake_ppcd = tmp_path / "fake_ppcd"
    fake_ppcd.mkdir()
    (fake_ppcd / "pruning.json").write_text(json.dumps({
        "mask_widths": {}, "phase": "masks", "cut_step": None,
        "compact_channels": None, "kept_indices": None}))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{ not json")
    # Valid JSON of the wrong shape (hand-edited artefacts).
    edited_export = tmp_path / "edited_export"
    shutil.copytree(SHIPPED_STUDENT, edited_export)
    metadata_path = edited_export / "assets.extra" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["dim_z"] = "120"
    metadata_path.write_text(json.dumps(metadata))
    edited_run = tmp_path / "edited_run"
    shutil.copytree(SHIPPED_TEACHER, edited_run)
    models = json.loads((edited_run / "models.json").read_text())
    models["generator"] = [models["generator"]]
    (edited_run / "models.json").write_text(json.dumps(models))
    edited_ppcd = tmp_path / "edited_ppcd"
    edited_ppcd.mkdir()
    (edited_ppcd / "pruning.json").write_text(json.dumps({
        "mask_widths": {}, "phase": "compact", "cut_step": None,
        "compact_channels": None, "kept_indices": None}))
    # A run whose best-checkpoint record names no checkpoint file.
    edited_best = tmp_path / "edited_best_run"
    (edited_best / "best").mkdir(parents=True)
    shutil.copyfile(os.path.join(SHIPPED_TEACHER, "models.json"),
                    edited_best / "models.json")
    (edited_best / "best" / "best.json").write_text(json.dumps({
        "step": 100, "checkpoint": 100, "figures": {"score": 1.0}}))
    edited_steps = tmp_path / "train_steps.json"
    edited_steps.write_text(json.dumps({
        "teacher_seconds_per_step": 0.5, "ppcd_seconds_per_step": "slow",
        "ratio": 1.0, "repeats": 5}))
    return {"damaged_export": str(tmp_path / "damaged_export"),
            "edited_best_run": str(edited_best),
            "edited_steps": str(edited_steps),
            "edited_export": str(edited_export),
            "edited_run": str(edited_run), "edited_ppcd": str(edited_ppcd),
            "no_pb_export": str(no_pb), "fake_ppcd": str(fake_ppcd),
            "bad_json": str(bad_json), "teacher": SHIPPED_TEACHER,
            "student": SHIPPED_STUDENT}


def _a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    return str(path)


# (command module, arguments, exit status, a phrase of the error line).
BAD_INVOCATIONS = [
    ("ppcd_tf.export", ["--model_dir", "{edited_best_run}", "--checkpoint",
                        "best", "--output", "{tmp}/export"], 3,
     "field 'checkpoint' must be a string, got an integer"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{fake_ppcd}", "--teacher_export", "{student}",
                        "--student_export", "{student}", "--output_dir",
                        "{tmp}/new", "--train_steps", "{edited_steps}"], 3,
     "field 'ppcd_seconds_per_step' must be a number, got a string"),
    ("ppcd_tf.evaluate", ["--saved_model", "{tmp}", "--num_real", "-3"], 2,
     "--num_real must be >= 1"),
    ("ppcd_tf.evaluate", ["--saved_model", "{tmp}", "--dataset", "bogus"], 2,
     "Unknown --dataset 'bogus'"),
    ("ppcd_tf.evaluate", ["--saved_model", "{tmp}", "--batch_size", "0"], 2,
     "--batch_size must be >= 1"),
    ("ppcd_tf.evaluate", ["--saved_model", "{tmp}", "--output",
                          "{file}/x.json"], 2, "which is a file"),
    ("ppcd_tf.evaluate", ["--saved_model", "{tmp}", "--cache_dir",
                          "{file}/cache"], 2, "which is a file"),
    ("ppcd_tf.sample", ["--saved_model", "{tmp}", "--out", "{tmp}"], 2,
     "is a directory"),
    ("ppcd_tf.train", ["--model_dir", "{tmp}/run"], 2,
     "at least one --gin_file"),
    ("ppcd_tf.train", ["--model_dir", "{file}", "--gin_file", "debug.gin"],
     2, "is a file"),
    ("ppcd_tf.report", ["--teacher_dir", "{tmp}", "--ppcd_dir", "{tmp}",
                        "--teacher_export", "{tmp}", "--student_export",
                        "{tmp}", "--output_dir", "{tmp}"], 2,
     "--overwrite"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{teacher}", "--teacher_export", "{student}",
                        "--student_export", "{student}", "--output_dir",
                        "{tmp}/new", "--repeats", "0"], 2,
     "--repeats must be >= 1"),
    # Flag parsing: absl's errors are bad input too.
    ("ppcd_tf.train", ["--model_dir", "{tmp}/run", "--bogus", "1"], 2,
     "Unknown command line flag 'bogus'"),
    ("ppcd_tf.export", ["--model_dir", "{teacher}"], 2, "--output"),
    ("ppcd_tf.export", ["--output", "{tmp}/export"], 2,
     "Give exactly one of --model_dir"),
    ("ppcd_tf.export", ["--from_export", "{student}", "--format", "onnx",
                        "--output", "{tmp}/export"], 2,
     "--from_export adds --format tflite only"),
    ("ppcd_tf.export", ["--from_export", "{student}", "--checkpoint", "best",
                        "--output", "{tmp}/export"], 2,
     "--checkpoint applies to --model_dir only"),
    ("ppcd_tf.export", ["--from_export", "{tmp}", "--output",
                        "{tmp}/export"], 3, "is not an export directory"),
    ("ppcd_tf.export", ["--from_export", "{student}", "--output",
                        "{student}/inside"], 2, "--from_export"),
    ("ppcd_tf.train", ["--model_dir", "{file}/child", "--gin_file",
                       "debug.gin"], 2, "which is a file"),
    ("ppcd_tf.train", ["--model_dir", "{tmp}/run", "--gin_file", "debug.gin",
                       "--logical_cpus", "-1"], 2,
     "--logical_cpus must be >= 0"),
    ("ppcd_tf.train", ["--model_dir", "{tmp}/run", "--gin_file",
                       "stage/teacher.gin"], 2,
     "needs a data and a model file before it"),
    ("ppcd_tf.export", ["--model_dir", "{teacher}", "--output",
                        "{file}/child"], 2, "which is a file"),
    ("ppcd_tf.export", ["--model_dir", "{teacher}", "--output",
                        "{tmp}/export", "--tolerance", "-1"], 2,
     "--tolerance must be >= 0"),
    ("ppcd_tf.sample", ["--saved_model", "{student}", "--classes", "",
                        "--out", "{tmp}/s.png"], 2, "--classes is empty"),
    ("ppcd_tf.sample", ["--saved_model", "{student}", "--out",
                        "{file}/s.png"], 2, "which is a file"),
    ("ppcd_tf.sample", ["--saved_model", "{student}", "--individual",
                        "--out", "{file}"], 2,
     "with --individual give a directory"),
    ("ppcd_tf.sample", ["--saved_model", "{damaged_export}", "--out",
                        "{tmp}/s.png"], 3, "is damaged"),
    ("ppcd_tf.sample", ["--saved_model", "{no_pb_export}", "--out",
                        "{tmp}/s.png"], 3, "no loadable SavedModel"),
    ("ppcd_tf.evaluate", ["--saved_model", "{no_pb_export}", "--cache_dir",
                          "{tmp}/cache"], 3, "no loadable SavedModel"),
    ("ppcd_tf.evaluate", ["--saved_model", "{student}", "--truncation",
                          "1.5", "--cache_dir", "{tmp}/cache"], 2,
     "--truncation must be in (0, 1]"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{fake_ppcd}", "--teacher_export", "{student}",
                        "--student_export", "{student}", "--output_dir",
                        "{tmp}/new", "--num_samples", "1"], 2,
     "--num_samples must be >= 2"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{fake_ppcd}", "--teacher_export", "{student}",
                        "--student_export", "{student}", "--output_dir",
                        "{tmp}/new", "--num_real", "0"], 2,
     "--num_real must be >= 1"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{teacher}", "--teacher_export", "{student}",
                        "--student_export", "{student}", "--output_dir",
                        "{tmp}/new"], 2, "is not a PPCD run"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{fake_ppcd}", "--teacher_export", "{fake_ppcd}",
                        "--student_export", "{student}", "--output_dir",
                        "{tmp}/new"], 3, "metadata.json"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{fake_ppcd}", "--teacher_export", "{student}",
                        "--student_export", "{student}", "--output_dir",
                        "{file}/child"], 2, "which is a file"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{fake_ppcd}", "--teacher_export", "{student}",
                        "--student_export", "{student}", "--output_dir",
                        "{tmp}/new", "--train_steps", "{bad_json}"], 3,
     "is not valid JSON"),
    ("ppcd_tf.demo", ["--output_dir", "{tmp}/demo", "--ppcd_steps", "0"], 2,
     "--ppcd_steps and --cut_step must be >= 1"),
    ("ppcd_tf.demo", ["--output_dir", "{tmp}/demo", "--num_samples", "0"], 2,
     "--num_samples must be >= 2"),
    ("ppcd_tf.demo", ["--output_dir", "{file}/child"], 2, "which is a file"),
    ("ppcd_tf.demo", ["--output_dir", "{tmp}/demo", "--gin_file",
                      "experiments/no_such_recipe.gin"], 2,
     "Gin file 'experiments/no_such_recipe.gin' not found"),
    ("ppcd_tf.time_training", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                               "{teacher}", "--output", "{tmp}/t.json"], 2,
     "is not a PPCD run"),
    ("ppcd_tf.time_training", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                               "{teacher}", "--output", "{file}/t.json"], 2,
     "which is a file"),
    ("ppcd_tf.time_training", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                               "{teacher}", "--output", "{tmp}/t.json",
                               "--extra_gin_file", "experiments/nothing.gin"],
     2, "Gin file 'experiments/nothing.gin' not found"),
    # Hand-edited artefacts: the file and the field, exit 3.
    ("ppcd_tf.sample", ["--saved_model", "{edited_export}", "--out",
                        "{tmp}/s.png"], 3,
     "field 'dim_z' must be an integer, got a string"),
    ("ppcd_tf.sample", ["--model_dir", "{edited_run}", "--out",
                        "{tmp}/s.png"], 3,
     "field 'generator' must be an object, got a list"),
    ("ppcd_tf.report", ["--teacher_dir", "{teacher}", "--ppcd_dir",
                        "{edited_ppcd}", "--teacher_export", "{student}",
                        "--student_export", "{student}", "--output_dir",
                        "{tmp}/new"], 3,
     "field 'cut_step' must be an integer, got null"),
    # Requests that cannot fit in memory are refused up front.
    ("ppcd_tf.sample", ["--saved_model", "{student}", "--n", "100000000",
                        "--out", "{tmp}/s.png"], 2,
     "GiB at once, more than this machine's"),
    ("ppcd_tf.evaluate", ["--saved_model", "{student}", "--num_samples",
                          "2000000000", "--cache_dir", "{tmp}/cache"], 2,
     "ask for at most"),
    # A setting that moved to a trainer part says where it lives now.
    ("ppcd_tf.train", ["--model_dir", "{tmp}/run", "--gin_file",
                       "debug.gin", "--gin_param", "Trainer.num_steps = 3"],
     2, "bind TrainLoop.num_steps instead"),
    ("ppcd_tf.train", ["--model_dir", "{tmp}/run", "--gin_file",
                       "debug.gin", "--gin_file", "stage/ppcd.gin",
                       "--gin_param", "PPCDTrainer.min_channels = 3"],
     2, "bind PruningBudget.min_channels instead"),
    # No command writes over, into or around what it reads.
    ("ppcd_tf.export", ["--model_dir", "{teacher_copy}", "--output",
                        "{teacher_copy}", "--overwrite"], 2,
     "is the same path as --model_dir"),
    ("ppcd_tf.export", ["--model_dir", "{teacher_copy}", "--output",
                        "{teacher_link}", "--overwrite"], 2,
     "is the same path as --model_dir"),
    ("ppcd_tf.export", ["--model_dir", "{teacher_copy}", "--output",
                        "{teacher_copy}/export"], 2, "is inside --model_dir"),
    ("ppcd_tf.export", ["--model_dir", "{teacher_copy}", "--output",
                        "{tmp}", "--overwrite"], 2, "contains --model_dir"),
    ("ppcd_tf.evaluate", ["--saved_model", "{student}", "--output",
                          "{student}", "--cache_dir", "{tmp}/cache"], 2,
     "is the same path as --saved_model"),
    ("ppcd_tf.import_teacher", ["--format", "biggan_pytorch",
                                "--weights_dir", "{tmp}", "--output_dir",
                                "{tmp}", "--overwrite"], 2,
     "is the same path as --weights_dir"),
]


def _case_values(case_dir):
    """The fixtures one invocation may name, in a directory of its own (as
    if the command had the machine to itself)."""
    (case_dir / "not_empty.txt").write_text("x")
    values = {"tmp": str(case_dir), "file": _a_file(case_dir)}
    values.update(_damaged_artefacts(case_dir))
    values.update(_teacher_copy(case_dir))
    return values


@pytest.fixture(scope="module")
def module_invocations(tmp_path_factory):
    """module -> [(result, teacher copy's listing before, after)] for its
    BAD_INVOCATIONS in order: a module's cases run in one process
    (tests/cli_batch.py: `run_main` as `python -m` runs it, flags and gin
    reset between cases), each against fixtures of its own, so that the
    ~4 s TensorFlow import is paid once per module, not once per case."""
    cache = {}

    def results(module):
        if module not in cache:
            root = tmp_path_factory.mktemp(module.replace(".", "_"))
            cases, befores = [], []
            for index, (name, args, _, _) in enumerate(BAD_INVOCATIONS):
                if name != module:
                    continue
                case_dir = root / f"case_{index}"
                case_dir.mkdir()
                values = _case_values(case_dir)
                cases.append([a.format(**values) for a in args])
                befores.append((values["teacher_copy"],
                                _listing(values["teacher_copy"])))
            batch = helpers.run_cli_batch(
                {"module": module, "watch": str(root), "cases": cases})
            cache[module] = [
                (result, before, _listing(copy)) for result, (copy, before)
                in zip(batch, befores)]
        return cache[module]

    return results


@pytest.mark.parametrize("module, index, args, status, phrase",
                         list(helpers.numbered(BAD_INVOCATIONS)))
def test_bad_invocations_fail_at_once_with_a_message(
        module_invocations, module, index, args, status, phrase):
    result, before, after = module_invocations(module)[index]
    stderr = result["stderr"]
    assert result["status"] == status, stderr[-2000:]
    assert phrase in stderr, stderr[-2000:]
    assert "Traceback" not in stderr
    assert after == before


def test_a_batched_invocation_is_what_a_process_sees(module_invocations,
                                                     tmp_path):
    """The first case of each exit status, also in a process of its own:
    the same status and `error:` line as in the batch."""
    firsts = {}
    for module, index, args, status, _ in helpers.numbered(
            BAD_INVOCATIONS):
        firsts.setdefault(status, (module, index, args))
    for status, (module, index, args) in sorted(firsts.items()):
        case_dir = tmp_path / f"status_{status}"
        case_dir.mkdir()
        values = _case_values(case_dir)
        alone = _cli(module, [a.format(**values) for a in args], case_dir)
        batched = module_invocations(module)[index][0]
        assert alone.returncode == batched["status"] == status, alone.stderr
        lines = [_without_paths(line) for text in (alone.stderr,
                                                   batched["stderr"])
                 for line in text.splitlines() if line.startswith("error: ")]
        # One line each; paths differ (other fixture directories), the
        # wording does not.
        assert len(lines) == 2 and lines[0] == lines[1], (
            alone.stderr, batched["stderr"])


def _without_paths(line):
    return re.sub(r"\S*/\S*", "<path>", line)


def _teacher_copy(tmp_path):
    """A copy of the shipped teacher run (a command may try to write over
    it) and a symlink to it."""
    copy = tmp_path / "teacher_copy"
    shutil.copytree(SHIPPED_TEACHER, copy)
    link = tmp_path / "teacher_link"
    link.symlink_to(copy)
    return {"teacher_copy": str(copy), "teacher_link": str(link)}


def _listing(path):
    return sorted((os.path.relpath(os.path.join(root, name), path),
                   os.path.getsize(os.path.join(root, name)))
                  for root, _, names in os.walk(path) for name in names)


@pytest.mark.parametrize("output, inputs, directory, phrase", [
    ("{run}", {"--model_dir": "{run}"}, True, "is the same path as"),
    ("{run}/../run/", {"--model_dir": "{run}"}, True, "is the same path as"),
    ("{link}", {"--model_dir": "{run}"}, True, "is the same path as"),
    ("{run}/sub", {"--model_dir": "{link}"}, True, "is inside"),
    ("{tmp}", {"--model_dir": "{run}"}, True, "contains"),
    ("{tmp}", {"--model_dir": "{run}"}, False, "contains"),
    ("{run}/config.gin", {"--model_dir": "{run}/config.gin"}, False,
     "is the same path as"),
])
def test_outputs_that_overlap_an_input_are_refused(tmp_path, output, inputs,
                                                   directory, phrase):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.gin").write_text("x")
    (tmp_path / "link").symlink_to(run)
    values = {"tmp": str(tmp_path), "run": str(run),
              "link": str(tmp_path / "link")}
    with pytest.raises(errors.BadInputError, match=phrase):
        files.check_apart("--output", output.format(**values),
                          {k: v.format(**values) for k, v in inputs.items()},
                          directory=directory)


def test_outputs_apart_from_the_inputs_pass(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    files.check_apart("--output", str(tmp_path / "run_export"),
                      {"--model_dir": str(run), "--unset": None})
    # A file written into an input directory alters nothing it reads.
    files.check_apart("--output", str(run / "eval.json"),
                      {"--model_dir": str(run)}, directory=False)
    files.check_apart("gs://bucket/out", "gs://bucket/out",
                      {"--model_dir": "gs://bucket/out"})


def test_overwriting_through_a_symlink_replaces_its_target(tmp_path):
    target = tmp_path / "export_v1"
    target.mkdir()
    (target / "old.txt").write_text("old")
    link = tmp_path / "export"
    link.symlink_to(target)
    with files.staged_directory(str(link), overwrite=True) as staged:
        with open(os.path.join(staged, "new.txt"), "w") as f:
            f.write("new")
    assert link.is_symlink() and os.path.realpath(link) == str(target)
    assert sorted(os.listdir(link)) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["export", "export_v1"]


def test_a_refused_second_trainer_leaves_the_run_untouched(tmp_path):
    model_dir = tmp_path / "run"
    model_dir.mkdir()
    (model_dir / "config.gin").write_text("# the running run's bindings\n")
    with _lock_holder(model_dir):
        result = _cli("ppcd_tf.train", [
            "--model_dir", str(model_dir), "--gin_file", "debug.gin",
            "--gin_param", "TrainLoop.num_steps = 1"], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "is in use by another trainer" in result.stderr
    assert (model_dir / "config.gin").read_text() == (
        "# the running run's bindings\n")
    assert sorted(os.listdir(model_dir)) == [".trainer.lock", "config.gin"]


def test_the_trainer_trains_under_the_commands_lock(tmp_path):
    model_dir = str(tmp_path / "run")
    with run_dir.locked(model_dir):
        with run_dir.locked_once(os.path.join(model_dir, ".")):
            pass
        other = subprocess.run(  # still held: another process is refused
            [sys.executable, "-c",
             "from ppcd_tf.runs import run_dir\n"
             f"with run_dir.locked({model_dir!r}):\n    pass\n"],
            cwd=helpers.REPO_ROOT, env=helpers.python_env(),
            capture_output=True, text=True, timeout=60, check=False)
        assert other.returncode != 0
        assert "RunLockedError" in other.stderr
    with run_dir.locked(model_dir):  # released by the outer block
        pass


@pytest.mark.slow
@pytest.mark.parametrize("labels", [
    np.array([1.5, 1.9]), np.array([1.0, 1.0]),
    np.array([2**32 + 1, 0], np.int64)])
def test_every_python_entry_point_refuses_bad_labels(tiny_export, labels):
    z = np.zeros((2, tiny_export.dim_z), np.float32)
    with pytest.raises(errors.BadInputError, match="labels"):
        tiny_export.generate(z, labels)
    with pytest.raises(errors.BadInputError, match="labels"):
        tiny_export.sample(labels, 0.5, [0, 1])
    with pytest.raises(errors.BadInputError, match="labels_b"):
        tiny_export.interpolate(z, [0, 1], labels, [0.0, 1.0])
    restored = run_dir.restore_generator(helpers.tiny_teacher_dir())
    with pytest.raises(errors.BadInputError, match="labels"):
        restored.generate(tf.constant(z), labels)


def test_staging_of_a_killed_writer_is_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "export"
    stale = tmp_path / f"export.tmp-{dead.pid}-abc"
    live = tmp_path / f"export.tmp-{os.getpid()}-def"
    other = tmp_path / f"other.tmp-{dead.pid}-abc"
    for path in (stale, live, other):
        (path / "model").mkdir(parents=True)
    assert files.remove_stale_siblings(str(out)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name])
    # Every staged write clears its target's stale siblings first.
    with files.staged_directory(str(tmp_path / "other")) as staging:
        (tmp_path / "other.done").write_text(staging)
    assert not other.exists()
    assert (tmp_path / "other").is_dir()


def test_fp16_loss_scale_is_removed_from_unwrapped_groups():
    variable = tf.Variable([1.0, 2.0])
    scaled = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.SGD(0.1), initial_scale=128.0)
    scaled.build([variable])
    grads = gan_steps.unscaled(
        [tf.constant([128.0, 256.0])], scaled)
    np.testing.assert_allclose(grads[0].numpy(), [1.0, 2.0])
    # An overflow: the scaled optimizer skips the step, so must the others.
    grads = gan_steps.unscaled(
        [tf.constant([np.inf, 256.0]), tf.constant([1.0])], scaled)
    assert all(float(tf.reduce_sum(tf.abs(g))) == 0.0 for g in grads)


@pytest.mark.slow
def test_the_export_reader_checks_the_z_width(tiny_export):
    with pytest.raises(errors.BadInputError,
                       match=rf"z must have shape \[batch, "
                             rf"{tiny_export.dim_z}\], got \[2, "
                             rf"{tiny_export.dim_z + 1}\]"):
        tiny_export.generate(tf.zeros((2, tiny_export.dim_z + 1)), [0, 1])


def test_a_torch_file_of_an_unknown_pickle_protocol_is_damaged_input(
        tmp_path):
    path = str(tmp_path / "weights.pth")
    with open(path, "wb") as f:
        f.write(b"\x80\x09N.")  # protocol 9: newer than any pickle reader
    with pytest.raises(errors.DamagedInputError,
                       match="unsupported pickle protocol"):
        torch_files.read_torch_state_dict(path)
