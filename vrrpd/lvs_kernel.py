"""The seam between the LVS runner and the kernel: what it needs from an IPVS client, and how
one reconciler operation becomes one client call (= one netlink request).

``ipvs.client.IPVSClient`` satisfies :class:`IpvsBackend`; unit tests use a recording fake.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from ipvs.model import (
    Destination,
    DestKey,
    ObservedService,
    Service,
    ServiceKey,
    SyncDaemon,
    SyncState,
    Timeouts,
)
from ipvs.reconcile import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    Flush,
    Op,
)

log = structlog.get_logger("lvs")


class IpvsBackend(Protocol):
    async def open(self) -> None: ...
    def close(self) -> None: ...
    async def dump_services(self) -> list[ObservedService]: ...
    async def new_service(self, service: Service) -> None: ...
    async def set_service(self, service: Service) -> None: ...
    async def delete_service(self, key: ServiceKey) -> None: ...
    async def new_dest(self, key: ServiceKey, dest: Destination) -> None: ...
    async def set_dest(self, key: ServiceKey, dest: Destination) -> None: ...
    async def delete_dest(self, key: ServiceKey, dest: DestKey) -> None: ...
    async def flush(self) -> None: ...
    async def set_timeouts(self, timeouts: Timeouts) -> None: ...
    async def new_daemon(self, daemon: SyncDaemon) -> None: ...
    async def delete_daemon(self, state: SyncState) -> None: ...


async def execute(backend: IpvsBackend, op: Op) -> None:
    """Carry out one operation: exactly one request to the kernel."""
    if isinstance(op, AddService):
        await backend.new_service(op.service)
    elif isinstance(op, EditService):
        await backend.set_service(op.service)
    elif isinstance(op, DelService):
        await backend.delete_service(op.key)
    elif isinstance(op, AddDest):
        await backend.new_dest(op.service, op.dest)
    elif isinstance(op, EditDest):
        await backend.set_dest(op.service, op.dest)
    elif isinstance(op, DelDest):
        await backend.delete_dest(op.service, op.dest)
    elif isinstance(op, Flush):
        await backend.flush()
    else:  # pragma: no cover - exhaustive
        raise TypeError(f"unknown op {op!r}")


def describe(op: Op) -> str:
    """A short human form for logs: ``add-dest TCP 10.0.0.1:80 -> 10.0.1.1:80 w=1``."""
    name = type(op).__name__
    if isinstance(op, (AddService, EditService)):
        return f"{name} {_key(op.service.key)} {op.service.scheduler}"
    if isinstance(op, DelService):
        return f"{name} {_key(op.key)}"
    if isinstance(op, (AddDest, EditDest)):
        return f"{name} {_key(op.service)} -> {op.dest.key.addr}:{op.dest.key.port} " \
               f"w={op.dest.weight}"
    if isinstance(op, DelDest):
        return f"{name} {_key(op.service)} -> {op.dest.addr}:{op.dest.port}"
    return name


def _key(key: ServiceKey) -> str:
    if key.fwmark:
        return f"FWM {key.fwmark}"
    proto = key.protocol.name if key.protocol is not None else "?"
    return f"{proto} {key.addr}:{key.port}"


class FailureLog:
    """What the runner logs of failed operations: each failure once (again only if its error
    changes), then one line per run counting the repeats.  The reconciler retries a failed
    operation on every run, and a kernel refusing 10,000 entries must not write 10,000 lines
    a second."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}  # operation -> error last logged
        self._repeats = 0

    def failed(self, op: Op, error: str) -> None:
        what = describe(op)
        if self._last.get(what) == error:
            self._repeats += 1
            return
        self._last[what] = error
        log.error("ipvs_op_failed", op=what, error=error)

    def end_run(self, failed: list[tuple[Op, str]]) -> None:
        repeats, self._repeats = self._repeats, 0
        if not failed:
            self._last.clear()  # a clean run: the next failure is news again
        elif repeats:
            log.warning("ipvs_ops_still_failing", count=repeats, failed=len(failed),
                        last_error=failed[-1][1])
