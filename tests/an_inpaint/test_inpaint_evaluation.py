"""InpaintingEvaluator: the one metric implementation of validation / test and of ``evaluate`` (score_folders)."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from an_inpaint.baselines import classical_inpaint_batch
from an_inpaint.evaluation import InpaintingEvaluator, score_folders
from common.data.masks import CenterSquareMasks
from common.metrics.inpainting import InpaintingMetrics
from common.visualization import to_unit


class _MeanColourFeatures(torch.nn.Module):
    """A stand-in FID feature extractor: per-channel means and stds of uint8 images."""

    def forward(self, x):
        x = x.float() / 255
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)


def _batch():
    photo = torch.from_numpy(skdata.chelsea()[:96, :128].copy()).permute(2, 0, 1).float() / 255
    image = torch.stack([photo[:, :32, :32], photo[:, 40:72, 60:92]]) * 2 - 1
    mask = torch.stack([CenterSquareMasks(0.5)(32, 32)] * 2)
    noise = torch.randn(image.shape, generator=torch.Generator().manual_seed(0)) * 0.2
    inpainted = (image + noise * mask).clamp(-1, 1)
    return image, mask, inpainted


def test_update_batch_scores_the_model_and_each_baseline():
    image, mask, inpainted = _batch()
    evaluator = InpaintingEvaluator(baselines=["telea", "harmonic"], area_bins=[0.2, 0.3])
    results = evaluator.update_batch(image, mask, inpainted)
    assert set(results) == {"telea", "harmonic"}
    torch.testing.assert_close(results["telea"], classical_inpaint_batch(image, mask, "telea"))
    values = evaluator.compute("val")
    expected = InpaintingMetrics(area_bins=[0.2, 0.3])
    expected.update(to_unit(inpainted), to_unit(image), mask)
    for key, value in expected.compute().items():
        torch.testing.assert_close(values[f"val/{key}"], value)
    assert float(values["val/num_images"]) == 2
    assert {"val/telea/psnr", "val/harmonic/ssim_hole", "val/psnr@20-30%"} <= set(values)
    evaluator.reset()
    with pytest.raises(ValueError, match="before any update"):
        evaluator.compute("val")


def test_score_folders_is_the_evaluators_code(tmp_path):
    image, mask, inpainted = _batch()
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    for i in range(2):
        for folder, tensor in ((pred_dir, inpainted), (gt_dir, image)):
            pixels = (to_unit(tensor[i]).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    options = {"lpips": True, "fid": True, "lpips_pretrained": False, "fid_feature": _MeanColourFeatures()}
    torch.manual_seed(0)
    result = score_folders(str(pred_dir), str(gt_dir), known_check="off", progress=False, **options)
    torch.manual_seed(0)
    evaluator = InpaintingEvaluator(**options)
    unit = [np.asarray(Image.open(f"{d}/{i}.png"), dtype=np.float32) / 255 for d in (pred_dir, gt_dir) for i in (0, 1)]
    pred, gt = (torch.from_numpy(np.stack(unit[k : k + 2])).permute(0, 3, 1, 2) for k in (0, 2))
    evaluator.update(pred, gt, mask)
    means = {k: float(v) for k, v in evaluator.means().items()}
    assert set(result["mean"]) == set(means) >= {"psnr", "ssim_hole", "lpips", "fid"}
    for key, value in means.items():
        assert result["mean"][key] == pytest.approx(value, abs=1e-6), key
    assert result["per_image"]["1"]["lpips"] == pytest.approx(float(evaluator.per_image()["lpips"][1]), abs=1e-6)
