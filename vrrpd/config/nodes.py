"""The syntax tree of a keepalived.conf: what the tokenizer hands the typed model.

A config is a sequence of :class:`Node`.  Each node is one keepalived "line":
a keyword, its arguments, and — when the keyword opens a ``{ ... }`` block —
its children.  Positions survive includes and ``$NAME`` expansion.
"""

from __future__ import annotations

from dataclasses import dataclass

from vrrpd.config.errors import Position


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # quotes removed for quoted tokens
    pos: Position
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class Node:
    keyword: Token
    args: tuple[Token, ...] = ()
    # None: the keyword has no block.  A tuple (possibly empty): it had `{ ... }`.
    children: tuple[Node, ...] | None = None
    # Where the closing brace of the block was (None when no block).
    end: Position | None = None

    @property
    def name(self) -> str:
        return self.keyword.text

    @property
    def pos(self) -> Position:
        return self.keyword.pos
