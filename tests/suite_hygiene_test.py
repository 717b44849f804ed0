"""The suite's own set-up: graphs traced by a test are freed after it
(conftest's `_release_traced_graphs`), and commands started by tests run
without Grappler unless asked (tests/subprocess_site)."""

import gc
import subprocess
import sys
import weakref

import tensorflow as tf

from tests import helpers

_TRACED = {}


@tf.custom_gradient
def _doubled_with_unit_gradient(x):
    return 2.0 * x, lambda upstream: upstream


def test_a_traced_custom_gradient_is_registered():
    before = set(helpers.registered_gradients())

    @tf.function(autograph=False)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = _doubled_with_unit_gradient(x)
        return y, tape.gradient(y, x)

    value, gradient = step(tf.constant(3.0))
    assert (float(value), float(gradient)) == (6.0, 1.0)
    added = set(helpers.registered_gradients()) - before
    assert added and all(n.startswith("CustomGradient-") for n in added)
    graph = step.get_concrete_function(tf.constant(3.0)).graph
    _TRACED.update(names=added, graph=weakref.ref(graph))


def test_the_previous_tests_entries_and_graph_are_gone():
    # Runs after the test above (same module, same worker, file order).
    assert _TRACED, "test_a_traced_custom_gradient_is_registered ran first"
    assert not _TRACED["names"] & set(helpers.registered_gradients())
    gc.collect()
    assert _TRACED["graph"]() is None


def _meta_optimizer_disabled(grappler):
    result = subprocess.run(
        [sys.executable, "-c",
         "import tensorflow as tf; print(tf.config.optimizer."
         "get_experimental_options().get('disable_meta_optimizer', False))"],
        env=helpers.python_env(grappler=grappler), capture_output=True,
        text=True, timeout=120, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_commands_run_without_grappler_unless_asked():
    assert _meta_optimizer_disabled(grappler=False) == "True"
    assert _meta_optimizer_disabled(grappler=True) == "False"
