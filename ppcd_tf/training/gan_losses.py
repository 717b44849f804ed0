"""GAN losses, per example.

Contract (TF-GAN naming): `<kind>_discriminator_loss(real_logits,
fake_logits)` returns a pair of per-example losses ([B] for the real half,
[B] for the fake half); `<kind>_generator_loss(fake_logits)` returns [B].
Callers reduce with the *global* batch size so that replicas' gradients sum
to the gradient of the global mean (see `ppcd_tf.training.trainer`).
"""

import gin
import tensorflow as tf

from ppcd_tf import errors


def hinge_discriminator_loss(real_logits, fake_logits):
    """Hinge D loss: relu(1 - D(x)), relu(1 + D(G(z))). Inputs [B] -> ([B], [B])."""
    return tf.nn.relu(1.0 - real_logits), tf.nn.relu(1.0 + fake_logits)


def hinge_generator_loss(fake_logits):
    """Hinge G loss: -D(G(z)). [B] -> [B]."""
    return -fake_logits


def non_saturating_discriminator_loss(real_logits, fake_logits):
    """Standard GAN D loss: softplus(-D(x)), softplus(D(G(z)))."""
    return tf.nn.softplus(-real_logits), tf.nn.softplus(fake_logits)


def non_saturating_generator_loss(fake_logits):
    """Non-saturating G loss: softplus(-D(G(z)))."""
    return tf.nn.softplus(-fake_logits)


LOSSES = {
    "hinge": (hinge_discriminator_loss, hinge_generator_loss),
    "non_saturating": (non_saturating_discriminator_loss,
                       non_saturating_generator_loss),
}


@gin.configurable
def get_gan_loss(name="hinge"):
    """(discriminator_loss_fn, generator_loss_fn) for a loss name."""
    if name not in LOSSES:
        raise errors.BadInputError(
            f"Unknown GAN loss {name!r}; choose one of "
            f"{sorted(LOSSES)}.")
    return LOSSES[name]
