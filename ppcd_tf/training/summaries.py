"""Sample grids and TensorBoard summary helpers."""

import numpy as np
import tensorflow as tf

from ppcd_tf import files

GRID_PADDING = 1  # pixels between images in a grid
GRID_PAD_VALUE = 1.0  # white in [-1, 1]


def image_grid(images, rows):
    """Tiles images [N, H, W, C] in [-1, 1] into one [1, rows*H', cols*W', C].

    N must be divisible by `rows`; images are laid out row-major (row r holds
    images r*cols .. (r+1)*cols - 1). Returns float32 in [0, 1].
    """
    images = np.asarray(images, dtype=np.float32)
    n, h, w, c = images.shape
    if rows < 1 or n % rows:
        raise ValueError(f"Cannot tile {n} images into {rows} rows.")
    cols = n // rows
    pad = GRID_PADDING
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c),
                   GRID_PAD_VALUE, np.float32)
    for index in range(n):
        r, col = divmod(index, cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top:top + h, left:left + w] = images[index]
    return ((np.clip(grid, -1.0, 1.0) + 1.0) / 2.0)[None]


def write_png(grid, path):
    """Writes a [1, H, W, C] grid in [0, 1] as an 8-bit PNG (atomically)."""
    pixels = np.round(np.asarray(grid)[0] * 255.0).astype(np.uint8)
    encoded = tf.io.encode_png(pixels).numpy()
    files.write_bytes(path, encoded)


def write_figure(figure, path, dpi=100):
    """Writes a matplotlib figure as a PNG (atomically) and closes it."""
    from matplotlib import pyplot as plt  # Deferred: only plots need it.
    try:
        files.write_with(path, lambda tmp: figure.savefig(tmp, dpi=dpi),
                         suffix=".png")
    finally:
        plt.close(figure)


def write_scalars(values, step, prefix=""):
    """Writes a dict of scalars to the default summary writer."""
    for name, value in values.items():
        tf.summary.scalar(prefix + name, value, step=step)
