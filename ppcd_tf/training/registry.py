"""Every gin configurable a training configuration binds, registered.

Commands import their libraries on first use (ppcd_tf/lazy.py), so a command
that parses a training configuration calls `register()` first: importing this
module imports every module that defines such a configurable (Keras
optimizers and schedules, the data, the models, the losses, the strategy,
the trainer).
"""

from ppcd_tf import configurables
from ppcd_tf.data import pipeline
from ppcd_tf.data import sources
from ppcd_tf.models import builders
from ppcd_tf.training import gan_losses
from ppcd_tf.training import strategy
from ppcd_tf.training import trainer

# The PPCD trainer is not here: the gin files that bind it import it
# (`import ppcd_tf.training.ppcd_trainer`), as do all of gin/stage/.
MODULES = (configurables, pipeline, sources, builders, gan_losses, strategy,
           trainer)


def register():
    """Makes sure the configurables are registered (importing this module
    did it; calling twice is harmless); returns the modules that define
    them."""
    return MODULES
