"""``check``: a preflight of a configured ``fit`` (data, training speed and projection, evaluation, checkpoints,
logging) with a pass / warn / fail verdict; see :mod:`common.training.check.main` and docs/check.md."""

from common.training.check.main import TaskCheck, check_main, format_duration, split_options
from common.training.check.nodes import NodeFile
from common.training.check.report import Item, Report

__all__ = ["Item", "NodeFile", "Report", "TaskCheck", "check_main", "format_duration", "split_options"]
