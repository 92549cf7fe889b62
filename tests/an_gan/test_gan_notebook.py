"""The sampling notebook runs end to end on a real (tiny) checkpoint (stripped outputs: tests/test_notebooks.py)."""

import json
from pathlib import Path

import matplotlib
import pytest

from an_gan.cli import cli_main

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "an_gan_samples.ipynb"


@pytest.mark.slow
def test_notebook_runs(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    runs = tmp_path / "runs" / "an_gan"
    cli_main([
        "fit", "--data.init_args.batch_size=8", "--model.g_ch=1", "--model.d_ch=1", "--model.z_dim=8",
        "--model.eval_num_samples=0", "--trainer.max_steps=4", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", f"--trainer.logger.init_args.save_dir={runs}",
        f"--trainer.default_root_dir={runs}", "--model.sample_every_n_steps=0",
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
