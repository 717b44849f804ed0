"""Every command answers --helpfull and a mistyped flag without importing
TensorFlow (ppcd_tf/lazy.py, ppcd_tf/defaults.py).

Each command runs in a process of its own (their flags share absl's global
registry): its module is run as `__main__` with --helpfull, then a mistyped
flag goes through the commands' flag parser; the process then reports
whether TensorFlow or Keras was imported.
"""

import glob
import json
import os
import subprocess
import sys

import pytest

from tests import helpers

_DRIVER = r"""
import contextlib, io, json, runpy, sys
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target, "--helpfull"]
help_text = io.StringIO()
with contextlib.redirect_stdout(help_text):
    try:
        if kind == "module":
            runpy.run_module(target, run_name="__main__")
        else:
            runpy.run_path(target, run_name="__main__")
    except SystemExit as stop:
        help_status = stop.code
from ppcd_tf import errors
with contextlib.redirect_stderr(io.StringIO()) as flag_error:
    try:
        errors.parse_flags([target, "--no_such_flag_at_all"])
        flag_status = 0
    except SystemExit as stop:
        flag_status = stop.code
print(json.dumps({
    "help_status": help_status, "help": help_text.getvalue(),
    "flag_status": flag_status, "flag_error": flag_error.getvalue(),
    "imported": [name for name in ("tensorflow", "keras")
                 if name in sys.modules]}))
"""

# Commands not checked: a maintainer's tool that needs PyTorch to run at all.
_NOT_COMMANDS = {"make_biggan_pytorch_fixtures.py",
                 "make_biggan_deep_fixtures.py"}


def _commands():
    modules = sorted(
        ("module", "ppcd_tf." + os.path.basename(path)[:-3])
        for path in glob.glob(os.path.join(helpers.REPO_ROOT, "ppcd_tf",
                                           "*.py"))
        if "\ndef main(" in open(path).read())
    tools = sorted(
        ("path", os.path.join("tools", os.path.basename(path)))
        for path in glob.glob(os.path.join(helpers.REPO_ROOT, "tools",
                                           "*.py"))
        if os.path.basename(path) not in _NOT_COMMANDS)
    return modules + tools


def test_every_command_is_found():
    names = [target for _, target in _commands()]
    assert "ppcd_tf.train" in names and "ppcd_tf.export" in names
    assert os.path.join("tools", "benchmark.py") in names
    assert len(names) >= 16


@pytest.mark.parametrize("kind, target", _commands(),
                         ids=[target for _, target in _commands()])
def test_help_and_flag_errors_answer_without_tensorflow(kind, target):
    result = subprocess.run(
        [sys.executable, "-c", _DRIVER, kind, target],
        cwd=helpers.REPO_ROOT, env=helpers.python_env(), capture_output=True,
        text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # absl's help flags end the process with status 1 after the help.
    assert report["help_status"] == 1
    assert "--helpfull" in report["help"] and "--[no]" in report["help"]
    assert report["flag_status"] == 2
    assert "no_such_flag_at_all" in report["flag_error"]
    assert report["imported"] == []
