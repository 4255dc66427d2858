"""PING_CHECK: one ICMP (or ICMPv6) echo answered within ``connect_timeout``.

Uses an unprivileged ICMP datagram socket when ``net.ipv4.ping_group_range`` allows it, else a
raw socket (root / CAP_NET_RAW).  A random token in the payload identifies our reply, so
several probes and a shared raw socket never confuse each other's echoes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time

from healthcheck.checkers.base import describe, fail, make_socket, ok
from healthcheck.model import CheckResult, PingCheckSpec

__all__ = ["checksum", "echo_request", "probe"]

_ECHO_REQUEST = {4: 8, 6: 128}
_ECHO_REPLY = {4: 0, 6: 129}


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(version: int, ident: int, seq: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHH", _ECHO_REQUEST[version], 0, 0, ident, seq)
    csum = checksum(header + payload) if version == 4 else 0  # the kernel sums ICMPv6
    return struct.pack("!BBHHH", _ECHO_REQUEST[version], 0, csum, ident, seq) + payload


def _open(spec: PingCheckSpec) -> tuple[socket.socket, bool]:
    proto = socket.IPPROTO_ICMPV6 if spec.connect_ip.version == 6 else socket.IPPROTO_ICMP
    kwargs = {"bindto": spec.bindto, "bind_if": spec.bind_if, "fwmark": spec.fwmark,
              "proto": proto}
    try:
        return make_socket(spec.connect_ip, socket.SOCK_DGRAM, **kwargs), False  # type: ignore[arg-type]
    except PermissionError:
        return make_socket(spec.connect_ip, socket.SOCK_RAW, **kwargs), True  # type: ignore[arg-type]


def _is_our_reply(data: bytes, version: int, raw: bool, token: bytes) -> bool:
    if raw and version == 4:
        if len(data) < 20:
            return False
        data = data[(data[0] & 0x0F) * 4:]
    return len(data) >= 8 and data[0] == _ECHO_REPLY[version] and data[8:] == token


async def probe(spec: PingCheckSpec) -> CheckResult:
    start = time.monotonic()
    version = spec.connect_ip.version
    try:
        sock, raw = _open(spec)
    except OSError as exc:
        return fail(f"{describe(exc)}", start)
    loop = asyncio.get_running_loop()
    token = os.urandom(16)
    ident = int.from_bytes(os.urandom(2), "big")
    try:
        async with asyncio.timeout(spec.connect_timeout):
            await loop.sock_sendto(sock, echo_request(version, ident, 1, token),
                                   (str(spec.connect_ip), 0))
            while True:
                data = await loop.sock_recv(sock, 2048)
                if _is_our_reply(data, version, raw, token):
                    return ok("echo reply", start)
    except TimeoutError:
        return fail(f"no echo reply within {spec.connect_timeout:g}s", start)
    except OSError as exc:
        return fail(f"{describe(exc)}", start)
    finally:
        sock.close()
