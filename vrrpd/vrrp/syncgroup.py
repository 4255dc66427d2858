"""Sync groups: members move together.  Pure coordinator over the members' machines.

Members run ``MachineConfig(coordinated=True)``: a member never becomes MASTER on its own; it
says ``WantMaster`` and the coordinator answers ``GroupMaster`` to every member (none moves
while the group is in FAULT).  A member that really drops from MASTER to BACKUP (a higher
priority peer) takes the others with it (``ForceBackup``).  While any member's own trackers say
FAULT every other member is held in FAULT (``ForceFault``) until that clears (``ClearFault``).

The coordinator returns ``(member, event)`` pairs; the runner steps those machines and must not
feed the transitions those forced steps cause back into ``on_transition``.
"""

from __future__ import annotations

from collections.abc import Iterable

from vrrpd.vrrp.machine import ClearFault, Event, ForceBackup, ForceFault, GroupMaster, State

__all__ = ["Directive", "SyncGroupCoordinator", "group_state"]

Directive = tuple[str, Event]


def group_state(states: Iterable[State]) -> State | None:
    """The group's state for notify: FAULT if any member is, MASTER/BACKUP/STOP when all
    members agree, None while they are in transit."""
    states = list(states)
    if any(s is State.FAULT for s in states):
        return State.FAULT
    distinct = set(states)
    if len(distinct) == 1:
        only = distinct.pop()
        return only if only is not State.INIT else None
    return None


class SyncGroupCoordinator:
    def __init__(self, name: str, members: Iterable[str]) -> None:
        self.name = name
        self.members: tuple[str, ...] = tuple(members)
        self.faulted: set[str] = set()  # members whose own trackers say FAULT
        self.forced: set[str] = set()  # members we hold in FAULT for the others
        self.notified: State | None = None  # last group state announced (notify GROUP)

    @property
    def in_fault(self) -> bool:
        return bool(self.faulted)

    def on_trackers(self, member: str, fault: bool) -> list[Directive]:
        """A member's own tracker picture changed.  Deliver these before the member's own
        ``TrackersChanged`` so a member whose fault clears while the group is still in FAULT
        never leaves FAULT."""
        if fault:
            self.faulted.add(member)
        else:
            self.faulted.discard(member)
        out: list[Directive] = []
        for m in self.members:
            should = bool(self.faulted - {m})
            if should and m not in self.forced:
                self.forced.add(m)
                out.append((m, ForceFault(reason=f"sync group {self.name}")))
            elif not should and m in self.forced:
                self.forced.discard(m)
                out.append((m, ClearFault(reason=f"sync group {self.name}")))
        return out

    def on_want_master(self, member: str) -> list[Directive]:
        if self.in_fault:
            return []
        reason = f"sync group {self.name}: {member} wants MASTER"
        return [(m, GroupMaster(reason=reason)) for m in self.members]

    def on_transition(self, member: str, old: State, new: State) -> list[Directive]:
        """An unforced transition of ``member``."""
        if old is State.MASTER and new is State.BACKUP:
            reason = f"sync group {self.name}: {member} went BACKUP"
            return [(m, ForceBackup(reason=reason)) for m in self.members if m != member]
        return []

    def group_changed(self, states: Iterable[State]) -> State | None:
        """The new group state when it changed since the last call (for notify), else None."""
        state = group_state(states)
        if state is None or state is self.notified:
            return None
        self.notified = state
        return state
