"""Test set-up: two logical CPU devices, a clean gin config, fixed seeds.

The logical devices must be configured before TensorFlow initialises its
devices, so this runs at import time of the test session.
"""

import ctypes
import ctypes.util
import gc
import os
import shutil
import sys
import tempfile

import gin
import pytest
import tensorflow as tf

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

NUM_LOGICAL_CPUS = 2

# glibc's malloc_trim returns freed heap pages to the system (see
# _release_traced_graphs); None where the C library has no such call.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
if not hasattr(_LIBC, "malloc_trim"):
    _LIBC = None


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

# Grappler's graph optimisations cost ~6 s on the first call of every tiny
# compiled training step (a third of its tracing and start-up) and buy
# nothing at test sizes. In-process tests run their graphs unoptimised, and
# so do the commands the tests start (tests/subprocess_site); the real-data
# training command runs with TensorFlow's defaults, so both are covered.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

# tf.test.TestCase reads absl flags (test_tmpdir); under pytest nobody parses
# them. Define the binaries' flags first, then mark the defaults as parsed.
import ppcd_tf.train  # noqa: E402,F401

# The commands import their libraries on first use; tests parse training
# configurations directly, so every configurable is registered here.
from ppcd_tf.training import registry  # noqa: E402  # isort: skip

registry.register()

from absl import flags  # noqa: E402  # isort: skip

if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


@pytest.fixture(autouse=True)
def _clean_state():
    gin.clear_config()
    tf.keras.utils.set_random_seed(1234)
    yield
    gin.clear_config()


# Modules whose test classes share a module-level cache (export_test's
# end-to-end runs) or a session fixture (data_test's prepared Fashion-MNIST,
# ~40 s to make): with `--dist loadscope` each class is a unit of work and
# may land on another worker, which would build the cache again. Their
# classes are scheduled as one unit.
SHARED_CACHE_MODULES = ("tests/export_test.py", "tests/data_test.py")


# The modules with the most worker time, slowest first (a run of 3bf760b
# in the working tree, two workers: 166 s down to 39 s each). Their scopes
# are handed out first, so that the workers finish together instead of one
# running a long scope alone at the end; every other module follows in its
# collection order. Update it when `--durations` shows a new slow module.
SLOW_MODULES_FIRST = (
    "demo_test", "gin_configs_test", "reliability_test", "compaction_test",
    "ppcd_test", "trainer_test", "biggan_deep_training_test",
    "discriminator_schedule_test", "cli_test", "kill_probe_test",
    "evaluation_test", "export_test", "import_teacher_test",
    "shipped_student_test", "imagenet128_runbook_test", "sample_test",
    "benchmark_test", "data_test", "discriminator_thinning_test",
)


def _slow_first_rank(item):
    module = os.path.splitext(os.path.basename(str(item.path)))[0]
    if module in SLOW_MODULES_FIRST:
        return SLOW_MODULES_FIRST.index(module)
    return len(SLOW_MODULES_FIRST)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` with the modules of SHARED_CACHE_MODULES kept
    whole and the scopes handed out in collection order (SLOW_MODULES_FIRST
    first) rather than by their number of tests (pytest-xdist's hook; other
    modes are left to xdist)."""
    if config.getoption("dist") != "loadscope":
        return None
    config.option.loadscopereorder = False
    from xdist.scheduler import LoadScopeScheduling

    class SharedCacheScheduling(LoadScopeScheduling):

        def _split_scope(self, nodeid):
            module = nodeid.split("::", 1)[0]
            if module in SHARED_CACHE_MODULES:
                return module
            return super()._split_scope(nodeid)

    return SharedCacheScheduling(config, log)


@pytest.fixture(autouse=True)
def _release_traced_graphs():
    """Frees the graphs a test traced once the test is over.

    Every `tf.custom_gradient` inside a traced function (the replica
    all-reduce of Keras's synchronised BN and of the optimizer's gradient
    sum, PPCD's straight-through masks) registers a `CustomGradient-N`
    function in a process-wide table that TensorFlow never empties; the
    function holds its graph, so each traced training step stayed in memory
    for the rest of the worker's life (~0.2-1.2 GB per trace: a worker grew
    to 14-18 GB and the two workers of `make test` were killed for memory).
    The entries a test added are removed after it (its traces are finished;
    a new trace registers new entries), then the cyclic garbage (the graphs)
    is collected and the freed heap returned to the system."""
    from tests import helpers  # after the logical devices are configured
    table = helpers.registered_gradients()
    before = set(table)
    yield
    added = [name for name in table
             if name not in before and name.startswith("CustomGradient-")]
    if not added:
        return
    for name in added:
        del table[name]
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@pytest.fixture(autouse=True)
def _eager_functions(request):
    """Tests marked `eager` run tf.functions eagerly: their subject is
    what a step does to the run (bookkeeping, resume, configuration), not
    the compiled step, and tracing a tiny PPCD step costs ~15 s on 2 cores
    against ~1 s to run it eagerly. The compiled loops are traced by the
    unmarked trainer, PPCD, compaction and distributed tests and by every
    command-line test (subprocesses are never eager)."""
    if request.node.get_closest_marker("eager") is None:
        yield
        return
    from tests import helpers  # after the logical devices are configured
    with helpers.functions_run_eagerly():
        yield


_SHARED_DIR_KEY = pytest.StashKey[str]()


def pytest_configure(config):
    # The run-wide directory of tests/helpers.shared_artifact: made here in
    # the controller, before pytest-xdist starts the workers that inherit
    # the variable; removed by the same process at the end.
    from tests import helpers
    if not os.environ.get(helpers.SHARED_DIR_VARIABLE):
        os.environ[helpers.SHARED_DIR_VARIABLE] = tempfile.mkdtemp(
            prefix="ppcd_tests_shared_")
        config.stash[_SHARED_DIR_KEY] = os.environ[
            helpers.SHARED_DIR_VARIABLE]
    config.addinivalue_line("markers", "slow: multi-second integration tests")
    config.addinivalue_line(
        "markers", "eager: run tf.functions eagerly (see _eager_functions)")
    config.addinivalue_line("markers", "gpu: needs a visible GPU")


def pytest_unconfigure(config):
    shared = config.stash.get(_SHARED_DIR_KEY, None)
    if shared:
        shutil.rmtree(shared, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    # tf.test.TestCase subclasses inherit its `test_session` context manager,
    # which pytest collects as a (skipped) test: deselect it, so that the
    # skips shown (`-rs`) are real ones.
    inherited = [item for item in items if item.name == "test_session"]
    if inherited:
        config.hook.pytest_deselected(items=inherited)
        items[:] = [item for item in items if item.name != "test_session"]
    items.sort(key=_slow_first_rank)  # Stable: each module keeps its order.
    if tf.config.list_physical_devices("GPU"):
        return
    skip_gpu = pytest.mark.skip(reason="no GPU visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
