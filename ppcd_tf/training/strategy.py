"""Choice of the tf.distribute strategy (one CPU, local GPUs, many hosts, TPU).

`get_strategy(name)`:
  * 'auto': MirroredStrategy over all local GPUs when there are several,
    OneDeviceStrategy on the GPU when there is one, else on the CPU;
  * 'one_device': OneDeviceStrategy on `devices[0]` (default '/cpu:0' or
    '/gpu:0' when a GPU exists);
  * 'mirrored': MirroredStrategy over `devices` (default: all local GPUs, or
    all logical CPUs when there is no GPU);
  * 'multi_worker': MultiWorkerMirroredStrategy; the cluster comes from the
    TF_CONFIG environment variable;
  * 'tpu': TPUStrategy on the TPU named by `tpu` ('' or 'local' for a local
    TPU VM);
  * 'default': tf.distribute's default (no-op) strategy.
"""

import json
import os

import gin
import tensorflow as tf
from absl import logging

from ppcd_tf import defaults
from ppcd_tf import errors

STRATEGY_NAMES = defaults.STRATEGY_NAMES


@gin.configurable
def get_strategy(name="auto", devices=None, tpu=""):
    """Builds the strategy named `name` (see the module docstring)."""
    if name not in STRATEGY_NAMES:
        raise errors.BadInputError(
            f"Unknown strategy {name!r}; choose one of "
            f"{list(STRATEGY_NAMES)}.")
    # Listing devices starts the TF runtime; MultiWorkerMirroredStrategy and
    # TPUs must be configured before that, so only look when needed.
    needs_devices = name in ("auto", "one_device", "mirrored")
    gpus = tf.config.list_logical_devices("GPU") if needs_devices else []
    if name == "auto":
        if len(gpus) > 1:
            name = "mirrored"
        else:
            name = "one_device"
    if name == "one_device":
        device = (devices[0] if devices
                  else ("/gpu:0" if gpus else "/cpu:0"))
        strategy = tf.distribute.OneDeviceStrategy(device)
    elif name == "mirrored":
        if not devices and not gpus:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices or None)
    elif name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise errors.BadInputError(
                "strategy 'multi_worker' needs the TF_CONFIG environment "
                "variable describing the cluster, e.g. TF_CONFIG='{\"cluster\":"
                " {\"worker\": [\"host1:12345\", \"host2:12345\"]}, \"task\": "
                "{\"type\": \"worker\", \"index\": 0}}'.")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        strategy = tf.distribute.TPUStrategy(resolver)
    else:
        strategy = tf.distribute.get_strategy()
    logging.info("Strategy %s with %d replica(s).", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy


def is_chief(strategy):
    """True for the process that writes summaries, checkpoints and configs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in (json.loads(os.environ.get("TF_CONFIG", "{}"))
                            .get("cluster", {}))
    return (resolver.task_type == "worker" and resolver.task_id == 0
            and not has_chief)


def worker_id(strategy):
    """Task index of this process in a multi-worker cluster (0 otherwise)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_id is None:
        return 0
    return int(resolver.task_id)
