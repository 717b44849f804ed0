"""A disk that fills up for real (a small tmpfs, where this machine lets the
tests mount one): the command ends with exit 4 and one `error: no space
left` line, and leaves no half-written output behind."""

import os
import subprocess
import sys

import pytest

from ppcd_tf import errors
from tests import helpers

TEACHER = os.path.join(helpers.REPO_ROOT, "ppcd_tf", "assets",
                       "teacher_fashion_mnist32")


@pytest.fixture
def tiny_disk(tmp_path, request):
    """A tmpfs of `request.param` bytes mounted at tmp_path/disk (skipped
    where mounting is not allowed, e.g. without root)."""
    path = tmp_path / "disk"
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={request.param}", "tmpfs",
         str(path)], capture_output=True, text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def _no_space_line(result):
    lines = [line for line in result.stderr.splitlines()
             if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: no space left on the device")


@pytest.mark.parametrize("tiny_disk", ["256k"], indirect=True)
def test_an_export_onto_a_full_disk(tiny_disk):
    result = subprocess.run(
        [sys.executable, "-m", "ppcd_tf.export", "--model_dir", TEACHER,
         "--output", str(tiny_disk / "export")], cwd=helpers.REPO_ROOT,
        env=helpers.python_env(), capture_output=True, text=True,
        timeout=300, check=False)
    assert result.returncode == errors.EXIT_RESOURCE, result.stderr[-2000:]
    _no_space_line(result)
    # Nothing half-written: neither the export nor its staging directory.
    assert os.listdir(tiny_disk) == []


@pytest.mark.parametrize("tiny_disk", ["160k"], indirect=True)
def test_training_onto_a_full_disk(tiny_disk):
    model_dir = tiny_disk / "run"
    result = helpers.run_train(str(model_dir), ["debug.gin"], list(
        helpers.TINY_BINDINGS) + ["TrainLoop.num_steps = 6"])
    assert result.returncode == errors.EXIT_RESOURCE, result.stderr[-2000:]
    _no_space_line(result)
    # Every checkpoint the run lists is complete (its index and data are
    # there); no staging file is left.
    checkpoints = model_dir / "checkpoints"
    names = os.listdir(checkpoints) if checkpoints.exists() else []
    assert not [n for n in names if "tmp" in n or "temp" in n], names
    for name in names:
        if name.endswith(".index"):
            assert name[:-len(".index")] + ".data-00000-of-00001" in names
