import pytest
import torch
from PIL import Image

from common.visualization import image_grid, layout_colormap, layout_panel, save_png, to_unit


class TestToUnit:
    def test_feature(self):
        x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])
        assert torch.equal(to_unit(x), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


class TestImageGrid:
    def test_cardinality(self):
        grid = image_grid(torch.rand(5, 3, 8, 6), nrow=2, padding=1)
        # 3 rows of 2 images: height 3 * (8 + 1) + 1, width 2 * (6 + 1) + 1
        assert grid.shape == (3, 28, 15)

    def test_feature(self):
        images = torch.zeros(2, 3, 4, 4)
        images[1] = 1.0
        grid = image_grid(images, nrow=2, padding=1, pad_value=0.5)
        assert torch.all(grid[:, 1:5, 1:5] == 0.0)
        assert torch.all(grid[:, 1:5, 6:10] == 1.0)
        assert torch.all(grid[:, 0] == 0.5)

    def test_gray_to_rgb(self):
        assert image_grid(torch.rand(1, 1, 4, 4)).shape[0] == 3

    def test_exception(self):
        with pytest.raises(ValueError, match="N, C, H, W"):
            image_grid(torch.rand(3, 4, 4))


class TestLayout:
    def test_colormap_follows_argmax(self):
        layout = torch.zeros(1, 3, 2, 2)
        layout[0, 0, 0, 0] = 1.0  # entity 0, certain
        layout[0, 2, 1, 1] = 1.0  # entity 2, certain
        layout[0, :, 0, 1] = 1 / 3  # uncertain pixel
        layout[0, :, 1, 0] = 1 / 3
        colours = layout_colormap(layout)
        assert colours.shape == (1, 3, 2, 2)
        assert not torch.allclose(colours[0, :, 0, 0], colours[0, :, 1, 1])
        # uncertain pixels are dimmed to a quarter of their colour's brightness
        assert colours[0, :, 0, 1].max() < colours[0, :, 0, 0].max()

    def test_panel_cardinality(self):
        images = torch.rand(3, 3, 16, 16)
        layout = torch.softmax(torch.randn(3, 8, 4, 4), dim=1)
        panel = layout_panel(images, layout, max_entities=4, min_cell=16)
        # one row per sample, image + colour map + 4 entity maps per row, padding 2, a label band on top
        header = panel.shape[1] - (3 * 18 + 2)
        assert panel.shape[::2] == (3, 6 * 18 + 2) and 8 < header < 30
        assert panel[:, :header].min() < 0.5  # the column labels are drawn
        assert panel.min() >= 0 and panel.max() <= 1

    def test_panel_exception(self):
        with pytest.raises(ValueError, match="same B"):
            layout_panel(torch.rand(2, 3, 8, 8), torch.rand(3, 4, 2, 2))


def test_save_png_roundtrip(tmp_path):
    image = torch.rand(3, 5, 7)
    path = save_png(image, tmp_path / "sub" / "x.png")
    loaded = torch.from_numpy(__import__("numpy").asarray(Image.open(path))).permute(2, 0, 1).float() / 255
    assert loaded.shape == (3, 5, 7)
    assert torch.allclose(loaded, image, atol=1 / 255)
