"""Shared helpers of the test suite (tiny configs, strategies, subprocesses)."""

import atexit
import contextlib
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import gin
import tensorflow as tf
from tensorboard.plugins.hparams import plugin_data_pb2

from ppcd_tf import config as config_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN_DIR = os.path.join(REPO_ROOT, "gin")

# Bindings that make any config tiny: ch 4, batch 4, short loops.
TINY_BINDINGS = [
    "CH = 4",
    "GLOBAL_BATCH_SIZE = 4",
    "build_generator.dim_z = 16",
    "build_generator.shared_dim = 8",
    "TrainLoop.log_every = 1",
    "TrainLoop.checkpoint_every = 2",
    "TrainLoop.sample_every = 2",
    "TrainLoop.steps_per_loop = 1",
    "SampleGrid.samples_per_class = 2",
    "SampleGrid.max_sample_classes = 2",
]


def parse(gin_files, bindings=()):
    """Parses gin files (relative to gin/) and bindings."""
    gin.clear_config()
    return config_lib.parse_gin(list(gin_files), list(bindings), (GIN_DIR,))


def one_device():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


_TWO_REPLICAS = []


def two_replicas():
    """One shared MirroredStrategy over the two logical CPUs.

    Shared on purpose: separate MirroredStrategy objects in one process can
    hand out the same collective instance keys, and their functions' all-
    reduces (synchronised BN) then collide ("Shape mismatch in the collective
    instance"). Real runs have one strategy per process.
    """
    if not _TWO_REPLICAS:
        _TWO_REPLICAS.append(
            tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    return _TWO_REPLICAS[0]


def local_results(strategy, variable):
    """Per-replica values of a (Keras or tf) variable as numpy arrays."""
    inner = getattr(variable, "_value", variable)
    return [v.numpy() for v in strategy.experimental_local_results(inner)]


# Its sitecustomize switches Grappler off in the subprocesses' TensorFlow.
SUBPROCESS_SITE = os.path.join(REPO_ROOT, "tests", "subprocess_site")


def python_env(grappler=False):
    """Environment for subprocesses: repo on the path, quiet TF logs, and
    Grappler's graph optimisations off as in-process (a second or more per
    compiled function at test sizes, `tests/subprocess_site`) unless
    `grappler`: TensorFlow's defaults, as users run."""
    env = dict(os.environ)
    paths = [REPO_ROOT, SUBPROCESS_SITE]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PPCD_TEST_GRAPPLER"] = "on" if grappler else "off"
    return env


def train_command(model_dir, gin_files, bindings=(), extra_flags=()):
    """argv of `python -m ppcd_tf.train` for the given config."""
    argv = [sys.executable, "-m", "ppcd_tf.train", "--model_dir", model_dir]
    for name in gin_files:
        argv += ["--gin_file", name]
    for binding in bindings:
        argv += ["--gin_param", binding]
    return argv + list(extra_flags)


def run_train(model_dir, gin_files, bindings=(), extra_flags=(), timeout=300,
              grappler=False):
    """Runs the training binary to completion; returns CompletedProcess
    (`grappler`: see `python_env`)."""
    return subprocess.run(
        train_command(model_dir, gin_files, bindings, extra_flags),
        cwd=REPO_ROOT, env=python_env(grappler), capture_output=True,
        text=True, timeout=timeout, check=False)


CLI_BATCH = os.path.join(REPO_ROOT, "tests", "cli_batch.py")


# Loads a tool script as the module `tool`, its absl flags at their
# defaults; a driver's body follows (sys.argv[2:] are its arguments).
_TOOL_DRIVER_PROLOGUE = r"""
import importlib.util, json, sys
from absl import flags
spec = importlib.util.spec_from_file_location("tool_under_test", sys.argv[1])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
flags.FLAGS(["tool_under_test"])
"""


def run_tool_driver(tool_script, body, args=(), timeout=120):
    """Runs `body` in a child Python after loading tools/`tool_script` as
    `tool` (a child process: a tool defines absl flags that other test
    modules' imports define too). Returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", _TOOL_DRIVER_PROLOGUE + body,
         os.path.join(REPO_ROOT, "tools", tool_script)]
        + [str(arg) for arg in args],
        cwd=REPO_ROOT, env=python_env(), capture_output=True, text=True,
        timeout=timeout, check=False)


def run_cli_batch(request, timeout=600):
    """Results of tests/cli_batch.py for `request` (one per case)."""
    import json
    batch = subprocess.run(
        [sys.executable, CLI_BATCH], input=json.dumps(request),
        cwd=REPO_ROOT, env=python_env(), capture_output=True, text=True,
        timeout=timeout, check=False)
    assert batch.returncode == 0, batch.stderr[-3000:]
    return json.loads(batch.stdout)


def numbered(cases):
    """(program, index among the program's cases, args, status, phrase) of
    (program, args, status, phrase) cases: a case's place in its program's
    batch (`run_cli_batch`)."""
    seen = {}
    for program, args, status, phrase in cases:
        index = seen.get(program, 0)
        seen[program] = index + 1
        yield program, index, args, status, phrase


def write_tf1_checkpoint(prefix, arrays):
    """Writes {name: ndarray} as a TF1 (name-based) checkpoint at `prefix`
    (prefix.index, prefix.data-*), as a TF1 hub module's variables/ hold
    them."""
    with tf.Graph().as_default():
        var_list = {name: tf.compat.v1.Variable(value, name=f"v{i}")
                    for i, (name, value) in enumerate(arrays.items())}
        saver = tf.compat.v1.train.Saver(var_list=var_list)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix, write_meta_graph=False,
                       write_state=False)


def registered_gradients():
    """TensorFlow's process-wide table of registered gradient functions
    (name -> entry; private). conftest's `_release_traced_graphs` prunes the
    `CustomGradient-N` entries each test adds."""
    from tensorflow.python.framework import ops
    return ops._gradient_registry._registry  # pylint: disable=protected-access


# Environment variable naming the directory that every worker of one pytest
# run shares (set by conftest's pytest_configure in the controller, before
# pytest-xdist starts its workers, and removed by it at the end).
SHARED_DIR_VARIABLE = "PPCD_TEST_SHARED_DIR"

_SHARED = {}


def shared_dir():
    """The run-wide directory for artifacts built once and only read after
    (`shared_artifact`); a private temporary one outside a configured
    pytest run."""
    if "root" not in _SHARED:
        root = os.environ.get(SHARED_DIR_VARIABLE)
        if not root:
            root = tempfile.mkdtemp(prefix="ppcd_tests_shared_")
            atexit.register(shutil.rmtree, root, ignore_errors=True)
        os.makedirs(root, exist_ok=True)
        _SHARED["root"] = root
    return _SHARED["root"]


def shared_artifact(name, build):
    """Path of the run-wide artifact `name`, made by `build(path)` once per
    test run: the first worker to ask builds it under a file lock while the
    others wait, then every test reads the same one (a test that writes
    must copy it first). A build that failed is retried by the next asker.
    """
    if name in _SHARED:
        return _SHARED[name]
    path = os.path.join(shared_dir(), name)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not os.path.exists(path + ".done"):
                shutil.rmtree(path, ignore_errors=True)
                build(path)
                with open(path + ".done", "w"):
                    pass
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _SHARED[name] = path
    return path


@contextlib.contextmanager
def functions_run_eagerly():
    """tf.functions run eagerly inside the block (for tests and set-ups
    whose subject is not the compiled step: ~1 s per tiny step instead of
    ~15 s of tracing)."""
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(False)


def train_eagerly(trainer):
    """`trainer.train()` under `functions_run_eagerly`; returns its
    metrics."""
    with functions_run_eagerly():
        return trainer.train()


def tiny_teacher_dir():
    """Model dir of the test run's tiny teacher (debug.gin, ch 4, 2 steps,
    EMA from step 1 with decay 0.5, so that its EMA differs from its G).

    Trained once per test run (`shared_artifact`: one worker trains it, the
    other reads it) and shared by every test that needs a teacher run but
    does not train it further (PPCD runs, sampling, the gin files' PPCD
    stages); a test that writes into it copies it first. Leaves gin's
    configuration cleared.
    """
    return os.path.join(shared_artifact("tiny_teacher", _train_tiny_teacher),
                        "teacher")


def _train_tiny_teacher(root):
    from ppcd_tf.training import trainer as trainer_lib
    parse(["debug.gin"], list(TINY_BINDINGS) + [
        "TrainLoop.num_steps = 2", "GanSteps.ema_start_step = 1",
        "GanSteps.ema_decay = 0.5"])
    try:
        train_eagerly(trainer_lib.Trainer(
            model_dir=os.path.join(root, "teacher"), strategy=one_device()))
    finally:
        gin.clear_config()


# The tiny Fashion-MNIST teacher's configuration (the real data, BigGAN 32
# at ch 4, the teacher stage).
FMNIST_TEACHER_FILES = ["data/fashion_mnist32.gin", "model/biggan32.gin",
                        "stage/teacher.gin"]


def tiny_fmnist_teacher_dir():
    """Model dir of the test run's tiny teacher of the real Fashion-MNIST
    data (FMNIST_TEACHER_FILES with TINY_BINDINGS, 2 steps, its config
    written as train.py writes it): trained once per test run
    (`shared_artifact`) for the demo and evaluation tests, which only read
    it. Leaves gin's configuration cleared."""
    return os.path.join(
        shared_artifact("tiny_fmnist_teacher", _train_tiny_fmnist_teacher),
        "teacher")


def _train_tiny_fmnist_teacher(root):
    from ppcd_tf.training import trainer as trainer_lib
    model_dir = os.path.join(root, "teacher")
    bindings = list(TINY_BINDINGS) + ["TrainLoop.num_steps = 2",
                                      "TrainLoop.sample_every = 0"]
    files = parse(FMNIST_TEACHER_FILES, bindings)
    try:
        config_lib.write_config(model_dir, files, bindings)
        train_eagerly(trainer_lib.Trainer(model_dir=model_dir,
                                          strategy=one_device()))
    finally:
        gin.clear_config()


def tiny_teacher_export(fold_batch_norm=True):
    """The tiny teacher's SavedModel export (`exporting.pipeline.export_run`
    with its defaults, or BN left unfolded), made once per test run and
    only read by the tests that share it."""
    def export(path):
        from ppcd_tf.exporting import pipeline
        pipeline.export_run(tiny_teacher_dir(), path,
                            fold_batch_norm=fold_batch_norm)
    name = "tiny_teacher_export" + ("" if fold_batch_norm else "_unfolded")
    return shared_artifact(name, export)


def linked(target, directory, name):
    """A symbolic link `directory`/`name` to `target` (a shared artifact
    under the name a test's command prints or expects)."""
    link = os.path.join(directory, name)
    os.symlink(target, link)
    return link


def shared_real_features(network):
    """`evaluation.real_features` of the Fashion-MNIST 32x32 test split
    under `network` (10,000 images), computed once per test run (the cache
    is the shared artifact) for the tests whose subject is not the cache
    itself."""
    from ppcd_tf.metrics import evaluation

    def features(cache_dir):
        return evaluation.real_features(network, "fashion_mnist", "test", 32,
                                        cache_dir)

    def build(cache_dir):
        os.makedirs(cache_dir)
        features(cache_dir)

    return features(shared_artifact(f"real_features_{network.name}", build))


def read_events(log_dir, with_metadata=False):
    """{tag: [(step, plugin name, value ndarray)]} of all event files in
    `log_dir`; with `with_metadata`, each entry also ends with the plugin's
    content bytes (e.g. the HParams session of `_hparams_/...` tags)."""
    files = sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")))
    tags = {}
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data
                entry = (event.step, plugin.plugin_name,
                         tf.make_ndarray(value.tensor))
                if with_metadata:
                    entry += (plugin.content,)
                tags.setdefault(value.tag, []).append(entry)
    return tags


def session_hparams(tags):
    """{name: value} of the HParams session a run wrote (`read_events` with
    metadata), or None when it wrote none."""
    entries = tags.get("_hparams_/session_start_info")
    if not entries:
        return None
    data = plugin_data_pb2.HParamsPluginData.FromString(entries[-1][-1])
    values = {}
    for name, value in data.session_start_info.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    return values


@contextlib.contextmanager
def tensorboard_server(logdir, timeout=90):
    """A TensorBoard on `logdir` (loopback only, an ephemeral port, the
    event files loaded once); yields `get(path, body=None)` -> parsed JSON of
    an HTTP data endpoint (POST when `body` is given). Stopped on exit."""

    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir,
         "--host", "127.0.0.1", "--port", "0", "--load_fast", "false",
         "--reload_interval", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=python_env())
    try:
        deadline = time.monotonic() + timeout
        port = None
        for line in process.stdout:
            found = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if found:
                port = int(found.group(1))
                break
            if time.monotonic() > deadline:
                break
        if port is None:
            raise RuntimeError("TensorBoard did not start")

        def get(path, body=None):
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", data=data,
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read().decode())

        yield get
    finally:
        process.kill()
        process.wait()
