"""The fast constructors make ordinary, equal, still-frozen instances; paused_gc restores GC."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from vrrpd.config.errors import Position
from vrrpd.config.fastnew import new_node, new_position, new_token, paused_gc, token_factory
from vrrpd.config.nodes import Node, Token


def test_instances_equal_the_dataclass_constructors() -> None:
    pos = new_position("f.conf", 3, 7)
    assert pos == Position("f.conf", 3, 7) and hash(pos) == hash(Position("f.conf", 3, 7))
    assert type(pos) is Position and pos.via == ()
    tok = new_token("x", pos, True)
    assert tok == Token("x", Position("f.conf", 3, 7), True)
    assert token_factory("f.conf")("y", 3, 9) == Token("y", Position("f.conf", 3, 9))
    node = new_node(tok, (tok,), (), pos)
    assert node == Node(tok, (tok,), (), pos)
    assert new_node(tok, ()) == Node(tok)


def test_instances_stay_frozen() -> None:
    pos = new_position("f", 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pos.line = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        new_token("x", pos).text = "y"  # type: ignore[misc]


def test_paused_gc_restores_the_previous_state() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        objs = [[i] for i in range(1000)]
    assert gc.isenabled() and gc.get_count()[0] < 700 and len(objs) == 1000
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
