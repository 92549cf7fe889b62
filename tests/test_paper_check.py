"""``benchmarks/gpu_check.sh`` runs ``check`` of both paper configs on CUDA over synthetic trees
(``benchmarks.synthetic_trees``). Here: the trees have the data sets' exact layouts, and the script's own commands,
read from the script, run on the CPU (with a small batch and short evaluations: the paper's batch of 256 at 128 px
takes minutes per step on a CPU), so the GPU step is not an untested path."""

import json
import shlex
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.synthetic_trees import PARIS_EVAL_SIZE, PARIS_TRAIN_SIZE, main, write_imagenet_tree, write_paris_tree
from common.data.imagenet import ImageNetDataModule
from common.data.inpainting import ParisStreetViewDataModule

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--check.warmup", "1", "--check.batches", "2", "--check.decode_per_split", "8", "--check.loader_batches", "2"]
#: the CPU's stand-ins for what a GPU takes in seconds: the batch, the evaluators' batch, the EMA's standing pass
CPU = {
    "an_gan": ["--trainer.accelerator", "cpu", "--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0",
               "--model.val_evaluator.init_args.batch_size", "4", "--model.test_evaluator.init_args.batch_size", "4",
               "--model.ema.standing_batches", "1", "--model.ema.standing_batch_size", "2"],
    "an_inpaint": ["--trainer.accelerator", "cpu", "--data.init_args.batch_size", "2", "--data.init_args.val_images",
                   "2", "--data.init_args.num_workers", "0"],
}  # fmt: skip


def script_steps() -> dict[str, list[str]]:
    """``{step name: its command}`` of every ``step`` line of ``benchmarks/gpu_check.sh`` (continuations joined)."""
    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text().replace("\\\n", " ")
    return {(t := shlex.split(line))[1]: t[3:] for line in text.splitlines() if line.startswith("step ")}


def check_args(step: str, scratch: Path) -> tuple[str, list[str]]:
    """The task and the arguments of the script's check ``step``, its scratch folder and Inception weights filled in."""
    command = script_steps()[step]
    assert command[:2] == ["$PY", "-m"] and command[3] == "check", command
    inception = scratch / "inception-random.pth"
    args = []
    for arg in command[4:]:
        if arg.startswith("${INCEPTION[@]"):
            if inception.is_file():
                for evaluator in ("val_evaluator", "test_evaluator"):
                    args += [f"--model.{evaluator}.init_args.inception_weights", str(inception)]
        else:
            args.append(arg.replace("$SCRATCH", str(scratch)))
    return command[2], args


def test_the_trees_have_the_data_sets_layouts(tmp_path):
    imagenet = write_imagenet_tree(tmp_path / "imagenet", classes=3, train_per_class=2, val_per_class=1)
    assert sorted(p.name for p in (imagenet / "train").iterdir()) == ["n10000000", "n10000001", "n10000002"]
    assert len(list(imagenet.glob("train/*/*.JPEG"))) == 6 and len(list(imagenet.glob("val/*/*.JPEG"))) == 3
    data = ImageNetDataModule(root=str(imagenet), resolution=16, batch_size=2, num_workers=0)
    assert data.num_classes == 3 and len(data.dataset("train")) == 6 and len(data.dataset("val")) == 3
    assert data.dataset("train")[0]["image"].shape == (3, 16, 16)

    paris = write_paris_tree(tmp_path / "paris", train=5, test=3)
    with Image.open(next(paris.glob("paris_train_original/*.JPG"))) as image:
        assert image.size == PARIS_TRAIN_SIZE and image.format == "JPEG"
    with Image.open(paris / "paris_eval_gt" / "003_im.png") as image:
        assert image.size == PARIS_EVAL_SIZE and image.format == "PNG"
    inpaint = ParisStreetViewDataModule(root=str(paris), resolution=64, batch_size=2, val_images=2, num_workers=0)
    inpaint.setup_splits(None)
    assert (len(inpaint.train_set), len(inpaint.val_set), len(inpaint.test_set)) == (3, 2, 3)
    with pytest.raises(ValueError, match="classes must be at least 2"):
        write_imagenet_tree(tmp_path / "bad", classes=1)


def test_the_gpu_script_checks_both_paper_configs_on_the_trees(tmp_path):
    steps = script_steps()
    assert steps["synthetic_trees"][:3] == ["$PY", "-m", "benchmarks.synthetic_trees"]
    for step, task, config in (("gan_check", "an_gan", "imagenet128"), ("inpaint_check", "an_inpaint", "paris256")):
        found, args = check_args(step, tmp_path)
        assert found == task
        assert args[args.index("--config") + 1] == f"configs/{task}/{config}.yaml"
        assert args[args.index("--trainer.accelerator") + 1] == "gpu"
        assert Path(args[args.index("--data.init_args.root") + 1]).parent == tmp_path


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Path:
    """The script's trees (its own command), with one image per class and a few Paris images."""
    scratch = tmp_path_factory.mktemp("scratch")
    command = script_steps()["synthetic_trees"][3:]
    small = ["--train-per-class", "1", "--paris-train", "8", "--paris-test", "3"]  # later flags win
    main([arg.replace("$SCRATCH", str(scratch)) for arg in command] + small)
    return scratch


def _check(step: str, scratch: Path, monkeypatch) -> dict:
    monkeypatch.chdir(scratch)  # what the run writes by default stays out of the checkout
    task, args = check_args(step, scratch)
    args = [str(ROOT / arg) if arg.startswith("configs/") else arg for arg in args]  # the script runs from ROOT
    if task == "an_gan":
        from an_gan.cli import cli_main
    else:
        from an_inpaint.cli import cli_main
    report = cli_main(["check", *args, *CPU[task], *QUICK])
    assert report.exit_status == 0, report.format_table()
    root = Path(args[args.index("--trainer.default_root_dir") + 1])
    written = json.loads((root / "check" / "check.json").read_text())  # what the script keeps as its verdict
    assert written["verdict"] == report.verdict
    return {(i.section, i.name): i for i in report.items}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_gan_paper_check_of_the_script_runs_on_the_cpu(trees, monkeypatch):
    items = _check("gan_check", trees, monkeypatch)
    assert items["data", "counts"].status == "warn" and items["data", "counts"].values["counts"]["train"] == 1000
    assert items["training", "iterations"].status == "pass"
    assert items["checkpoints", "write + reload"].status == "pass"
    for name in ("val_evaluator features", "test_evaluator features"):
        assert items["evaluation", name].status == "pass"  # the real weights, or the tree writer's random ones
    assert items["evaluation", "one validate"].values["estimated"]  # 50,000 images: estimated from one batch


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_inpainting_paper_check_of_the_script_runs_on_the_cpu(trees, monkeypatch):
    items = _check("inpaint_check", trees, monkeypatch)
    assert items["data", "counts"].values["counts"] == {"train": 6, "val": 2, "test": 3}
    assert items["training", "iterations"].status == "pass"
    assert items["evaluation", "one validate"].status == "pass" and items["evaluation", "one test"].status == "pass"
