"""What a reload changes in the VRRP part: old ``Config`` + new ``Config`` -> ``ReloadPlan``. Pure.

Matching rule (keepalived 2.2.7's ``vrrp_exist``, not the instance name): an old instance
continues as the new instance with the same **interface, VRID and address family**, the same
choice of unicast vs multicast and, for unicast, the same configured source address.  We add the
VRRP version (an instance whose version changes is a different engine here).  So:

- a renamed instance on the same interface/VRID is the *same* instance (state, VIPs, counters
  kept; only its name changes) — keepalived does the same;
- an instance whose interface, VRID, family or unicast/multicast choice changes is a different
  instance: the old one is removed (priority 0 if MASTER, VIPs removed, notify STOP) and the new
  one starts fresh, even when the name stays.

Each matched pair is **kept** (equal config, same trackers, same sync-group membership: the
runtime only takes the new config object) or **changed** (``InstanceChange``: which fields, which
VIPs added/removed, trackers or group changed); the runner applies changes in place without a
transition.  Old instances without a match are **removed**, new ones **added**.  When several
new instances share a key (possible only for unicast), the one with the same name wins, then
config order.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from ipaddress import IPv6Interface

from vrrpd.config.model import Config, VrrpInstance
from vrrpd.vrrp.addresses import Vip
from vrrpd.vrrp.instance import vips_of
from vrrpd.vrrp.tracking import Tracked, tracked_for

__all__ = ["InstanceChange", "InstanceKey", "ReloadPlan", "effective_groups", "instance_key",
           "plan_reload"]

# VrrpInstance fields that only the state machine's settings depend on
MACHINE_FIELDS = frozenset({
    "priority", "advert_int", "state", "nopreempt", "preempt_delay", "garp_master_delay",
    "garp_master_repeat", "garp_master_refresh", "garp_master_refresh_repeat",
    "garp_lower_prio_delay", "garp_lower_prio_repeat", "garp_interval", "unicast_src_ip",
    "mcast_src_ip"})


@dataclass(frozen=True, slots=True)
class InstanceKey:
    """What makes an old and a new instance the same VRRP router (see the module docstring)."""

    interface: str
    vrid: int
    family: int  # 4 or 6 (of the first virtual_ipaddress; 4 without VIPs, as keepalived)
    version: int
    unicast: bool
    src: str | None  # configured unicast source (unicast only); None = interface address

    def __str__(self) -> str:
        mode = f"unicast from {self.src or 'primary'}" if self.unicast else "multicast"
        return f"{self.interface} vrid {self.vrid} IPv{self.family} v{self.version} {mode}"


def instance_key(inst: VrrpInstance) -> InstanceKey:
    first = inst.virtual_ipaddresses[0].address if inst.virtual_ipaddresses else None
    family = 6 if isinstance(first, IPv6Interface) else 4
    src = inst.unicast_src_ip or inst.mcast_src_ip
    return InstanceKey(inst.interface, inst.virtual_router_id, family, inst.version,
                       inst.uses_unicast, str(src) if inst.uses_unicast and src else None)


def _vip_id(v: Vip) -> tuple[str, int, str]:
    """An address on an interface: what the kernel keys it by."""
    return (v.address, v.prefixlen, v.dev)


@dataclass(frozen=True, slots=True)
class InstanceChange:
    """A matched instance whose settings changed; applied in place, without a transition."""

    old: VrrpInstance
    new: VrrpInstance
    fields: tuple[str, ...]  # VrrpInstance fields that differ, in declaration order
    vips_added: tuple[Vip, ...]  # addresses (address, prefix, dev) not configured before
    vips_removed: tuple[Vip, ...]  # addresses no longer configured
    trackers_changed: bool  # tracked interfaces/scripts/files or their weights
    group_changed: bool  # sync-group membership (of this instance's old or new group)

    @property
    def name(self) -> str:
        return self.new.name

    @property
    def renamed(self) -> bool:
        return self.old.name != self.new.name

    @property
    def machine_changed(self) -> bool:
        return bool(MACHINE_FIELDS.intersection(self.fields)) or self.group_changed


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    kept: tuple[str, ...]  # names (unchanged instances keep their name)
    changed: tuple[InstanceChange, ...]
    removed: tuple[VrrpInstance, ...]
    added: tuple[VrrpInstance, ...]
    groups_kept: tuple[str, ...]
    groups_rebuilt: tuple[str, ...]  # membership changed (or a member was renamed)
    groups_removed: tuple[str, ...]
    groups_added: tuple[str, ...]
    scripts_changed: tuple[str, ...]  # vrrp_script definitions changed (trackers restarted)
    files_changed: tuple[str, ...]  # track_file definitions changed

    @property
    def empty(self) -> bool:
        return not (self.changed or self.removed or self.added or self.groups_rebuilt
                    or self.groups_removed or self.groups_added or self.scripts_changed
                    or self.files_changed)

    def summary(self) -> dict[str, list[str]]:
        """For logs and the status: what happened to which instance."""
        return {
            "kept": list(self.kept),
            "changed": [f"{c.old.name}->{c.name}" if c.renamed else c.name
                        for c in self.changed],
            "removed": [i.name for i in self.removed],
            "added": [i.name for i in self.added],
            "groups_rebuilt": [*self.groups_rebuilt, *self.groups_added],
            "groups_removed": list(self.groups_removed),
        }


def effective_groups(config: Config) -> dict[str, tuple[str, ...]]:
    """Sync groups the runner coordinates: members that are instances, when two or more."""
    names = {i.name for i in config.vrrp_instances}
    out = {}
    for name, group in config.vrrp_sync_groups.items():
        members = tuple(n for n in group.members if n in names)
        if len(members) >= 2:
            out[name] = members
    return out


def _match(old: Config, new: Config) -> tuple[list[tuple[VrrpInstance, VrrpInstance]],
                                              list[VrrpInstance], list[VrrpInstance]]:
    candidates: dict[InstanceKey, list[VrrpInstance]] = {}
    for inst in new.vrrp_instances:
        candidates.setdefault(instance_key(inst), []).append(inst)
    pairs, removed = [], []
    for o in old.vrrp_instances:
        free = candidates.get(instance_key(o), [])
        if not free:
            removed.append(o)
            continue
        pick = next((n for n in free if n.name == o.name), free[0])
        free.remove(pick)
        pairs.append((o, pick))
    matched = {id(n) for _, n in pairs}
    added = [n for n in new.vrrp_instances if id(n) not in matched]
    return pairs, removed, added


def _group_of(groups: dict[str, tuple[str, ...]], name: str) -> tuple[str, tuple[str, ...]] | None:
    return next(((g, m) for g, m in groups.items() if name in m), None)


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    pairs, removed, added = _match(old, new)
    old_groups, new_groups = effective_groups(old), effective_groups(new)
    renamed = {o.name: n.name for o, n in pairs}
    kept: list[str] = []
    changed: list[InstanceChange] = []
    for o, n in pairs:
        diff = tuple(f.name for f in fields(VrrpInstance)
                     if f.compare and getattr(o, f.name) != getattr(n, f.name))
        tracked_old: tuple[Tracked, ...] = tracked_for(old, o)
        tracked_new: tuple[Tracked, ...] = tracked_for(new, n)
        g_old, g_new = _group_of(old_groups, o.name), _group_of(new_groups, n.name)
        # same group = same name and the same members once renames are applied
        same_group = (g_old is None and g_new is None) or (
            g_old is not None and g_new is not None and g_old[0] == g_new[0]
            and tuple(renamed.get(m, m) for m in g_old[1]) == g_new[1])
        if not diff and tracked_old == tracked_new and same_group:
            kept.append(n.name)
            continue
        v_old, v_new = vips_of(o), vips_of(n)
        ids_old, ids_new = {_vip_id(v) for v in v_old}, {_vip_id(v) for v in v_new}
        changed.append(InstanceChange(
            old=o, new=n, fields=diff,
            vips_added=tuple(v for v in v_new if _vip_id(v) not in ids_old),
            vips_removed=tuple(v for v in v_old if _vip_id(v) not in ids_new),
            trackers_changed=tracked_old != tracked_new,
            group_changed=not same_group))
    g_kept, g_rebuilt = [], []
    for name, members in new_groups.items():
        if name not in old_groups:
            continue
        if old_groups[name] == members:
            g_kept.append(name)
        else:
            g_rebuilt.append(name)
    scripts = sorted(n for n, s in new.vrrp_scripts.items()
                     if n in old.vrrp_scripts and old.vrrp_scripts[n] != s)
    files = sorted(n for n, f in new.track_files.items()
                   if n in old.track_files and old.track_files[n] != f)
    return ReloadPlan(
        kept=tuple(kept), changed=tuple(changed), removed=tuple(removed), added=tuple(added),
        groups_kept=tuple(g_kept), groups_rebuilt=tuple(g_rebuilt),
        groups_removed=tuple(n for n in old_groups if n not in new_groups),
        groups_added=tuple(n for n in new_groups if n not in old_groups),
        scripts_changed=tuple(scripts), files_changed=tuple(files))
