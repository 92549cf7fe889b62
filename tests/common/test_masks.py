"""Tests for ``common.data.masks``: generator statistics, the 1 = missing convention, mask files, validation."""

import time

import numpy as np
import pytest
import torch
from PIL import Image

from common.data.mask_files import FolderMasks
from common.data.mask_mixtures import AreaBinnedMasks, MixedMasks
from common.data.masks import (
    CenterSquareMasks,
    FreeFormMasks,
    MaskGenerator,
    RandomRectangleMasks,
    fixed_boxes,
    mask_bbox,
    mask_bboxes,
    validate_mask,
)


def _is_binary_float(mask: torch.Tensor, height: int, width: int) -> bool:
    return (
        mask.shape == (1, height, width) and mask.dtype == torch.float32 and bool(torch.all((mask == 0) | (mask == 1)))
    )


def test_random_rectangles_statistics():
    gen = torch.Generator().manual_seed(0)
    masks = RandomRectangleMasks()  # DeepFill: 128x128 box in 256x256, each side shrinks by 0-16 px
    boxes = []
    for i in range(500):
        if i < 20:  # the mask is the filled box
            mask = masks(256, 256, gen)
            assert _is_binary_float(mask, 256, 256)
            top, left, h, w = mask_bbox(mask)
            assert mask.sum() == h * w
        else:
            top, left, h, w = masks.box(256, 256, gen)
        boxes.append((top, left, h, w))
    boxes = np.array(boxes)
    heights, widths = boxes[:, 2], boxes[:, 3]
    assert heights.min() >= 96
    assert heights.max() <= 128
    assert widths.min() >= 96
    assert widths.max() <= 128
    assert heights.min() <= 98
    assert heights.max() >= 126
    assert 108 < heights.mean() < 116
    assert 108 < widths.mean() < 116
    assert np.all(boxes[:, 0] >= 0)
    assert np.all(boxes[:, 0] + heights <= 256)
    centers_y = boxes[:, 0] + heights / 2
    centers_x = boxes[:, 1] + widths / 2
    assert centers_y.min() < 72
    assert centers_y.max() > 184
    assert centers_x.min() < 72
    assert centers_x.max() > 184
    assert 116 < centers_y.mean() < 140


def test_random_rectangles_margins_and_fractions():
    gen = torch.Generator().manual_seed(1)
    masks = RandomRectangleMasks(max_size=0.25, max_delta=0.0, margin=0.125)
    for _ in range(200):
        top, left, h, w = masks.box(128, 64, gen)
        assert (h, w) == (32, 16)
        assert 16 <= top <= 128 - 16 - 32
        assert 8 <= left <= 64 - 8 - 16
    with pytest.raises(ValueError, match="too small"):
        RandomRectangleMasks(max_size=0.01, max_delta=0.0)(32, 32)
    for kwargs in ({"max_size": 0.0}, {"max_size": 1.5}, {"max_delta": 0.6}, {"margin": 0.3}):
        with pytest.raises(ValueError):
            RandomRectangleMasks(**kwargs)


def test_center_square_exact():
    mask = CenterSquareMasks()(256, 256)
    expected = torch.zeros(1, 256, 256)
    expected[:, 64:192, 64:192] = 1
    assert torch.equal(mask, expected)
    assert mask_bbox(mask) == (64, 64, 128, 128)
    assert CenterSquareMasks(0.25).box(100, 200) == (37, 87, 25, 25)  # (100 - 25) // 2, (200 - 25) // 2
    with pytest.raises(ValueError):
        CenterSquareMasks(0.0)


def test_free_form_statistics_and_speed():
    gen = torch.Generator().manual_seed(2)
    masks = FreeFormMasks()
    coverage = []
    for _ in range(200):
        mask = masks(256, 256, gen)
        assert _is_binary_float(mask, 256, 256)
        coverage.append(mask.mean().item())
    coverage = np.array(coverage)
    assert coverage.min() > 0.0  # every mask has a hole
    assert coverage.max() < 0.8  # and known pixels
    assert 0.05 < coverage.mean() < 0.35
    assert coverage.std() > 0.03  # varied
    # Strokes are thick (at least 12 px wide at 256): every mask survives an erosion by a 9x9 square.
    eroded = -torch.nn.functional.max_pool2d(-torch.stack([masks(256, 256, gen) for _ in range(20)]), 9, 1, 4)
    assert torch.all(eroded.flatten(1).amax(dim=1) == 1)
    start = time.perf_counter()
    for _ in range(20):
        masks(256, 256, gen)
    assert (time.perf_counter() - start) / 20 < 0.05
    # Sizes are relative: at 64x64 the coverage is about the same.
    small = np.mean([masks(64, 64, gen).mean().item() for _ in range(200)])
    assert abs(small - coverage.mean()) < 0.08


