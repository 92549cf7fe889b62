"""The Triton kernels of AttentiveNorm2d against the reference implementation: values, layouts and every gradient.

On a CUDA machine the kernels run on the GPU (``implementation="auto"`` selects them), in float32 and bfloat16.
Without a GPU the same kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, which must be set before
``triton`` is imported, hence a subprocess) on CPU tensors.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.layers.attentive_norm import AttentiveNorm2d

ROOT = Path(__file__).resolve().parents[2]

# (train, stats, affine, value_projection, channels_last, C, H, W): padding of C and n, several pixel tiles per
# program (H*W > BLOCK) and several programs per sample (H*W > 1024), a partial last tile, both stats, the value
# branch, strided (channels_last) inputs.
CASES = [
    (True, "instance", True, False, False, 8, 40, 40),
    (False, "instance", False, False, True, 20, 9, 7),
    (True, "batch", True, True, False, 8, 12, 11),
    (False, "batch", True, False, False, 32, 18, 16),
    (True, "instance", True, True, True, 20, 10, 10),
]


def _run(layer, impl, x, positions, grad_out):
    layer.implementation = impl
    layer.zero_grad(set_to_none=True)
    layer.sample_positions = lambda batch, num_pooled, device: positions.to(device)
    x = x.detach().clone().requires_grad_(True)
    y = layer(x)
    del layer.sample_positions
    grads = torch.autograd.grad(y, [x, *layer.parameters()], grad_out, allow_unused=True)
    return y, layer.layout, grads


def check_triton_matches_reference(device: str, dtype: torch.dtype, cases=CASES) -> int:
    """Compare implementation="triton" with "reference" on ``device`` in ``dtype``; returns the cases checked."""
    tol = {torch.float32: 2e-5, torch.bfloat16: 2e-2}[dtype]
    for k, (train, stats, affine, value, channels_last, c, h, w) in enumerate(cases):
        torch.manual_seed(k)
        layer = AttentiveNorm2d(c, num_entities=4, stats=stats, affine=affine, value_projection=value, temperature=0.5)
        with torch.no_grad():
            for p in layer.parameters():
                p.copy_(torch.randn_like(p) * 0.3)
        layer = layer.to(device).train(train)
        x = (torch.randn(2, c, h, w) * 2.0 + 1.0).to(device, dtype)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        positions = torch.rand(2, (h // 2) * (w // 2)).topk(4, dim=1).indices
        grad_out = torch.randn_like(x)
        state = {key: v.clone() for key, v in layer.state_dict().items()}
        ref = _run(layer, "reference", x, positions, grad_out)
        ref_state = {key: v.clone() for key, v in layer.state_dict().items()}
        layer.load_state_dict(state)
        tri = _run(layer, "triton", x, positions, grad_out)
        assert tri[0].dtype == dtype and tri[1].dtype == torch.float32
        names = ["output", "layout", "x"] + [name for name, _ in layer.named_parameters()]
        for name, a, b in zip(names, [tri[0], tri[1], *tri[2]], [ref[0], ref[1], *ref[2]], strict=True):
            assert (a is None) == (b is None), name
            if b is not None:  # error relative to the tensor's scale (some gradients are ~0, e.g. the value bias)
                err = (a.float() - b.float()).abs().max().item() / max(1.0, b.float().abs().max().item())
                assert err < tol, (k, name, err)
        for key, v in layer.state_dict().items():
            torch.testing.assert_close(v, ref_state[key], rtol=tol, atol=tol)
    return len(cases)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_on_gpu(dtype):
    # "auto" keeps to the reference on CUDA (the kernels are opt-in until they have passed here)
    big = torch.empty(1, 32, 256, 256, device="cuda")
    assert AttentiveNorm2d(32).cuda()._resolve_implementation(big) == "reference"
    assert AttentiveNorm2d(32, implementation="triton").cuda()._resolve_implementation(big) == "triton"
    assert check_triton_matches_reference("cuda", dtype) == len(CASES)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_triton_kernels_in_interpreter(dtype):
    pytest.importorskip("triton")
    code = (
        "import sys, torch; sys.path.insert(0, 'tests/common'); "
        "from test_attentive_norm_triton import check_triton_matches_reference as check; "
        f"print('checked', check('cpu', torch.{dtype}))"
    )
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"checked {len(CASES)}" in proc.stdout


def test_triton_needs_cuda_or_the_interpreter():
    layer = AttentiveNorm2d(8, num_entities=4, implementation="triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValueError, match="implementation='triton' needs a CUDA tensor"):
            layer(torch.randn(1, 8, 8, 8))
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        layer(torch.randn(1, 8, 8, 8, dtype=torch.float64))
    auto = AttentiveNorm2d(8, num_entities=4)
    big = torch.empty(1, 8, 256, 512)  # FUSED_MIN_ELEMENTS (2^20)
    assert auto._resolve_implementation(big) == "fused"  # CPU: never the Triton kernels unless asked for
