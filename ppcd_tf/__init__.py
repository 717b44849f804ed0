"""ppcd_tf: PPCD-GAN compression of class-conditional BigGAN in TensorFlow/Keras 3."""

__version__ = "0.1.0"
