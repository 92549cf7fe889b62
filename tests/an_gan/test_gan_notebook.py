"""The class-conditional samples notebook runs in a Jupyter kernel on a real (tiny) checkpoint (stripped outputs and
the parameters cell: tests/test_notebooks.py)."""

import pytest
from notebook_helpers import run_notebook

from an_gan.cli import cli_main
from configs import config_path


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_notebook_runs(tmp_path):
    runs = tmp_path / "runs" / "an_gan"
    cli_main([
        "fit", "--config", str(config_path("an_gan", "demo")), "--data.init_args.batch_size=8",
        "--model.generator.init_args.ch=1", "--model.generator.init_args.z_dim=16",
        "--model.discriminator.init_args.ch=1", "--model.val_evaluator=null", "--model.pictures.every_n_steps=0",
        "--model.ema.standing_batch_size=8", "--trainer.max_steps=4", "--trainer.enable_progress_bar=false",
        "--trainer.logger=false", f"--trainer.default_root_dir={runs}",
    ])  # fmt: skip
    ckpt = runs / "checkpoints" / "last.ckpt"
    parameters = {"CKPT": str(ckpt), "PER_CLASS": 3, "PAIRS": [(0, 1), (12, 3)], "STEPS": 4}
    values = run_notebook(
        "class_conditional_samples.ipynb",
        {**parameters, "FIGURES": str(tmp_path / "figures")},
        ("list(grid.shape)", "ENTITY", "[list(layout.shape) for _, layout in paths.values()]", "sorted(quality)"),
    )
    assert values["list(grid.shape)"][0] == 3
    assert isinstance(values["ENTITY"], int)  # the demo generator has an AN layer: one entity is followed
    assert values["[list(layout.shape) for _, layout in paths.values()]"] == [[4, 8, 8, 8]] * 2  # the demo's 8x8 maps
    assert {"class_consistency", "cas"} <= set(values["sorted(quality)"])
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    assert names == {"class_grid.png", "interpolation.png", "layouts.png"}
