"""UDP_CHECK against a real UDP echo server, a silent server and a closed port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from ipaddress import ip_address
from typing import cast

import pytest

from healthcheck.checkers import udp
from healthcheck.model import UdpCheckSpec


class _Echo(asyncio.DatagramProtocol):
    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.seen: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.seen.append(data)
        assert self.transport is not None
        self.transport.sendto(self.prefix + data, addr)


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, _Echo]]:
    proto = _Echo(b"OK")
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: proto, local_addr=("127.0.0.7", 0))
    yield transport.get_extra_info("sockname")[1], proto
    transport.close()


@pytest.fixture
def silent() -> Iterator[int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.7", 0))
    yield s.getsockname()[1]
    s.close()


def _spec(port: int, **kw: object) -> UdpCheckSpec:
    args: dict[str, object] = {"connect_timeout": 2.0, **kw}  # 2 s where a reply is expected
    return UdpCheckSpec(connect_ip=ip_address("127.0.0.7"), connect_port=port,
                        **args)  # type: ignore[arg-type]


async def test_echo_reply_required_and_pattern(echo: tuple[int, _Echo]) -> None:
    port, proto = echo
    res = await udp.probe(_spec(port, payload=b"\x01\x02", require_reply=True))
    assert res.ok and res.detail == "reply of 4 bytes"
    assert proto.seen == [b"\x01\x02"]
    # pattern "4f4b" = "OK", matched over the shorter length
    res = await udp.probe(_spec(port, payload=b"\x01", require_reply=True,
                                reply_pattern=b"OK\x01\x99\x99"))
    assert res.ok, res.detail
    res = await udp.probe(_spec(port, payload=b"\x01", require_reply=True,
                                reply_pattern=b"OX"))
    assert not res.ok and res.detail == "reply byte 1 is 0x4b, expected 0x58"
    # the mask ignores the low nibble of byte 1 ("OX" vs "OK": 0x58 vs 0x4b differ in both)
    res = await udp.probe(_spec(port, payload=b"\x01", require_reply=True,
                                reply_pattern=b"O\x40", reply_mask=b"\xff\xf0"))
    assert res.ok, res.detail
    res = await udp.probe(_spec(port, payload=b"\x01" * 10, require_reply=True,
                                max_reply_length=8))
    assert not res.ok and res.detail == "reply length 12 outside 0..8"
    # random payload when none is configured
    assert (await udp.probe(_spec(port, require_reply=True))).ok
    assert len(proto.seen[-1]) == 8


async def test_silent_server_fails_only_when_a_reply_is_required(silent: int) -> None:
    res = await udp.probe(_spec(silent, connect_timeout=0.5))
    assert res.ok and res.detail == "no ICMP error"
    res = await udp.probe(_spec(silent, require_reply=True, connect_timeout=0.5))
    assert not res.ok and res.detail == "no reply within 0.5s"


async def test_closed_port_answers_icmp_port_unreachable(silent: int) -> None:
    closed = silent
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.7", 0))
    closed = sock.getsockname()[1]
    sock.close()
    for require in (False, True):
        # fails as soon as the ICMP port unreachable arrives, not at connect_timeout
        t0 = time.monotonic()
        res = await udp.probe(_spec(closed, require_reply=require, connect_timeout=5.0))
        assert not res.ok and res.detail == "ICMP error: Connection refused", res.detail
        assert time.monotonic() - t0 < 1.0
