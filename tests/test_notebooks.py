"""Every notebook is stripped in git and has one ``parameters`` cell; the layer and efficiency notebooks run top to
bottom in a Jupyter kernel at their smallest settings (the task notebooks: tests/an_gan, tests/an_inpaint)."""

import json

import nbformat
import pytest
from notebook_helpers import NOTEBOOKS, parameters_cell_index, run_notebook

# Width-1 networks and batches of 8 for the runs the notebooks train (a few seconds each).
TINY_GAN_ARGS = [
    "--model.generator.init_args.ch=1", "--model.generator.init_args.z_dim=16",
    "--model.discriminator.init_args.ch=1", "--model.ema.standing_batch_size=8", "--data.init_args.batch_size=8",
]  # fmt: skip
EXPECTED = {
    "attentive_normalization.ipynb",
    "class_conditional_samples.ipynb",
    "efficiency.ipynb",
    "inpainting.ipynb",
}


def test_the_four_notebooks_exist():
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == EXPECTED


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_outputs_stripped(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: strip outputs"
    parameters_cell_index(nbformat.read(path, as_version=4))


def _no_runs_path(path):
    # Notebooks find runs through common.notebooks, never relative to Jupyter's working folder.
    for cell in nbformat.read(path, as_version=4).cells:
        assert '"../runs' not in cell.source and 'Path("runs' not in cell.source, path.name


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_no_working_folder_paths(path):
    _no_runs_path(path)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_attentive_normalization_notebook_runs(tmp_path):
    values = run_notebook(
        "attentive_normalization.ipynb",
        {
            "TRAIN_STEPS": 2, "VARIANT_STEPS": 2, "EXTRA_ARGS": TINY_GAN_ARGS, "RUNS": str(tmp_path / "runs"),
            "FIGURES": str(tmp_path / "figures"), "NUM_SAMPLES": 4, "TEMPERATURES": [0.02, 1.0],
        },
        ("CKPT.is_file()", "fig4", "by_tau", "list(by_variant)"),
    )  # fmt: skip
    assert values["CKPT.is_file()"]
    assert values["fig4"]["hard"]["ratio"] < 1.0  # argmax regions are never less coherent than the map
    low, high = values["by_tau"]["0.02"], values["by_tau"]["1.0"]
    assert low["entropy"] > high["entropy"]  # a larger temperature sharpens the layout
    assert values["list(by_variant)"] == ["n = 4", "n = 8", "n = 16", "n = 8, no self-sampling"]
    names = {p.name for p in (tmp_path / "figures").iterdir()}
    assert names == {"layout_maps.png", "temperature.png", "self_sampling.png", "variants.png"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_efficiency_notebook_runs(tmp_path):
    args = ["--sizes", "16", "32", "--repeats", "1", "--warmup", "0", "--memory", "in-process"]
    parameters = {"RESULTS": str(tmp_path / "bench"), "DEVICE": "cpu", "BENCHMARK_ARGS": args}
    values = run_notebook(
        "efficiency.ipynb", {**parameters, "FIGURES": str(tmp_path / "figures")}, ("sorted(records)", "rows")
    )
    assert values["sorted(records)"] == ["cpu"]
    assert {(r["layer"], r["size"]) for r in values["rows"]} == {(n, s) for n in ("in", "an", "sa") for s in (16, 32)}
    assert (tmp_path / "bench" / "layers_cpu.json").is_file()
    assert (tmp_path / "figures" / "efficiency_cpu.png").is_file()
