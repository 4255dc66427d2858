"""UDP_CHECK: send a datagram; fail on an ICMP error, or (``require_reply``) on no matching reply.

Without ``require_reply`` the probe waits ``connect_timeout`` for an ICMP error (port/host
unreachable) and succeeds if none came, as keepalived does.  An ICMP error fails the probe as
soon as it arrives (connected socket: the error is raised by the pending receive).  A reply must be
min..max_reply_length long and match ``reply_pattern`` over the shorter of the two lengths,
ignoring nibbles whose ``reply_mask`` is 0.
"""

from __future__ import annotations

import asyncio
import os
import time

from healthcheck.checkers.base import describe, fail, ok, udp_socket
from healthcheck.model import CheckResult, UdpCheckSpec

__all__ = ["match_reply", "probe"]


def match_reply(spec: UdpCheckSpec, data: bytes) -> str | None:
    """None if ``data`` is an acceptable reply, else the reason."""
    if not spec.min_reply_length <= len(data) <= spec.max_reply_length:
        return (f"reply length {len(data)} outside "
                f"{spec.min_reply_length}..{spec.max_reply_length}")
    pattern = spec.reply_pattern
    if pattern:
        mask = spec.reply_mask or b"\xff" * len(pattern)
        for i in range(min(len(pattern), len(data))):
            if (data[i] ^ pattern[i]) & mask[i]:
                return f"reply byte {i} is {data[i]:#04x}, expected {pattern[i]:#04x}"
    return None


async def probe(spec: UdpCheckSpec) -> CheckResult:
    start = time.monotonic()
    payload = spec.payload if spec.payload is not None else os.urandom(8)
    try:
        sock = udp_socket(spec.connect_ip, spec.connect_port, bindto=spec.bindto,
                          bind_port=spec.bind_port, bind_if=spec.bind_if, fwmark=spec.fwmark)
    except OSError as exc:
        return fail(f"{describe(exc)}", start)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(spec.connect_timeout):
            await loop.sock_sendall(sock, payload)
            data = await loop.sock_recv(sock, 65536)
    except TimeoutError:
        if spec.require_reply:
            return fail(f"no reply within {spec.connect_timeout:g}s", start)
        return ok("no ICMP error", start)
    except OSError as exc:  # the ICMP error, reported as soon as it arrives
        return fail(f"ICMP error: {describe(exc)}", start)
    finally:
        sock.close()
    if spec.require_reply:
        reason = match_reply(spec, data)
        if reason is not None:
            return fail(reason, start)
    return ok(f"reply of {len(data)} bytes", start)
