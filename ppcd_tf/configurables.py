"""Registers external (Keras) symbols with gin under explicit module names.

Gin files name them as `@generator/keras.optimizers.Adam` etc. Importing this
module has one effect: the registrations below (guarded, so importing twice
is harmless).
"""

import gin
import keras

_REGISTERED = []


def _register(fn, module):
    name = f"{module}.{fn.__name__}"
    if name in _REGISTERED:
        return
    gin.external_configurable(fn, module=module)
    _REGISTERED.append(name)


for _optimizer in (keras.optimizers.Adam, keras.optimizers.AdamW,
                   keras.optimizers.SGD):
    _register(_optimizer, "keras.optimizers")
for _schedule in (keras.optimizers.schedules.ExponentialDecay,
                  keras.optimizers.schedules.PiecewiseConstantDecay,
                  keras.optimizers.schedules.CosineDecay):
    _register(_schedule, "keras.optimizers.schedules")
