"""``check`` looks for the files every node needs (the evaluators' Inception weights) in every process and gathers the
findings: a file missing on one node is a line naming that node, on every rank (two gloo processes standing for two
nodes, each with its own folder as its disk), and a configured file missing anywhere stops the fit on every rank."""

import datetime
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.multiprocessing as mp
from run_helpers import run_task

from common.training.check import NodeFile, Report
from common.training.check.nodes import NodeFiles, describe_nodes


def _files(disk: Path) -> list[NodeFile]:
    """Three files on this process's 'disk': on both nodes, configured but only on node 0, a cache only on node 0."""
    return [
        NodeFile("everywhere", "Weights A", str(disk / "a.pth"), required=True, fix="copy A"),
        NodeFile("configured", "Weights B", str(disk / "b.pth"), required=True, fix="or give --b PATH"),
        NodeFile("cached", "Weights C", str(disk / "c.pth"), required=False, absent="downloaded at start-up"),
    ]


def _node(rank: int, world: int, root: str) -> None:
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{root}/init", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        disk = Path(root) / f"node{rank}"
        disk.mkdir()
        (disk / "a.pth").write_bytes(b"A")
        if rank == 0:
            (disk / "b.pth").write_bytes(b"B")
            (disk / "c.pth").write_bytes(b"C")
        torch.distributed.barrier()
        trainer = SimpleNamespace(node_rank=rank, global_rank=rank)  # one process per node
        nodes, stopped = NodeFiles(_files(disk)), ""
        try:
            nodes.setup(trainer, None, "fit")
        except FileNotFoundError as error:
            stopped = str(error)
        report = Report()
        nodes.report(report, trainer, processes=world)
        items = [{"name": i.name, "status": i.status, "detail": i.detail, "fix": i.fix} for i in report.items]
        (Path(root) / f"rank{rank}.json").write_text(json.dumps({"stopped": stopped, "items": items}))
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.timeout(120)
def test_a_file_missing_on_one_node_is_named_on_every_rank(tmp_path):
    mp.spawn(_node, args=(2, str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # the same verdict on every rank
    found = ranks[0]
    # the configured file missing on node 1 stops the fit on both ranks, naming node 1 and its path only
    assert "Weights B" in found["stopped"] and "node 1" in found["stopped"] and "node 0" not in found["stopped"]
    assert str(tmp_path / "node1" / "b.pth") in found["stopped"]
    a, b, c = found["items"]
    assert a["status"] == "pass" and "on every node" in a["detail"] and "node 0" in a["detail"]
    assert "node 1" in a["detail"]
    assert b["status"] == "fail" and "not found on node 1" in b["detail"] and "node 0" not in b["detail"]
    assert b["fix"].startswith("copy it to node 1 (") and "--b PATH" in b["fix"]
    assert c["status"] == "warn" and "not found on node 1" in c["detail"] and "downloaded at start-up" in c["detail"]


def test_one_process_looks_alone_and_says_so_when_the_fit_did_not_start(tmp_path):
    (tmp_path / "a.pth").write_bytes(b"A")
    trainer = SimpleNamespace(node_rank=0, global_rank=0)
    report = Report()
    NodeFiles(_files(tmp_path)).report(report, trainer, processes=8)  # setup never ran: no gathered findings
    a, b, c = report.items
    assert a.status == "pass" and "this process only" in a.detail
    assert b.status == "fail" and "not found on this node" in b.detail
    assert c.status == "warn"
    nodes = NodeFiles(_files(tmp_path))
    with pytest.raises(FileNotFoundError, match="Weights B .* not found on this node"):
        nodes.setup(trainer, None, "fit")  # one process: the local look, and a configured file missing stops it
    assert describe_nodes([{"node": 0, "host": "h", "rank": r} for r in (0, 1, 2, 5)]) == "node 0 (h, ranks 0-2, 5)"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_check_under_two_ddp_processes_stops_both_on_missing_weights(tmp_path):
    """``python -m an_gan check --trainer.devices 2``: Lightning's launcher starts rank 1, which runs the check too;
    the short fit gathers both ranks' findings, both stop together (no rank waits in a collective) and exit 1."""
    missing = tmp_path / "nowhere" / "weights-inception.pth"
    args = ["check", "--model.val_evaluator.init_args.feature_extractor=null",
            f"--model.val_evaluator.init_args.inception_weights={missing}", "--trainer.devices=2",
            "--trainer.strategy=ddp", "--trainer.accelerator=cpu", "--check.warmup=1", "--check.batches=2",
            "--check.loader_batches=2", "--check.decode_per_split=8"]  # fmt: skip
    done = run_task("an_gan", args, tmp_path / "run", timeout=240)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("verdict: FAIL") == 2  # each rank prints its verdict
    items = {i["name"]: i for i in json.loads((tmp_path / "run/runs/an_gan/check/check.json").read_text())["items"]}
    for name in ("iterations", "val_evaluator features"):  # the stop of the fit, and the evaluation's line
        assert items[name]["status"] == "fail"
        assert f"{missing} not found on node 0 (" in items[name]["detail"] and ", ranks 0-1)" in items[name]["detail"]
