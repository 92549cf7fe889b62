"""Tests for ``common.metrics.inpainting``: PSNR / SSIM / MAE vs scikit-image and numpy, the Metric, folders."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import structural_similarity_index_measure

from common.metrics.inpainting import (
    PSNR_CAP_DB,
    InpaintingMetrics,
    LPIPSMetric,
    format_table,
    mae_per_image,
    psnr_per_image,
    quantize_8bit,
    score_folders,
    ssim_map,
    ssim_per_image,
    write_json,
)

SSIM_KW = {
    "channel_axis": -1,
    "gaussian_weights": True,
    "sigma": 1.5,
    "use_sample_covariance": False,
    "data_range": 1.0,
}


def _pairs(n: int = 4, size: tuple[int, int] = (48, 64), seed: int = 0):
    """Real photographs (numpy HWC float64 in [0, 1]) and degraded versions with a filled-in hole."""
    rng = np.random.default_rng(seed)
    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    gts, preds = [], []
    h, w = size
    for i in range(n):
        src = sources[i % len(sources)]
        top, left = rng.integers(0, src.shape[0] - h), rng.integers(0, src.shape[1] - w)
        gt = src[top : top + h, left : left + w].astype(np.float64) / 255.0
        pred = np.clip(gt + rng.normal(0.0, 0.02 * (i + 1), gt.shape), 0.0, 1.0)
        pred[10:30, 20:44] = rng.uniform(0.0, 1.0, 3)  # a badly inpainted hole
        gts.append(gt)
        preds.append(pred)
    return np.stack(preds), np.stack(gts)


def _t(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float()


def _mask(n: int, size: tuple[int, int] = (48, 64)) -> torch.Tensor:
    mask = torch.zeros(n, 1, *size)
    mask[:, :, 8:34, 16:50] = 1
    return mask


def test_whole_image_metrics_match_skimage_and_numpy():
    preds, gts = _pairs()
    psnr = psnr_per_image(_t(preds), _t(gts))
    ssim = ssim_per_image(_t(preds), _t(gts))
    mae = mae_per_image(_t(preds), _t(gts))
    assert psnr.shape == ssim.shape == mae.shape == (4,)
    for i in range(4):
        gt32, pred32 = gts[i].astype(np.float32).astype(np.float64), preds[i].astype(np.float32).astype(np.float64)
        assert psnr[i].item() == pytest.approx(peak_signal_noise_ratio(gt32, pred32, data_range=1.0), abs=1e-4)
        # Measured agreement with skimage: |diff| < 1e-7 (SSIM computed in float64, returned as float32).
        assert ssim[i].item() == pytest.approx(structural_similarity(gt32, pred32, **SSIM_KW), abs=1e-6)
        assert mae[i].item() == pytest.approx(np.abs(pred32 - gt32).mean(), abs=1e-6)
    assert len(set(np.round(psnr.tolist(), 3))) == 4  # the images differ


def test_hole_metrics_match_numpy_and_skimage_map():
    preds, gts = _pairs()
    mask = _mask(4)
    hole = mask[0, 0].bool().numpy()
    psnr = psnr_per_image(_t(preds), _t(gts), mask)
    ssim = ssim_per_image(_t(preds), _t(gts), mask)
    mae = mae_per_image(_t(preds), _t(gts), mask)
    for i in range(4):
        gt32, pred32 = gts[i].astype(np.float32).astype(np.float64), preds[i].astype(np.float32).astype(np.float64)
        diff = pred32[hole] - gt32[hole]  # (N, 3)
        assert psnr[i].item() == pytest.approx(10 * np.log10(1.0 / np.mean(diff**2)), abs=1e-4)
        assert mae[i].item() == pytest.approx(np.abs(diff).mean(), abs=1e-6)
        _, ssim_map = structural_similarity(gt32, pred32, full=True, **SSIM_KW)  # (H, W, 3)
        assert ssim[i].item() == pytest.approx(ssim_map[hole].mean(), abs=1e-6)
    # The hole is where the damage is: hole scores are worse than whole-image scores.
    assert torch.all(psnr < psnr_per_image(_t(preds), _t(gts)))
    assert torch.all(mae > mae_per_image(_t(preds), _t(gts)))
    # A mask covering everything gives the whole-image PSNR and MAE.
    ones = torch.ones(4, 1, 48, 64)
    torch.testing.assert_close(psnr_per_image(_t(preds), _t(gts), ones), psnr_per_image(_t(preds), _t(gts)))
    torch.testing.assert_close(mae_per_image(_t(preds), _t(gts), ones), mae_per_image(_t(preds), _t(gts)))


def test_ssim_map_matches_skimage_at_the_border_and_torchmetrics_inside():
    preds, gts = _pairs(n=2)
    ours = ssim_map(_t(preds), _t(gts))  # (2, 3, H, W) float64
    for i in range(2):
        gt32, pred32 = gts[i].astype(np.float32).astype(np.float64), preds[i].astype(np.float32).astype(np.float64)
        _, reference = structural_similarity(gt32, pred32, full=True, **SSIM_KW)
        np.testing.assert_allclose(ours[i].permute(1, 2, 0).numpy(), reference, atol=1e-9)
    # A hole touching the border: still skimage's map over the hole.
    mask = torch.zeros(2, 1, 48, 64)
    mask[:, :, 0:6, 0:20] = 1
    gt32, pred32 = gts[0].astype(np.float32).astype(np.float64), preds[0].astype(np.float32).astype(np.float64)
    _, reference = structural_similarity(gt32, pred32, full=True, **SSIM_KW)
    assert ssim_per_image(_t(preds), _t(gts), mask)[0].item() == pytest.approx(reference[0:6, 0:20].mean(), abs=1e-6)
    # torchmetrics' map (reflect padding) is the same 5 pixels away from the border.
    _, tm_map = structural_similarity_index_measure(
        _t(preds).double(), _t(gts).double(), sigma=1.5, data_range=1.0, reduction="none", return_full_image=True
    )
    torch.testing.assert_close(ours[..., 5:-5, 5:-5], tm_map[..., 5:-5, 5:-5])


def test_identical_images_are_capped():
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(psnr_per_image(x, x), torch.full((2,), PSNR_CAP_DB))
    assert torch.equal(psnr_per_image(x, x, torch.ones(2, 1, 16, 16)), torch.full((2,), PSNR_CAP_DB))
    torch.testing.assert_close(ssim_per_image(x, x), torch.ones(2))
    assert torch.equal(mae_per_image(x, x), torch.zeros(2))


def test_functional_errors():
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="does not match target"):
        psnr_per_image(x, torch.rand(2, 3, 16, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        mae_per_image(x[0], x[0])
    with pytest.raises(ValueError, match="mask of shape"):
        mae_per_image(x, x, torch.ones(2, 1, 8, 8))
    with pytest.raises(ValueError, match="mask must have shape"):
        mae_per_image(x, x, torch.ones(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"image\(s\) \[1\]"):
        psnr_per_image(x, x, torch.cat([torch.ones(1, 1, 16, 16), torch.zeros(1, 1, 16, 16)]))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_image(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_metric_quantized_matches_skimage_on_uint8():
    preds, gts = _pairs()
    mask = _mask(4)
    metric = InpaintingMetrics()  # quantize=True, hole_metrics=True
    metric.update(_t(preds), _t(gts), mask)
    result = metric.compute()
    assert set(result) == {"psnr", "ssim", "mae", "psnr_hole", "ssim_hole", "mae_hole"}
    pred8 = np.round(preds * 255).astype(np.uint8)
    gt8 = np.round(gts * 255).astype(np.uint8)
    psnr = [peak_signal_noise_ratio(g, p, data_range=255) for g, p in zip(gt8, pred8, strict=True)]
    ssim = [structural_similarity(g / 255.0, p / 255.0, **SSIM_KW) for g, p in zip(gt8, pred8, strict=True)]
    mae = [np.abs(p.astype(np.float64) - g).mean() / 255 for g, p in zip(gt8, pred8, strict=True)]
    assert result["psnr"].item() == pytest.approx(np.mean(psnr), abs=1e-4)  # per image, then averaged
    assert result["ssim"].item() == pytest.approx(np.mean(ssim), abs=1e-6)
    assert result["mae"].item() == pytest.approx(np.mean(mae), abs=1e-6)
    per_image = metric.per_image()
    np.testing.assert_allclose(per_image["psnr"].numpy(), psnr, atol=1e-4)
    assert per_image["mae_hole"].shape == (4,)
    # Not the same as PSNR of the pooled MSE: the averaging order matters.
    pooled = 10 * np.log10(255.0**2 / np.mean((pred8.astype(np.float64) - gt8) ** 2))
    assert abs(result["psnr"].item() - pooled) > 0.05


def test_metric_batch_split_equivalence_and_reset():
    preds, gts = _pairs(n=6)
    mask = _mask(6)
    whole = InpaintingMetrics()
    whole.update(_t(preds), _t(gts), mask)
    split = InpaintingMetrics()
    for chunk in ((0, 1), (1, 4), (4, 6)):
        a, b = chunk
        split.update(_t(preds[a:b]), _t(gts[a:b]), mask[a:b])
    for key, value in whole.compute().items():
        torch.testing.assert_close(split.compute()[key], value, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(split.per_image()[key], whole.per_image()[key])
    split.reset()
    with pytest.warns(UserWarning, match="before the ``update``"), pytest.raises(ValueError, match="before any update"):
        split.compute()


def test_metric_options_and_errors():
    preds, gts = _pairs(n=2)
    metric = InpaintingMetrics(quantize=False, hole_metrics=False)
    metric.update(_t(preds), _t(gts))
    result = metric.compute()
    assert set(result) == {"psnr", "ssim", "mae"}
    expected = psnr_per_image(_t(preds), _t(gts)).mean()
    torch.testing.assert_close(result["psnr"], expected)
    # Quantisation changes the values slightly.
    quantized = InpaintingMetrics(hole_metrics=False)
    quantized.update(_t(preds), _t(gts))
    assert quantized.compute()["psnr"] != result["psnr"]
    assert torch.equal(quantize_8bit(torch.tensor([0.0, 0.5, 1.2, -0.1])), torch.tensor([0.0, 128 / 255, 1.0, 0.0]))
    with pytest.raises(ValueError, match="needs the mask"):
        InpaintingMetrics().update(_t(preds), _t(gts))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        InpaintingMetrics(hole_metrics=False).update(_t(preds) * 2 - 1, _t(gts))
    with pytest.raises(ValueError, match="has none"):
        InpaintingMetrics().update(_t(preds), _t(gts), torch.zeros(2, 1, 48, 64))


def test_lpips_untrained_network_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    torch.manual_seed(0)
    metric = LPIPSMetric(pretrained=False)
    assert "_holder" not in dict(metric.named_modules())  # built lazily
    preds, gts = _pairs(n=2, size=(64, 64))
    metric.update(_t(gts), _t(gts))
    metric.update(_t(preds), _t(gts))
    values = metric.per_image()
    assert values.shape == (4,)
    assert torch.all(values[:2].abs() < 1e-6)  # identical images
    assert torch.all(values[2:].abs() > 1e-5)  # different images (an untrained network can go negative)
    torch.testing.assert_close(metric.compute(), values.mean())
    assert not (tmp_path / "torch_home").exists()  # nothing was downloaded
    assert not any("lpips" in k or "net" in k for k in metric.state_dict())
    with pytest.raises(ValueError, match="LPIPS net"):
        LPIPSMetric(net="resnet")


# ------------------------------------------------------------------------------------------------ folder scoring
def _write_folders(tmp_path, n=3, size=64, pred_size=None, names=None):
    preds, gts = _pairs(n=n, size=(size, size), seed=1)
    names = names or [f"{i:03d}_im" for i in range(n)]
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir(exist_ok=True)
    gt_dir.mkdir(exist_ok=True)
    for name, pred, gt in zip(names, preds, gts, strict=True):
        Image.fromarray(np.round(gt * 255).astype(np.uint8)).save(gt_dir / f"{name}.png")
        image = Image.fromarray(np.round(pred * 255).astype(np.uint8))
        if pred_size is not None:
            image = image.resize((pred_size, pred_size))
        image.save(pred_dir / f"{name}.png")
    return pred_dir, gt_dir, names


def test_score_folders_center_mask_and_json(tmp_path):
    pred_dir, gt_dir, names = _write_folders(tmp_path)
    result = score_folders(str(pred_dir), str(gt_dir), progress=False)
    assert result["count"] == 3
    assert sorted(result["per_image"]) == names
    assert set(result["mean"]) == {"psnr", "ssim", "mae", "psnr_hole", "ssim_hole", "mae_hole"}
    # Independent check of one image: skimage on the files, centre 32x32 hole at (16, 16).
    gt8 = np.asarray(Image.open(gt_dir / "001_im.png"))
    pred8 = np.asarray(Image.open(pred_dir / "001_im.png"))
    scores = result["per_image"]["001_im"]
    assert scores["psnr"] == pytest.approx(peak_signal_noise_ratio(gt8, pred8, data_range=255), abs=1e-4)
    assert scores["ssim"] == pytest.approx(structural_similarity(gt8 / 255.0, pred8 / 255.0, **SSIM_KW), abs=1e-6)
    hole = (pred8[16:48, 16:48].astype(np.float64) - gt8[16:48, 16:48]) / 255.0
    assert scores["mae_hole"] == pytest.approx(np.abs(hole).mean(), abs=1e-6)
    assert result["mean"]["psnr"] == pytest.approx(np.mean([result["per_image"][n]["psnr"] for n in names]))

    table = format_table(result)
    assert table.splitlines()[0].startswith("| images | PSNR (dB) | SSIM | MAE |")
    assert f"| 3 | {result['mean']['psnr']:.2f} |" in table
    path = write_json(result, tmp_path / "out" / "scores.json")
    loaded = json.loads(path.read_text())
    assert loaded["count"] == 3
    assert loaded["per_image"]["000_im"]["ssim"] == pytest.approx(result["per_image"]["000_im"]["ssim"])
    assert loaded["protocol"]["mask"] == "center"


def test_score_folders_mask_dir_none_mask_and_resize(tmp_path):
    pred_dir, gt_dir, names = _write_folders(tmp_path, n=2, size=64, pred_size=80)
    with pytest.raises(ValueError, match=r"is 80x80 but the ground truth 000_im.png is 64x64"):
        score_folders(str(pred_dir), str(gt_dir), progress=False)
    resized = score_folders(str(pred_dir), str(gt_dir), mask="none", resize_to=64, progress=False)
    assert set(resized["mean"]) == {"psnr", "ssim", "mae"}
    assert resized["protocol"]["resize_to"] == 64

    mask_dir = tmp_path / "masks"
    mask_dir.mkdir()
    for name in names:
        m = np.zeros((32, 32), np.uint8)  # half resolution: resized (nearest) to the image size
        m[0:16, :] = 255
        Image.fromarray(m).save(mask_dir / f"{name}.png")
    result = score_folders(str(pred_dir), str(gt_dir), mask_dir=str(mask_dir), resize_to=64, progress=False)
    gt8 = np.asarray(Image.open(gt_dir / "000_im.png"))
    pred8 = np.asarray(Image.open(pred_dir / "000_im.png").resize((64, 64), Image.Resampling.LANCZOS))
    hole = (pred8[0:32].astype(np.float64) - gt8[0:32]) / 255.0
    assert result["per_image"]["000_im"]["mae_hole"] == pytest.approx(np.abs(hole).mean(), abs=1e-6)
    assert result["per_image"]["000_im"]["psnr"] == pytest.approx(resized["per_image"]["000_im"]["psnr"])
    os.remove(mask_dir / f"{names[1]}.png")
    with pytest.raises(ValueError, match=f"no mask in .* for 1 image.*{names[1]}"):
        score_folders(str(pred_dir), str(gt_dir), mask_dir=str(mask_dir), resize_to=64, progress=False)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(mask_dir / f"{names[1]}.png")  # no hole
    with pytest.raises(ValueError, match=f"mask for {names[1]}: mask has no missing pixel"):
        score_folders(str(pred_dir), str(gt_dir), mask_dir=str(mask_dir), resize_to=64, progress=False)


def test_score_folders_errors(tmp_path):
    pred_dir, gt_dir, names = _write_folders(tmp_path, n=3)
    os.rename(pred_dir / "002_im.png", pred_dir / "zzz.png")
    with pytest.raises(ValueError, match=r"no prediction in .* for 1 ground-truth image\(s\): 002_im.*zzz"):
        score_folders(str(pred_dir), str(gt_dir), progress=False)
    with pytest.raises(FileNotFoundError, match="missing"):
        score_folders(str(tmp_path / "missing"), str(gt_dir), progress=False)
    with pytest.raises(ValueError, match="mask must be 'center' or 'none'"):
        score_folders(str(pred_dir), str(gt_dir), mask="random", progress=False)
    os.rename(pred_dir / "zzz.png", pred_dir / "002_im.png")
    (pred_dir / "001_im.png").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match="001_im.png"):
        score_folders(str(pred_dir), str(gt_dir), progress=False)


def test_metric_on_device(device):
    preds, gts = _pairs(n=2)
    mask = _mask(2)
    cpu = InpaintingMetrics()
    cpu.update(_t(preds), _t(gts), mask)
    metric = InpaintingMetrics().to(device)
    metric.update(_t(preds).to(device), _t(gts).to(device), mask.to(device))
    for key, value in metric.compute().items():
        assert value.device.type == device.type
        torch.testing.assert_close(value.cpu(), cpu.compute()[key], rtol=1e-5, atol=1e-5)
