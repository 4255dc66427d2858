"""TCP_CHECK against real listeners on 127.0.0.x."""

from __future__ import annotations

import asyncio
import socket
import time
from ipaddress import ip_address

from healthcheck.checkers import tcp
from healthcheck.model import TcpCheckSpec


def _spec(port: int, **kw: object) -> TcpCheckSpec:
    args: dict[str, object] = {"connect_timeout": 1.0, **kw}
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
