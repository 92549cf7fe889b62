"""The sampling notebook runs end to end on a real (tiny) checkpoint (stripped outputs: tests/test_notebooks.py)."""

import json
from pathlib import Path

import matplotlib
import pytest

from an_gan.cli import cli_main
from configs import config_path

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "an_gan_samples.ipynb"


@pytest.mark.slow
def test_notebook_runs(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    runs = tmp_path / "runs" / "an_gan"
    cli_main([
        "fit", "--config", str(config_path("an_gan", "demo")), "--data.init_args.batch_size=8",
        "--model.generator.init_args.ch=1", "--model.generator.init_args.z_dim=16",
        "--model.discriminator.init_args.ch=1", "--model.val_evaluator=null", "--model.pictures.every_n_steps=0",
        "--model.ema.standing_batch_size=8", "--trainer.max_steps=4", "--trainer.enable_progress_bar=false",
        f"--trainer.logger.init_args.save_dir={runs}", f"--trainer.default_root_dir={runs}",
    ])  # fmt: skip
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.setattr("matplotlib.pyplot.show", lambda: None)
    namespace: dict = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "notebook", "exec"), namespace)  # noqa: S102
    assert namespace["ckpt_path"].is_file()
    assert namespace["layouts"], "the demo generator has an AN layer: its layout must be shown"
    assert {"class_consistency", "cas"} <= namespace["quality"].keys()
