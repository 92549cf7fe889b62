"""The inpainting notebook runs in a Jupyter kernel on real (tiny) AN and CA checkpoints, found by attention kind
(stripped outputs and the parameters cell: tests/test_notebooks.py)."""

import pytest
from notebook_helpers import run_notebook

from an_inpaint.cli import cli_main
from configs import config_path


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_notebook_runs(tmp_path):
    runs = tmp_path / "runs" / "an_inpaint"
    layers = {  # the AN model (n = 4) and DeepFill's CA model
        "an": ["--model.generator.init_args.long_range.init_args.num_entities=4"],
        "contextual": ["--model.generator.init_args.long_range=null",
                       "--model.generator.init_args.contextual_attention=common.layers.ContextualAttention2d"],
    }  # fmt: skip
    for attention, args in layers.items():
        cli_main([
            "fit", "--config", str(config_path("an_inpaint", "photos")), "--model.generator.init_args.cnum=4", *args,
            "--model.global_critic.init_args.cnum=4", "--model.local_critic.init_args.cnum=4",
            "--data.init_args.num_eval_crops=1",
            "--data.init_args.photos={train: [coffee], val: [chelsea], test: [flower]}",
            "--trainer.max_steps=2", "--validate_before_fit=false", "--trainer.logger=false",
            f"--trainer.default_root_dir={runs / attention}", "--trainer.enable_progress_bar=false",
        ])  # fmt: skip
    values = run_notebook(
        "inpainting.ipynb",
        {"RUNS": str(runs), "PHOTOS": ["motorcycle_left"], "SIZE": 64, "FIGURES": str(tmp_path / "figures")},
        ("{k: str(c) for k, (c, _) in models.items()}", "{f'{k} {m}': v for (k, m), v in metrics.items()}"),
    )
    found = values["{k: str(c) for k, (c, _) in models.items()}"]
    assert found == {
        label: str(runs / a / "checkpoints" / "last.ckpt") for label, a in (("AN", "an"), ("CA", "contextual"))
    }
    metrics = values["{f'{k} {m}': v for (k, m), v in metrics.items()}"]
    assert set(metrics) == {
        f"{k} {m}" for k in ("rectangle", "free-form") for m in ("AN", "CA", "telea", "ns", "harmonic")
    }
    assert all(0 < row["ssim"] <= 1 and 0 <= row["mae"] < 1 and row["psnr"] > 5 for row in metrics.values())
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    assert {"inpainting_rectangle.png", "inpainting_free-form.png", "layout_AN_rectangle.png"} <= names
    assert not any("CA_" in n for n in names)  # CA has no AN layer: no layout drawn
