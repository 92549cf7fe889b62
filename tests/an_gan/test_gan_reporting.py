"""``test`` says which checkpoint it scores and by which rule (:mod:`an_gan.reporting`): Table 1 reports the model at
the config's iteration count (``last.ckpt`` of the finished run); ``best-fid.ckpt`` goes beside it, labelled."""

import shutil

import pytest
import torch
from test_gan_module import _Digits4, _evaluator, _module, _trainer

from an_gan.reporting import RULE, checkpoint_label


@pytest.mark.parametrize(
    ("path", "g_steps", "max_steps", "n_dis", "label"),
    [
        ("RUN/checkpoints/last.ckpt", 880000, 1760000, 1, "final"),  # imagenet128.yaml: 880K iterations
        ("RUN/checkpoints/last.ckpt", 1000000, 6000000, 5, "final"),  # sngan.yaml: 1000K iterations, n_dis 5
        ("RUN/checkpoints/best-fid.ckpt", 880000, 1760000, 1, "best-val-fid"),  # chosen on val/fid, even if last
        ("RUN/checkpoints/best-fid.ckpt", 620000, 1760000, 1, "best-val-fid"),
        ("RUN/checkpoints/last.ckpt", 500000, 1760000, 1, "intermediate"),  # a run that has not finished
        ("RUN/checkpoints/last.ckpt", 500000, -1, 1, "unknown-length"),
        (None, 880000, 1760000, 1, "final"),  # the model in memory after fit
    ],
)
def test_labels(path, g_steps, max_steps, n_dis, label):
    got, sentence = checkpoint_label(path, g_steps, max_steps, n_dis)
    assert got == label
    assert f"G step {g_steps}" in sentence
    if label == "best-val-fid":
        assert "beside the final checkpoint's" in sentence
    if label == "intermediate":
        assert "not a Table 1 number" in sentence and "G step 880000" in sentence


def test_test_prints_the_checkpoint_and_the_rule(tmp_path, capsys):
    torch.manual_seed(0)
    data = _Digits4(batch_size=4)
    model = _module(test_evaluator=_evaluator(seed=1, reference_split="test", intra_fid_classes=None))
    trainer = _trainer(tmp_path, max_steps=4)  # 2 iterations of one D and one G step
    trainer.fit(model, datamodule=data)
    last = tmp_path / "last.ckpt"
    trainer.save_checkpoint(last)
    capsys.readouterr()

    trainer.test(model, datamodule=data, ckpt_path=str(last))
    out = capsys.readouterr().out
    assert "test: last.ckpt (G step 2 of 2) is the model at the config's iteration count" in out
    assert RULE in out and model.test_checkpoint["label"] == "final"

    best = tmp_path / "best-fid.ckpt"
    shutil.copy(last, best)
    trainer.test(model, datamodule=data, ckpt_path=str(best))
    assert "best-fid.ckpt (G step 2 of 2) is the best val-FID checkpoint" in capsys.readouterr().out

    longer = _trainer(tmp_path, max_steps=8)  # the run's config says 4 iterations: this checkpoint is halfway
    longer.test(model, datamodule=data, ckpt_path=str(last))
    assert "last.ckpt (G step 2 of 4) is an intermediate checkpoint" in capsys.readouterr().out
    assert model.test_checkpoint == {"checkpoint": str(last), "label": "intermediate", "g_step": 2}
