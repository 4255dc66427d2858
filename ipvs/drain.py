"""Graceful drain of destinations that go away (pure).

Instead of deleting a destination the moment it leaves the desired state, keep
it at weight 0 (no new connections) until its active + inactive connections
reach zero or ``timeout`` seconds pass, then let the reconciler delete it.

:func:`with_drains` rewrites the desired state before :func:`ipvs.reconcile.plan`
runs, so the planner stays a plain diff: a draining destination is simply
"desired at weight 0".  The caller keeps the returned deadlines for the next sync.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ipvs.model import DestKey, ServiceKey
from ipvs.reconcile import DesiredService, DesiredState, ObservedState

DestRef = tuple[ServiceKey, DestKey]


@dataclass(frozen=True, slots=True)
class DrainResult:
    desired: dict[ServiceKey, DesiredService]
    deadlines: dict[DestRef, float]  # destinations still draining -> when to give up

    @property
    def draining(self) -> frozenset[DestRef]:
        return frozenset(self.deadlines)


def with_drains(
    desired: DesiredState,
    observed: ObservedState,
    deadlines: Mapping[DestRef, float],
    *,
    now: float,
    timeout: float,
    owned: Iterable[ServiceKey] = (),
) -> DrainResult:
    """Keep unwanted destinations of still-desired services at weight 0 while they drain.

    ``timeout`` <= 0 disables draining (every unwanted destination is deleted at
    once).  Only services that are desired are considered: a service that goes
    away takes its destinations with it.  ``owned`` is accepted for symmetry with
    :func:`plan`; a desired service is always ours.
    """
    del owned
    out: dict[ServiceKey, DesiredService] = dict(desired)
    kept: dict[DestRef, float] = {}
    if timeout <= 0:
        return DrainResult(out, kept)
    for key, want in desired.items():
        have = observed.get(key)
        if have is None:
            continue
        wanted = {d.key for d in want.dests}
        extra = []
        for o in have.dests:
            if o.dest.key in wanted:
                continue
            ref = (key, o.dest.key)
            deadline = deadlines.get(ref, now + timeout)
            if o.active_conns + o.inactive_conns == 0 or now >= deadline:
                continue
            kept[ref] = deadline
            extra.append(replace(o.dest, weight=0))
        if extra:
            out[key] = replace(want, dests=want.dests + tuple(extra))
    return DrainResult(out, kept)


def leaving_services(desired: DesiredState, observed: ObservedState,
                     draining: Iterable[DestRef] = ()) -> list[ServiceKey]:
    """Desired services with a destination about to leave that is not draining yet: the
    connection counts that decide its drain must be fresh (re-read them first)."""
    known = set(draining)
    out = []
    for key, want in desired.items():
        have = observed.get(key)
        if have is None:
            continue
        wanted = {d.key for d in want.dests}
        if any(o.dest.key not in wanted and (key, o.dest.key) not in known for o in have.dests):
            out.append(key)
    return out
