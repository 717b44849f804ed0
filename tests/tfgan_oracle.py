"""Imports tensorflow-gan on TF >= 2.16, for use as a reference in tests only.

tensorflow-gan 2.1.0 subclasses `tf.estimator.SessionRunHook`,
`tf.estimator.Estimator` and `tf.compat.v1.estimator.tpu.TPUEstimator` at
import time, and `tf.estimator` is gone since TF 2.16. `import_tfgan`:

1. imports tensorflow_probability first (it replaces `tf.compat.v1`, so
   patching before that would patch a module object that is then dropped);
2. installs stub namespaces `tf.estimator` and `tf.compat.v1.estimator`
   (with a `.tpu` namespace) whose attributes are inert placeholder classes;
3. imports tensorflow_gan, then removes the stubs it added so the rest of
   the test session sees TensorFlow unchanged.

The estimator API of tfgan is unusable afterwards; `tfgan.eval.*_from_*`
and `tfgan.losses.wargs.*` work. Runtime code must never import this.
"""

import sys
import types

_STUB_MARK = "_ppcd_tfgan_stub"


class _StubNamespace(types.ModuleType):
    """Module whose unknown attributes are placeholder classes (cached)."""

    def __init__(self, name):
        super().__init__(name)
        setattr(self, _STUB_MARK, True)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        placeholder = type(attr, (object,), {
            "__module__": self.__name__,
            "__doc__": "Placeholder: tf.estimator is absent on TF >= 2.16.",
        })
        setattr(self, attr, placeholder)
        return placeholder


def import_tfgan():
    """Returns the `tensorflow_gan` module, importing it once (idempotent)."""
    if "tensorflow_gan" in sys.modules:
        return sys.modules["tensorflow_gan"]

    import tensorflow as tf
    import tensorflow_probability  # noqa: F401  (must precede the patch)

    compat_v1 = tf.compat.v1
    added = []
    if not hasattr(tf, "estimator"):
        tf.estimator = _StubNamespace("tf.estimator")
        added.append((tf, "estimator"))
    if not hasattr(compat_v1, "estimator"):
        v1_estimator = _StubNamespace("tf.compat.v1.estimator")
        v1_estimator.tpu = _StubNamespace("tf.compat.v1.estimator.tpu")
        compat_v1.estimator = v1_estimator
        added.append((compat_v1, "estimator"))
    try:
        import tensorflow_gan
    finally:
        for owner, attr in added:
            if getattr(getattr(owner, attr, None), _STUB_MARK, False):
                delattr(owner, attr)
    return tensorflow_gan
