"""Shared helpers of the test suite (tiny configs, strategies, subprocesses)."""

import atexit
import contextlib
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


_TINY_TEACHER = {}


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
    """Model dir of the session's tiny teacher (debug.gin, ch 4, 2 steps,
    EMA from step 1 with decay 0.5, so that its EMA differs from its G).

    Trained once per test session and shared by every test that needs a
    teacher run but does not train it further (PPCD runs, sampling, the gin
    files' PPCD stages); leaves gin's configuration cleared.
    """
    if "dir" not in _TINY_TEACHER:
        from ppcd_tf.training import trainer as trainer_lib
        root = tempfile.mkdtemp(prefix="ppcd_tiny_teacher_")
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        model_dir = os.path.join(root, "teacher")
        parse(["debug.gin"], list(TINY_BINDINGS) + [
            "TrainLoop.num_steps = 2", "GanSteps.ema_start_step = 1",
            "GanSteps.ema_decay = 0.5"])
        train_eagerly(trainer_lib.Trainer(model_dir=model_dir,
                                          strategy=one_device()))
        gin.clear_config()
        _TINY_TEACHER["dir"] = model_dir
    return _TINY_TEACHER["dir"]


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
