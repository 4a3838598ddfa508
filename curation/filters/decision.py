"""Per-document outcome of the heuristic filters and the accumulator rule sets report into."""

from __future__ import annotations

from dataclasses import dataclass, field

from curation.filters.config import Action


@dataclass(frozen=True)
class FilterResult:
    """Outcome for one document.

    ``removed_by``: first rule with action ``remove`` that fired (None = kept).
    ``flags``: rules with action ``flag`` that fired, in evaluation order (evaluation stops at
    the first removal, so a removed document lists only flags raised before it).
    ``text``: replacement text when C4 ``modify_text`` rewrote a kept document, else None.
    ``stats``: measured value of every rule that was evaluated, keyed by rule name.
    """

    removed_by: str | None
    flags: list[str] = field(default_factory=list)
    text: str | None = None
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return self.removed_by is None


class Decision:
    """Collects rule outcomes for one document while the rule sets run."""

    __slots__ = ("removed_by", "flags", "stats", "text")

    def __init__(self) -> None:
        self.removed_by: str | None = None
        self.flags: list[str] = []
        self.stats: dict[str, float] = {}
        self.text: str | None = None

    def record(self, name: str, action: Action, value: float, fired: bool) -> bool:
        """Record one evaluated rule; returns True when the document is now removed."""
        self.stats[name] = float(value)
        if fired:
            if action == "remove":
                self.removed_by = name
                return True
            if action == "flag":
                self.flags.append(name)
        return False

    def result(self) -> FilterResult:
        text = self.text if self.removed_by is None else None
        return FilterResult(self.removed_by, self.flags, text, self.stats)