def test_free_form_errors():
    for kwargs in ({"min_vertex": 5, "max_vertex": 4}, {"max_strokes": 0}, {"min_brush_width": 0.0}):
        with pytest.raises(ValueError):
            FreeFormMasks(**kwargs)


@pytest.mark.parametrize("masks", [RandomRectangleMasks(), FreeFormMasks(), CenterSquareMasks()])
def test_determinism_and_non_square(masks):
    a = masks(96, 160, torch.Generator().manual_seed(7))
    b = masks(96, 160, torch.Generator().manual_seed(7))
    assert _is_binary_float(a, 96, 160)
    assert torch.equal(a, b)
    assert isinstance(masks, MaskGenerator)
    assert type(masks).__name__ in repr(masks)


def test_random_generators_differ_between_draws():
    gen = torch.Generator().manual_seed(3)
    for masks in (RandomRectangleMasks(), FreeFormMasks()):
        draws = [masks(64, 64, gen) for _ in range(5)]
        assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_convention_hole_is_one():
    # The centre square is the hole: its pixels are 1, the border (known) is 0.
    mask = CenterSquareMasks(0.5)(8, 8)
    assert mask[0, 4, 4] == 1
    assert mask[0, 0, 0] == 0


def _write(path, array):
    Image.fromarray(array).save(path)


def test_folder_masks(tmp_path):
    root = tmp_path / "masks"
    root.mkdir()
    white_square = np.zeros((32, 32), np.uint8)
    white_square[8:24, 8:24] = 255
    _write(root / "a.png", white_square)
    zero_one = np.zeros((16, 16), np.uint8)  # a 0/1-valued file
    zero_one[0:6, :] = 1
    _write(root / "b.png", zero_one)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, 16:] = 200
    _write(root / "c.jpg", rgb)
    (root / "notes.txt").write_text("not an image")

    masks = FolderMasks(str(root))
    assert len(masks) == 3
    assert masks.names == ["a", "b", "c"]
    a = masks.by_name("a", 32, 32)
    assert _is_binary_float(a, 32, 32)
    assert a[0, 8:24, 8:24].all()
    assert a.sum() == 256
    a_big = masks.by_name("a", 64, 64)  # resized, nearest
    assert a_big.sum() == 1024
    assert a_big[0, 16:48, 16:48].all()
    b = masks.by_name("b", 16, 16)
    assert b[0, 0:6].all()
    assert b.sum() == 96
    c = masks.by_name("c", 32, 32)
    assert c[0, :, 16:].all()
    assert c.sum() == 512

    inverted = FolderMasks(str(root), invert=True).by_name("a", 32, 32)
    assert torch.equal(inverted, 1 - a)

    gen = torch.Generator().manual_seed(0)
    drawn = [masks(32, 32, gen) for _ in range(30)]
    assert all(_is_binary_float(m, 32, 32) for m in drawn)
    assert len({float(m.sum()) for m in drawn}) == 3  # all three files get picked (hole areas 256, 384, 512)
    assert torch.equal(masks(32, 32, torch.Generator().manual_seed(5)), masks(32, 32, torch.Generator().manual_seed(5)))

    with pytest.raises(FileNotFoundError, match="no mask named 'zzz'"):
        masks.by_name("zzz", 32, 32)


