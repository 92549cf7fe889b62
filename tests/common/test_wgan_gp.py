"""Tests for common.losses.wgan_gp against closed forms (a linear critic has a constant gradient)."""

import pytest
import torch
from torch import nn

from common.losses.wgan_gp import gradient_penalty, wgan_d_loss, wgan_g_loss


class LinearCritic(nn.Module):
    """D(x) = <w, x>, whose input gradient is w everywhere."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1)


class TestWganLosses:
    def test_values(self):
        real = torch.tensor([1.0, 2.0, 3.0])
        fake = torch.tensor([-1.0, 0.5])
        assert wgan_d_loss(real, fake).item() == pytest.approx(-0.25 - 2.0)
        assert wgan_g_loss(fake).item() == pytest.approx(0.25)


class TestGradientPenalty:
    def test_linear_critic_exact(self):
        torch.manual_seed(0)
        w = torch.randn(1, 3, 4, 4) * 0.3
        critic = LinearCritic(w)
        real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
        gp = gradient_penalty(critic, real, fake)
        expected = (w.norm() - 1) ** 2
        torch.testing.assert_close(gp, expected)

    def test_linear_critic_masked(self):
        torch.manual_seed(1)
        w = torch.randn(1, 3, 6, 6)
        critic = LinearCritic(w)
        mask = torch.zeros(2, 1, 6, 6)
        mask[0, :, 1:3, 1:4] = 1
        mask[1, :, 2:6, 0:2] = 1
        real, fake = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
        gp = gradient_penalty(critic, real, fake, mask=mask)
        expected = torch.stack([((w[0] * mask[i]).norm() - 1) ** 2 for i in range(2)]).mean()
        torch.testing.assert_close(gp, expected)

    def test_interpolation_points(self):
        # A quadratic critic D(x) = 0.5 ||x||^2 has gradient x, so the penalty reveals where it was evaluated:
        # x_tilde = t * fake + (1 - t) * real with the t drawn from the given generator.
        real, fake = torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)
        gp = gradient_penalty(
            lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real, fake, generator=torch.Generator().manual_seed(7)
        )
        t = torch.rand(3, generator=torch.Generator().manual_seed(7))
        expected = ((t * 2.0 - 1.0) ** 2).mean()  # ||t * ones(4)|| = 2t
        torch.testing.assert_close(gp, expected)

    def test_grad_flows_to_critic(self):
        critic = LinearCritic(torch.full((1, 1, 2, 2), 2.0))
        gp = gradient_penalty(critic, torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2))
        gp.backward()
        # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||, ||w|| = 4
        torch.testing.assert_close(critic.w.grad, torch.full((1, 1, 2, 2), 2 * 3 * 2.0 / 4))

    def test_gradcheck(self):
        w = torch.randn(1, 1, 3, 3, dtype=torch.float64)
        real = torch.randn(2, 1, 3, 3, dtype=torch.float64)
        fake = torch.randn(2, 1, 3, 3, dtype=torch.float64)

        def fn(weight):
            return gradient_penalty(
                lambda x: (torch.tanh(x) * weight).flatten(1).sum(1),
                real,
                fake,
                generator=torch.Generator().manual_seed(0),
            )

        assert torch.autograd.gradcheck(fn, (w.requires_grad_(True),))

    def test_exception(self):
        critic = LinearCritic(torch.ones(1, 1, 2, 2))
        with pytest.raises(ValueError, match="same shape"):
            gradient_penalty(critic, torch.zeros(2, 1, 2, 2), torch.zeros(3, 1, 2, 2))
        with pytest.raises(ValueError, match="does not broadcast"):
            gradient_penalty(critic, torch.zeros(2, 1, 2, 2), torch.zeros(2, 1, 2, 2), mask=torch.ones(2, 1, 3, 3))
