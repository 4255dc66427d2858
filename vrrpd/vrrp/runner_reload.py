"""The runtime half of a reload: carry out a ``ReloadPlan`` on a running ``VrrpRunner``.

Called only by ``VrrpRunner.apply_config`` (under its reload lock).  Three phases:

1. prepare (awaits, changes nothing the instances use): stop script trackers whose definition
   changed or that nothing tracks any more, resolve new source addresses and GARP targets,
   build the runtimes of added instances (sockets opened, machines in INIT);
2. switch (no await, so no packet or timer is handled half-way): removed instances get ``Stop``
   (priority 0 if MASTER, VIPs removed, notify STOP) and leave the demux; renames; changed
   instances take their new config (adverts, expectations, notify commands, trackers), their
   VIP change is queued on their effects queue and their machine gets ``Reconfigure``; sync-group
   coordinators are rebuilt where membership changed; trackers are diffed; added instances
   start;
3. drain the removed instances' effects (their priority 0 / VIP removal / notify STOP).

A VIP change is applied in the effects queue order: while the VIPs are up (``rt.vipset``) new
addresses are added first, then dropped ones removed (an address whose prefix changes is never
absent), and the added ones get one GARP burst (``garp_master_repeat``) when MASTER.  VIP
attributes other than address/prefix/dev (label, scope, brd) take effect at the next takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from functools import partial
from ipaddress import IPv4Address
from typing import TYPE_CHECKING

import structlog

from vrrpd.config.model import Config, VrrpInstance
from vrrpd.vrrp import machine as m
from vrrpd.vrrp.addresses import LinkInfo, Vip
from vrrpd.vrrp.garp import GarpTarget
from vrrpd.vrrp.instance import InstanceRuntime, machine_config, vips_of
from vrrpd.vrrp.notify import NotifyCommands
from vrrpd.vrrp.reload_plan import ReloadPlan, effective_groups
from vrrpd.vrrp.scripts import ScriptSpec, ScriptTracker
from vrrpd.vrrp.syncgroup import SyncGroupCoordinator
from vrrpd.vrrp.trackfile import TrackFile, TrackFileSpec
from vrrpd.vrrp.tracking import Kind, tracked_for

if TYPE_CHECKING:
    from vrrpd.vrrp.runner import VrrpRunner

__all__ = ["apply_plan"]

DRAIN_TIMEOUT = 10.0

log = structlog.get_logger("vrrpd.vrrp.runner")


async def apply_plan(runner: VrrpRunner, config: Config, plan: ReloadPlan) -> None:
    addresses = runner._addresses
    assert addresses is not None and runner._links is not None
    links = _links(runner, config)
    # ---- 1. prepare ----------------------------------------------------------------------
    wanted = _wanted_trackers(config)
    old_scripts = dict(runner._scripts)
    for name, tracker in old_scripts.items():
        if (Kind.SCRIPT, name) not in wanted or name in plan.scripts_changed:
            await tracker.stop()
    prepared: list[tuple[InstanceRuntime, VrrpInstance, IPv4Address, tuple[Vip, ...],
                         tuple[GarpTarget, ...]]] = []
    to_build: list[VrrpInstance] = list(plan.added)
    for change in plan.changed:
        rt = runner.instances.get(change.old.name)
        if rt is None:  # never ran (e.g. its interface was missing): try again now
            to_build.append(change.new)
            continue
        src = rt.src
        if {"unicast_src_ip", "mcast_src_ip"} & set(change.fields):
            resolved = await _source(runner, change.new)
            if resolved is None:
                log.error("reload: new source address unavailable, keeping the old one",
                          instance=change.name, src=str(src))
            else:
                src = resolved
        vips = vips_of(change.new)
        try:
            link = links.get(change.new.interface) or await addresses.link(
                change.new.interface)
        except LookupError:  # the interface went away: GARP as before, the link monitor
            targets = rt.garp_targets  # has the instance in FAULT anyway
        else:
            targets = await runner._garp_targets(vips, link, links)
        prepared.append((rt, change.new, src, vips, targets))
    for name in plan.kept:
        if name not in runner.instances:
            to_build.append(config.instance(name))
    multicast_ifs = {i.interface for i in config.vrrp_instances if not i.uses_unicast}
    built: list[InstanceRuntime] = []
    for inst in to_build:
        rt = await runner._build(inst, links, addresses, inst.interface in multicast_ifs)
        if rt is not None:
            built.append(rt)
    # ---- 2. switch (no await from here to the end of the phase) ---------------------------
    removed = [runner.instances[i.name] for i in plan.removed if i.name in runner.instances]
    runner._dispatch_all([(rt, m.Stop(reason="removed by reload")) for rt in removed])
    forced = {id(rt): rt for g in runner.groups.values() for n in g.forced
              if (rt := runner.instances.get(n)) is not None}
    for rt in removed:
        runner._cancel_garps(rt)
        del runner.instances[rt.name]
        key = (rt.transport.ifindex, rt.inst.virtual_router_id)
        if runner._demux.get(key) is rt:
            del runner._demux[key]
    runner.config = config
    for rt, *_ in prepared:
        runner.instances.pop(rt.name, None)
    for rt, inst, src, vips, targets in prepared:
        if inst.name != rt.name:
            rt.log = log.bind(instance=inst.name)
            rt.machine.bind_log(rt.log)
            rt.log.info("instance renamed by reload", old=rt.name)
        rt.use_config(inst)
        rt.src = src
        rt.notify = NotifyCommands.from_config(inst)
        rt.tracked = tracked_for(config, inst)
        runner.instances[inst.name] = rt
        rt.effects.put_nowait(partial(_swap_vips, runner, rt, vips, targets))
    by_name = {i.name: i for i in config.vrrp_instances}
    for name, rt in runner.instances.items():
        if rt.inst is not by_name.get(name, rt.inst):
            rt.inst = by_name[name]  # kept: equal config, take the new object
    for rt in built:
        runner.instances[rt.name] = rt
        runner._demux[(rt.transport.ifindex, rt.inst.virtual_router_id)] = rt
        rt.worker = asyncio.ensure_future(runner._effects_worker(rt))
        rt.effects.put_nowait(partial(runner._change_vips, rt, add=False, stale=True))
    _rebuild_groups(runner, config, forced)
    for rt in runner.instances.values():
        want = machine_config(rt.inst, rt.src, coordinated=rt.group is not None)
        if want != rt.machine.config:
            runner._dispatch(rt, m.Reconfigure(want, reason="reload"))
    _diff_trackers(runner, config, wanted, old_scripts, plan)
    for rt in runner.instances.values():
        runner._refresh_trackers(rt)
    runner._dispatch_all([(rt, m.Start()) for rt in built])
    # ---- 3. drain the removed instances ----------------------------------------------------
    for rt in removed:
        try:
            await asyncio.wait_for(rt.effects.join(), DRAIN_TIMEOUT)
        except TimeoutError:
            rt.log.warning("reload: effects of a removed instance still pending")
        if rt.worker is not None:
            rt.worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rt.worker


def _links(runner: VrrpRunner, config: Config) -> dict[str, LinkInfo]:
    assert runner._links is not None
    names = {i.interface for c in (runner.config, config) for i in c.vrrp_instances}
    names |= {v.dev for c in (runner.config, config) for i in c.vrrp_instances
              for v in vips_of(i)}
    out = {}
    for name in names:
        info = runner._links.state(name)
        if info is not None:
            out[name] = info
    return out


async def _source(runner: VrrpRunner, inst: VrrpInstance) -> IPv4Address | None:
    assert runner._addresses is not None
    configured = inst.unicast_src_ip or inst.mcast_src_ip
    if configured is not None:
        return configured if isinstance(configured, IPv4Address) else None
    try:
        primary = await runner._addresses.primary_ipv4(inst.interface)
    except LookupError:
        return None
    return IPv4Address(primary) if primary else None


async def _swap_vips(runner: VrrpRunner, rt: InstanceRuntime, vips: tuple[Vip, ...],
                     targets: tuple[GarpTarget, ...]) -> None:
    """Effect: the instance's VIP set becomes ``vips`` (see the module docstring)."""
    assert runner._addresses is not None
    old, old_targets = rt.vips, rt.garp_targets
    rt.vips, rt.garp_targets = vips, targets
    if not rt.vipset:
        return
    key = lambda v: (v.address, v.prefixlen, v.dev)  # noqa: E731
    old_ids, new_ids = {key(v) for v in old}, {key(v) for v in vips}
    for vip in vips:
        if key(vip) not in old_ids:
            res = await runner._addresses.add(vip)
            rt.log.info("reload: VIP added", vip=str(vip), outcome=res.outcome)
    for vip in old:
        if key(vip) not in new_ids:
            res = await runner._addresses.remove(vip)
            rt.log.info("reload: VIP removed", vip=str(vip), outcome=res.outcome)
    fresh = [t for t in targets if t not in set(old_targets)]
    if fresh and rt.machine.state is m.State.MASTER and runner._garp is not None:
        for _ in range(max(rt.machine.config.garp_master_repeat, 1)):
            for target in fresh:
                runner._garp.send(target)


