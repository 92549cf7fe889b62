"""Files a run needs on the disk of every node (the evaluators' Inception weights), looked for by every process of
``check``'s short fit and gathered, so that the report names each node that lacks one.

Under several devices or nodes ``check`` runs as ``fit`` does: Lightning's DDP launcher (``--trainer.devices N``)
starts the other local processes, and torchrun / SLURM start one per device on every node (docs/distributed.md, with
``check`` in place of ``fit``). Every process runs the whole check, and the short ``Trainer.fit`` joins them in one
process group. :class:`NodeFiles` is a callback of that fit: its ``setup`` runs on every rank before the module's
own ``setup`` loads the weights, looks for each file on the rank's own disk, and gathers the findings of all ranks
(``all_gather_object``) when a process group is initialised; with one process it is the local look. A configured
file (``required``) missing on any node stops the fit on every rank alike with one error naming the nodes, instead
of one rank failing alone while the others wait in a collective until the process-group timeout.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from common.training.check.report import Report

__all__ = ["NodeFile", "NodeFiles", "describe_nodes", "gather_found", "look_here"]


@dataclass(frozen=True)
class NodeFile:
    """A file every node needs.

    Args:
        name: the report item (``val_evaluator features``).
        label: what the file is (``Inception weights``).
        path: where this process looks (each process resolves its own: a cache under its ``TORCH_HOME``).
        required: True: the configured path must exist (missing: fail; the run stops at start-up); False: a cache
            that the run fills by downloading (missing: warn).
        absent: what happens when a cache is missing (for ``required=False``).
        fix: what to do, after the nodes to fix are named.
        section: the report section.
    """

    name: str
    label: str
    path: str
    required: bool
    absent: str = ""
    fix: str = ""
    section: str = "evaluation"


def look_here(files: list[NodeFile], node: int, rank: int) -> dict[str, Any]:
    """This process's findings: its node, host and rank, and for each file its path and whether it is there."""
    return {
        "node": node,
        "host": socket.gethostname(),
        "rank": rank,
        "paths": [f.path for f in files],
        "present": [Path(f.path).is_file() for f in files],
    }


def gather_found(mine: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process's findings (:func:`look_here`) when a process group is initialised; else ``[mine]``. A
    collective: every rank of the group must call it."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    found: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(found, mine)
    return found


def _ranks(ranks: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5``."""
    parts: list[str] = []
    for r in sorted(ranks):
        if parts and parts[-1][1] == r - 1:
            parts[-1] = (parts[-1][0], r)
        else:
            parts.append((r, r))
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in parts)


def describe_nodes(found: list[dict[str, Any]], alone: bool = False) -> str:
    """``node 1 (gpu-b, ranks 4-7)``; ``alone`` (the findings of the only process): ``this node (gpu-a)``."""
    if alone:
        return f"this node ({found[0]['host']})"
    nodes: dict[tuple[int, str], list[int]] = {}
    for f in found:
        nodes.setdefault((f["node"], f["host"]), []).append(f["rank"])
    return "; ".join(
        f"node {node} ({host}, rank{'s' if len(ranks) > 1 else ''} {_ranks(ranks)})"
        for (node, host), ranks in sorted(nodes.items())
    )


def _paths(found: list[dict[str, Any]], index: int) -> str:
    """The paths of file ``index`` that these processes looked at (they differ when TORCH_HOME does)."""
    return " / ".join(sorted({f["paths"][index] for f in found}))


def _missing(files: list[NodeFile], found: list[dict[str, Any]], index: int) -> str:
    """``<label> <path> not found on <nodes>``: the processes lacking file ``index``."""
    lacking = [f for f in found if not f["present"][index]]
    return f"{files[index].label} {_paths(lacking, index)} not found on {describe_nodes(lacking, len(found) == 1)}"


class NodeFiles(pl.Callback):
    """Looks for ``files`` on every rank at the start of ``fit`` (module docstring); ``found`` holds the gathered
    findings afterwards. A required file missing anywhere raises ``FileNotFoundError`` on every rank."""

    def __init__(self, files: list[NodeFile]) -> None:
        self.files = files
        self.found: list[dict[str, Any]] | None = None

    @classmethod
    def of_task(cls, report: Report, task: Any, cli: Any) -> NodeFiles:
        """The callback for ``task.node_files(cli)``; an error there is a fail line (and no files are looked for)."""
        try:
            return cls(task.node_files(cli))
        except Exception as error:
            fix = "the message names the problem"
            report.add("evaluation", "inputs", "fail", f"{type(error).__name__}: {error}", fix)
            return cls([])

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Look and gather once (the first ``fit`` / ``validate`` / ``test``), before the module's ``setup``."""
        if self.found is not None or not self.files:
            return
        self.found = gather_found(look_here(self.files, trainer.node_rank, trainer.global_rank))
        stops = [
            _missing(self.files, self.found, i)
            for i, f in enumerate(self.files)
            if f.required and not all(p["present"][i] for p in self.found)
        ]
        if stops:  # the same findings on every rank: every rank stops here together
            raise FileNotFoundError("; ".join(stops) + " (the run would stop at start-up there)")

    def report(self, report: Report, trainer: pl.Trainer, processes: int) -> None:
        """One item per file: pass when every process found it, else fail (required) / warn naming the nodes.
        When the fit never started (``found`` is None), this process looks alone and the line says so."""
        found = self.found
        alone = found is None
        if found is None:
            found = [look_here(self.files, trainer.node_rank, trainer.global_rank)]
        note = (
            f" (looked for by this process only: the fit that gathers all {processes} processes' findings did not "
            "start)"
            if alone and processes > 1
            else ""
        )
        for i, f in enumerate(self.files):
            if all(p["present"][i] for p in found):
                where = f" on every node: {describe_nodes(found)}" if len(found) > 1 else ""
                report.add(f.section, f.name, "pass", f"{f.label} {_paths(found, i)}{where}{note}", path=f.path)
                continue
            lacking = sorted({(p["node"], p["host"]) for p in found if not p["present"][i]})
            detail = _missing(self.files, found, i) + ("" if f.required else f": {f.absent}") + note
            fix = "; ".join(filter(None, [f"copy it to {', '.join(f'node {n} ({h})' for n, h in lacking)}", f.fix]))
            report.add(
                f.section,
                f.name,
                "fail" if f.required else "warn",
                detail,
                fix,
                path=f.path,
                missing_on=[{"node": n, "host": h} for n, h in lacking],
            )
