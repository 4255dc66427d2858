"""Sync-group coordinator: members go MASTER together, FAULT propagates and clears."""

from __future__ import annotations

from vrrpd.vrrp.machine import ClearFault, ForceBackup, ForceFault, GroupMaster, State
from vrrpd.vrrp.syncgroup import SyncGroupCoordinator, group_state


def kinds(directives: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(m, type(e).__name__) for m, e in directives]


def test_want_master_moves_every_member() -> None:
    g = SyncGroupCoordinator("G", ["A", "B"])
    out = g.on_want_master("A")
    assert kinds(out) == [("A", "GroupMaster"), ("B", "GroupMaster")]
    assert all(isinstance(e, GroupMaster) for _, e in out)


def test_no_master_while_the_group_is_in_fault() -> None:
    g = SyncGroupCoordinator("G", ["A", "B"])
    g.on_trackers("B", True)
    assert g.on_want_master("A") == []


def test_fault_of_one_member_holds_the_others_until_it_clears() -> None:
    g = SyncGroupCoordinator("G", ["A", "B", "C"])
    assert kinds(g.on_trackers("A", True)) == [("B", "ForceFault"), ("C", "ForceFault")]
    assert g.on_trackers("A", True) == []  # unchanged picture: nothing new
    # B faults too: A (own fault) is now also held by B's fault
    assert kinds(g.on_trackers("B", True)) == [("A", "ForceFault")]
    # A recovers, B still faulty: A and C stay held; B is no longer held by A (its own
    # fault still keeps it in FAULT)
    assert kinds(g.on_trackers("A", False)) == [("B", "ClearFault")]
    out = g.on_trackers("B", False)
    assert kinds(out) == [("A", "ClearFault"), ("C", "ClearFault")]
    assert all(isinstance(e, ClearFault) for _, e in out)


def test_real_drop_to_backup_takes_the_others_along() -> None:
    g = SyncGroupCoordinator("G", ["A", "B"])
    out = g.on_transition("A", State.MASTER, State.BACKUP)
    assert kinds(out) == [("B", "ForceBackup")] and isinstance(out[0][1], ForceBackup)
    assert g.on_transition("A", State.BACKUP, State.MASTER) == []
    assert g.on_transition("A", State.MASTER, State.FAULT) == []


def test_group_state_for_notify() -> None:
    assert group_state([State.MASTER, State.MASTER]) is State.MASTER
    assert group_state([State.MASTER, State.BACKUP]) is None
    assert group_state([State.BACKUP, State.FAULT]) is State.FAULT
    assert group_state([State.INIT, State.INIT]) is None
    g = SyncGroupCoordinator("G", ["A", "B"])
    assert g.group_changed([State.BACKUP, State.BACKUP]) is State.BACKUP
    assert g.group_changed([State.BACKUP, State.BACKUP]) is None
    assert g.group_changed([State.MASTER, State.BACKUP]) is None
    assert g.group_changed([State.MASTER, State.MASTER]) is State.MASTER
    assert isinstance(ForceFault(), ForceFault)
