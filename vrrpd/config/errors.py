"""Positions and diagnostics shared by every stage of config parsing.

Every token carries a :class:`Position`; every problem found while reading a
config becomes a :class:`Diagnostic`.  Warnings are collected and parsing goes
on; errors are collected too, and :class:`ConfigError` is raised only when the
config cannot be used at all (keepalived's "cannot run").
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Position:
    """Where a token came from.  ``line`` and ``col`` are 1-based.

    ``via`` records the chain of includes / definition expansions that led
    here (outermost first), so a message about an expanded ``$NAME`` can name
    both the definition and its use.
    """

    file: str
    line: int
    col: int
    via: tuple[Position, ...] = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Severity(enum.IntEnum):
    WARNING = 1  # keepalived logs and goes on
    ERROR = 2  # keepalived logs, ignores the item, would still run (-t exit 5)
    FATAL = 3  # the config cannot be run at all (-t exit 4)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    severity: Severity
    pos: Position
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        text = f"{self.pos}: {self.severity.name.lower()}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text


class ConfigError(Exception):
    """The config cannot be used.  Carries every diagnostic found so far."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics) or "invalid config")


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """Return ``"did you mean 'x'?"`` for the closest candidate, or None."""
    import difflib  # only for an unknown keyword: not on every start-up

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
