"""Shared probe plumbing: the probe context and socket set-up (bindto, bind_port, fwmark)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from healthcheck.model import CheckResult, IPAddress
from healthcheck.process import ProcessResult

__all__ = [
    "ProbeContext", "RunCommand", "connect_socket", "describe", "fail",
    "make_socket", "ok", "udp_socket",
]

SO_MARK = getattr(socket, "SO_MARK", 36)


class RunCommand(Protocol):
    async def __call__(
        self, argv: Sequence[str], *, timeout: float, user: str | None = None,
        group: str | None = None,
    ) -> ProcessResult: ...


@dataclass(frozen=True, slots=True)
class ProbeContext:
    """What probes need from their driver: a (bounded) command runner for MISC_CHECK."""

    run_command: RunCommand


def describe(exc: OSError) -> str:
    """The errno text ("Connection refused"), not asyncio's "Connect call failed (...)"."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def ok(detail: str, start: float, weight: int | None = None) -> CheckResult:
    return CheckResult(True, detail, weight, time.monotonic() - start)


def fail(detail: str, start: float) -> CheckResult:
    return CheckResult(False, detail, None, time.monotonic() - start)


def make_socket(
    ip: IPAddress, kind: socket.SocketKind, *, bindto: IPAddress | None = None,
    bind_port: int | None = None, bind_if: str | None = None, fwmark: int | None = None,
    proto: int = 0,
) -> socket.socket:
    """A non-blocking socket of ``ip``'s family with the checker's source options applied."""
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        if fwmark:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, fwmark)
        if bind_if:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bind_if.encode())
        if bindto is not None or bind_port:
            if bind_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            host = str(bindto) if bindto is not None else ("::" if family == socket.AF_INET6
                                                            else "0.0.0.0")
            sock.bind((host, bind_port or 0))
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_socket(
    ip: IPAddress, port: int, *, bindto: IPAddress | None = None, bind_port: int | None = None,
    bind_if: str | None = None, fwmark: int | None = None,
) -> socket.socket:
    """A connected non-blocking TCP socket (the caller bounds the time with asyncio.timeout)."""
    sock = make_socket(ip, socket.SOCK_STREAM, bindto=bindto, bind_port=bind_port,
                       bind_if=bind_if, fwmark=fwmark)
    try:
        await asyncio.get_running_loop().sock_connect(sock, (str(ip), port))
    except BaseException:
        sock.close()
        raise
    return sock


def udp_socket(
    ip: IPAddress, port: int, *, bindto: IPAddress | None = None, bind_port: int | None = None,
    bind_if: str | None = None, fwmark: int | None = None,
) -> socket.socket:
    """A connected non-blocking UDP socket with the checker's source options applied.

    Connected, so the kernel reports an ICMP error (port/host unreachable) for our datagram
    as a socket error: the next ``loop.sock_recv`` raises it (``ConnectionRefusedError``...)
    at once.  (asyncio-dgram's ``recv`` keeps waiting in that case: its protocol queues the
    error for the *next* call, so a probe would only fail at ``connect_timeout``.)"""
    sock = make_socket(ip, socket.SOCK_DGRAM, bindto=bindto, bind_port=bind_port,
                       bind_if=bind_if, fwmark=fwmark)
    try:
        sock.connect((str(ip), port))
    except BaseException:
        sock.close()
        raise
    return sock
