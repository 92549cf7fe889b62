"""The inpainting notebook runs end to end on a real (tiny) checkpoint (stripped outputs: tests/test_notebooks.py)."""

import json
from pathlib import Path

import matplotlib
import pytest

from an_inpaint.cli import cli_main

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "an_inpaint_demo.ipynb"
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "an_inpaint"


@pytest.mark.slow
def test_notebook_runs(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    runs = tmp_path / "runs" / "an_inpaint"
    cli_main([
        "fit", "--config", str(CONFIGS / "demo.yaml"), "--model.generator.init_args.cnum=4",
        "--model.generator.init_args.num_entities=4", "--model.global_critic.init_args.cnum=4",
        "--model.local_critic.init_args.cnum=4", "--data.init_args.num_eval_crops=1",
        "--data.init_args.photos={train: [coffee], val: [chelsea], test: [flower]}", "--trainer.max_steps=2",
        "--validate_before_fit=false", "--trainer.logger=false", f"--trainer.default_root_dir={runs}",
        "--trainer.enable_progress_bar=false",
    ])  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("matplotlib.pyplot.show", lambda: None)
    namespace: dict = {}
    for cell in json.loads(NOTEBOOK.read_text())["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "notebook", "exec"), namespace)  # noqa: S102
    assert Path(namespace["CKPT"]).is_file()
    assert namespace["panel"].shape[0] == 3
    assert namespace["caption"].endswith("telea | ground truth")
    assert namespace["layouts"], "the demo generator has an AN layer: its layout must be shown"
