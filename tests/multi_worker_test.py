"""MultiWorkerMirroredStrategy through the binary: two local workers.

Two `python -m ppcd_tf.train --strategy multi_worker` processes on
127.0.0.1 form a cluster from TF_CONFIG and share one --model_dir, as users
would run them: worker 0 (the chief) writes checkpoints, summaries and
configs there, worker 1 writes its scratch copies under model_dir/tmp_workers.
"""

import json
import os
import re
import socket
import subprocess
import time

import pytest
import tensorflow as tf

from tests import helpers

NUM_WORKERS = 2
NUM_STEPS = 3
TIMEOUT_S = 240
STEP_KEY = "step/.ATTRIBUTES/VARIABLE_VALUE"


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(ports, index):
    return json.dumps({
        "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
        "task": {"type": "worker", "index": index},
    })


def final_losses(log):
    """{name: value} of the last progress line of a worker's log."""
    lines = re.findall(rf"step {NUM_STEPS}/{NUM_STEPS} .*", log)
    if not lines:
        return {}
    return {name: float(value) for name, value in
            re.findall(r"(d_loss|g_loss) (-?[\d.]+|nan|inf)", lines[-1])}


def tail(text, lines=30):
    kept = [line for line in text.splitlines()
            if not line.startswith(("I0000", "W0000", "WARNING: All log"))]
    return "\n".join(kept[-lines:])


@pytest.mark.slow
class MultiWorkerCliTest(tf.test.TestCase):

    def test_two_local_workers_train_and_chief_checkpoints(self):
        model_dir = self.create_tempdir().full_path
        logs_dir = self.create_tempdir().full_path
        bindings = list(helpers.TINY_BINDINGS) + [
            f"TrainLoop.num_steps = {NUM_STEPS}",
            "GLOBAL_BATCH_SIZE = 4",
            "TrainLoop.checkpoint_every = 2",
            "TrainLoop.steps_per_loop = 1",
        ]
        argv = helpers.train_command(model_dir, ["debug.gin"], bindings,
                                     ["--strategy", "multi_worker"])
        ports = free_ports(NUM_WORKERS)
        processes, log_paths = [], []
        try:
            for index in range(NUM_WORKERS):
                env = helpers.python_env()
                env["TF_CONFIG"] = tf_config(ports, index)
                log_path = os.path.join(logs_dir, f"worker{index}.log")
                log_paths.append(log_path)
                with open(log_path, "w") as log:
                    processes.append(subprocess.Popen(
                        argv, cwd=helpers.REPO_ROOT, env=env, stdout=log,
                        stderr=subprocess.STDOUT))
            deadline = time.monotonic() + TIMEOUT_S
            while (time.monotonic() < deadline
                   and any(p.poll() is None for p in processes)):
                # One worker failing leaves the other waiting for it.
                if any(p.poll() not in (None, 0) for p in processes):
                    break
                time.sleep(0.2)
            timed_out = any(p.poll() is None for p in processes)
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()
                p.wait()
        logs = []
        for path in log_paths:
            with open(path) as f:
                logs.append(f.read())
        report = "\n".join(
            f"--- worker {i} (exit {p.returncode}):\n{tail(log)}"
            for i, (p, log) in enumerate(zip(processes, logs)))
        self.assertFalse(timed_out, f"workers did not finish within "
                                    f"{TIMEOUT_S} s:\n{report}")
        self.assertEqual([p.returncode for p in processes],
                         [0] * NUM_WORKERS, report)

        for log in logs:
            self.assertRegex(log, r"Strategy \w+ with 2 replica\(s\)")
            self.assertIn(f"Finished at step {NUM_STEPS}", log)
        # Both workers report the same all-reduced losses.
        chief_losses = final_losses(logs[0])
        self.assertNotEmpty(chief_losses, report)
        self.assertEqual(chief_losses, final_losses(logs[1]))

        # The chief owns model_dir; the other worker writes scratch copies.
        checkpoint_dir = os.path.join(model_dir, "checkpoints")
        latest = tf.train.latest_checkpoint(checkpoint_dir)
        self.assertIsNotNone(latest, f"no checkpoint in {checkpoint_dir}")
        self.assertEqual(os.path.basename(latest), f"ckpt-{NUM_STEPS}")
        self.assertEqual(
            int(tf.train.load_checkpoint(latest).get_tensor(STEP_KEY)),
            NUM_STEPS)
        for name in ("config.gin", "operative_config.gin"):
            self.assertTrue(os.path.isfile(os.path.join(model_dir, name)),
                            name)
        self.assertTrue(os.path.isfile(os.path.join(
            model_dir, "samples", "latest.png")))
        worker_dir = os.path.join(model_dir, "tmp_workers", "worker1")
        self.assertEqual(os.path.basename(
            tf.train.latest_checkpoint(worker_dir) or ""),
            f"ckpt-{NUM_STEPS}")