def test_folder_masks_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        FolderMasks(str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image"):
        FolderMasks(str(empty))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    masks = FolderMasks(str(corrupt))
    with pytest.raises(ValueError, match="bad.png"):
        masks.by_name("bad", 8, 8)
    dup = tmp_path / "dup"
    dup.mkdir()
    _write(dup / "x.png", np.zeros((4, 4), np.uint8))
    _write(dup / "x.jpg", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="two files named 'x'"):
        FolderMasks(str(dup))


def test_mask_bbox():
    mask = torch.zeros(1, 1, 20, 30)
    mask[..., 3:9, 10:25] = 1
    mask[..., 12, 4] = 1  # a free-form mask: the box encloses every hole pixel
    assert mask_bbox(mask) == (3, 4, 10, 21)
    assert mask_bbox(mask[0, 0]) == (3, 4, 10, 21)
    batch = torch.zeros(2, 1, 16, 16)
    batch[0, :, 0:4, 0:8] = 1
    batch[1, :, 10:16, 5:6] = 1
    assert mask_bboxes(batch).tolist() == [[0, 0, 4, 8], [10, 5, 6, 1]]
    with pytest.raises(ValueError, match="no hole"):
        mask_bbox(torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="sample 1"):
        mask_bboxes(torch.cat([batch[:1], torch.zeros(1, 1, 16, 16)]))
    with pytest.raises(ValueError, match="one mask"):
        mask_bbox(torch.zeros(2, 8, 8))


def test_validate_mask_accepts_good_masks():
    image = torch.rand(3, 16, 16)
    mask = CenterSquareMasks()(16, 16)
    assert validate_mask(mask, image) is mask
    batch = torch.rand(2, 3, 16, 16)
    masks = torch.stack([mask, mask])
    assert torch.equal(validate_mask(masks.bool(), batch), masks)
    assert validate_mask(torch.zeros(1, 16, 16), image, allow_empty=True).sum() == 0
    assert validate_mask(torch.ones(1, 16, 16), image, allow_full=True).mean() == 1


def test_validate_mask_errors():
    image = torch.rand(3, 256, 256)
    with pytest.raises(ValueError, match="mask of size 128x128 does not match image of size 256x256"):
        validate_mask(torch.ones(1, 128, 128), image)
    with pytest.raises(ValueError, match="expected"):
        validate_mask(torch.ones(3, 256, 256), image)
    with pytest.raises(ValueError, match="expected"):
        validate_mask(torch.ones(256, 256), image)
    with pytest.raises(ValueError, match="binary"):
        validate_mask(torch.full((1, 256, 256), 0.5), image)
    with pytest.raises(ValueError, match="no missing pixel"):
        validate_mask(torch.zeros(1, 256, 256), image)
    with pytest.raises(ValueError, match="all missing"):
        validate_mask(torch.ones(1, 256, 256), image)
    batch = torch.rand(2, 3, 8, 8)
    masks = torch.zeros(2, 1, 8, 8)
    masks[0, :, :4] = 1
    with pytest.raises(ValueError, match=r"no missing pixel \(sample 1\)"):
        validate_mask(masks, batch)
    with pytest.raises(ValueError, match="batch size 1 does not match image batch size 2"):
        validate_mask(masks[:1], batch)
    with pytest.raises(ValueError, match="image must be"):
        validate_mask(masks, torch.rand(8, 8))


def test_fixed_boxes_recover_deepfills_box():
    gen = torch.Generator().manual_seed(3)
    rect = RandomRectangleMasks()  # DeepFill: a 128 box at random, the hole shrunk symmetrically inside it
    for _ in range(20):
        top = int(torch.randint(0, 129, (1,), generator=gen))
        left = int(torch.randint(0, 129, (1,), generator=gen))
        dh, dw = (int(torch.randint(0, 17, (1,), generator=gen)) for _ in range(2))
        mask = torch.zeros(1, 1, 256, 256)
        mask[:, :, top + dh : top + 128 - dh, left + dw : left + 128 - dw] = 1
        assert fixed_boxes(mask, 128, 128).tolist() == [[top, left]]
    masks = torch.stack([rect(64, 64, gen) for _ in range(8)])
    corners = fixed_boxes(masks, 32, 32)
    for m, (t, c) in zip(masks, corners.tolist(), strict=True):
        assert m[:, t : t + 32, c : c + 32].sum() == m.sum()  # the whole hole inside the box
    edge = torch.zeros(1, 1, 64, 64)
    edge[:, :, 60:64, 0:4] = 1
    assert fixed_boxes(edge, 32, 32).tolist() == [[32, 0]]  # moved inside the image
    with pytest.raises(ValueError, match="spans 40x4"):
        fixed_boxes(torch.nn.functional.pad(torch.ones(1, 1, 40, 4), (0, 60, 0, 24)), 32, 32)
    with pytest.raises(ValueError, match="no hole"):
        fixed_boxes(torch.zeros(1, 1, 64, 64), 32, 32)


def test_mixed_masks_choose_by_probability():
    mixed = MixedMasks([CenterSquareMasks(0.5), CenterSquareMasks(0.25)], [3.0, 1.0])
    gen = torch.Generator().manual_seed(0)
    big = sum(int(mixed(32, 32, gen).sum()) == 256 for _ in range(400))
    assert 260 < big < 340  # about 3/4
    with pytest.raises(ValueError, match="one non-negative probability per generator"):
        MixedMasks([CenterSquareMasks()], [1.0, 2.0])


def test_area_binned_masks():
    binned = AreaBinnedMasks()  # 10-20% ... 50-60%
    for index in range(10):
        low, high = binned.bin_of(index)
        mask = binned(64, 64, torch.Generator().manual_seed(index), index=index)
        assert _is_binary_float(mask, 64, 64)
        assert low <= float(mask.mean()) < high
        assert torch.equal(mask, binned(64, 64, torch.Generator().manual_seed(index), index=index))
    assert binned.bin_of(0) == (0.1, 0.2) and binned.bin_of(6) == (0.2, 0.3)
    with pytest.raises(ValueError, match="bins"):
        AreaBinnedMasks(bins=[0.5, 0.2])
