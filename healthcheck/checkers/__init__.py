"""Probes: one asynchronous function per checker type, ``probe(spec, ...) -> CheckResult``.

``start_probe`` is what the manager calls: it returns an awaitable without creating a task
for TCP_CHECK (callback based, see ``tcp``), a coroutine for the others.

A probe never raises for a failed check (it returns ``ok=False`` with a precise ``detail``),
never blocks the event loop and bounds itself by the spec's timeout.

Each checker's module is imported on its first probe (HTTP_GET/SSL_GET bring ``ssl`` and
``hashlib``, DNS_CHECK ``secrets``...): a daemon imports only the checkers its config uses.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from healthcheck.checkers.base import ProbeContext, RunCommand
from healthcheck.model import (
    CheckResult,
    CheckSpec,
    DnsCheckSpec,
    FileCheckSpec,
    HttpCheckSpec,
    MiscCheckSpec,
    PingCheckSpec,
    SmtpCheckSpec,
    TcpCheckSpec,
    UdpCheckSpec,
)

__all__ = ["ProbeContext", "ProbeFn", "RunCommand", "run_probe", "start_probe"]

ProbeFn = Callable[[CheckSpec, ProbeContext], Awaitable[CheckResult]]


def start_probe(spec: CheckSpec, ctx: ProbeContext) -> Awaitable[CheckResult]:
    """Begin the probe of ``spec``: a future (TCP_CHECK, no task needed) or a coroutine."""
    if isinstance(spec, TcpCheckSpec):
        from healthcheck.checkers import tcp

        return tcp.start(spec)
    return _run(spec, ctx)


async def run_probe(spec: CheckSpec, ctx: ProbeContext) -> CheckResult:
    """Probe ``spec`` once; an OSError is a failed check, never an exception."""
    return await start_probe(spec, ctx)


async def _run(spec: CheckSpec, ctx: ProbeContext) -> CheckResult:
    start = time.monotonic()
    try:
        if isinstance(spec, HttpCheckSpec):
            from healthcheck.checkers import http

            return await http.probe(spec)
        if isinstance(spec, SmtpCheckSpec):
            from healthcheck.checkers import smtp

            return await smtp.probe(spec)
        if isinstance(spec, DnsCheckSpec):
            from healthcheck.checkers import dns

            return await dns.probe(spec)
        if isinstance(spec, UdpCheckSpec):
            from healthcheck.checkers import udp

            return await udp.probe(spec)
        if isinstance(spec, PingCheckSpec):
            from healthcheck.checkers import ping

            return await ping.probe(spec)
        if isinstance(spec, MiscCheckSpec):
            from healthcheck.checkers import misc

            return await misc.probe(spec, ctx)
        if isinstance(spec, FileCheckSpec):
            from healthcheck.checkers import file

            return await file.probe(spec)
    except OSError as exc:
        return CheckResult(False, f"{type(exc).__name__}: {exc}", None, time.monotonic() - start)
    raise TypeError(f"unknown check spec {type(spec).__name__}")
