"""common.visualization.labelled_grid: rows x labelled columns, small tiles enlarged pixel for pixel."""

import pytest
import torch

from common.visualization import labelled_grid

pytestmark = pytest.mark.timeout(30)


def test_tiles_are_enlarged_by_a_whole_factor_under_a_label_band():
    tiles = torch.rand(2, 3, 3, 20, 24)
    grid = labelled_grid(tiles, ["input", "a rather long label for a cell", "truth"], min_cell=50, padding=2)
    cell_h, cell_w = 3 * 20, 3 * 24  # factor ceil(50 / 20) = 3
    band = grid.shape[1] - (2 * (cell_h + 2) + 2)
    assert grid.shape[0] == 3 and grid.shape[2] == 3 * (cell_w + 2) + 2 and 8 < band < 30
    assert grid[:, :band].min() < 0.5  # the labels are drawn (black on white)
    top, left = band + 2 + cell_h + 2, 2 + cell_w + 2  # row 1, column 1: tile (1, 1) repeated 3x3 per pixel
    torch.testing.assert_close(grid[:, top : top + cell_h : 3, left : left + cell_w : 3], tiles[1, 1])
    torch.testing.assert_close(grid[:, top + 2 : top + cell_h : 3, left + 2 : left + cell_w : 3], tiles[1, 1])
    grey = labelled_grid(torch.rand(1, 2, 1, 200, 200), ["x", "y"], min_cell=128)
    assert grey.shape[2] == 2 * 202 + 2  # already big enough: factor 1, grey repeated to RGB


def test_bad_input():
    with pytest.raises(ValueError, match=r"expects \(rows, columns, 1 or 3, H, W\)"):
        labelled_grid(torch.rand(2, 3, 8, 8), ["a", "b"])
    with pytest.raises(ValueError, match="got 1 labels for 2 columns"):
        labelled_grid(torch.rand(1, 2, 3, 8, 8), ["a"])
