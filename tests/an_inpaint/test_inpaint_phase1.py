"""Phase-1 options (PhaseSchedule.phase1_stages): the paper's reconstruction of both stages (default) or the
authors' coarse-only pretraining; DeepFill v1's no-pretraining is adversarial_start_step=0."""

import pytest
import torch
from inpaint_helpers import tiny_model

from an_inpaint.settings import PhaseSchedule


def _batch():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 1, 32, 32)
    mask[:, :, 8:24, 8:24] = 1
    return {"image": image, "mask": mask}


def _grads(model, adversarial_phase: bool):
    batch = _batch()
    if adversarial_phase:
        model._set_phase(2)
    out = model.generator(batch["image"], batch["mask"])
    loss, _ = model._generator_loss(out, batch, adversarial=False)
    loss.backward()
    coarse = [p.grad for n, p in model.generator.named_parameters() if n.startswith("coarse.")]
    rest = [p.grad for n, p in model.generator.named_parameters() if not n.startswith("coarse.")]
    touched = lambda grads: sum(float(g.abs().sum()) for g in grads if g is not None)  # noqa: E731
    return touched(coarse), touched(rest), float(loss.detach())


@pytest.mark.parametrize("orth_in_phase1", [False, True])
def test_coarse_pretraining_trains_the_coarse_stage_only(orth_in_phase1):
    schedule = PhaseSchedule(phase1_stages="coarse", orthogonal_in_phase1=orth_in_phase1)
    torch.manual_seed(0)
    coarse, rest, loss = _grads(tiny_model(schedule=schedule, orthogonal_weight=0.0), adversarial_phase=False)
    assert coarse > 0 and rest == 0
    torch.manual_seed(0)
    coarse_both, rest_both, loss_both = _grads(tiny_model(orthogonal_weight=0.0), adversarial_phase=False)  # default
    assert coarse_both > 0 and rest_both > 0 and loss_both > loss
    torch.manual_seed(0)
    model = tiny_model(schedule=schedule, orthogonal_weight=0.0)
    coarse2, rest2, loss2 = _grads(model, adversarial_phase=True)  # phase 2: both stages again
    assert rest2 > 0 and loss2 == pytest.approx(loss_both)


def test_phase1_stages_option():
    assert PhaseSchedule().phase1_stages == "both"
    with pytest.raises(ValueError, match="phase1_stages must be one of"):
        PhaseSchedule(phase1_stages="refined")
