"""TCP_CHECK against real listeners on 127.0.0.x."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from ipaddress import ip_address

from healthcheck.checkers import tcp
from healthcheck.model import CheckResult, TcpCheckSpec


def _spec(port: int, **kw: object) -> TcpCheckSpec:
    args: dict[str, object] = {"connect_timeout": 2.0, **kw}
    return TcpCheckSpec(connect_ip=ip_address("127.0.0.2"), connect_port=port,
                        **args)  # type: ignore[arg-type]


async def test_listener_up_then_stopped_then_started_again() -> None:
    seen: list[tuple[str, int]] = []

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.append(w.get_extra_info("peername"))
        w.close()

    server = await asyncio.start_server(handler, "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]
    res = await tcp.probe(_spec(port))
    assert res.ok and res.detail == "connected" and res.latency < 0.5
    server.close()
    await server.wait_closed()
    res = await tcp.probe(_spec(port))
    assert not res.ok and "refused" in res.detail.lower()
    server = await asyncio.start_server(handler, "127.0.0.2", port)
    try:
        assert (await tcp.probe(_spec(port))).ok
    finally:
        server.close()
        await server.wait_closed()


async def test_bindto_and_bind_port_set_the_source() -> None:
    peers: list[tuple[str, int]] = []
    got = asyncio.Event()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        peers.append(w.get_extra_info("peername"))
        got.set()
        w.close()

    server = await asyncio.start_server(handler, "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]
    with socket.socket() as probe_port:  # find a free source port
        probe_port.bind(("127.0.0.3", 0))
        src_port = probe_port.getsockname()[1]
    try:
        res = await tcp.probe(_spec(port, bindto=ip_address("127.0.0.3"), bind_port=src_port,
                                    fwmark=7))
        assert res.ok, res.detail
        await asyncio.wait_for(got.wait(), 2)
        assert peers == [("127.0.0.3", src_port)]
    finally:
        server.close()
        await server.wait_closed()


async def test_connect_timeout_when_syns_are_dropped() -> None:
    # A listener with a full accept queue drops new SYNs: the connect hangs until our timeout.
    lsock = socket.socket()
    lsock.bind(("127.0.0.2", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.2", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        await asyncio.sleep(0.1)
        start = time.monotonic()
        res = await tcp.probe(_spec(port, connect_timeout=0.5))
        elapsed = time.monotonic() - start
        assert not res.ok and "timed out after 0.5s" in res.detail
        assert 0.45 <= elapsed < 1.5
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def _full_listener() -> tuple[socket.socket, list[socket.socket], int]:
    """A listener whose accept queue is full: new SYNs are dropped, connects hang."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.2", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.2", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    return lsock, fillers, port


async def test_engine_many_connects_refusals_and_timeouts() -> None:
    loop = asyncio.get_running_loop()
    engine = tcp.TcpEngine(loop)
    accepted = 0

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        w.close()

    server = await asyncio.start_server(handler, "127.0.0.2", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    lsock, fillers, hung = _full_listener()
    await asyncio.sleep(0.1)
    results: dict[str, list[tuple[float, bool, str]]] = {"ok": [], "closed": [], "hung": []}
    done = asyncio.Event()
    expected = 300 + 1 + 2
    t0 = time.monotonic()

    def collect(kind: str) -> Callable[[CheckResult], None]:
        def cb(res: CheckResult) -> None:
            results[kind].append((time.monotonic() - t0, res.ok, res.detail))
            if sum(map(len, results.values())) == expected:
                done.set()
        return cb

    try:
        for _ in range(300):
            engine.connect(_spec(port), collect("ok"))
        engine.connect(_spec(1), collect("closed"))
        engine.connect(_spec(hung, connect_timeout=0.8), collect("hung"))
        engine.connect(_spec(hung, connect_timeout=0.4), collect("hung"))
        await asyncio.wait_for(done.wait(), 10)
        assert all(ok for _, ok, _ in results["ok"]) and len(results["ok"]) == 300
        assert results["closed"][0][1:] == (False, "connect failed: Connection refused")
        # the shorter timeout fires first although it was started second
        (t_a, ok_a, d_a), (t_b, ok_b, d_b) = results["hung"]
        assert (ok_a, d_a, ok_b, d_b) == (False, "connect timed out after 0.4s",
                                          False, "connect timed out after 0.8s")
        assert 0.38 <= t_a < 1.5 and 0.78 <= t_b < 2.0
        assert len(engine) == 0
        await asyncio.sleep(0.1)
        assert accepted == 300
        # close() drops pending probes without calling back
        calls: list[CheckResult] = []
        engine.connect(_spec(hung, connect_timeout=0.3), calls.append)
        assert len(engine) == 1
        engine.close()
        await asyncio.sleep(0.5)
        assert calls == []
    finally:
        for s in fillers:
            s.close()
        lsock.close()
        server.close()
        await server.wait_closed()


async def test_engine_harvest_and_precomputed_target() -> None:
    """``harvest()`` delivers local connects that completed within ``connect()`` in the same
    callback (no extra loop iteration); ``target`` skips the per-probe address conversion."""
    loop = asyncio.get_running_loop()
    got: list[tuple[int, bool, str]] = []
    engine = tcp.TcpEngine(loop)
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.2", 0, backlog=256)
    port = server.sockets[0].getsockname()[1]
    try:
        spec_ok, spec_closed = _spec(port), _spec(1)
        assert tcp.target(spec_ok) == (socket.AF_INET, ("127.0.0.2", port))
        assert tcp.target(_spec(port, bind_port=40000)) is None  # source options: no shortcut
        for i in range(20):
            engine.start(spec_ok, lambda i, r: got.append((i, r.ok, r.detail)), i,
                         tcp.target(spec_ok))
        engine.start(spec_closed, lambda i, r: got.append((i, r.ok, r.detail)), 99,
                     tcp.target(spec_closed))
        engine.harvest()  # no await: completed handshakes are delivered right here
        early = list(got)  # (usually all of them on loopback; the rest come from the loop)
        await asyncio.sleep(0.3)
        assert got[:len(early)] == early
        assert sorted(got) == [(i, True, "connected") for i in range(20)] + [
            (99, False, "connect failed: Connection refused")]
        assert len(engine) == 0
    finally:
        engine.close()
        server.close()
        await server.wait_closed()
