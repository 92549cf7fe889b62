"""Tests of the hinge GAN losses (paper eq. 7 and 8)."""

import pytest
import torch

from common.losses.hinge import hinge_d_loss, hinge_g_loss


class TestHingeDLoss:
    def test_feature(self):
        real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - r) = 0, 0.5, 2   -> mean 2.5 / 3
        fake = torch.tensor([-3.0, 0.0, 1.0, -0.5])  # relu(1 + f) = 0, 1, 2, 0.5 -> mean 3.5 / 4
        expected = 2.5 / 3 + 3.5 / 4
        assert hinge_d_loss(real, fake).item() == pytest.approx(expected)

    def test_zero_when_margins_met(self):
        assert hinge_d_loss(torch.tensor([1.0, 5.0]), torch.tensor([-1.0, -7.0])).item() == 0.0

    def test_gradient(self):
        real = torch.tensor([0.0, 2.0], requires_grad=True)
        fake = torch.tensor([0.0, -2.0], requires_grad=True)
        hinge_d_loss(real, fake).backward()
        # only samples inside the margin get a gradient of -+1/B
        assert torch.equal(real.grad, torch.tensor([-0.5, 0.0]))
        assert torch.equal(fake.grad, torch.tensor([0.5, 0.0]))

    def test_gradcheck(self):
        real = torch.tensor([0.3, -0.2, 1.7], dtype=torch.float64, requires_grad=True)
        fake = torch.tensor([0.1, -1.6], dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(hinge_d_loss, (real, fake))


class TestHingeGLoss:
    def test_feature(self):
        assert hinge_g_loss(torch.tensor([1.0, -3.0, 0.5, 0.5])).item() == pytest.approx(0.25)

    def test_cardinality(self):
        assert hinge_g_loss(torch.randn(4, 1)).shape == ()

    def test_gradcheck(self):
        fake = torch.randn(5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(hinge_g_loss, (fake,))
