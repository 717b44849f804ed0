"""GAN losses (`ppcd_tf/training/gan_losses.py`): values, and the non-saturating pair
against tensorflow-gan's `minimax_discriminator_loss` /
`modified_generator_loss` as a reference."""

import numpy as np
import tensorflow as tf

from ppcd_tf.training import gan_losses
from tests import tfgan_oracle

LOGITS_REAL = np.array([-2.5, -1.0, -0.2, 0.0, 0.7, 1.0, 3.0], np.float32)
LOGITS_FAKE = np.array([2.0, 1.0, 0.3, 0.0, -0.4, -1.0, -3.5], np.float32)


class LossesTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tfgan = tfgan_oracle.import_tfgan()

    def test_hinge_values(self):
        real, fake = gan_losses.hinge_discriminator_loss(LOGITS_REAL,
                                                     LOGITS_FAKE)
        self.assertAllClose(real, np.maximum(0.0, 1.0 - LOGITS_REAL))
        self.assertAllClose(fake, np.maximum(0.0, 1.0 + LOGITS_FAKE))
        self.assertAllClose(gan_losses.hinge_generator_loss(LOGITS_FAKE),
                            -LOGITS_FAKE)
        # Margins: confident logits cost nothing.
        self.assertEqual(float(real[-1]), 0.0)
        self.assertEqual(float(fake[-1]), 0.0)

    def test_non_saturating_matches_tfgan(self):
        real, fake = gan_losses.non_saturating_discriminator_loss(
            LOGITS_REAL, LOGITS_FAKE)
        reference_d = self.tfgan.losses.wargs.minimax_discriminator_loss(
            tf.constant(LOGITS_REAL), tf.constant(LOGITS_FAKE),
            label_smoothing=0.0, reduction=tf.compat.v1.losses.Reduction.NONE)
        self.assertAllClose(real + fake, reference_d, atol=1e-6)
        reference_g = self.tfgan.losses.wargs.modified_generator_loss(
            tf.constant(LOGITS_FAKE),
            reduction=tf.compat.v1.losses.Reduction.NONE)
        self.assertAllClose(gan_losses.non_saturating_generator_loss(
            LOGITS_FAKE), reference_g, atol=1e-6)

    def test_get_gan_loss(self):
        self.assertIs(gan_losses.get_gan_loss("hinge")[1],
                      gan_losses.hinge_generator_loss)
        with self.assertRaisesRegex(ValueError, "non_saturating"):
            gan_losses.get_gan_loss("wasserstein")
