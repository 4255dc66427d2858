"""What an instance tracks and how the tracker states add up to one ``TrackersChanged``. Pure.

Weights follow keepalived: a positive weight is added while the tracked thing is up/OK, a
negative one while it is down/failing; ``reverse`` flips the sign of the weight (for weight 0 it
flips the sense: up means fault).  A weight-0 tracker that is down puts the instance in FAULT.
track_file weights are ``value * weight`` (``trackfile.track_file_weight``; None = FAULT).
The instance's own interface is tracked with weight 0 unless ``dont_track_primary``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from vrrpd.config.model import Config, SyncGroup, VrrpInstance
from vrrpd.vrrp.machine import TrackersChanged
from vrrpd.vrrp.trackfile import track_file_weight

__all__ = ["Kind", "Tracked", "picture", "tracked_for"]


class Kind(enum.Enum):
    INTERFACE = "interface"
    SCRIPT = "script"
    FILE = "file"


@dataclass(frozen=True, slots=True)
class Tracked:
    kind: Kind
    name: str
    weight: int = 0
    reverse: bool = False


def tracked_for(config: Config, inst: VrrpInstance) -> tuple[Tracked, ...]:
    """Every tracker that applies to ``inst``: its own, then its sync group's (deduplicated)."""
    out: list[Tracked] = []
    if not inst.dont_track_primary:
        out.append(Tracked(Kind.INTERFACE, inst.interface))
    blocks: list[VrrpInstance | SyncGroup] = [inst]
    group = config.vrrp_sync_groups.get(inst.sync_group or "")
    if group is not None:
        blocks.append(group)
    for block in blocks:
        out += [Tracked(Kind.INTERFACE, t.name, t.weight, t.reverse)
                for t in block.track_interfaces]
        for s in block.track_scripts:
            script = config.vrrp_scripts.get(s.name)
            if s.weight is not None:
                out.append(Tracked(Kind.SCRIPT, s.name, s.weight, s.reverse))
            elif script is not None:
                out.append(Tracked(Kind.SCRIPT, s.name, script.weight, script.weight_reverse))
        for f in block.track_files:
            tf = config.track_files.get(f.name)
            if f.weight is not None:
                out.append(Tracked(Kind.FILE, f.name, f.weight, f.reverse))
            elif tf is not None:
                out.append(Tracked(Kind.FILE, f.name, tf.weight, tf.weight_reverse))
    seen: set[Tracked] = set()
    unique = []
    for t in out:
        if t not in seen:
            seen.add(t)
            unique.append(t)
    return tuple(unique)


def contribution(t: Tracked, status: bool | int) -> int | None:
    """Priority delta of one tracker in ``status`` (bool up/OK, or a track_file value);
    None = FAULT."""
    if t.kind is Kind.FILE:
        return track_file_weight(int(status), t.weight, t.reverse)
    up = bool(status)
    if t.weight == 0:
        return 0 if up != t.reverse else None
    weight = -t.weight if t.reverse else t.weight
    if weight > 0:
        return weight if up else 0
    return 0 if up else weight


def picture(tracked: Iterable[Tracked], status: Mapping[tuple[Kind, str], bool | int]
            ) -> TrackersChanged:
    """The whole tracker picture.  A tracker with no status yet counts as up (value 0)."""
    delta = 0
    faults: list[str] = []
    changes: list[str] = []
    for t in tracked:
        value = status.get((t.kind, t.name), 0 if t.kind is Kind.FILE else True)
        c = contribution(t, value)
        if c is None:
            faults.append(f"{t.kind.value} {t.name}")
        elif c:
            delta += c
            changes.append(f"{t.kind.value} {t.name} {c:+d}")
    reason = "; ".join([*(f"{f} down" for f in faults), *changes]) or "all trackers up"
    return TrackersChanged(priority_delta=delta, fault=bool(faults), reason=reason)
