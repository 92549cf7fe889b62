"""Self-attention block of SA-GAN (Zhang et al., "Self-Attention Generative Adversarial Networks", ICML 2019).

This is the "SA-GAN" baseline of the Attentive Normalization paper (Wang et al., CVPR 2020), Tables 1 and 5:
the non-local block that AN is compared with for quality (Table 1) and for time and memory (Table 5).

For an input ``x`` of shape (B, C, H, W), with N = H * W positions and M = (H // 2) * (W // 2) pooled positions:

* query ``q = W_q x``: 1x1 convolution to ``max(C // 8, 1)`` channels, at every position, (B, C/8, N);
* key ``k = maxpool(W_k x)``: 1x1 convolution to ``max(C // 8, 1)`` channels, then 2x2 max pooling with
  stride 2, (B, C/8, M);
* value ``v = maxpool(W_v x)``: 1x1 convolution to ``max(C // 2, 1)`` channels, then the same pooling, (B, C/2, M);
* attention ``A = softmax_m(q_n^T k_m)``, (B, N, M): every position attends over the pooled positions;
* ``o = W_o (v A^T)``: the attended values projected back to C channels by a 1x1 convolution;
* output ``x + gamma * o`` with the learnable scalar gate ``gamma`` initialised to 0, so the block starts as the
  identity.

The (B, N, M) attention matrix is what makes the block quadratic in H * W (paper Section 3.4); the layer benchmark
(``python -m benchmarks.layers``) measures it against AN. The 1x1 convolutions have no bias, as in the SAGAN
block; spectral normalisation, where a network wants it, is applied by that network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SelfAttention2d"]


class SelfAttention2d(nn.Module):
    """SAGAN self-attention block with pooled keys/values and a zero-initialised residual gate.

    Args:
        num_features: number of input (and output) channels C.

    Shape:
        - Input: (B, C, H, W) with H >= 2 and W >= 2 (keys and values are max-pooled 2x2).
        - Output: (B, C, H, W).
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        self.num_features = num_features
        qk_channels = max(num_features // 8, 1)
        value_channels = max(num_features // 2, 1)
        self.query = nn.Conv2d(num_features, qk_channels, kernel_size=1, bias=False)
        self.key = nn.Conv2d(num_features, qk_channels, kernel_size=1, bias=False)
        self.value = nn.Conv2d(num_features, value_channels, kernel_size=1, bias=False)
        self.out = nn.Conv2d(value_channels, num_features, kernel_size=1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def extra_repr(self) -> str:
        """The channel count for ``repr``."""
        return f"{self.num_features}"

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f"SelfAttention2d expects a 4-D input (B, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"SelfAttention2d was built for {self.num_features} channels, got input with {x.shape[1]} channels "
                f"(shape {tuple(x.shape)})"
            )
        if x.shape[2] < 2 or x.shape[3] < 2:
            raise ValueError(
                f"SelfAttention2d max-pools keys and values 2x2, so H and W must be at least 2, got shape "
                f"{tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x + gamma * attention(x)``, same shape as ``x``."""
        self._check_input(x)
        b, c, h, w = x.shape
        d = self.query.out_channels
        dv = self.value.out_channels
        # The 1x1 convolutions as one matrix product on the flattened input (the parameters stay Conv2d weights):
        # on CPU this is far faster than three 1x1 convolutions, and it keeps the benchmark fair to the baseline.
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight]).view(2 * d + dv, c)
        projected = torch.matmul(weight, x.flatten(2))  # (B, C/8 + C/8 + C/2, N)
        query, key_value = projected.split([d, d + dv], dim=1)
        key_value = F.max_pool2d(key_value.reshape(b, d + dv, h, w), kernel_size=2, stride=2).flatten(2)
        key, value = key_value.split([d, dv], dim=1)  # (B, C/8, M), (B, C/2, M)
        attention = torch.softmax(torch.bmm(query.transpose(1, 2), key), dim=-1)  # (B, N, M)
        attended = torch.bmm(value, attention.transpose(1, 2))  # (B, C/2, N)
        out = torch.matmul(self.out.weight.view(c, dv), attended)  # (B, C, N)
        return x + self.gamma * out.view(b, c, h, w)
