"""Tests of the exponential moving average of a network's weights."""

import pytest
import torch
from torch import nn

from common.training.ema import ExponentialMovingAverage, normalization_layers, standing_statistics


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


class TestExponentialMovingAverage:
    def test_smoke(self):
        net = _net()
        ema = ExponentialMovingAverage(net, decay=0.9, start_step=0)
        assert all(not p.requires_grad for p in ema.averaged.parameters())
        assert all(p.requires_grad for p in net.parameters())
        assert ema(torch.randn(5, 3)).shape == (5, 4)

    def test_update_maths(self):
        net = _net()
        ema = ExponentialMovingAverage(net, decay=0.75, start_step=2)
        w0 = net[0].weight.detach().clone()
        with torch.no_grad():
            net[0].weight.add_(1.0)
        ema.update(net, step=1)  # before start_step: copy
        assert torch.equal(ema.averaged[0].weight, w0 + 1.0)
        with torch.no_grad():
            net[0].weight.add_(2.0)
        ema.update(net, step=2)  # 0.75 * (w0 + 1) + 0.25 * (w0 + 3)
        torch.testing.assert_close(ema.averaged[0].weight, w0 + 1.5)
        ema.update(net, step=3)  # 0.75 * (w0 + 1.5) + 0.25 * (w0 + 3)
        torch.testing.assert_close(ema.averaged[0].weight, w0 + 1.875)

    def test_buffers_copied(self):
        net = _net()
        ema = ExponentialMovingAverage(net, decay=0.99, start_step=0)
        net.train()
        net(torch.randn(8, 3) * 3 + 1)  # updates BN running statistics
        ema.update(net, step=10)
        assert torch.equal(ema.averaged[1].running_mean, net[1].running_mean)
        assert torch.equal(ema.averaged[1].num_batches_tracked, net[1].num_batches_tracked)

    def test_state_dict_roundtrip(self):
        net = _net()
        ema = ExponentialMovingAverage(net, decay=0.5)
        with torch.no_grad():
            net[0].bias.fill_(4.0)
        ema.update(net, step=5)
        other = ExponentialMovingAverage(_net(), decay=0.5)
        other.load_state_dict(ema.state_dict())
        assert torch.equal(other.averaged[0].bias, ema.averaged[0].bias)
        assert any(key.startswith("averaged.") for key in ema.state_dict())

    def test_copy_to(self):
        net = _net()
        ema = ExponentialMovingAverage(net, decay=0.5)
        with torch.no_grad():
            ema.averaged[0].weight.fill_(0.25)
        target = _net()
        ema.copy_to(target)
        assert torch.all(target[0].weight == 0.25)

    def test_exception(self):
        with pytest.raises(ValueError, match="decay"):
            ExponentialMovingAverage(_net(), decay=1.0)
        with pytest.raises(ValueError, match="start_step"):
            ExponentialMovingAverage(_net(), start_step=-1)
        ema = ExponentialMovingAverage(_net())
        with pytest.raises(ValueError, match="does not match"):
            ema.update(nn.Sequential(nn.Linear(3, 4)), step=0)

    def test_spectral_norm_module(self):
        net = nn.utils.parametrizations.spectral_norm(nn.Linear(3, 3))
        ema = ExponentialMovingAverage(net, decay=0.5)
        net(torch.randn(2, 3))  # one power iteration updates the u/v buffers
        ema.update(net, step=1)
        assert torch.equal(ema.averaged.parametrizations.weight[0]._u, net.parametrizations.weight[0]._u)


class TestStandingStatistics:
    """BigGAN's standing statistics: the running statistics become the average of the batch statistics."""

    def _net(self):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.utils.parametrizations.spectral_norm(nn.Linear(3, 4)), nn.BatchNorm1d(4), nn.ReLU(), nn.BatchNorm1d(4)
        )

    def test_plain_average_of_batch_statistics(self):
        net = self._net()
        net.train()
        net(torch.randn(8, 3) * 5 + 2)  # some other running statistics first
        batches = [(torch.randn(6, 3, generator=torch.Generator().manual_seed(i)) + i,) for i in range(4)]
        u_before = net[0].parametrizations.weight[0]._u.clone()
        assert standing_statistics(net, batches) == 4
        assert torch.equal(net[0].parametrizations.weight[0]._u, u_before)  # spectral norm ran in eval mode
        assert net.training and net[1].momentum == 0.1  # modes and momenta restored
        with torch.no_grad():
            hidden = [net[0].eval()(x) for (x,) in batches]
        means = torch.stack([h.mean(0) for h in hidden])
        variances = torch.stack([h.var(0, unbiased=True) for h in hidden])
        torch.testing.assert_close(net[1].running_mean, means.mean(0))
        torch.testing.assert_close(net[1].running_var, variances.mean(0))
        assert int(net[1].num_batches_tracked) == 4

    def test_independent_of_previous_statistics_and_found_layers(self):
        a, b = self._net(), self._net()
        b.train()
        b(torch.randn(16, 3) * 10)
        batches = [(torch.randn(5, 3, generator=torch.Generator().manual_seed(9)),)]
        standing_statistics(a, batches)
        standing_statistics(b, batches)
        torch.testing.assert_close(a[3].running_mean, b[3].running_mean)
        assert normalization_layers(a) == [a[1], a[3]]
        with pytest.raises(ValueError, match="at least one batch"):
            standing_statistics(a, [])


class TestNeverSynchronised:
    """``Trainer(sync_batchnorm=True)`` converts the whole LightningModule; the EMA copy must stay per-process."""

    def test_averaged_copy_keeps_plain_batch_norms_after_convert_sync_batchnorm(self):
        owner = nn.Module()
        owner.net = _net()
        owner.ema = ExponentialMovingAverage(owner.net)
        before = owner.state_dict(keep_vars=True)
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(owner)
        assert isinstance(converted.net[1], nn.SyncBatchNorm)  # the trained network is synchronised ...
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in converted.ema.averaged.modules())  # ... its EMA not
        assert isinstance(converted.ema.averaged[1], nn.modules.batchnorm._BatchNorm)
        after = converted.state_dict(keep_vars=True)
        assert after.keys() == before.keys()
        assert all(after[key] is before[key] for key in before if key.startswith("ema."))  # the same tensors
        converted.ema.averaged = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.BatchNorm1d(2)))
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in converted.ema.averaged.modules())
        assert standing_statistics(converted.ema.averaged, [(torch.randn(4, 2),)]) == 1

    def test_standing_statistics_refuses_sync_batch_norm_under_a_process_group(self, tmp_path, monkeypatch):
        net = nn.SyncBatchNorm.convert_sync_batchnorm(_net())
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        with pytest.raises(RuntimeError, match="collective every process must join"):
            standing_statistics(net, [(torch.randn(4, 3),)])
