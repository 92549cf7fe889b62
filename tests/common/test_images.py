import pytest
from PIL import Image

from common.data.images import CorruptImageError, center_crop_long_side, list_images, load_rgb, resize


def test_list_images_sorted_and_filtered(tmp_path):
    for name in ["b.png", "a.JPEG", "c.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "sub" / "d.png")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPEG", "b.png"]
    assert [p.name for p in list_images(tmp_path, recursive=True)] == ["a.JPEG", "b.png", "d.png"]


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        list_images(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("no images")
    with pytest.raises(ValueError, match="no image files"):
        list_images(tmp_path)


def test_load_rgb(tmp_path):
    Image.new("L", (5, 3), color=128).save(tmp_path / "gray.png")
    img = load_rgb(tmp_path / "gray.png")
    assert img.mode == "RGB" and img.size == (5, 3)
    (tmp_path / "bad.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(CorruptImageError, match="bad.jpg"):
        load_rgb(tmp_path / "bad.jpg")
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "missing.png")


def test_center_crop_and_resize():
    img = Image.new("RGB", (10, 4))
    img.paste((255, 0, 0), (0, 0, 3, 4))  # red strip on the left, cropped away
    crop = center_crop_long_side(img)
    assert crop.size == (4, 4)
    assert crop.getpixel((0, 0)) == (0, 0, 0)
    assert resize(crop, 8).size == (8, 8)
    assert resize(crop, (6, 2), antialias=False).size == (6, 2)


def test_resize_without_antialias_is_plain_bilinear():
    import numpy as np

    # a 1-pixel checkerboard: halving it without a prefilter samples between pixels (bilinear of 2x2 = mean),
    # halving to a third keeps aliasing, unlike Lanczos which blurs to grey everywhere
    board = (np.indices((12, 12)).sum(0) % 2 * 255).astype(np.uint8)
    img = Image.fromarray(np.stack([board] * 3, -1))
    plain = np.asarray(resize(img, 4, antialias=False)).astype(float)
    smooth = np.asarray(resize(img, 4, antialias=True)).astype(float)
    assert plain.std() > 50 > smooth.std()
