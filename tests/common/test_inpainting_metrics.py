"""Tests for ``common.metrics``: PSNR / SSIM / MAE vs scikit-image, scipy and numpy, area bins, LPIPS, FID."""

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import structural_similarity_index_measure

from common.metrics.inpainting import (
    PSNR_CAP_DB,
    InpaintingMetrics,
    mae_per_image,
    psnr_per_image,
    quantize_8bit,
    ssim_per_image,
)
from common.metrics.perceptual import FIDMetric, LPIPSMetric
from common.metrics.ssim import ssim_map

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


def _matlab_ssim_reference(pred: np.ndarray, gt: np.ndarray) -> float:
    """MATLAB's documented ssim of an H x W x 3 array as a volume, from scipy: an 11x11x11 Gaussian (sigma 1.5,
    radius 5) with replicate ("nearest") padding, mean of the whole map, C1 = 0.01^2, C2 = 0.03^2 on [0, 1]."""
    from scipy.ndimage import gaussian_filter

    def blur(x):
        return gaussian_filter(x, sigma=1.5, mode="nearest", truncate=5 / 1.5)

    mu_x, mu_y = blur(pred), blur(gt)
    var_x, var_y = blur(pred * pred) - mu_x**2, blur(gt * gt) - mu_y**2
    cov = blur(pred * gt) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    full = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(full.mean())


def test_matlab_convention_matches_scipy_volume_filter_and_differs_from_skimage():
    preds, gts = _pairs(n=3)
    ours = ssim_per_image(_t(preds).double(), _t(gts).double(), convention="matlab")
    expected = [_matlab_ssim_reference(p, g) for p, g in zip(preds, gts, strict=True)]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-9)
    skimage_values = [structural_similarity(g, p, **SSIM_KW) for p, g in zip(preds, gts, strict=True)]
    assert np.abs(ours.numpy() - skimage_values).max() > 1e-3  # a different convention, not a rounding change
    metric = InpaintingMetrics(ssim_convention="matlab", quantize=False)
    metric.update(_t(preds), _t(gts), _mask(3))
    assert metric.compute()["ssim"].item() == pytest.approx(np.mean(expected), abs=1e-6)
    with pytest.raises(ValueError, match="ssim_convention"):
        InpaintingMetrics(ssim_convention="tf")


def test_area_bins_by_value():
    preds, gts = _pairs(n=4)
    masks = torch.zeros(4, 1, 48, 64)
    masks[0, :, :6] = 1  # 12.5% of the image
    masks[1, :, :12] = 1  # 25%
    masks[2, :, :7] = 1  # 14.6%
    masks[3, :, :40] = 1  # 83%: outside every bin
    metric = InpaintingMetrics(area_bins=[0.1, 0.2, 0.3])
    metric.update(_t(preds), _t(gts), masks)
    result = metric.compute()
    per_image = metric.per_image()
    torch.testing.assert_close(result["psnr@10-20%"], per_image["psnr"][[0, 2]].mean())
    torch.testing.assert_close(result["mae_hole@20-30%"], per_image["mae_hole"][1])
    torch.testing.assert_close(result["psnr"], per_image["psnr"].mean())  # the overall mean keeps every image
    assert metric.num_images() == {"all": 4, "10-20%": 2, "20-30%": 1}
    with pytest.raises(ValueError, match="area_bins"):
        InpaintingMetrics(area_bins=[0.3, 0.2])


class _MeanColourFeatures(torch.nn.Module):
    """A stand-in FID feature extractor (as torchmetrics' tests use): per-channel means and stds of uint8 images."""

    def forward(self, x):
        x = x.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def test_fid_with_a_stand_in_extractor_matches_torchmetrics(tmp_path, monkeypatch):
    from torchmetrics.image.fid import FrechetInceptionDistance

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    preds, gts = _pairs(n=8, size=(32, 32))
    metric = FIDMetric(feature=_MeanColourFeatures())
    metric.update(_t(preds[:5]), _t(gts[:5]))
    metric.update(_t(preds[5:]), _t(gts[5:]))
    reference = FrechetInceptionDistance(feature=_MeanColourFeatures(), normalize=True)
    reference.update(quantize_8bit(_t(gts)), real=True)
    reference.update(quantize_8bit(_t(preds)), real=False)
    torch.testing.assert_close(metric.compute(), reference.compute().float())
    assert metric.compute() > 0
    metric.reset()
    metric.update(_t(gts), _t(gts))
    assert abs(metric.compute().item()) < 1e-3
    assert not (tmp_path / "torch_home").exists()
