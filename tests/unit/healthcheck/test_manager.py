"""CheckerManager on a real loop: real listeners and scripts, keepalived's retry timing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from ipaddress import ip_address
from pathlib import Path

from healthcheck import process
from healthcheck.checkers import ProbeContext, run_probe
from healthcheck.manager import CheckerManager
from healthcheck.model import (
    CheckResult,
    CheckSpec,
    CommandSpec,
    MiscCheckSpec,
    RealServerSpec,
    ServerKey,
    TcpCheckSpec,
    VirtualServerSpec,
)

RS = ip_address("127.0.0.8")


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[float, str, dict[ServerKey, int]]] = []
        self.probes: list[tuple[float, CheckSpec, bool]] = []
        self.fifo: list[str] = []
        self.changed = asyncio.Event()

    def on_change(self, vs_key: str, servers: Mapping[ServerKey, int]) -> None:
        self.changes.append((time.monotonic(), vs_key, dict(servers)))
        self.changed.set()

    async def probe(self, spec: CheckSpec, ctx: ProbeContext) -> CheckResult:
        res = await run_probe(spec, ctx)
        self.probes.append((time.monotonic(), spec, res.ok))
        return res

    async def wait_for(self, servers: dict[ServerKey, int], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            for t, _, s in self.changes:
                if s == servers:
                    return t
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


async def _listen(port: int = 0) -> asyncio.Server:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    return await asyncio.start_server(handler, str(RS), port, reuse_address=True)


def _intervals(times: Sequence[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


async def test_tcp_listener_stop_and_start_with_retry_timing() -> None:
    server = await _listen()
    port = server.sockets[0].getsockname()[1]
    spec = TcpCheckSpec(connect_ip=RS, connect_port=port, connect_timeout=0.5, retry=2,
                        delay_before_retry=0.3, delay_loop=0.6, warmup=0.0)
    vs = VirtualServerSpec(key="[10.0.0.1]:tcp:80", real_servers=(
        RealServerSpec(address=RS, port=port, checkers=(spec,)),))
    rec = Recorder()
    mgr = CheckerManager([vs], on_change=rec.on_change, on_fifo=rec.fifo.append,
                         probe=rec.probe)
    up = {(RS, port): 1}
    try:
        await mgr.start()
        assert [c[2] for c in rec.changes] == [up]  # reported before any probe
        assert rec.fifo == ["VS [10.0.0.1]:tcp:80 UP"]  # started with quorum met
        rec.fifo.clear()
        await asyncio.sleep(1.0)
        ok_times = [t for t, _, ok in rec.probes if ok]
        assert len(ok_times) >= 2
        assert all(0.58 <= i <= 1.2 for i in _intervals(ok_times)), _intervals(ok_times)
        server.close()
        await server.wait_closed()
        t_stop = time.monotonic()
        t_down = await rec.wait_for({}, timeout=5.0)
        fails = [t for t, _, ok in rec.probes if not ok]
        # first failure within one delay_loop, then exactly `retry` retries
        # delay_before_retry apart, and the third failure takes the server down
        assert len(fails) == 3, rec.probes
        assert fails[0] - t_stop <= 0.6 + 0.6
        assert all(0.29 <= i <= 0.8 for i in _intervals(fails)), _intervals(fails)
        assert 0 <= t_down - fails[2] < 0.3
        assert t_down - t_stop <= 0.6 + 2 * 0.3 + 1.0
        assert rec.fifo == [f"RS [127.0.0.8]:tcp:{port} [10.0.0.1]:tcp:80 DOWN",
                            "VS [10.0.0.1]:tcp:80 DOWN"]
        # while down: probed every delay_loop, no retries
        await asyncio.sleep(1.0)
        fails = [t for t, _, ok in rec.probes if not ok]
        assert all(0.58 <= i <= 1.2 for i in _intervals(fails[2:])), _intervals(fails)
        server = await _listen(port)
        t_start = time.monotonic()
        rec.changes.clear()
        t_up = await rec.wait_for(up, timeout=3.0)
        assert t_up - t_start <= 0.6 + 1.0  # one success within a delay_loop brings it up
        assert rec.fifo[-2:] == [f"RS [127.0.0.8]:tcp:{port} [10.0.0.1]:tcp:80 UP",
                                 "VS [10.0.0.1]:tcp:80 UP"]
        snap = mgr.snapshot()
        assert snap.virtual_servers[0].real_servers[0].alive
        assert snap.distinct_checks == 1
    finally:
        await mgr.stop()
        server.close()
        await server.wait_closed()
    n = len(rec.probes)
    await asyncio.sleep(0.8)
    assert len(rec.probes) == n  # stop() really stopped the schedule


async def test_shared_check_is_probed_once_for_two_virtual_servers() -> None:
    server = await _listen()
    port = server.sockets[0].getsockname()[1]
    spec = TcpCheckSpec(connect_ip=RS, connect_port=port, connect_timeout=0.5,
                        delay_loop=0.25, warmup=0.0)
    vss = [VirtualServerSpec(key=f"[10.0.0.{i}]:tcp:80", real_servers=(
        RealServerSpec(address=RS, port=port, checkers=(spec,)),)) for i in (1, 2)]
    rec = Recorder()
    mgr = CheckerManager(vss, on_change=rec.on_change, probe=rec.probe)
    try:
        await mgr.start()
        await asyncio.sleep(1.1)
    finally:
        await mgr.stop()
        server.close()
        await server.wait_closed()
    # one probe every ~0.25 s for both virtual servers, not two
    assert 3 <= len(rec.probes) <= 6, len(rec.probes)
    # both virtual servers were told about the listener going away?  (covered in test_state)
    assert {c[1] for c in rec.changes} == {"[10.0.0.1]:tcp:80", "[10.0.0.2]:tcp:80"}


async def test_misc_dynamic_weight_and_notify_scripts(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.write_text("12")
    check = tmp_path / "check.sh"
    check.write_text(f'#!/bin/sh\nexit "$(cat {code})"\n')
    check.chmod(0o755)
    log = tmp_path / "notify.log"
    note = tmp_path / "note.sh"
    note.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    note.chmod(0o755)
    spec = MiscCheckSpec(connect_ip=RS, command=CommandSpec((str(check),)), dynamic=True,
                         retry=0, delay_loop=0.2, warmup=0.0, timeout=2.0)
    rs = RealServerSpec(address=RS, port=80, weight=1, checkers=(spec,),
                        notify_up=CommandSpec((str(note), "up")),
                        notify_down=CommandSpec((str(note), "down")))
    vs = VirtualServerSpec(key="[10.0.0.1]:tcp:80", real_servers=(rs,),
                           quorum_down=CommandSpec((str(note), "quorum-down")))
    rec = Recorder()
    mgr = CheckerManager([vs], on_change=rec.on_change)
    try:
        await mgr.start()
        await rec.wait_for({(RS, 80): 10}, timeout=5.0)
        code.write_text("1")
        await rec.wait_for({}, timeout=5.0)
        code.write_text("40")
        await rec.wait_for({(RS, 80): 38}, timeout=5.0)
    finally:
        await mgr.stop()
    # notify_down and quorum_down are spawned together (as keepalived does): either may log first
    lines = log.read_text().split("\n")
    assert sorted(lines[:2]) == ["down", "quorum-down"] and lines[2] == "up", lines


async def test_scripts_are_bounded_by_max_scripts(tmp_path: Path) -> None:
    active = 0
    peak = 0
    ran: list[str] = []

    async def counting(argv: Sequence[str], *, timeout: float, user: str | int | None = None,
                       group: str | int | None = None,
                       env: Mapping[str, str] | None = None) -> process.ProcessResult:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        try:
            return await process.run(argv, timeout=timeout, user=user, group=group)
        finally:
            active -= 1
            ran.append(argv[1])

    specs = [MiscCheckSpec(connect_ip=RS, command=CommandSpec(("sleep", f"0.{i}5")),
                           warmup=0.0, delay_loop=30.0) for i in range(1, 7)]
    vs = VirtualServerSpec(key="FWM 1", real_servers=tuple(
        RealServerSpec(address=ip_address(f"127.0.1.{i}"), port=80, checkers=(s,))
        for i, s in enumerate(specs)))
    rec = Recorder()
    mgr = CheckerManager([vs], on_change=rec.on_change, runner=counting, max_scripts=2)
    try:
        await mgr.start()
        deadline = time.monotonic() + 10
        while len(ran) < 6 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            assert mgr.limiter.running <= 2
    finally:
        await mgr.stop()
    assert len(ran) == 6 and peak == 2
    assert all(rs.alive for rs in mgr.snapshot().virtual_servers[0].real_servers)


async def test_reload_keeps_a_down_server_down_and_adds_new_checks() -> None:
    server = await _listen()
    port = server.sockets[0].getsockname()[1]
    dead = TcpCheckSpec(connect_ip=RS, connect_port=1, connect_timeout=0.5, retry=0,
                        delay_loop=0.3, warmup=0.0)
    live = TcpCheckSpec(connect_ip=RS, connect_port=port, connect_timeout=0.5, retry=0,
                        delay_loop=0.3, warmup=0.0)
    one = VirtualServerSpec(key="[10.0.0.1]:tcp:80", real_servers=(
        RealServerSpec(address=RS, port=1, checkers=(dead,)),))
    rec = Recorder()
    mgr = CheckerManager([one], on_change=rec.on_change, probe=rec.probe)
    try:
        await mgr.start()
        await rec.wait_for({}, timeout=3.0)
        two = VirtualServerSpec(key="[10.0.0.1]:tcp:80", real_servers=(
            *one.real_servers, RealServerSpec(address=RS, port=port, checkers=(live,))))
        rec.changes.clear()
        await mgr.reload([two])
        # reported at once: the known-dead server stays out, the new one starts up
        assert rec.changes[0][2] == {(RS, port): 1}
        await asyncio.sleep(0.8)
        assert all(c[2] == {(RS, port): 1} for c in rec.changes)
        assert {s.connect_port for _, s, _ in rec.probes} == {1, port}
        assert mgr.snapshot().distinct_checks == 2
    finally:
        await mgr.stop()
        server.close()
        await server.wait_closed()


async def test_default_tcp_engine_path_follows_the_listener() -> None:
    server = await _listen()
    port = server.sockets[0].getsockname()[1]
    spec = TcpCheckSpec(connect_ip=RS, connect_port=port, connect_timeout=0.5, retry=1,
                        delay_before_retry=0.3, delay_loop=0.5, warmup=0.0)
    vs = VirtualServerSpec(key="[10.0.0.1]:tcp:80", real_servers=(
        RealServerSpec(address=RS, port=port, weight=4, checkers=(spec,)),))
    rec = Recorder()
    mgr = CheckerManager([vs], on_change=rec.on_change)  # real probes, TcpEngine
    try:
        await mgr.start()
        await asyncio.sleep(0.7)
        assert mgr.core.states[0].runs >= 2 and mgr.core.states[0].last_ok
        server.close()
        await server.wait_closed()
        t_stop = time.monotonic()
        t_down = await rec.wait_for({}, timeout=5.0)
        # one failed probe, a retry delay_before_retry later, then down
        assert 0.29 <= t_down - t_stop <= 0.5 + 0.3 + 1.0
        rec.changes.clear()
        server = await _listen(port)
        t_start = time.monotonic()
        t_up = await rec.wait_for({(RS, port): 4}, timeout=5.0)
        assert 0 <= t_up - t_start <= 0.5 + 1.0
    finally:
        await mgr.stop()
        server.close()
        await server.wait_closed()


async def test_a_failing_callback_does_not_stop_the_checks() -> None:
    servers = tuple(RealServerSpec(address=ip_address(f"127.0.2.{i}"), port=1, checkers=(
        TcpCheckSpec(connect_ip=ip_address(f"127.0.2.{i}"), connect_port=1, retry=0,
                     delay_loop=0.2, warmup=0.0),)) for i in range(1, 6))
    calls = 0

    def broken(vs_key: str, servers: Mapping[ServerKey, int]) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:  # the initial report passes, every later one raises
            raise RuntimeError("reconciler bug")

    mgr = CheckerManager([VirtualServerSpec(key="FWM 1", real_servers=servers)],
                         on_change=broken)
    try:
        await mgr.start()
        await asyncio.sleep(1.0)
    finally:
        await mgr.stop()
    # every check kept running (port 1 refuses: all went down, then kept being probed)
    assert all(st.runs >= 3 and not st.up for st in mgr.core.states)