def _rebuild_groups(runner: VrrpRunner, config: Config,
                    forced: dict[int, InstanceRuntime]) -> None:
    """Coordinators for the new config; unchanged membership keeps its coordinator."""
    old = runner.groups
    new: dict[str, SyncGroupCoordinator] = {}
    directives: list[tuple[str, m.Event]] = []
    for name, members in effective_groups(config).items():
        running = tuple(n for n in members if n in runner.instances)
        if len(running) < 2:
            continue
        keep = old.get(name)
        if keep is not None and keep.members == running:
            new[name] = keep
            continue
        coord = SyncGroupCoordinator(name, running)
        if keep is not None:
            coord.notified = keep.notified
        coord.forced = {rt.name for rt in forced.values() if rt.name in running}
        coord.faulted = {n for n in running
                         if (t := runner.instances[n].trackers) is not None and t.fault}
        first = running[0]
        directives += coord.on_trackers(first, first in coord.faulted)
        new[name] = coord
        log.info("reload: sync group rebuilt", group=name, members=list(running))
    still_forced = {n for c in new.values() for n in c.forced}
    runner.groups = new
    for rt in runner.instances.values():
        rt.group = next((c for c in new.values() if rt.name in c.members), None)
    for rt in forced.values():
        if rt.name in runner.instances and rt.name not in still_forced:
            directives.append((rt.name, m.ClearFault(reason="reload: sync group changed")))
    for member, event in directives:
        runner._dispatch(runner.instances[member], event, forced=True)


