"""SMTP_CHECK: banner 220, ``HELO helo_name`` answered 250, then ``QUIT``.

The whole conversation is bounded by ``connect_timeout``.  Multi-line replies (``250-...``)
are read to their last line.
"""

from __future__ import annotations

import asyncio
import time

from healthcheck.checkers.base import connect_socket, describe, fail, ok
from healthcheck.model import CheckResult, SmtpCheckSpec

__all__ = ["probe", "read_reply"]


async def read_reply(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One SMTP reply: (code, text of the last line)."""
    while True:
        line = (await reader.readuntil(b"\n")).decode("latin-1").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit():
            raise ValueError(f"bad reply line {line[:80]!r}")
        if len(line) == 3 or line[3] != "-":
            return int(line[:3]), line[4:]


async def _converse(spec: SmtpCheckSpec) -> str | None:
    sock = await connect_socket(spec.connect_ip, spec.connect_port, bindto=spec.bindto,
                                bind_port=spec.bind_port, bind_if=spec.bind_if,
                                fwmark=spec.fwmark)
    try:
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        code, text = await read_reply(reader)
        if code != 220:
            return f"banner {code} {text}"
        writer.write(f"HELO {spec.helo_name}\r\n".encode())
        code, text = await read_reply(reader)
        if code != 250:
            return f"HELO answered {code} {text}"
        writer.write(b"QUIT\r\n")
        await writer.drain()
        try:
            await read_reply(reader)
        except (asyncio.IncompleteReadError, ValueError, OSError):
            pass  # the check already passed; a server hanging up on QUIT is fine
        return None
    finally:
        writer.close()


async def probe(spec: SmtpCheckSpec) -> CheckResult:
    start = time.monotonic()
    try:
        async with asyncio.timeout(spec.connect_timeout):
            reason = await _converse(spec)
    except TimeoutError:
        return fail(f"timed out after {spec.connect_timeout:g}s", start)
    except asyncio.IncompleteReadError:
        return fail("connection closed during the conversation", start)
    except (ValueError, asyncio.LimitOverrunError) as exc:
        return fail(f"bad reply: {exc}", start)
    except OSError as exc:
        return fail(f"{describe(exc)}", start)
    if reason is not None:
        return fail(reason, start)
    return ok("220/HELO 250", start)
