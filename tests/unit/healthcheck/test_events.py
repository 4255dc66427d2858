"""CheckerManager(on_event=...): real-server and quorum events derived from the core's actions,
on a real loop with scripted probe outcomes (the probe seam), so every transition is chosen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from ipaddress import ip_address

from healthcheck.checkers import ProbeContext
from healthcheck.events import CheckerEvent, QuorumEvent, RealServerEvent
from healthcheck.manager import CheckerManager
from healthcheck.model import (
    CheckResult,
    CheckSpec,
    HttpCheckSpec,
    RealServerSpec,
    TcpCheckSpec,
    VirtualServerSpec,
)

RS1, RS2 = ip_address("10.1.0.1"), ip_address("10.1.0.2")


def tcp(ip: object, port: int) -> TcpCheckSpec:
    return TcpCheckSpec(connect_ip=ip, connect_port=port, retry=0, delay_loop=0.05,  # type: ignore[arg-type]
                        warmup=0.0, connect_timeout=1.0)


A, B, C = tcp(RS1, 80), tcp(RS1, 81), tcp(RS2, 80)
HTTP = HttpCheckSpec(connect_ip=RS2, connect_port=8080, retry=0, delay_loop=0.05, warmup=0.0,
                     ssl=True)


class Script:
    """Probe outcomes chosen by the test (default up), events recorded."""

    def __init__(self) -> None:
        self.ok: dict[CheckSpec, bool] = {}
        self.detail: dict[CheckSpec, str] = {}
        self.events: list[CheckerEvent] = []

    async def probe(self, spec: CheckSpec, ctx: ProbeContext) -> CheckResult:
        ok = self.ok.get(spec, True)
        return CheckResult(ok, self.detail.get(spec, "ok" if ok else "connection refused"))

    def on_event(self, event: CheckerEvent) -> None:
        self.events.append(event)

    def take(self) -> list[CheckerEvent]:
        out, self.events = self.events, []
        return out

    async def until(self, pred: Callable[[list[CheckerEvent]], bool],
                    timeout: float = 5.0) -> list[CheckerEvent]:
        deadline = time.monotonic() + timeout
        while not pred(self.events):
            assert time.monotonic() < deadline, f"events so far: {self.events}"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.15)  # three more probe rounds: nothing else may arrive
        out, self.events = self.events, []
        return out


def pool(**kw: object) -> VirtualServerSpec:
    return VirtualServerSpec(key="[10.0.0.1]:tcp:80", real_servers=(
        RealServerSpec(address=RS1, port=80, checkers=(A, B)),
        RealServerSpec(address=RS2, port=80, checkers=(C,))), quorum=2, **kw)  # type: ignore[arg-type]


def rs_event(rs: object, alive: bool, changed: bool, checker_up: bool, detail: str,
             vs: str = "[10.0.0.1]:tcp:80") -> RealServerEvent:
    ip = ip_address(str(rs))
    return RealServerEvent(vs_key=vs, rs=(ip, 80), rs_text=f"[{ip}]:tcp:80", alive=alive,
                           changed=changed, check="TCP_CHECK", checker_up=checker_up,
                           detail=detail)


async def test_every_checker_transition_is_an_event_with_the_real_servers_state() -> None:
    s = Script()
    mgr = CheckerManager([pool()], on_change=lambda k, v: None, probe=s.probe,
                         on_event=s.on_event)
    await mgr.start()
    try:  # start: the quorum found (keepalived mails "Starting with quorum up"), no RS event
        assert s.take() == [QuorumEvent(vs_key="[10.0.0.1]:tcp:80", up=True, quorum=2,
                                        hysteresis=0, weight_sum=2, starting=True)]
        await asyncio.sleep(0.2)
        assert s.events == []  # probes that change nothing say nothing
        s.ok[A] = False  # RS1 down: quorum 2 lost (alive weight 1)
        got = await s.until(lambda ev: len(ev) >= 2)
        assert got == [QuorumEvent(vs_key="[10.0.0.1]:tcp:80", up=False, quorum=2, hysteresis=0,
                                   weight_sum=1),
                       rs_event(RS1, False, True, False, "connection refused")]
        s.ok[B] = False  # second checker down: the real server was down already
        assert await s.until(lambda ev: len(ev) >= 1) == [
            rs_event(RS1, False, False, False, "connection refused")]
        s.ok[A] = True  # one checker back, the other still down: subject DOWN, checker up
        assert await s.until(lambda ev: len(ev) >= 1) == [rs_event(RS1, False, False, True, "ok")]
        s.ok[B] = True
        got = await s.until(lambda ev: len(ev) >= 2)
        assert got == [QuorumEvent(vs_key="[10.0.0.1]:tcp:80", up=True, quorum=2, hysteresis=0,
                                   weight_sum=2),
                       rs_event(RS1, True, True, True, "ok")]
    finally:
        await mgr.stop()
    assert s.events == []  # no omega: stopping says nothing


async def test_a_shared_checker_reports_every_real_server_using_it() -> None:
    s = Script()
    other = VirtualServerSpec(key="[10.0.0.2]:tcp:80", real_servers=(
        RealServerSpec(address=RS2, port=80, checkers=(C,)),))
    mgr = CheckerManager([pool(), other], on_change=lambda k, v: None, probe=s.probe,
                         on_event=s.on_event)
    await mgr.start()
    try:
        assert len(s.take()) == 2  # both start with quorum up
        s.ok[C] = False
        got = await s.until(lambda ev: sum(isinstance(e, RealServerEvent) for e in ev) >= 2)
        servers = [e for e in got if isinstance(e, RealServerEvent)]
        assert servers == [rs_event(RS2, False, True, False, "connection refused"),
                           rs_event(RS2, False, True, False, "connection refused",
                                    vs="[10.0.0.2]:tcp:80")]
        assert {(e.vs_key, e.up) for e in got if isinstance(e, QuorumEvent)} == {
            ("[10.0.0.1]:tcp:80", False), ("[10.0.0.2]:tcp:80", False)}
    finally:
        await mgr.stop()


async def test_omega_stop_reports_what_was_up_as_shutting_down() -> None:
    s = Script()
    mgr = CheckerManager([pool(omega=True)], on_change=lambda k, v: None, probe=s.probe,
                         on_event=s.on_event)
    await mgr.start()
    s.take()
    s.ok[C] = False
    await s.until(lambda ev: len(ev) >= 2)
    await mgr.stop()
    assert s.events == [
        RealServerEvent(vs_key="[10.0.0.1]:tcp:80", rs=(RS1, 80), rs_text="[10.1.0.1]:tcp:80",
                        alive=False, changed=True, check=None, checker_up=False, stopping=True)]
    # quorum was already lost (RS2 down): no second "down" for the virtual server


async def test_ssl_flag_detail_and_a_failing_listener_do_not_stop_the_checkers() -> None:
    s = Script()
    vs = VirtualServerSpec(key="[10.0.0.3]:tcp:443", real_servers=(
        RealServerSpec(address=RS2, port=8080, checkers=(HTTP,)),))
    calls: list[CheckerEvent] = []

    def broken(event: CheckerEvent) -> None:
        calls.append(event)
        raise RuntimeError("listener bug")

    mgr = CheckerManager([vs], on_change=lambda k, v: None, probe=s.probe, on_event=broken)
    await mgr.start()
    try:
        s.ok[HTTP], s.detail[HTTP] = False, "/: status 500"
        deadline = time.monotonic() + 5
        assert [type(e) for e in calls] == [QuorumEvent]  # starting with quorum up
        while len([e for e in calls if isinstance(e, RealServerEvent)]) < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        s.ok[HTTP] = True  # the checker keeps running after the listener raised
        while len([e for e in calls if isinstance(e, RealServerEvent)]) < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
    finally:
        await mgr.stop()
    down, up = [e for e in calls if isinstance(e, RealServerEvent)]
    assert (down.check, down.ssl, down.detail, down.checker_up) == ("HTTP_GET", True,
                                                                  "/: status 500", False)
    assert up.checker_up and up.alive


async def test_reload_keeps_reporting_with_the_new_specs() -> None:
    s = Script()
    mgr = CheckerManager([pool()], on_change=lambda k, v: None, probe=s.probe,
                         on_event=s.on_event)
    await mgr.start()
    try:
        s.take()
        renamed = VirtualServerSpec(key="[10.0.0.9]:tcp:80", real_servers=(
            RealServerSpec(address=RS1, port=80, checkers=(A,)),), quorum=1)
        await mgr.reload([renamed])  # a new virtual server: its quorum found, as at start
        assert s.take() == [QuorumEvent(vs_key="[10.0.0.9]:tcp:80", up=True, quorum=1,
                                        hysteresis=0, weight_sum=1, starting=True)]
        s.ok[A] = False
        got = await s.until(lambda ev: len(ev) >= 2)
        assert got == [QuorumEvent(vs_key="[10.0.0.9]:tcp:80", up=False, quorum=1,
                                   hysteresis=0, weight_sum=0),
                       rs_event(RS1, False, True, False, "connection refused",
                                vs="[10.0.0.9]:tcp:80")]
    finally:
        await mgr.stop()
