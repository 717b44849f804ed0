"""Training: the loop driver, the GAN steps, the PPCD phases, EMA, the
distribution strategy, losses, summaries and validation."""
