"""DNS_CHECK against a real asyncio UDP DNS responder on 127.0.0.6."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import cast

import pytest

from healthcheck.checkers import dns
from healthcheck.model import DnsCheckSpec


def _qname(data: bytes, off: int) -> tuple[str, int]:
    labels = []
    while data[off]:
        n = data[off]
        labels.append(data[off + 1:off + 1 + n].decode())
        off += 1 + n
    return ".".join(labels) + ".", off + 1


@dataclass
class Zone:
    """Answers A queries for its names; ``mode`` injects failures."""

    names: dict[str, str] = field(default_factory=lambda: {"www.example.": "192.0.2.7"})
    mode: str = "normal"  # normal | wrong-id-first | silent | servfail
    queries: list[tuple[str, int]] = field(default_factory=list)
    port: int = 0


class _Responder(asyncio.DatagramProtocol):
    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        qid, _flags, _qd = struct.unpack_from("!HHH", data)
        name, end = _qname(data, 12)
        qtype, _qclass = struct.unpack_from("!HH", data, end)
        self.zone.queries.append((name, qtype))
        question = data[12:end + 4]
        mode = self.zone.mode
        if mode == "silent":
            return
        addr_txt = self.zone.names.get(name) if qtype == 1 else None
        rcode = 2 if mode == "servfail" else (0 if addr_txt or name in self.zone.names else 3)
        answers = b""
        if addr_txt and rcode == 0:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + \
                ip_address(addr_txt).packed
        reply_flags = 0x8180 | rcode
        header = struct.pack("!HHHHHH", qid, reply_flags, 1, 1 if answers else 0, 0, 0)
        if mode == "wrong-id-first":
            self.transport.sendto(struct.pack("!H", (qid + 1) & 0xFFFF) + header[2:] +
                                  question + answers, addr)
        self.transport.sendto(header + question + answers, addr)


@pytest.fixture
async def zone() -> AsyncIterator[Zone]:
    z = Zone()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Responder(z),
                                                       local_addr=("127.0.0.6", 0))
    z.port = transport.get_extra_info("sockname")[1]
    yield z
    transport.close()


def _spec(port: int, **kw: object) -> DnsCheckSpec:
    args: dict[str, object] = {"connect_timeout": 2.0, "type": "A", "name": "www.example",
                               **kw}
    return DnsCheckSpec(connect_ip=ip_address("127.0.0.6"), connect_port=port,
                        **args)  # type: ignore[arg-type]


async def test_answered_query_is_up(zone: Zone) -> None:
    res = await dns.probe(_spec(zone.port))
    assert res.ok, res.detail
    assert zone.queries == [("www.example.", 1)]


async def test_nxdomain_and_no_answer_are_down(zone: Zone) -> None:
    res = await dns.probe(_spec(zone.port, name="nope.example"))
    assert not res.ok and res.detail == "RCODE 3"
    zone.names["txt.example."] = "192.0.2.1"
    res = await dns.probe(_spec(zone.port, name="txt.example", type="TXT"))
    assert not res.ok and res.detail == "no answer record"
    zone.mode = "servfail"
    assert (await dns.probe(_spec(zone.port))).detail == "RCODE 2"


async def test_reply_with_another_id_is_ignored(zone: Zone) -> None:
    zone.mode = "wrong-id-first"
    res = await dns.probe(_spec(zone.port))
    assert res.ok, res.detail


async def test_silent_server_times_out_and_closed_port_is_refused(zone: Zone) -> None:
    zone.mode = "silent"
    res = await dns.probe(_spec(zone.port, connect_timeout=0.3))
    assert not res.ok and res.detail == "no reply within 0.3s"
    # the ICMP port unreachable fails the probe when it arrives, not at connect_timeout
    t0 = time.monotonic()
    res = await dns.probe(_spec(1, connect_timeout=5.0))
    assert not res.ok and res.detail == "Connection refused"
    assert time.monotonic() - t0 < 1.0


def test_query_encoding() -> None:
    q = dns.build_query(0x1234, "www.example.", "soa")
    assert q == (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                 b"\x03www\x07example\x00\x00\x06\x00\x01")
    assert dns.build_query(1, ".", "NS")[12:] == b"\x00\x00\x02\x00\x01"
    assert dns.check_reply(b"\x12\x34\x81\x80" + b"\x00\x01\x00\x01" + b"\x00" * 4,
                           0x1234) is None
    assert dns.check_reply(b"\x12\x34\x01\x00" + b"\x00" * 8, 0x1234) == "not a response (QR clear)"
