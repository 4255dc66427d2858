"""VrrpRunner: config -> one Machine per vrrp_instance, wired to sockets, addresses, GARP,
trackers, notify and timers, all on one asyncio loop.

- One raw socket per interface (shared by its instances); packets are routed by
  ``(ifindex, VRID)`` and decoded with that instance's expectations.  A rejected packet becomes
  ``AdvertRejected`` (the machine counts it per reason; it never resets a timer).
- Timers: after every step the instance's single timer is re-armed for
  ``machine.next_deadline`` (``timers.PreciseTimers``: a timerfd, not asyncio's
  millisecond-rounded ``call_at``); nothing polls.
- Every event goes through ``_dispatch``: a FIFO of ``(instance, event)`` so sync-group directives
  raised while carrying out actions are stepped after the current step, never re-entrantly.
- Adverts go out synchronously inside the step; address changes, GARP bursts and notify run in
  order on a per-instance effects queue (VIPs, then GARPs, then notify, as keepalived).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter, deque
from collections.abc import Callable
from functools import partial
from ipaddress import IPv4Address
from typing import Any

import structlog

from healthcheck.process import ProcessRunner, run
from vrrpd.config.model import Config, VrrpInstance
from vrrpd.vrrp import machine as m
from vrrpd.vrrp.addresses import AddressManager, LinkInfo, NetlinkAddressManager, Vip
from vrrpd.vrrp.garp import GarpSender, GarpTarget, PacketGarpSender
from vrrpd.vrrp.instance import Effect, InstanceRuntime, machine_config, vips_of
from vrrpd.vrrp.links import LinkCallback, LinkMonitor, NetlinkLinkMonitor
from vrrpd.vrrp.notify import Notifier, NotifyCommands, NotifyFifo
from vrrpd.vrrp.packet import Rejection, decode, peek_vrid
from vrrpd.vrrp.reload_plan import ReloadPlan, plan_reload
from vrrpd.vrrp.scripts import ScriptSpec, ScriptTracker
from vrrpd.vrrp.sockets import PacketCallback, VrrpSocketPool
from vrrpd.vrrp.syncgroup import SyncGroupCoordinator
from vrrpd.vrrp.timers import PreciseTimers
from vrrpd.vrrp.trackfile import TrackFile, TrackFileSpec
from vrrpd.vrrp.tracking import Kind, picture, tracked_for

__all__ = ["VrrpRunner"]

log = structlog.get_logger("vrrpd.vrrp.runner")

STOP_NOTIFY_TIMEOUT = 10.0


class VrrpRunner:
    """Runs every vrrp_instance of ``config``.  Adapters are injectable (fakes in unit tests)."""

    def __init__(
        self,
        config: Config,
        *,
        addresses: AddressManager | None = None,
        socket_pool: Callable[[PacketCallback], Any] = VrrpSocketPool,
        garp_sender: GarpSender | None = None,
        link_monitor: Callable[[LinkCallback], LinkMonitor] = NetlinkLinkMonitor,
        process_runner: ProcessRunner = run,
        on_state: Callable[[str, str], None] | None = None,
        on_group_state: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_state(instance, "MASTER"|"BACKUP"|"FAULT"|"STOP")`` after every transition
        (``SyncDaemonDriver.vrrp_state_changed``, for lvs_sync_daemon);
        ``on_group_state(sync_group, state)`` when a sync group's state changes (as notify)."""
        self.config = config
        self._on_state = on_state
        self._on_group_state = on_group_state
        self._addresses = addresses
        self._pool_factory = socket_pool
        self._garp = garp_sender
        self._link_factory = link_monitor
        self._process_runner = process_runner
        self.instances: dict[str, InstanceRuntime] = {}
        self.groups: dict[str, SyncGroupCoordinator] = {}
        self.unknown_vrid: Counter[tuple[int, int | None]] = Counter()
        self._demux: dict[tuple[int, int], InstanceRuntime] = {}
        self._status: dict[tuple[Kind, str], bool | int] = {}
        self._pending: deque[tuple[InstanceRuntime, m.Event, bool]] = deque()
        self._dispatching = False
        self._running = False
        self._scripts: dict[str, ScriptTracker] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._files: dict[str, TrackFile] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: PreciseTimers | None = None
        self._pool: Any = None
        self._links: LinkMonitor | None = None
        self._notifier: Notifier | None = None
        self._reload_lock = asyncio.Lock()

    # ---- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._timers = PreciseTimers(self._loop)
        gd = self.config.global_defs
        addresses = self._addresses = self._addresses or NetlinkAddressManager()
        self._garp = self._garp or PacketGarpSender()
        fifo_cmd = gd.vrrp_notify_fifo or gd.notify_fifo
        fifo = NotifyFifo(fifo_cmd.argv[0]) if fifo_cmd is not None and fifo_cmd.argv else None
        self._notifier = Notifier(fifo=fifo, runner=self._process_runner,
                                  default_user=gd.script_user, default_group=gd.script_group)
        self._links = self._link_factory(self._on_link)
        links = await self._links.start()
        self._pool = self._pool_factory(self._on_packet)
        multicast_ifs = {i.interface for i in self.config.vrrp_instances if not i.uses_unicast}
        for name, group in self.config.vrrp_sync_groups.items():
            members = [n for n in group.members
                       if any(i.name == n for i in self.config.vrrp_instances)]
            if len(members) >= 2:
                self.groups[name] = SyncGroupCoordinator(name, members)
        for inst in self.config.vrrp_instances:
            rt = await self._build(inst, links, addresses, inst.interface in multicast_ifs)
            if rt is not None:
                self.instances[inst.name] = rt
                self._demux[(rt.transport.ifindex, inst.virtual_router_id)] = rt
                rt.worker = asyncio.ensure_future(self._effects_worker(rt))
        self._start_trackers(links)
        self._running = True
        for rt in self.instances.values():
            self._refresh_trackers(rt)
        for rt in self.instances.values():
            # as keepalived at start: no VIP left over from a crashed run while not MASTER
            rt.effects.put_nowait(partial(self._change_vips, rt, add=False, stale=True))
        # all Starts queued before any is stepped: a sync-group member's GroupMaster must find
        # its fellows already out of INIT
        self._dispatch_all([(rt, m.Start()) for rt in self.instances.values()])
        log.info("vrrp started", instances=sorted(self.instances),
                 sockets=sorted({rt.transport.ifname for rt in self.instances.values()}))

    async def apply_config(self, config: Config) -> ReloadPlan:
        """A reload (SIGHUP): diff against the running config (``reload_plan.plan_reload``,
        keepalived's matching by interface + VRID) and apply it without flapping: unchanged
        instances are untouched; changed ones keep their state (VIPs added/removed while
        MASTER, GARPs for the added ones, new priority/interval/trackers in effect at once);
        removed ones stop (priority 0 if MASTER); added ones start.  See ``runner_reload``."""
        from vrrpd.vrrp.runner_reload import apply_plan

        async with self._reload_lock:
            plan = plan_reload(self.config, config)
            if self._loop is None or not self._running:
                self.config = config  # not started (or stopped): the next start uses it
                return plan
            await apply_plan(self, config, plan)
            log.info("vrrp reloaded", **plan.summary())
            return plan

    async def stop(self) -> None:
        """Priority 0 from every MASTER, VIPs removed, notify STOP, then release everything."""
        if self._loop is None:
            return
        await self._reload_lock.acquire()  # never stop half-way through a reload
        self._reload_lock.release()
        self._dispatch_all([(rt, m.Stop()) for rt in self.instances.values()])
        self._running = False
        for rt in self.instances.values():
            if rt.timer is not None:
                rt.timer.cancel()
                rt.timer = None
            self._cancel_garps(rt)
        for rt in self.instances.values():
            await rt.effects.join()
            if rt.worker is not None:
                rt.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rt.worker
        for tracker in self._scripts.values():
            await tracker.stop()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for tf in self._files.values():
            tf.stop()
        if self._notifier is not None:
            try:
                await asyncio.wait_for(self._notifier.drain(), STOP_NOTIFY_TIMEOUT)
            except TimeoutError:
                log.warning("notify scripts still running at stop")
            await self._notifier.close()
        if self._links is not None:
            await self._links.stop()
        if self._pool is not None:
            self._pool.close()
        if self._garp is not None:
            self._garp.close()
        if self._addresses is not None:
            await self._addresses.close()
        if self._timers is not None:
            self._timers.close()
        self._loop = None

    async def _build(self, inst: VrrpInstance, links: dict[str, LinkInfo],
                     addresses: AddressManager, join: bool) -> InstanceRuntime | None:
        ilog = log.bind(instance=inst.name)
        if inst.version != 2:
            ilog.error("instance not run", reason=f"VRRP version {inst.version} unsupported")
            return None
        try:
            link = links.get(inst.interface) or await addresses.link(inst.interface)
        except LookupError:
            ilog.error("instance not run", reason=f"no interface {inst.interface}")
            return None
        src_addr = inst.unicast_src_ip or inst.mcast_src_ip
        src = str(src_addr) if src_addr is not None else \
            await addresses.primary_ipv4(inst.interface)
        if src is None or not isinstance(IPv4Address(src), IPv4Address):
            ilog.error("instance not run", reason=f"no IPv4 address on {inst.interface}")
            return None
        vips = vips_of(inst)
        if len(vips) < len(inst.virtual_ipaddresses) + len(inst.virtual_ipaddresses_excluded):
            ilog.warning("IPv6 virtual addresses ignored")
        targets = await self._garp_targets(vips, link, links)
        group = self.groups.get(inst.sync_group or "")
        machine = m.Machine(machine_config(inst, IPv4Address(src), coordinated=group is not None),
                            log=ilog)
        transport = self._pool.get(inst.interface, link.index, join_multicast=join)
        return InstanceRuntime(inst, machine, transport, IPv4Address(src), vips, targets,
                               tracked_for(self.config, inst), NotifyCommands.from_config(inst),
                               group=group, log=ilog)

    async def _garp_targets(self, vips: tuple[Vip, ...], link: LinkInfo,
                            links: dict[str, LinkInfo]) -> tuple[GarpTarget, ...]:
        assert self._addresses is not None
        targets = []
        for vip in vips:
            dev = links.get(vip.dev) or link
            if vip.dev != dev.name:
                with contextlib.suppress(LookupError):
                    dev = await self._addresses.link(vip.dev)
            targets.append(GarpTarget(vip.dev, dev.mac, vip.address))
        return tuple(targets)

    def _start_trackers(self, links: dict[str, LinkInfo]) -> None:
        gd = self.config.global_defs
        wanted = {(t.kind, t.name) for rt in self.instances.values() for t in rt.tracked}
        for kind, name in sorted(wanted, key=lambda k: (k[0].value, k[1])):
            if kind is Kind.INTERFACE:
                info = links.get(name)
                self._status[(kind, name)] = bool(info and info.running)
            elif kind is Kind.SCRIPT and name in self.config.vrrp_scripts:
                spec = ScriptSpec.from_config(self.config.vrrp_scripts[name],
                                              user=gd.script_user, group=gd.script_group)
                tracker = ScriptTracker(spec, self._on_script, runner=self._process_runner)
                self._scripts[name] = tracker
                self._status[(kind, name)] = tracker.ok
                tracker.start()
            elif kind is Kind.FILE and name in self.config.track_files:
                tf = TrackFile(TrackFileSpec.from_config(self.config.track_files[name]),
                               self._on_file)
                self._files[name] = tf
                self._status[(kind, name)] = tf.start()

    # ---- inputs --------------------------------------------------------------------------
    def _on_packet(self, data: bytes, ifindex: int) -> None:
        vrid = peek_vrid(data)
        rt = self._demux.get((ifindex, vrid)) if vrid is not None else None
        if rt is None or not self._running:
            self.unknown_vrid[(ifindex, vrid)] += 1
            return
        res = decode(data, expect=rt.expect)
        if isinstance(res, Rejection):
            rt.log.debug("advert rejected", reason=res.reason.value, detail=res.detail,
                         src=str(res.src))
            self._dispatch(rt, m.AdvertRejected(res))
        else:
            self._dispatch(rt, m.AdvertReceived(res.src, res.advert))

    def _on_timer(self, rt: InstanceRuntime) -> None:
        if rt.timer is not None and self._loop is not None:
            late = self._loop.time() - rt.timer.when()
            rt.timer_late_max = max(rt.timer_late_max, late)
            if late > 0.005:
                rt.log.warning("timer late", late_ms=round(late * 1e3, 3))
        rt.timer = None
        if self._running:
            self._dispatch(rt, m.Tick())

    def _on_link(self, info: LinkInfo) -> None:
        self._tracker_changed(Kind.INTERFACE, info.name, info.running)

    def _on_script(self, name: str, ok: bool) -> None:
        self._tracker_changed(Kind.SCRIPT, name, ok)

    def _on_file(self, name: str, value: int) -> None:
        self._tracker_changed(Kind.FILE, name, value)

    def _tracker_changed(self, kind: Kind, name: str, status: bool | int) -> None:
        key = (kind, name)
        if key not in self._status or self._status[key] == status:
            return
        self._status[key] = status
        log.info("tracker", kind=kind.value, name=name, status=status)
        if not self._running:
            return
        for rt in self.instances.values():
            if any((t.kind, t.name) == key for t in rt.tracked):
                self._refresh_trackers(rt)

    def _refresh_trackers(self, rt: InstanceRuntime) -> None:
        pic = picture(rt.tracked, self._status)
        old = rt.trackers
        if old is not None and (old.priority_delta, old.fault) == (pic.priority_delta, pic.fault):
            return
        rt.trackers = pic
        if rt.group is not None:
            for member, event in rt.group.on_trackers(rt.name, pic.fault):
                self._dispatch(self.instances[member], event, forced=True)
        self._dispatch(rt, pic)

    # ---- stepping ------------------------------------------------------------------------
    def _dispatch_all(self, items: list[tuple[InstanceRuntime, m.Event]]) -> None:
        if not items:
            return
        for rt, event in items[:-1]:
            self._pending.append((rt, event, False))
        self._dispatch(*items[-1])

    def _dispatch(self, rt: InstanceRuntime, event: m.Event, *, forced: bool = False) -> None:
        self._pending.append((rt, event, forced))
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while self._pending:
                rt, event, forced = self._pending.popleft()
                assert self._loop is not None
                actions = rt.machine.step(event, self._loop.time())
                self._execute(rt, actions, forced)
                self._arm(rt)
        finally:
            self._dispatching = False

    def _arm(self, rt: InstanceRuntime) -> None:
        deadline = rt.machine.next_deadline if self._running else None
        if rt.timer is not None:
            if deadline is not None and rt.timer.when() == deadline:
                return
            rt.timer.cancel()
            rt.timer = None
        if deadline is not None and self._timers is not None:
            rt.timer = self._timers.call_at(deadline, self._on_timer, rt)

    def _execute(self, rt: InstanceRuntime, actions: list[m.Action], forced: bool) -> None:
        for action in actions:
            if isinstance(action, m.SendAdvert):
                rt.send_advert(action.priority)
            elif isinstance(action, m.AddVips):
                rt.effects.put_nowait(partial(self._change_vips, rt, add=True))
            elif isinstance(action, m.RemoveVips):
                rt.effects.put_nowait(partial(self._change_vips, rt, add=False))
            elif isinstance(action, m.SendGarps):
                rt.effects.put_nowait(partial(self._send_garps, rt, action))
            elif isinstance(action, m.Notify):
                rt.effects.put_nowait(partial(self._notify, rt, action))
            elif isinstance(action, m.Transition):
                self._on_transition(rt, action, forced)
            elif isinstance(action, m.WantMaster):
                if rt.group is not None:
                    for member, event in rt.group.on_want_master(rt.name):
                        self._pending.append((self.instances[member], event, True))
            elif isinstance(action, m.MasterRxLowerPri):
                cmd = rt.inst.notify_master_rx_lower_pri
                if cmd is not None:
                    self._spawn_command(rt, cmd.argv, cmd.user, cmd.group)

    def _on_transition(self, rt: InstanceRuntime, t: m.Transition, forced: bool) -> None:
        if t.old is m.State.MASTER:
            self._cancel_garps(rt)
        if self._on_state is not None:
            try:
                self._on_state(rt.name, t.new.value)
            except Exception:
                rt.log.exception("state listener failed")
        group = rt.group
        if group is None:
            return
        if not forced:
            for member, event in group.on_transition(rt.name, t.old, t.new):
                self._pending.append((self.instances[member], event, True))
        new = group.group_changed(self.instances[n].machine.state for n in group.members)
        if new is not None and self._notifier is not None:
            cfg = self.config.vrrp_sync_groups[group.name]
            cmds = NotifyCommands.from_config(cfg)
            self._notifier.notify("GROUP", group.name, new.value, 0, cmds)
        if new is not None and self._on_group_state is not None:
            try:
                self._on_group_state(group.name, new.value)
            except Exception:
                rt.log.exception("group state listener failed")

    def _spawn_command(self, rt: InstanceRuntime, argv: tuple[str, ...], user: str | None,
                       group: str | None) -> None:
        """Run a command in the background (no shell, killed on timeout), keep a reference."""
        gd = self.config.global_defs

        async def go() -> None:
            res = await self._process_runner(list(argv), timeout=60.0,
                                             user=user if user is not None else gd.script_user,
                                             group=group if group is not None
                                             else gd.script_group)
            if not res.ok:
                rt.log.warning("command failed", argv=list(argv), exit_code=res.exit_code,
                               error=res.error)

        task = asyncio.ensure_future(go())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- effects (ordered per instance) --------------------------------------------------
    async def _effects_worker(self, rt: InstanceRuntime) -> None:
        while True:
            effect: Effect = await rt.effects.get()
            try:
                result = effect()
                if result is not None:
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                rt.log.exception("effect failed")
            finally:
                rt.effects.task_done()

    async def _change_vips(self, rt: InstanceRuntime, *, add: bool, stale: bool = False
                           ) -> None:
        assert self._addresses is not None
        for vip in rt.vips:
            if stale and vip.address == str(rt.src):
                continue  # an address owner's VIP is its own address: never removed at start
            res = await (self._addresses.add(vip) if add else self._addresses.remove(vip))
            if stale and res.outcome == "removed":
                rt.log.warning("stale VIP removed at start", vip=str(vip))
            if not res.ok:
                rt.log.error("vip change failed", vip=str(vip), add=add, error=res.error)
        if not stale:
            rt.vipset = add

    def _send_garps(self, rt: InstanceRuntime, action: m.SendGarps) -> Any:
        if action.interval <= 0:
            self._garp_burst(rt, action.count)
            return None
        self._cancel_garps(rt)
        rt.garp_task = asyncio.ensure_future(self._garp_spaced(rt, action.count, action.interval))
        return None

    def _garp_burst(self, rt: InstanceRuntime, count: int) -> None:
        assert self._garp is not None
        for _ in range(count):
            for target in rt.garp_targets:
                self._garp.send(target)

    async def _garp_spaced(self, rt: InstanceRuntime, count: int, interval: float) -> None:
        assert self._garp is not None
        first = True
        for _ in range(count):
            for target in rt.garp_targets:
                if not first:
                    await asyncio.sleep(interval)
                first = False
                self._garp.send(target)

    def _cancel_garps(self, rt: InstanceRuntime) -> None:
        if rt.garp_task is not None and not rt.garp_task.done():
            rt.garp_task.cancel()
        rt.garp_task = None

    def _notify(self, rt: InstanceRuntime, action: m.Notify) -> None:
        if self._notifier is not None:
            self._notifier.notify("INSTANCE", rt.name, action.state.value, action.priority,
                                  rt.notify)

    # ---- introspection -------------------------------------------------------------------
    def status(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, rt in self.instances.items():
            st = rt.machine.stats if hasattr(rt.machine, "stats") else None
            out[name] = {
                "state": rt.machine.state.value,
                "priority": rt.machine.priority,
                "interface": rt.inst.interface,
                "source": str(rt.src),
                "rejected": {r.value: n for r, n in st.rejected.items()} if st else {},
            }
        return out
