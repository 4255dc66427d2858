"""DNS_CHECK: one UDP query; success is a reply with our id, RCODE 0 and >= 1 answer."""

from __future__ import annotations

import asyncio
import secrets
import struct
import time

from healthcheck.checkers.base import describe, fail, ok, udp_socket
from healthcheck.model import CheckResult, DnsCheckSpec

__all__ = ["QTYPES", "build_query", "check_reply", "probe"]

QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split(".") if name not in ("", ".") else []:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label {label!r}")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\x00")


def build_query(qid: int, name: str, qtype: str) -> bytes:
    """Header (RD set, one question) + question of class IN."""
    code = QTYPES[qtype.upper()]
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(name) + \
        struct.pack("!HH", code, 1)


def check_reply(data: bytes, qid: int) -> str | None:
    """None if ``data`` is a good answer to query ``qid``, else the reason."""
    if len(data) < 12:
        return f"short reply ({len(data)} bytes)"
    rid, flags, _qd, an, _ns, _ar = struct.unpack_from("!HHHHHH", data)
    if rid != qid:
        return f"reply id {rid} != query id {qid}"
    if not flags & 0x8000:
        return "not a response (QR clear)"
    rcode = flags & 0xF
    if rcode:
        return f"RCODE {rcode}"
    if an == 0:
        return "no answer record"
    return None


async def probe(spec: DnsCheckSpec) -> CheckResult:
    """An ICMP error (port unreachable...) fails the probe as soon as it arrives."""
    start = time.monotonic()
    qid = secrets.randbelow(0x10000)
    query = build_query(qid, spec.name, spec.type)
    try:
        sock = udp_socket(spec.connect_ip, spec.connect_port, bindto=spec.bindto,
                          bind_port=spec.bind_port, bind_if=spec.bind_if, fwmark=spec.fwmark)
    except OSError as exc:
        return fail(f"{describe(exc)}", start)
    loop = asyncio.get_running_loop()
    last = "no reply"
    try:
        async with asyncio.timeout(spec.connect_timeout):
            await loop.sock_sendall(sock, query)
            while True:
                data = await loop.sock_recv(sock, 65536)
                reason = check_reply(data, qid)
                if reason is None:
                    return ok(f"{spec.type} {spec.name} answered", start)
                last = reason
                if not reason.startswith("reply id"):
                    return fail(reason, start)
    except TimeoutError:
        return fail(f"{last} within {spec.connect_timeout:g}s", start)
    except OSError as exc:
        return fail(f"{describe(exc)}", start)
    finally:
        sock.close()
