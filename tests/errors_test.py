"""The error hierarchy: exit statuses, what stays a traceback, and that the
library's errors keep the built-in bases callers catch."""

import os
import subprocess
import sys

import pytest

from ppcd_tf import config as config_lib
from ppcd_tf import errors
from ppcd_tf.data import fashion_mnist_offline
from ppcd_tf.exporting import pipeline
from ppcd_tf.exporting import saved_model
from ppcd_tf.metrics import evaluation
from ppcd_tf.metrics import feature_networks
from ppcd_tf.runs import run_dir
from ppcd_tf.workflows import teachers
from tests import helpers


@pytest.mark.parametrize("error, status", [
    (errors.BadInputError("x"), 2),
    (errors.OutputExistsError("x"), 2),
    (errors.MissingInputError("x"), 3),
    (errors.DamagedInputError("x"), 3),
    (errors.DivergedError("x"), 1),
    (ValueError("x"), None),
    (FileNotFoundError("x"), None),
    (KeyError("x"), None),
])
def test_exit_status(error, status):
    assert errors.exit_status(error) == status


@pytest.mark.parametrize("cls, status, builtin", [
    (config_lib.ConfigError, 2, ValueError),
    (evaluation.EvaluationError, 2, ValueError),
    (pipeline.ExportError, 2, ValueError),
    (feature_networks.FeatureNetworkError, 2, ValueError),
    (errors.OutputExistsError, 2, FileExistsError),
    (teachers.TeacherError, 3, FileNotFoundError),
    (fashion_mnist_offline.DataNotFoundError, 3, FileNotFoundError),
    (run_dir.RunDirError, 3, FileNotFoundError),
    (saved_model.ExportNotFoundError, 3, FileNotFoundError),
    (errors.DamagedInputError, 3, ValueError),
    (errors.DivergedError, 1, FloatingPointError),
])
def test_library_errors_map_to_their_status(cls, status, builtin):
    error = cls("message")
    assert errors.exit_status(error) == status
    assert isinstance(error, builtin)


@pytest.mark.parametrize("error, status", [
    (errors.BadInputError("wrong flag"), 2),
    (errors.MissingInputError("no weights"), 3),
    (errors.DivergedError("nan at step 7"), 1),
])
def test_exit_on_errors_exits_with_the_message(error, status, capsys):
    with pytest.raises(SystemExit) as exited:
        with errors.exit_on_errors():
            raise error
    assert exited.value.code == status
    assert f"error: {error}" in capsys.readouterr().err


def test_exit_on_errors_lets_bugs_through():
    # A plain ValueError is a bug, not bad input: it keeps its traceback.
    with pytest.raises(ValueError, match="a bug"):
        with errors.exit_on_errors():
            raise ValueError("a bug")


# Mistakes found inside a training run: name -> (gin files, bindings
# beyond TINY_BINDINGS); "{tmp}" is a directory of the case's own.
RUN_ERRORS = {
    # Validation in a gin-configured constructor (EMA decay outside
    # [0, 1)).
    "wrong_binding": (["debug.gin"], ["GanSteps.ema_decay = 1.5",
                                      "TrainLoop.num_steps = 1"]),
    "missing_teacher_dir": (["debug.gin", "stage/ppcd.gin"], [
        "TEACHER_DIR = '{tmp}/no_teacher'", "TrainLoop.num_steps = 1"]),
}


@pytest.fixture(scope="module")
def run_errors(tmp_path_factory):
    """name -> result of `python -m ppcd_tf.train` for RUN_ERRORS: the
    cases run in one process (tests/cli_batch.py: `run_main`, flags and gin
    reset between cases), paying the interpreter start and the TensorFlow
    import (~5 s on 2 cores) once."""
    root = tmp_path_factory.mktemp("run_errors")
    cases = []
    for name, (files, bindings) in RUN_ERRORS.items():
        tmp = root / name
        tmp.mkdir()
        argv = helpers.train_command(
            str(tmp / "run"), files, list(helpers.TINY_BINDINGS)
            + [binding.format(tmp=tmp) for binding in bindings])
        cases.append(argv[3:])  # less `python -m ppcd_tf.train`
    results = helpers.run_cli_batch(
        {"module": "ppcd_tf.train", "cases": cases}, timeout=360)
    return dict(zip(RUN_ERRORS, results))


