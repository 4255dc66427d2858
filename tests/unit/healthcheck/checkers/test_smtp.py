"""SMTP_CHECK against a real SMTP conversation with a minimal asyncio SMTP responder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import ip_address

import pytest

from healthcheck.checkers import smtp
from healthcheck.model import SmtpCheckSpec


@dataclass
class Mta:
    banner: str = "220-mx.test ESMTP ready\r\n220 mx.test go ahead"
    helo_reply: str = "250 mx.test hello"
    stall: bool = False
    lines: list[str] = field(default_factory=list)
    port: int = 0


@pytest.fixture
async def mta() -> AsyncIterator[Mta]:
    m = Mta()

    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            if m.stall:
                await asyncio.sleep(5)
            w.write(m.banner.encode() + b"\r\n")
            while line := (await r.readline()).decode():
                m.lines.append(line.rstrip("\r\n"))
                verb = line.split()[0].upper() if line.split() else ""
                if verb in ("HELO", "EHLO"):
                    w.write(m.helo_reply.encode() + b"\r\n")
                elif verb == "QUIT":
                    w.write(b"221 bye\r\n")
                    await w.drain()
                    break
                else:
                    w.write(b"502 not implemented\r\n")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(handler, "127.0.0.5", 0)
    m.port = server.sockets[0].getsockname()[1]
    yield m
    server.close()
    await server.wait_closed()


def _spec(port: int, **kw: object) -> SmtpCheckSpec:
    args: dict[str, object] = {"connect_timeout": 2.0, "helo_name": "director.test", **kw}
    return SmtpCheckSpec(connect_ip=ip_address("127.0.0.5"), connect_port=port,
                         **args)  # type: ignore[arg-type]


async def test_conversation_banner_helo_quit(mta: Mta) -> None:
    res = await smtp.probe(_spec(mta.port))
    assert res.ok, res.detail
    await asyncio.sleep(0.05)
    assert mta.lines == ["HELO director.test", "QUIT"]


async def test_rejecting_banner_fails(mta: Mta) -> None:
    mta.banner = "554 no service"
    res = await smtp.probe(_spec(mta.port))
    assert not res.ok and res.detail == "banner 554 no service"


async def test_rejected_helo_fails(mta: Mta) -> None:
    mta.helo_reply = "501 bad HELO"
    res = await smtp.probe(_spec(mta.port))
    assert not res.ok and res.detail == "HELO answered 501 bad HELO"


async def test_silent_server_times_out(mta: Mta) -> None:
    mta.stall = True
    res = await smtp.probe(_spec(mta.port, connect_timeout=0.3))
    assert not res.ok and res.detail == "timed out after 0.3s"
    assert 0.25 < res.latency < 1.5


async def test_closed_port_fails(mta: Mta) -> None:
    res = await smtp.probe(_spec(1))
    assert not res.ok and res.detail == "Connection refused"
