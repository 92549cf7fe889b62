"""The verdict of ``check``: one :class:`Item` per thing checked (pass / warn / fail, what was found, the fix), printed
as a table and written as JSON; the exit status is non-zero when a fail would stop the run."""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["STATUSES", "Item", "Report", "format_duration"]

Status = Literal["pass", "warn", "fail"]
STATUSES: tuple[str, ...] = ("pass", "warn", "fail")
#: the order of the sections in the table and the JSON file
SECTIONS: tuple[str, ...] = ("setup", "data", "training", "evaluation", "checkpoints", "logging")


@dataclass
class Item:
    """One line of the verdict.

    Args:
        section: ``data``, ``training``, ``evaluation``, ``checkpoints`` or ``logging``.
        name: what was checked (short).
        status: ``pass``, ``warn`` or ``fail``.
        detail: what was found (numbers included).
        fix: what to do about a warn or a fail.
        values: the measured numbers, for the JSON file.
    """

    section: str
    name: str
    status: Status
    detail: str
    fix: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass
class Report:
    """All items of one ``check`` run, in order, plus the command's context (task, config, devices)."""

    context: dict[str, Any] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)

    def add(self, section: str, name: str, status: Status, detail: str, fix: str = "", **values: Any) -> Item:
        """Append an item and return it."""
        item = Item(section, name, status, detail, fix, values)
        self.items.append(item)
        return item

    def ordered(self) -> list[Item]:
        """The items by section (:data:`SECTIONS`), in the order they were added within a section."""
        rank = {name: i for i, name in enumerate(SECTIONS)}
        return sorted(self.items, key=lambda item: rank.get(item.section, len(rank)))

    def counts(self) -> dict[str, int]:
        """How many items have each status."""
        return {s: sum(item.status == s for item in self.items) for s in STATUSES}

    @property
    def verdict(self) -> str:
        """``fail`` if any item failed, else ``warn`` if any warned, else ``pass``."""
        counts = self.counts()
        return "fail" if counts["fail"] else "warn" if counts["warn"] else "pass"

    @property
    def exit_status(self) -> int:
        """1 when a fail would stop the run, else 0."""
        return 1 if self.verdict == "fail" else 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON document: context, verdict, counts and every item."""
        return {
            **self.context,
            "verdict": self.verdict,
            "counts": self.counts(),
            "items": [asdict(i) for i in self.ordered()],
        }

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path`` (parents created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        return path

    def format_table(self, width: int = 118) -> str:
        """A text table: section, item, status, detail (the fix on the next line of a warn or fail)."""
        sec = max([len("section"), *(len(i.section) for i in self.items)])
        name = max([len("item"), *(len(i.name) for i in self.items)])
        indent = sec + name + 4 + 6
        wrap = max(40, width - indent)
        lines = [f"{'section':<{sec}}  {'item':<{name}}  status  detail", "-" * width]
        keep = {"break_long_words": False, "break_on_hyphens": False}  # paths stay whole (copy-pasteable)
        for i in self.ordered():
            body = textwrap.wrap(i.detail, wrap, **keep) or [""]
            if i.fix and i.status != "pass":
                body += textwrap.wrap("fix: " + i.fix, wrap, **keep)
            lines.append(f"{i.section:<{sec}}  {i.name:<{name}}  {i.status.upper():<6}  {body[0]}")
            lines += [" " * (indent + 2) + line for line in body[1:]]
        counts = self.counts()
        lines.append("-" * width)
        lines.append(
            f"verdict: {self.verdict.upper()} ({counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail)"
        )
        return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """``1d 02:03:04`` / ``02:03:04`` / ``3:04``."""
    if not math.isfinite(seconds):
        return "unknown"
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}" if hours or days else f"{minutes}:{secs:02d}"
    return f"{days}d {clock}" if days else clock
