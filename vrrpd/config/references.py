"""Cross-block checks: names that refer to other blocks, and duplicate VRIDs.

Run after every block is built.  A dangling reference is dropped with an ERROR
(keepalived logs "... not found, ignoring" and runs without it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TypeVar

from vrrpd.config.errors import Position, did_you_mean
from vrrpd.config.model import Config
from vrrpd.config.model_common import Command
from vrrpd.config.model_lvs import FileCheck, MiscCheck, VirtualServer, VirtualServerGroup
from vrrpd.config.model_vrrp import (
    SyncGroup,
    TrackFile,
    TrackFileRef,
    TrackScriptRef,
    VrrpInstance,
    VrrpScript,
)
from vrrpd.config.schema import Ctx

R = TypeVar("R", TrackScriptRef, TrackFileRef)


def _family(inst: VrrpInstance) -> int:
    for vip in inst.virtual_ipaddresses:
        return vip.address.version
    return 4


def _refs(ctx: Ctx, owner: str, pos: Position | None, refs: Sequence[R],
          known: Mapping[str, object], what: str) -> tuple[R, ...]:
    kept: list[R] = []
    for ref in refs:
        if ref.name in known:
            kept.append(ref)
        else:
            ctx.error(ref.pos or pos,
                      f"{owner}: {what} '{ref.name}' not found", did_you_mean(ref.name, known)
                      or "the reference is ignored")
    return tuple(kept)


def check_vrrp_references(
        ctx: Ctx, instances: list[VrrpInstance], scripts: Mapping[str, VrrpScript],
        track_files: Mapping[str, TrackFile], groups: Mapping[str, SyncGroup],
) -> tuple[list[VrrpInstance], dict[str, SyncGroup]]:
    out: list[VrrpInstance] = []
    seen: dict[tuple[str, int, int], VrrpInstance] = {}
    for inst in instances:
        key = (inst.interface, inst.virtual_router_id, _family(inst))
        # keepalived 2.2.7 only refuses the clash between two multicast instances; unicast
        # instances may share a VRID on an interface (even with a common peer).
        other = seen.get(key) if not inst.unicast_peers else None
        if other is not None:
            fam = "IPv4" if key[2] == 4 else "IPv6"
            ctx.error(inst.pos or other.pos,
                      f"vrrp_instances {other.name} and {inst.name} both use VRID "
                      f"{inst.virtual_router_id} with {fam} on interface {inst.interface}",
                      f"{inst.name} is ignored")
            continue
        if not inst.unicast_peers:
            seen[key] = inst
        inst = dataclasses.replace(
            inst,
            track_scripts=_refs(ctx, f"vrrp_instance {inst.name}", inst.pos, inst.track_scripts,
                                scripts, "track_script"),
            track_files=_refs(ctx, f"vrrp_instance {inst.name}", inst.pos, inst.track_files,
                              track_files, "track_file"))
        out.append(inst)

    by_name = {inst.name: i for i, inst in enumerate(out)}
    new_groups: dict[str, SyncGroup] = {}
    for group in groups.values():
        members = []
        for member in group.members:
            if member not in by_name:
                ctx.error(group.pos,
                          f"vrrp_sync_group {group.name}: vrrp_instance '{member}' doesn't exist",
                          did_you_mean(member, by_name) or "it is ignored")
                continue
            current = out[by_name[member]]
            if current.sync_group is not None:
                ctx.error(group.pos,
                          f"vrrp_sync_group {group.name}: vrrp_instance '{member}' is already in "
                          f"sync group {current.sync_group}", "it is ignored here")
                continue
            out[by_name[member]] = dataclasses.replace(current, sync_group=group.name)
            members.append(member)
        if len(members) == 1:
            ctx.warn(group.pos,
                     f"vrrp_sync_group {group.name} has only 1 vrrp_instance - this probably "
                     f"isn't what you want")
        group = dataclasses.replace(
            group, members=tuple(members),
            track_scripts=_refs(ctx, f"vrrp_sync_group {group.name}", group.pos,
                                group.track_scripts, scripts, "track_script"),
            track_files=_refs(ctx, f"vrrp_sync_group {group.name}", group.pos,
                              group.track_files, track_files, "track_file"))
        if members:
            new_groups[group.name] = group
        else:
            ctx.error(group.pos, f"vrrp_sync_group {group.name}: none of its vrrp_instances "
                                 f"can be used", "the sync group is removed, as keepalived")
    return out, new_groups


def check_lvs_references(ctx: Ctx, servers: list[VirtualServer],
                         groups: Mapping[str, VirtualServerGroup],
                         track_files: Mapping[str, TrackFile]) -> list[VirtualServer]:
    out: list[VirtualServer] = []
    for vs in servers:
        if vs.group is not None and vs.group not in groups:
            ctx.error(vs.pos,
                      f"virtual_server group '{vs.group}': no such virtual_server_group",
                      did_you_mean(vs.group, groups) or "the virtual server is ignored")
            continue
        rss = []
        changed = False
        for rs in vs.real_servers:
            checkers = []
            for chk in rs.checkers:
                if isinstance(chk, FileCheck) and chk.track_file not in track_files:
                    ctx.error(chk.pos,
                              f"FILE_CHECK: track_file '{chk.track_file}' not found",
                              did_you_mean(chk.track_file, track_files)
                              or "the checker is ignored")
                    continue
                checkers.append(chk)
            if len(checkers) != len(rs.checkers):
                rs = dataclasses.replace(rs, checkers=tuple(checkers))
                changed = True
            rss.append(rs)
        if changed:
            vs = dataclasses.replace(vs, real_servers=tuple(rss))
        out.append(vs)
    return out


def commands_in_use(config: Config) -> list[Command]:
    """Every command keepalived would run: notify scripts, tracked vrrp_scripts, checkers..."""
    cmds: list[Command | None] = []
    tracked: set[str] = set()
    for inst in config.vrrp_instances:
        cmds += [inst.notify_master, inst.notify_backup, inst.notify_fault, inst.notify_stop,
                 inst.notify, inst.notify_master_rx_lower_pri]
        tracked.update(t.name for t in inst.track_scripts)
    for group in config.vrrp_sync_groups.values():
        cmds += [group.notify_master, group.notify_backup, group.notify_fault,
                 group.notify_stop, group.notify]
        tracked.update(t.name for t in group.track_scripts)
    cmds += [s.script for name, s in config.vrrp_scripts.items() if name in tracked]
    for vs in config.virtual_servers:  # tens of thousands of real servers: kept lean
        cmds += [vs.quorum_up, vs.quorum_down]
        for rs in vs.real_servers:
            if rs.notify_up is not None:
                cmds.append(rs.notify_up)
            if rs.notify_down is not None:
                cmds.append(rs.notify_down)
            if rs.checkers:
                cmds += [c.misc_path for c in rs.checkers if isinstance(c, MiscCheck)]
    g = config.global_defs
    cmds += [g.notify_fifo, g.vrrp_notify_fifo, g.lvs_notify_fifo]
    return [c for c in cmds if c is not None]


def check_script_security(ctx: Ctx, config: Config) -> None:
    if config.global_defs.enable_script_security:
        return
    cmds = commands_in_use(config)
    if cmds:
        ctx.warn(cmds[0].pos, f"{len(cmds)} script(s) configured but enable_script_security is "
                              f"not set: keepalived -t reports a SECURITY VIOLATION (exit 6)",
                 "add 'enable_script_security' to global_defs and make scripts root-owned")


def referenced_interfaces(config: Config) -> dict[str, Position | None]:
    """Interface names the config needs to exist (keepalived -t checks them), first use each."""
    out: dict[str, Position | None] = {}
    for inst in config.vrrp_instances:
        out.setdefault(inst.interface, inst.interface_pos or inst.pos)
        for vip in (*inst.virtual_ipaddresses, *inst.virtual_ipaddresses_excluded):
            if vip.dev is not None:
                out.setdefault(vip.dev, vip.pos)
        for t in inst.track_interfaces:
            out.setdefault(t.name, t.pos or inst.pos)
    for group in config.vrrp_sync_groups.values():
        for t in group.track_interfaces:
            out.setdefault(t.name, t.pos or group.pos)
    return out
