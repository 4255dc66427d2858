"""Probes: one asynchronous function per checker type, ``probe(spec, ...) -> CheckResult``.

``start_probe`` is what the manager calls: it returns an awaitable without creating a task
for TCP_CHECK (callback based, see ``tcp``), a coroutine for the others.

A probe never raises for a failed check (it returns ``ok=False`` with a precise ``detail``),
never blocks the event loop and bounds itself by the spec's timeout.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from healthcheck.checkers import dns, file, http, misc, ping, smtp, tcp, udp
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
        return tcp.start(spec)
    return _run(spec, ctx)


async def run_probe(spec: CheckSpec, ctx: ProbeContext) -> CheckResult:
    """Probe ``spec`` once; an OSError is a failed check, never an exception."""
    return await start_probe(spec, ctx)


async def _run(spec: CheckSpec, ctx: ProbeContext) -> CheckResult:
    start = time.monotonic()
    try:
        if isinstance(spec, HttpCheckSpec):
            return await http.probe(spec)
        if isinstance(spec, SmtpCheckSpec):
            return await smtp.probe(spec)
        if isinstance(spec, DnsCheckSpec):
            return await dns.probe(spec)
        if isinstance(spec, UdpCheckSpec):
            return await udp.probe(spec)
        if isinstance(spec, PingCheckSpec):
            return await ping.probe(spec)
        if isinstance(spec, MiscCheckSpec):
            return await misc.probe(spec, ctx)
        if isinstance(spec, FileCheckSpec):
            return await file.probe(spec)
    except OSError as exc:
        return CheckResult(False, f"{type(exc).__name__}: {exc}", None, time.monotonic() - start)
    raise TypeError(f"unknown check spec {type(spec).__name__}")
