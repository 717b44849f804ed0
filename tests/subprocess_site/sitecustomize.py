"""Start-up hook of every Python process the test suite starts.

`tests.helpers.python_env` puts this directory on PYTHONPATH, so the
interpreter imports this module before the command runs. It does one thing:
once the command imports TensorFlow, Grappler's graph optimisations are
switched off, as `tests/conftest.py` does in-process. They cost seconds on
the first call of every compiled function (a tiny training step, an export's
verification) and buy nothing at test sizes. Tests that run a command with
TensorFlow's defaults pass `helpers.python_env(grappler=True)`, which sets
PPCD_TEST_GRAPPLER=on, so both configurations stay covered.
"""

import importlib.abc
import importlib.machinery
import os
import sys

_ENV = "PPCD_TEST_GRAPPLER"


def _switch_off_grappler(module):
    module.config.optimizer.set_experimental_options(
        {"disable_meta_optimizer": True})


class _AfterTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` with the other finders and runs a callback once
    its module has executed (nothing else is imported here: TensorFlow is
    loaded only if and when the command imports it)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_configure(module):
            exec_module(module)
            _switch_off_grappler(module)

        spec.loader.exec_module = exec_then_configure
        return spec


if os.environ.get(_ENV, "off") != "on":
    sys.meta_path.insert(0, _AfterTensorFlowImport())
