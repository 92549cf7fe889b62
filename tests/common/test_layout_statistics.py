"""Region statistics of a layout (paper Figure 4) against numpy, and the notebooks' helpers."""

import os

import numpy as np
import pytest
import torch
from torch import nn

from common.layers import AttentiveNorm2d, capture_inputs, layout_summary, region_statistics
from common.notebooks import newest_checkpoint, repository_root


def test_region_statistics_match_numpy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 4, generator=g)
    s = torch.softmax(torch.randn(2, 4, 5, 4, generator=g), dim=1)
    stats = region_statistics(x, s)
    xn, sn = x.numpy().reshape(2, 3, -1).astype(np.float64), s.numpy().reshape(2, 4, -1).astype(np.float64)
    for b in range(2):
        for i in range(4):
            w = sn[b, i] / sn[b, i].sum()
            for c in range(3):
                mean = (w * xn[b, c]).sum()
                std = np.sqrt((w * (xn[b, c] - mean) ** 2).sum())
                assert stats["mean"][b, i, c].item() == pytest.approx(mean, abs=1e-5)
                assert stats["std"][b, i, c].item() == pytest.approx(std, abs=1e-5)
        assert stats["mass"][b].sum().item() == pytest.approx(1.0)
    np.testing.assert_allclose(stats["whole_std"].numpy(), xn.std(axis=2), atol=1e-5)


def test_hard_regions_and_summary():
    # Two constant halves, each one entity: zero std inside the regions, ratio 0, two entities used.
    x = torch.zeros(1, 2, 4, 4)
    x[:, :, :, 2:] = 1.0
    s = torch.full((1, 3, 4, 4), 0.05)
    s[:, 0, :, :2], s[:, 1, :, 2:] = 0.9, 0.9
    hard = region_statistics(x, s, hard=True)
    assert torch.allclose(hard["std"][0, :2], torch.zeros(2, 2))
    assert hard["mass"][0].tolist() == [0.5, 0.5, 0.0]
    summary = layout_summary(x, s, hard=True)
    assert summary["whole_std"] == pytest.approx(0.5)
    assert summary["ratio"] == pytest.approx(0.0, abs=1e-6) and summary["used_entities"] == 2
    assert layout_summary(x, torch.full((1, 3, 4, 4), 1 / 3))["entropy"] == pytest.approx(np.log(3))
    with pytest.raises(ValueError, match="differ in size"):
        region_statistics(x, s[..., :2])


def test_capture_inputs_records_what_an_sees():
    net = nn.Sequential(nn.Conv2d(3, 8, 1), AttentiveNorm2d(8, num_entities=4)).eval()
    x = torch.randn(2, 3, 6, 6)
    with capture_inputs(net) as captured:
        net(x)
    assert torch.equal(captured["1"], net[0](x))
    net(x)  # hooks removed afterwards
    assert not net[1]._forward_pre_hooks


def test_repository_root_and_newest_checkpoint(tmp_path, monkeypatch):
    root = repository_root()
    assert (root / "setup.cfg").is_file() and (root / "notebooks").is_dir()
    assert repository_root(root / "notebooks") == root  # Jupyter's working folder: the notebook's
    (tmp_path / "setup.cfg").write_text("")
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "__init__.py").write_text("")
    assert repository_root(tmp_path / "common") == tmp_path
    assert newest_checkpoint("an_gan", tmp_path, required=False) is None
    with pytest.raises(FileNotFoundError, match="python -m an_gan fit"):
        newest_checkpoint("an_gan", tmp_path)
    for i, run in enumerate(("a", "b")):
        ckpt = tmp_path / "runs" / "an_gan" / run / "checkpoints" / "last.ckpt"
        ckpt.parent.mkdir(parents=True)
        ckpt.write_text("")
        os.utime(ckpt, (1000 + i, 1000 + i))
    assert newest_checkpoint("an_gan", tmp_path).parent.parent.name == "b"
