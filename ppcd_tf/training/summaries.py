"""Sample grids and TensorBoard summary helpers."""

import numpy as np
import tensorflow as tf

from ppcd_tf import files

GRID_PADDING = 1  # pixels between images in a grid
GRID_PAD_VALUE = 1.0  # white in [-1, 1]
# Labels drawn around a grid (`label_grid`): band heights and margins in
# pixels, ink and divider in [0, 1] (black).
LABEL_BAND = 14
LABEL_MARGIN_CHARS = 12
LABEL_CHAR_WIDTH = 6
LABEL_INK = 0.0


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


def label_grid(grid, rows, row_labels=None, headers=None):
    """A grid of `image_grid` with labels around it: `headers` centred over
    equal parts of the columns (e.g. ("teacher", "student") over the two
    halves) with a divider line between the parts, and `row_labels` (e.g.
    class names) in a left margin.

    Args:
      grid: [1, H, W, C] in [0, 1] (`image_grid` with `rows` rows).
      rows: its number of image rows.
      row_labels: one string per row, or None.
      headers: strings, one per part of the columns, or None.

    Returns:
      [1, H + band, W + margin, C] float32 in [0, 1] (band and margin 0
      when not asked for).
    """
    from PIL import Image  # Deferred: only labelled grids need Pillow.
    from PIL import ImageDraw

    grid = np.asarray(grid, np.float32)[0]
    height, width, channels = grid.shape
    top = LABEL_BAND if headers else 0
    left = LABEL_MARGIN_CHARS * LABEL_CHAR_WIDTH if row_labels else 0
    mode = "L" if channels == 1 else "RGB"
    canvas = Image.new(mode, (width + left, height + top),
                       255 if mode == "L" else (255, 255, 255))
    pixels = np.round(grid * 255.0).astype(np.uint8)
    canvas.paste(Image.fromarray(pixels[..., 0] if mode == "L" else pixels),
                 (left, top))
    draw = ImageDraw.Draw(canvas)
    ink = int(round(LABEL_INK * 255))
    ink = ink if mode == "L" else (ink, ink, ink)
    if headers:
        part = width / len(headers)
        for index, text in enumerate(headers):
            text_width = draw.textlength(text)
            draw.text((left + index * part + (part - text_width) / 2, 1),
                      text, fill=ink)
            if index:
                x = left + int(index * part)
                draw.line([(x, top), (x, top + height - 1)], fill=ink)
    if row_labels:
        row_height = (height - GRID_PADDING) / rows
        for index, text in enumerate(row_labels[:rows]):
            text = str(text)[:LABEL_MARGIN_CHARS]
            y = top + GRID_PADDING + index * row_height + row_height / 2 - 5
            draw.text((2, y), text, fill=ink)
    labelled = np.asarray(canvas, np.float32) / 255.0
    if mode == "L":
        labelled = labelled[..., None]
    return labelled[None]


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
