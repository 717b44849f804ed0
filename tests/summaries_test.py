"""Sample grids with labels (the teacher-vs-student grid)."""

import numpy as np

from ppcd_tf.training import samples
from ppcd_tf.training import summaries

ROWS, COLUMNS, SIZE = 2, 4, 32


def _grid(channels=1):
    images = np.zeros((ROWS * COLUMNS, SIZE, SIZE, channels), np.float32)
    return summaries.image_grid(images, rows=ROWS)  # grey 0.5 images


def test_label_grid_adds_a_header_band_a_margin_and_a_divider():
    grid = _grid()
    labelled = summaries.label_grid(grid, ROWS, ["T-shirt/top", "Trouser"],
                                    ("teacher", "student"))
    band = summaries.LABEL_BAND
    margin = summaries.LABEL_MARGIN_CHARS * summaries.LABEL_CHAR_WIDTH
    assert labelled.shape == (1, grid.shape[1] + band,
                              grid.shape[2] + margin, 1)
    assert labelled.dtype == np.float32
    image = labelled[0, ..., 0]
    # The grid itself is unchanged below and right of the labels, except
    # for the divider in the padding column between the two halves.
    divider = COLUMNS // 2 * (SIZE + summaries.GRID_PADDING)
    body = image[band:, margin:].copy()
    assert np.all(body[:, divider] == summaries.LABEL_INK)
    body[:, divider] = grid[0, :, divider, 0]
    np.testing.assert_allclose(body, grid[0, ..., 0], atol=1 / 255)
    # Ink in the header band over each half and in the margin of each row.
    half = grid.shape[2] // 2
    assert image[:band, margin:margin + half].min() < 0.5
    assert image[:band, margin + half:].min() < 0.5
    row_height = SIZE + summaries.GRID_PADDING
    for row in range(ROWS):
        top = band + row * row_height
        assert image[top:top + row_height, :margin].min() < 0.5, row


def test_label_grid_keeps_colour_and_adds_nothing_unasked():
    grid = _grid(channels=3)
    assert summaries.label_grid(grid, ROWS).shape == grid.shape
    headed = summaries.label_grid(grid, ROWS, headers=("a", "b"))
    assert headed.shape == (1, grid.shape[1] + summaries.LABEL_BAND,
                            grid.shape[2], 3)


def test_row_labels_are_the_class_names_of_the_grid():
    grid = samples.SampleGrid(num_classes=12, dim_z=4, seed=0,
                              sample_classes=[0, 11])
    assert grid.row_labels(["top", "trouser"]) == ["top", "class 11"]
    assert grid.row_labels(None) == ["class 0", "class 11"]
