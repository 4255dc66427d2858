"""Desired vs observed IPVS state -> the minimal ordered list of operations (pure).

The reconciler never flushes to get to a known state: it reads the kernel table
(one dump), compares it with what the config and the checkers want, and emits
only the differences.  That is what lets vrrpd adopt entries that already exist
at start (no delete/re-add, connections survive) and repair entries someone
changed or deleted with ipvsadm.

Ownership: ``owned`` is the set of services this daemon is responsible for
(what it programmed or adopted, and has not yet seen deleted).  A service that
is neither desired nor owned is *foreign* and is never touched.  Inside a
service we own, every destination is ours.

Ordering rules of :func:`plan`:
- services that are no longer wanted are deleted first (one ``DelService`` each:
  the kernel drops their destinations with them);
- then per desired service, in the desired order: add or edit the service,
  add its new destinations, edit changed ones, delete the unwanted ones —
  adding before deleting so a pool swap never leaves the service empty.

Only the fields we control are compared: the kernel-maintained ``hashed`` flag,
counters and the tunnel fields of non-tunnel destinations are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter, is_

from ipvs.model import (
    Destination,
    DestKey,
    Forward,
    ObservedDestination,
    ObservedService,
    Service,
    ServiceKey,
    Stats,
)

_ZERO = Stats()  # shared by every new entry (frozen)
_DEST = attrgetter("dest")

# Flags the kernel sets on its own; never compared, never sent.
KERNEL_FLAGS = frozenset({"hashed"})


@dataclass(frozen=True, slots=True)
class DesiredService:
    """A service as it should be in the kernel, with its full destination set."""

    service: Service
    dests: tuple[Destination, ...] = ()

    @property
    def key(self) -> ServiceKey:
        return self.service.key


DesiredState = Mapping[ServiceKey, DesiredService]
ObservedState = Mapping[ServiceKey, ObservedService]


def desired_state(services: Iterable[DesiredService]) -> dict[ServiceKey, DesiredService]:
    """Index services by key; a later duplicate key replaces an earlier one."""
    return {s.key: s for s in services}


def observed_state(services: Iterable[ObservedService]) -> dict[ServiceKey, ObservedService]:
    return {s.service.key: s for s in services}


# ---- operations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddService:
    service: Service


@dataclass(frozen=True, slots=True)
class EditService:
    """Set every controlled field of the service (never a partial set)."""

    service: Service


@dataclass(frozen=True, slots=True)
class DelService:
    key: ServiceKey


@dataclass(frozen=True, slots=True)
class AddDest:
    service: ServiceKey
    dest: Destination


@dataclass(frozen=True, slots=True)
class EditDest:
    service: ServiceKey
    dest: Destination


@dataclass(frozen=True, slots=True)
class DelDest:
    service: ServiceKey
    dest: DestKey


@dataclass(frozen=True, slots=True)
class Flush:
    """Empty the whole IPVS table (only from ``lvs_flush`` / ``lvs_flush_on_stop ALL``)."""


Op = AddService | EditService | DelService | AddDest | EditDest | DelDest | Flush


# ---- comparison of the fields we control ------------------------------------------------


def service_fields(s: Service) -> tuple[object, ...]:
    return (s.scheduler, s.flags - KERNEL_FLAGS, s.timeout, s.netmask, s.pe_name)


def dest_fields(d: Destination, service_af: int) -> tuple[object, ...]:
    tun = (d.tun_type, d.tun_port, d.tun_flags) if d.forward == Forward.TUN else ()
    return (d.weight, d.forward, d.u_threshold, d.l_threshold, d.af or service_af, tun)


def same_service(a: Service, b: Service) -> bool:
    return a.key == b.key and service_fields(a) == service_fields(b)


def same_dest(a: Destination, b: Destination, service_af: int) -> bool:
    return a.key == b.key and dest_fields(a, service_af) == dest_fields(b, service_af)


# ---- planning ----------------------------------------------------------------------------


def plan(desired: DesiredState, observed: ObservedState, owned: Iterable[ServiceKey]) -> list[Op]:
    """The ordered operations that turn ``observed`` into ``desired`` on our services."""
    ops: list[Op] = []
    for key in sorted_keys(set(owned) - desired.keys()):
        if key in observed:
            ops.append(DelService(key))
    for key, want in desired.items():
        have = observed.get(key)
        if have is None:
            ops.append(AddService(want.service))
            ops.extend(AddDest(key, d) for d in want.dests)
            continue
        if want.service is not have.service and not same_service(want.service, have.service):
            ops.append(EditService(want.service))
        ops.extend(_dest_ops(key, want.dests, have.dests))
    return ops


def same_objects(want: Sequence[Destination], have: Sequence[ObservedDestination]) -> bool:
    """``have`` holds the very objects of ``want``, in any order: the cached table after our
    own ops, or a dump decoded with them (``ipvs.dumpdecode.DumpDecoder.prime``; the kernel
    lists the newest destination first)."""
    if len(want) != len(have):
        return False
    dests = list(map(_DEST, have))
    if all(map(is_, reversed(want), dests)) or all(map(is_, want, dests)):
        return True
    ids = set(map(id, want))
    return len(ids) == len(want) and ids == set(map(id, dests))


def _dest_ops(
    key: ServiceKey, want: Sequence[Destination], have: Sequence[ObservedDestination]
) -> list[Op]:
    if same_objects(want, have):
        return []
    current = {o.dest.key: o.dest for o in have}
    wanted_keys = set()
    adds: list[Op] = []
    edits: list[Op] = []
    af = key.af
    for d in want:
        wanted_keys.add(d.key)
        old = current.get(d.key)
        if old is None:
            adds.append(AddDest(key, d))
        elif old is not d and not same_dest(d, old, af):
            edits.append(EditDest(key, d))
    dels: list[Op] = [DelDest(key, o.dest.key) for o in have if o.dest.key not in wanted_keys]
    return adds + edits + dels


def stop_plan(
    observed: ObservedState, owned: Iterable[ServiceKey], *, mode: str = "dests"
) -> list[Op]:
    """What to do when the daemon stops.

    ``mode`` follows keepalived: ``"dests"`` (default, no ``lvs_flush_on_stop``)
    deletes each destination then each service; ``"services"``
    (``lvs_flush_on_stop VS``) deletes each service and lets the kernel drop its
    destinations; ``"flush"`` (``lvs_flush_on_stop`` / ``ALL``) empties the table;
    ``"keep"`` (``-I``) leaves everything.
    """
    if mode == "keep":
        return []
    if mode == "flush":
        return [Flush()]
    if mode not in ("dests", "services"):
        raise ValueError(f"unknown stop mode {mode!r}")
    ops: list[Op] = []
    for key in sorted_keys(set(owned)):
        have = observed.get(key)
        if have is None:
            continue
        if mode == "dests":
            ops.extend(DelDest(key, o.dest.key) for o in have.dests)
        ops.append(DelService(key))
    return ops


def sorted_keys(keys: Iterable[ServiceKey]) -> list[ServiceKey]:
    """A stable order for keys that come from a set (fwmark services last)."""
    return sorted(
        keys,
        key=lambda k: (k.fwmark != 0, k.af, int(k.protocol or 0), int(k.addr or 0), k.port,
                       k.fwmark),
    )


# ---- the semantics of the ops (used by tests and to update a cached snapshot) -----------


def apply(observed: ObservedState, ops: Iterable[Op]) -> dict[ServiceKey, ObservedService]:
    """The table after the kernel executes ``ops`` (raises KeyError/ValueError as it would).

    Counters of surviving destinations are kept; new entries start at zero.  Linear in the
    number of ops: destination changes are gathered per service and materialised once.
    """
    table: dict[ServiceKey, ObservedService] = dict(observed)
    touched: dict[ServiceKey, dict[DestKey, ObservedDestination]] = {}
    key: ServiceKey | None = None  # the service of the last destination op (runs of ops
    dests: dict[DestKey, ObservedDestination] = {}  # on one service look it up once)

    for op in ops:
        if isinstance(op, (AddDest, EditDest, DelDest)):
            if op.service is not key:
                key = op.service
                found = touched.get(key)
                if found is None:
                    found = touched[key] = {o.dest.key: o for o in table[key].dests}
                dests = found
            if isinstance(op, AddDest):
                new = ObservedDestination(op.dest, 0, 0, 0, _ZERO)
                if dests.setdefault(op.dest.key, new) is not new:
                    raise ValueError(f"destination exists: {op.dest.key}")
            elif isinstance(op, EditDest):
                old = dests[op.dest.key]
                dests[op.dest.key] = ObservedDestination(
                    op.dest, old.active_conns, old.inactive_conns, old.persist_conns, old.stats)
            else:
                del dests[op.dest]
            continue
        key = None  # the table changes: look the next service up again
        if isinstance(op, Flush):
            table.clear()
            touched.clear()
        elif isinstance(op, AddService):
            if op.service.key in table:
                raise ValueError(f"service exists: {op.service.key}")
            table[op.service.key] = ObservedService(op.service, (), _ZERO)
            touched[op.service.key] = {}
        elif isinstance(op, EditService):
            have = table[op.service.key]
            table[op.service.key] = ObservedService(op.service, have.dests, have.stats)
        else:
            del table[op.key]
            touched.pop(op.key, None)
    for skey, sdests in touched.items():
        have = table[skey]
        table[skey] = ObservedService(have.service, tuple(sdests.values()), have.stats)
    return table
