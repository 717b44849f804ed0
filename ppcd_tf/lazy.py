"""Modules imported on their first use.

A command's module names its libraries with `load(...)` instead of `import`,
so that `--help`, `--helpfull` and a mistyped flag answer without importing
TensorFlow (seconds); the library is imported when the command's `main` first
reads one of its attributes. Library modules that only call TensorFlow inside
functions name it the same way (`tf = lazy.load("tensorflow")`) so that
importing them for a constant stays light.

    pipeline = lazy.load("ppcd_tf.exporting.pipeline")
    ...
    pipeline.export(...)   # the import happens here, once

Every attribute is read from the real module on each access (nothing is
copied), so a test that patches the real module is seen through the proxy,
and an attribute set on the proxy (a patch of the proxy) shadows the module's.
"""

import importlib
import sys
import types


class LazyModule(types.ModuleType):
    """Stands for the module `name` until an attribute is read."""

    def __init__(self, name):
        super().__init__(name)
        self.__dict__["_lazy_module"] = None

    def _load(self):
        module = self.__dict__["_lazy_module"]
        if module is None:
            module = importlib.import_module(self.__name__)
            self.__dict__["_lazy_module"] = module
        return module

    def __getattr__(self, attribute):
        # Called only for attributes the proxy itself does not hold.
        return getattr(self._load(), attribute)

    def __dir__(self):
        return dir(self._load())

    def __repr__(self):
        state = "loaded" if self.__dict__["_lazy_module"] else "not loaded"
        return f"<lazy module {self.__name__!r} ({state})>"


def load(name):
    """The module `name` when it is already imported, else a `LazyModule`
    that imports it on first use."""
    if name in sys.modules:
        return sys.modules[name]
    return LazyModule(name)
