"""Fast constructors for the frozen value types the config reader makes by the hundred thousand.

A frozen dataclass's generated ``__init__`` sets each field through ``object.__setattr__``:
about 2.4 us per :class:`Position` on the test machine, four times the cost of writing the
slots directly.  A 90k-line config makes ~200k tokens and positions and ~90k nodes, so the
reader builds them here by writing the slot descriptors.  The objects are ordinary instances
(equal, hashable, immutable afterwards); the field lists are checked at import so a new field
cannot be left unset silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterator
from typing import Any

from vrrpd.config.errors import Position
from vrrpd.config.nodes import Node, Token

for _cls, _names in ((Position, ("file", "line", "col", "via")),
                     (Token, ("text", "pos", "quoted")),
                     (Node, ("keyword", "args", "children", "end"))):
    if tuple(f.name for f in dataclasses.fields(_cls)) != _names:  # pragma: no cover
        raise ImportError(f"vrrpd.config.fastnew is out of date with {_cls.__name__}")

_new = object.__new__


def _setters(cls: type, names: tuple[str, ...]) -> list[Callable[[object, Any], None]]:
    """The slot descriptors' ``__set__`` (they bypass the frozen ``__setattr__``)."""
    return [cls.__dict__[name].__set__ for name in names]


_p_file, _p_line, _p_col, _p_via = _setters(Position, ("file", "line", "col", "via"))
_t_text, _t_pos, _t_quoted = _setters(Token, ("text", "pos", "quoted"))
_n_kw, _n_args, _n_children, _n_end = _setters(Node, ("keyword", "args", "children", "end"))
_NO_VIA: tuple[Position, ...] = ()


def new_position(file: str, line: int, col: int) -> Position:
    """``Position(file, line, col)``, faster."""
    p = _new(Position)
    _p_file(p, file)
    _p_line(p, line)
    _p_col(p, col)
    _p_via(p, _NO_VIA)
    return p


def new_token(text: str, pos: Position, quoted: bool = False) -> Token:
    """``Token(text, pos, quoted)``, faster."""
    t = _new(Token)
    _t_text(t, text)
    _t_pos(t, pos)
    _t_quoted(t, quoted)
    return t


def token_factory(file: str) -> Callable[[str, int, int], Token]:
    """``make(text, line, col)`` -> an unquoted Token of ``file``: the reader's hot path."""
    new, pf, pl, pc, pv = _new, _p_file, _p_line, _p_col, _p_via
    tt, tp, tq = _t_text, _t_pos, _t_quoted
    no_via = _NO_VIA

    def make(text: str, line: int, col: int) -> Token:
        p = new(Position)
        pf(p, file)
        pl(p, line)
        pc(p, col)
        pv(p, no_via)
        t = new(Token)
        tt(t, text)
        tp(t, p)
        tq(t, False)
        return t

    return make


def new_node(keyword: Token, args: tuple[Token, ...],
             children: tuple[Node, ...] | None = None, end: Position | None = None) -> Node:
    """``Node(keyword, args, children, end)``, faster."""
    n = _new(Node)
    _n_kw(n, keyword)
    _n_args(n, args)
    _n_children(n, children)
    _n_end(n, end)
    return n


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic GC while building many small acyclic objects.

    Left enabled, the collector traverses the growing tree again and again (it doubled the
    time of a 90k-line config).  Merely re-enabling it afterwards is not enough: the first
    allocation then triggers a young collection over everything made meanwhile.  So on the way
    out the survivors are moved straight to the oldest generation (``freeze`` + ``unfreeze``
    does that without traversing them and resets the young count); they are examined with the
    next full collection, as any long-lived object.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.unfreeze()
            gc.enable()
