"""Test set-up: two logical CPU devices, a clean gin config, fixed seeds.

The logical devices must be configured before TensorFlow initialises its
devices, so this runs at import time of the test session.
"""

import os
import sys

import gin
import pytest
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

NUM_LOGICAL_CPUS = 2


def _configure_logical_cpus():
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0],
            [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS)
    except RuntimeError:
        # Devices were already initialised (e.g. a plugin touched them).
        pass


_configure_logical_cpus()

# tf.test.TestCase reads absl flags (test_tmpdir); under pytest nobody parses
# them. Define the binaries' flags first, then mark the defaults as parsed.
import ppcd_tf.train  # noqa: E402,F401
from absl import flags  # noqa: E402

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.fixture(autouse=True)
def _clean_state():
    gin.clear_config()
    tf.keras.utils.set_random_seed(1234)
    yield
    gin.clear_config()


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: multi-second integration tests")
    config.addinivalue_line("markers", "gpu: needs a visible GPU")


def pytest_collection_modifyitems(config, items):
    # tf.test.TestCase subclasses inherit its `test_session` context manager,
    # which pytest collects as a (skipped) test: deselect it, so that the
    # skips shown (`-rs`) are real ones.
    inherited = [item for item in items if item.name == "test_session"]
    if inherited:
        config.hook.pytest_deselected(items=inherited)
        items[:] = [item for item in items if item.name != "test_session"]
    if tf.config.list_physical_devices("GPU"):
        return
    skip_gpu = pytest.mark.skip(reason="no GPU visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
