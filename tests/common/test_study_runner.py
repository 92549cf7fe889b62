"""common.training.study: the study's plan and fit commands, bad specs, and a study that crashes and resumes (a
stand-in task, ``tests/common/study_fake_task``, so that no network is trained)."""

import json
from pathlib import Path

import pytest
import torch

from common.training.study import StudyError, StudyRunner, StudySpec, fit_state

pytestmark = pytest.mark.timeout(120)

HERE = Path(__file__).resolve().parent


def _spec(tmp_path, **changes):
    base = tmp_path / "base.yaml"
    extra = tmp_path / "extra.yaml"
    for path in (base, extra):
        if not path.exists():
            path.write_text(f"# {path.name}\n")
    options = {
        "task": "study_fake_task",
        "arms": {"AN": (base,), "CA": (base, extra)},
        "seeds": (0, 1),
        "max_steps": 4,
        "out_dir": tmp_path / "study",
        "extra_args": ("--trainer.val_check_interval=100",),
        "arm_args": {"CA": ("--model.x=1",)},
    }
    options.update(changes)
    return StudySpec(**options)


def test_units_run_seed_by_seed_with_the_same_budget(tmp_path):
    spec = _spec(tmp_path)
    units = spec.units()
    assert [(u.arm, u.seed, u.index, u.total) for u in units] == [
        ("AN", 0, 1, 4), ("CA", 0, 2, 4), ("AN", 1, 3, 4), ("CA", 1, 4, 4),
    ]  # fmt: skip
    assert units[3].folder == tmp_path / "study" / "CA" / "seed1"
    args = spec.fit_args(units[3], resume=False)
    assert args[:5] == ["fit", "--config", str(tmp_path / "base.yaml"), "--config", str(tmp_path / "extra.yaml")]
    assert args[5:7] == ["--trainer.val_check_interval=100", "--model.x=1"]  # study-wide, then the arm's
    assert "--seed_everything=1" in args and "--trainer.max_steps=4" in args and "--trainer.logger=false" in args
    assert f"--trainer.default_root_dir={units[3].folder.resolve()}" in args and "--ckpt_path=last" not in args
    assert spec.fit_args(units[0], resume=True)[-1] == "--ckpt_path=last"


def test_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="config file .*nope.yaml does not exist"):
        _spec(tmp_path, arms={"AN": (tmp_path / "nope.yaml",)})
    with pytest.raises(ValueError, match="--trainer.max_steps is set by the study"):
        _spec(tmp_path, extra_args=("--trainer.max_steps=9",))
    with pytest.raises(ValueError, match="arm_args of CA: --seed_everything is set by the study"):
        _spec(tmp_path, arm_args={"CA": ("--seed_everything", "3")})
    with pytest.raises(ValueError, match="arm_args names arm\\(s\\) \\['XX'\\]"):
        _spec(tmp_path, arm_args={"XX": ("--a=1",)})
    with pytest.raises(ValueError, match="arm name 'A/N'"):
        _spec(tmp_path, arms={"A/N": (tmp_path / "base.yaml",)})
    with pytest.raises(ValueError, match="seeds must differ"):
        _spec(tmp_path, seeds=(1, 1))
    with pytest.raises(ValueError, match="max_steps must be >= 1"):
        _spec(tmp_path, max_steps=0)
    with pytest.raises(ValueError, match="at least one arm"):
        _spec(tmp_path, arms={}, arm_args={})


def test_fit_state_reads_the_checkpoints(tmp_path):
    unit = _spec(tmp_path).units()[0]
    assert fit_state(unit, 4) == ("new", None)
    unit.run.checkpoints.mkdir(parents=True)
    torch.save({"global_step": 0}, unit.run.checkpoints / "on_exception.ckpt")
    assert fit_state(unit, 4) == ("resume", None)
    torch.save({"global_step": 3}, unit.run.last_checkpoint)
    assert fit_state(unit, 4) == ("resume", 3)
    assert fit_state(unit, 3) == ("done", 3)


def _evaluate(unit, run):
    step = torch.load(run.last_checkpoint, weights_only=True)["global_step"]
    return {"per_image": {"img0": {"psnr": float(unit.seed)}}, "step": step}


def _calls(unit):
    return [json.loads(line) for line in (unit.folder / "calls.jsonl").read_text().splitlines()]


@pytest.mark.slow  # 3 subprocesses that import torch: ~10 s on 2 busy cores
def test_a_crashed_study_resumes_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("STUDY_FAKE_CRASH", "CA/seed0")
    spec = _spec(tmp_path, seeds=(0,))
    an0, ca0 = spec.units()
    with pytest.raises(
        StudyError, match=r"(?s)CA seed 0: `fit` failed with exit status 1.*fake fit of CA/seed0: step 1"
    ):
        StudyRunner(spec, quiet=True).run(_evaluate)
    assert an0.scores.is_file() and not ca0.scores.is_file()
    monkeypatch.delenv("STUDY_FAKE_CRASH")
    results = StudyRunner(spec, quiet=True).run(_evaluate)
    assert [(u.arm, u.seed, r["step"]) for u, r in results.items()] == [("AN", 0, 4), ("CA", 0, 4)]
    assert len(_calls(an0)) == 1  # finished before the crash: not trained again
    first, resumed = _calls(ca0)
    assert "--ckpt_path=last" not in first and resumed[-1] == "--ckpt_path=last"
    # the units' definitions are recorded: another budget for the same folder is an error, not a silent mix
    with pytest.raises(StudyError, match="another study definition \\(changed: max_steps"):
        StudyRunner(_spec(tmp_path, seeds=(0,), max_steps=5), quiet=True).run(_evaluate)
    (tmp_path / "extra.yaml").write_text("# edited\n")
    with pytest.raises(StudyError, match="CA seed 0 of another study definition \\(changed: config_sha256"):
        StudyRunner(spec, quiet=True).run(_evaluate)


def test_a_fit_that_stops_short_of_the_budget_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(HERE))
    monkeypatch.setenv("STUDY_FAKE_SHORT", "AN/seed0")
    spec = _spec(tmp_path, arms={"AN": (tmp_path / "base.yaml",)}, arm_args={}, seeds=(0,))
    (tmp_path / "base.yaml").write_text("{}\n")
    with pytest.raises(StudyError, match="AN seed 0: fit ended at step 3 of 4"):
        StudyRunner(spec, quiet=True).run(_evaluate)
