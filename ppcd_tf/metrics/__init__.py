"""GAN evaluation metrics computed by the project (FID, KID, IS, intra-FID,
class accuracy) from precomputed activations and logits.

The numbers are cross-checked in tests against tensorflow-gan's reference
functions and a NumPy/SciPy reference; runtime code never imports
tensorflow-gan. See `ppcd_tf.metrics.gan_metrics`.
"""
