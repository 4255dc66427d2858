"""Timers heap and keepalived's timing helpers."""

from __future__ import annotations

import random
from ipaddress import ip_address

from healthcheck.model import CommandSpec, MiscCheckSpec, TcpCheckSpec
from healthcheck.scheduler import Timers, first_run, next_delay, probe_timeout


def test_timers_reschedule_cancel_and_pop_in_order() -> None:
    t: Timers[str] = Timers()
    t.schedule("a", 5.0)
    t.schedule("b", 3.0)
    t.schedule("c", 4.0)
    t.schedule("a", 1.0)  # replaces 5.0
    t.cancel("c")
    assert t.next_deadline() == 1.0
    assert len(t) == 2 and "c" not in t
    assert t.pop_due(2.0) == ["a"]
    assert t.pop_due(10.0) == ["b"]
    assert t.next_deadline() is None
    assert t.pop_due(100.0) == []


def test_timing_helpers() -> None:
    spec = TcpCheckSpec(connect_ip=ip_address("10.0.0.1"), delay_loop=6.0,
                        delay_before_retry=2.0, connect_timeout=3.0, warmup=0.0)
    assert first_run(spec, 10.0, random.Random(1)) == 10.0
    assert next_delay(spec, retrying=True) == 2.0
    assert next_delay(spec, retrying=False) == 6.0
    assert probe_timeout(spec) == 3.0
    misc = MiscCheckSpec(connect_ip=ip_address("10.0.0.1"), command=CommandSpec(("x",)),
                         delay_loop=9.0)
    assert probe_timeout(misc) == 9.0
    assert probe_timeout(MiscCheckSpec(connect_ip=ip_address("10.0.0.1"),
                                       command=CommandSpec(("x",)), timeout=2.5)) == 2.5