def test_a_wrong_binding_inside_the_run_is_bad_input(run_errors):
    # Ends with status 2 and the message, not a traceback.
    result = run_errors["wrong_binding"]
    assert result["status"] == 2, result["stderr"][-3000:]
    assert "EMA decay must be in [0, 1)" in result["stderr"]
    assert "Traceback" not in result["stderr"]


def test_a_missing_teacher_dir_is_missing_input(run_errors):
    result = run_errors["missing_teacher_dir"]
    assert result["status"] == 3, result["stderr"][-3000:]
    assert "no_teacher" in result["stderr"]
    assert "Traceback" not in result["stderr"]


def test_the_export_binary_refuses_a_run_without_checkpoints(tmp_path):
    # A process of its own: the only ppcd_tf.export case here, so a batch
    # (tests/cli_batch.py) would cost the same one start.
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "ppcd_tf.export", "--model_dir",
         str(empty_run), "--output", str(tmp_path / "out")],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "out")


def test_the_message_drops_gins_call_lines():
    error = errors.BadInputError(
        "PPCDTrainer needs teacher_dir.\n"
        "  In call to configurable 'PPCDTrainer' (<class ...>)\n"
        "  In call to configurable 'run' (<function run>)")
    assert errors.one_message(error) == "PPCDTrainer needs teacher_dir."


def test_a_request_beyond_the_memory_is_refused_with_the_sizes():
    gib = 2 ** 30
    errors.check_fits_in_memory(gib, "--n 1", "ask less.", memory_bytes=gib)
    with pytest.raises(errors.BadInputError,
                       match=r"--n 9 needs 3.0 GiB at once, more than this "
                             r"machine's 2.0 GiB of memory; ask less\."):
        errors.check_fits_in_memory(3 * gib, "--n 9", "ask less.",
                                    memory_bytes=2 * gib)
    assert errors.machine_memory_bytes() > gib


def test_a_command_error_is_one_line_on_stderr(tmp_path):
    # A process of its own: the subject is all the process writes to
    # stderr, absl's log lines included (in tests/cli_batch.py those below
    # the stderr threshold go to the batch's own stderr, not the case's),
    # and this error answers before TensorFlow is imported (~0.1 s).
    result = subprocess.run(
        [sys.executable, "-m", "ppcd_tf.train", "--model_dir",
         str(tmp_path / "run")], cwd=helpers.REPO_ROOT,
        env=helpers.python_env(), capture_output=True, text=True,
        timeout=120, check=False)
    assert result.returncode == errors.EXIT_BAD_INPUT
    mentions = [line for line in result.stderr.splitlines()
                if "at least one --gin_file" in line]
    assert len(mentions) == 1 and mentions[0].startswith("error: ")


@pytest.mark.parametrize("raised, fault", [
    (OSError(28, "No space left on device", "/out/ckpt-3.data"),
     "no space left on the device"),
    (OSError(13, "Permission denied", "/out"), "permission denied"),
    (RuntimeError("/out/x.tmp; No space left on device"),  # TF's text
     "no space left on the device"),
    (MemoryError(), "out of memory"),
])
def test_a_resource_fault_is_one_line_and_exit_4(capsys, raised, fault):
    with pytest.raises(SystemExit) as caught:
        with errors.exit_on_errors():
            raise raised
    assert caught.value.code == errors.EXIT_RESOURCE == 4
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {fault}")


def test_other_errors_stay_tracebacks():
    with pytest.raises(OSError):
        with errors.exit_on_errors():
            raise OSError(2, "No such file or directory")
    with pytest.raises(KeyError):
        with errors.exit_on_errors():
            raise KeyError("a bug")
