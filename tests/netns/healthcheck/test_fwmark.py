"""``fwmark`` really marks checker packets: policy routing in a namespace prohibits marked ones."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from healthcheck.checkers import tcp, udp
from healthcheck.model import CheckResult, TcpCheckSpec, UdpCheckSpec
from tests.netns.healthcheck.hc_ns import Namespace

pytestmark = pytest.mark.netns

TARGET = ip_address("10.77.0.1")


@pytest.fixture
def ns() -> Iterator[Namespace]:
    n = Namespace()
    try:
        # local delivery after the fwmark rule, so "fwmark 7 -> prohibit" wins for marked packets
        n.ip("rule", "add", "pref", "100", "lookup", "local")
        n.ip("rule", "del", "pref", "0")
        n.ip("rule", "add", "pref", "10", "fwmark", "7", "prohibit")
        yield n
    finally:
        n.close()


async def _tcp_pair(marks: tuple[int | None, ...]) -> list[CheckResult]:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(handler, str(TARGET), 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return [await tcp.probe(TcpCheckSpec(connect_ip=TARGET, connect_port=port,
                                             connect_timeout=1.0, fwmark=m)) for m in marks]
    finally:
        server.close()
        await server.wait_closed()


async def _udp_pair(marks: tuple[int | None, ...]) -> list[CheckResult]:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.t.sendto(data, addr)  # type: ignore[attr-defined]

    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        Echo, local_addr=(str(TARGET), 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        return [await udp.probe(UdpCheckSpec(connect_ip=TARGET, connect_port=port,
                                             connect_timeout=0.5, require_reply=True,
                                             fwmark=m)) for m in marks]
    finally:
        transport.close()


def test_tcp_check_fwmark(ns: Namespace) -> None:
    plain, marked, other = ns.run(_tcp_pair((None, 7, 8)))
    assert plain.ok and other.ok
    assert not marked.ok and "Permission denied" in marked.detail, marked.detail


def test_udp_check_fwmark(ns: Namespace) -> None:
    plain, marked = ns.run(_udp_pair((None, 7)))
    assert plain.ok, plain.detail
    assert not marked.ok, marked.detail
