"""Weights & Biases tracking that never prompts or hangs, and resumes the same run from a checkpoint."""

from __future__ import annotations

import netrc
import os
import secrets
import socket
import string
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_info

__all__ = ["ANWandbLogger", "wandb_offline_reason"]

_OFFLINE_MODES = {"offline", "dryrun", "disabled"}


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc(os.environ.get("NETRC")).authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return auth is not None


def _reachable(host: str = "api.wandb.ai", port: int = 443, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _new_run_id() -> str:
    """8 random lowercase letters/digits, like W&B's ids; independent of the seeded global RNGs."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def wandb_offline_reason() -> str | None:
    """Why W&B must run offline here (``None`` when an online run can start without prompting)."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in _OFFLINE_MODES:
        return f"WANDB_MODE={mode}"
    if not _has_credentials():
        return "no W&B credentials (set WANDB_API_KEY or run `wandb login`)"
    if not _reachable():
        return "api.wandb.ai is not reachable"
    return None


class ANWandbLogger(WandbLogger):
    """Lightning's :class:`~pytorch_lightning.loggers.WandbLogger` with safe defaults for this project.

    * ``offline=None`` (default) decides by itself: online only with credentials and network, otherwise
      offline without prompting, and it prints how to upload the run later with ``wandb sync``.
    * A run id is generated up front, so the run folder ``<save_dir>/<project>/<id>`` (checkpoints, images,
      config) is known before the first step, and :class:`common.training.callbacks.WandbResume` can store it in
      checkpoints so that ``fit --ckpt_path ...`` continues the same W&B run.

    Args:
        project: W&B project.
        name: display name of the run.
        save_dir: root folder of the runs.
        offline: force offline (``True``) or online (``False``); ``None`` decides automatically.
        id: run id to create or resume (generated when ``None``).
        log_model: upload checkpoints as W&B artifacts (see WandbLogger).
        **kwargs: passed to ``wandb.init`` through WandbLogger (``entity``, ``tags``, ``group``, ...).
    """

    def __init__(
        self,
        project: str = "attentive-norm",
        name: str | None = None,
        save_dir: str = "runs",
        offline: bool | None = None,
        id: str | None = None,
        log_model: bool = False,
        **kwargs: Any,
    ) -> None:
        import wandb

        reason = wandb_offline_reason() if offline is None else ("offline=True" if offline else None)
        self.offline_reason = reason
        if kwargs.get("resume") is None:
            kwargs["resume"] = "allow"
        if kwargs.get("settings") is None:
            kwargs["settings"] = wandb.Settings(init_timeout=60, silent=True)
        super().__init__(
            name=name,
            save_dir=save_dir,
            offline=reason is not None,
            id=id or _new_run_id(),
            project=project,
            log_model=log_model,
            **kwargs,
        )
        # wandb resolves a relative ``dir`` against the working folder of the first run in the process; pin it.
        self._wandb_init["dir"] = str(Path(save_dir).resolve())
        if reason is not None:
            rank_zero_info(
                f"W&B runs offline ({reason}); run files go to {Path(save_dir) / 'wandb'}. "
                f"Upload later with: wandb sync {Path(save_dir) / 'wandb'}/offline-run-*"
            )

    @property
    def experiment(self) -> Any:
        """The W&B run of this logger. A different run still open in this process (an earlier ``fit`` in the same
        Python session) is finished first: Lightning's logger would otherwise log into that old run."""
        if self._experiment is None:
            import wandb

            if wandb.run is not None and wandb.run.id != self._id:
                wandb.finish()
            Path(self._wandb_init["dir"]).mkdir(parents=True, exist_ok=True)
        return super().experiment

    @property
    def run_dir(self) -> Path:
        """``<save_dir>/<project>/<run id>``: where checkpoints, images and the config of this run go."""
        return Path(self.save_dir or ".") / str(self.name) / str(self.version)

    def resume_run(self, run_id: str) -> None:
        """Continue the W&B run ``run_id`` (must be called before the experiment starts)."""
        if self._experiment is not None:
            raise RuntimeError("resume_run must be called before the W&B experiment is created")
        self._id = run_id
        self._wandb_init["id"] = run_id
        self._wandb_init["resume"] = "allow"
