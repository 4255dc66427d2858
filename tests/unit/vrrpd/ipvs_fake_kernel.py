"""A recording fake of the IPVS client for unit tests of the LVS runner.

It keeps a table with the kernel's add/edit/delete semantics (``ipvs.reconcile.apply``,
duplicate adds -> Exists, missing entries -> NotFound), records every request as
``(method, args)``, and can be told to fail the next calls of a method.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ipvs.errors import Exists, IPVSError, NotFound
from ipvs.model import (
    Destination,
    DestKey,
    ObservedDestination,
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
    apply,
)


class FakeKernel:
    def __init__(self) -> None:
        self.table: dict[ServiceKey, ObservedService] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.failures: dict[str, deque[Exception]] = {}
        self.timeouts: Timeouts | None = None
        self.daemons: dict[SyncState, SyncDaemon] = {}
        self.opened = self.closed = 0

    # test helpers
    def fail_next(self, method: str, exc: Exception | None = None, times: int = 1) -> None:
        q = self.failures.setdefault(method, deque())
        for _ in range(times):
            q.append(exc or IPVSError("injected failure", operation=method))

    def writes(self) -> list[tuple[str, tuple[Any, ...]]]:
        return [c for c in self.calls if c[0] not in ("dump_services", "dump_dests")]

    def reset_calls(self) -> None:
        self.calls.clear()

    def _call(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        q = self.failures.get(method)
        if q:
            raise q.popleft()

    def _op(self, op: Op) -> None:
        try:
            self.table = apply(self.table, [op])
        except ValueError as exc:
            raise Exists(str(exc)) from exc
        except KeyError as exc:
            raise NotFound(str(exc)) from exc

    # the IpvsBackend protocol
    async def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        self.closed += 1

    async def dump_services(self) -> list[ObservedService]:
        self._call("dump_services")
        return list(self.table.values())

    async def dump_dests(self, key: ServiceKey) -> list[ObservedDestination]:
        self._call("dump_dests", key)
        if key not in self.table:
            raise NotFound("no such service", operation="dump_dests")
        return list(self.table[key].dests)

    async def new_service(self, service: Service) -> None:
        self._call("new_service", service)
        self._op(AddService(service))

    async def set_service(self, service: Service) -> None:
        self._call("set_service", service)
        self._op(EditService(service))

    async def delete_service(self, key: ServiceKey) -> None:
        self._call("delete_service", key)
        self._op(DelService(key))

    async def new_dest(self, key: ServiceKey, dest: Destination) -> None:
        self._call("new_dest", key, dest)
        self._op(AddDest(key, dest))

    async def set_dest(self, key: ServiceKey, dest: Destination) -> None:
        self._call("set_dest", key, dest)
        self._op(EditDest(key, dest))

    async def delete_dest(self, key: ServiceKey, dest: DestKey) -> None:
        self._call("delete_dest", key, dest)
        self._op(DelDest(key, dest))

    async def flush(self) -> None:
        self._call("flush")
        self._op(Flush())

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        self._call("set_timeouts", timeouts)
        self.timeouts = timeouts

    async def new_daemon(self, daemon: SyncDaemon) -> None:
        self._call("new_daemon", daemon)
        if daemon.state in self.daemons:
            raise Exists("daemon running")
        self.daemons[daemon.state] = daemon

    async def delete_daemon(self, state: SyncState) -> None:
        self._call("delete_daemon", state)
        if self.daemons.pop(state, None) is None:
            raise NotFound("no daemon")