def _wanted_trackers(config: Config) -> set[tuple[Kind, str]]:
    return {(t.kind, t.name) for inst in config.vrrp_instances for t in tracked_for(config, inst)}


def _diff_trackers(runner: VrrpRunner, config: Config, wanted: set[tuple[Kind, str]],
                   old_scripts: dict[str, ScriptTracker], plan: ReloadPlan) -> None:
    """Unchanged trackers keep running with their status; changed vrrp_scripts restart with
    the last status carried over (keepalived keeps a script's result across a reload)."""
    gd = config.global_defs
    for key in [k for k in runner._status if k not in wanted]:
        del runner._status[key]
    for name in [n for n in runner._scripts if (Kind.SCRIPT, n) not in wanted
                 or n in plan.scripts_changed]:
        del runner._scripts[name]
    for name in [n for n in runner._files if (Kind.FILE, n) not in wanted
                 or n in plan.files_changed]:
        runner._files.pop(name).stop()
    assert runner._links is not None
    for kind, name in sorted(wanted, key=lambda k: (k[0].value, k[1])):
        key = (kind, name)
        if kind is Kind.INTERFACE and key not in runner._status:
            info = runner._links.state(name)
            runner._status[key] = bool(info and info.running)
        elif (kind is Kind.SCRIPT and name not in runner._scripts
              and name in config.vrrp_scripts):
            spec = ScriptSpec.from_config(config.vrrp_scripts[name], user=gd.script_user,
                                          group=gd.script_group)
            previous = old_scripts.get(name)
            if previous is not None:
                spec = replace(spec, init_fail=not previous.ok)
            tracker = ScriptTracker(spec, runner._on_script, runner=runner._process_runner)
            runner._scripts[name] = tracker
            runner._status[key] = tracker.ok
            tracker.start()
        elif kind is Kind.FILE and name not in runner._files and name in config.track_files:
            tf = TrackFile(TrackFileSpec.from_config(config.track_files[name]),
                           runner._on_file)
            runner._files[name] = tf
            runner._status[key] = tf.start()
