"""Today's runner objects -> status dicts (``vrrpd.status`` schema), read-only.

These read the attributes ``VrrpRunner`` (``instances[name]``: ``InstanceRuntime`` with its
``machine``, ``inst``, ``src``, ``trackers``, ``timer_late_max``) and ``LvsRunner`` (``config``,
``observed``, ``stats``, ``owned``; the checker manager's ``snapshot()``/``core``) hold as
written today.  A few are private (``LvsRunner._checkers``/``_specs``/``_compiled``/
``_weights``, ``Machine._base``): each is read through ``_attr`` with a public name tried
first, so the runner owners can expose them (``checkers``, ``specs``, ``compiled``,
``weights``, ``base_priority``) without breaking this module, or implement
``status_instances()``/``status_virtual_servers()`` and make it unnecessary.

Two small helpers give what the runners do not count yet: :class:`TransitionRecorder` (chain
it into ``VrrpRunner(on_state=...)``: last transition time per instance) and
:class:`GarpCounter` (wrap the ``GarpSender``: GARPs sent per instance).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from vrrpd.status import (
    CheckerStatus,
    InstanceCounters,
    InstanceStatus,
    IpvsStats,
    LvsStatus,
    MasterInfo,
    RealServerStatus,
    VipStatus,
    VirtualServerStatus,
)
from vrrpd.vrrp.packet import RejectReason

__all__ = ["GarpCounter", "TransitionRecorder", "instance_status", "lvs_stats",
           "lvs_virtual_servers", "service_text", "vrrp_instances"]

_AUTH = {0: "none", 1: "pass", 2: "ah"}


def _attr(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value is not None:
            return value
    return default


class TransitionRecorder:
    """Records when each instance last changed state; chain it in front of ``on_state``."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.last: dict[str, tuple[str, float]] = {}  # instance -> (state, unix time)
        self.counts: Counter[tuple[str, str]] = Counter()  # (instance, new state) -> n

    def __call__(self, instance: str, state: str) -> None:
        self.last[instance] = (state, self._clock())
        self.counts[(instance, state)] += 1

    def chain(self, listener: Callable[[str, str], None] | None
              ) -> Callable[[str, str], None]:
        """An ``on_state`` callback that records, then calls ``listener`` (if any)."""
        def on_state(instance: str, state: str) -> None:
            self(instance, state)
            if listener is not None:
                listener(instance, state)
        return on_state

    def last_transition(self, instance: str) -> float | None:
        entry = self.last.get(instance)
        return entry[1] if entry is not None else None


class GarpCounter:
    """A ``GarpSender`` wrapper counting the GARPs the kernel took, per target.

    An instance's count is the sum over its targets (two instances announcing the same VIP on
    the same interface would share it: keepalived refuses that configuration anyway)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: Counter[Any] = Counter()

    def send(self, target: Any) -> bool:
        ok = bool(self.inner.send(target))
        if ok:
            self.sent[target] += 1
        return ok

    def close(self) -> None:
        self.inner.close()

    def count_for(self, targets: Iterable[Any]) -> int:
        return sum(self.sent.get(t, 0) for t in targets)


# ---- VRRP ---------------------------------------------------------------------------------


def vrrp_instances(runner: Any, *, recorder: TransitionRecorder | None = None,
                   garps: GarpCounter | None = None) -> list[InstanceStatus]:
    """Every running instance of a ``VrrpRunner``, in config order."""
    return [instance_status(rt, recorder=recorder, garps=garps)
            for rt in list(runner.instances.values())]


def instance_status(rt: Any, *, recorder: TransitionRecorder | None = None,
                    garps: GarpCounter | None = None) -> InstanceStatus:
    """One ``InstanceRuntime`` -> :class:`InstanceStatus`."""
    machine, inst = rt.machine, rt.inst
    st = machine.stats
    state = machine.state.value
    prio = int(machine.priority)
    master: MasterInfo | None = None
    if state == "MASTER":
        master = MasterInfo(address=str(rt.src), priority=prio)
    elif machine.master is not None:
        src, mprio = machine.master
        master = MasterInfo(address=str(src), priority=int(mprio))
    garps_sent = getattr(rt, "garps_sent", None)
    if garps_sent is None and garps is not None:
        garps_sent = garps.count_for(rt.garp_targets)
    last = getattr(rt, "last_transition", None)
    if last is None and recorder is not None:
        last = recorder.last_transition(rt.name)
    trackers = rt.trackers
    vips = [_vip(v, inst.interface, excluded=False) for v in inst.virtual_ipaddresses]
    vips += [_vip(v, inst.interface, excluded=True) for v in inst.virtual_ipaddresses_excluded]
    return InstanceStatus(
        name=rt.name,
        interface=inst.interface,
        vrid=inst.virtual_router_id,
        version=inst.version,
        state=state,
        wants_master=bool(machine.wants_master),
        base_priority=int(_attr(machine, "base_priority", "_base",
                                default=machine.config.priority)),
        effective_priority=prio,
        priority_delta=int(trackers.priority_delta) if trackers is not None else 0,
        fault=bool(trackers.fault) if trackers is not None else False,
        source=str(rt.src),
        master=master,
        last_transition=last,
        sync_group=inst.sync_group,
        advert_int=float(inst.advert_int),
        preempt=not machine.nopreempt,
        preempt_delay=float(inst.preempt_delay),
        auth_type=_AUTH.get(int(inst.authentication.auth_type), "unknown"),
        unicast_peers=[str(p.address) for p in inst.unicast_peers],
        vips=vips,
        garp={"master_delay": inst.garp_master_delay, "master_repeat": inst.garp_master_repeat,
              "master_refresh": inst.garp_master_refresh,
              "master_refresh_repeat": inst.garp_master_refresh_repeat,
              "lower_prio_delay": inst.garp_lower_prio_delay,
              "lower_prio_repeat": inst.garp_lower_prio_repeat, "interval": inst.garp_interval},
        timer_late_max=float(getattr(rt, "timer_late_max", 0.0)),
        counters=InstanceCounters(
            adverts_sent=st.adverts_sent,
            adverts_received=st.adverts_received,
            transitions=st.transitions,
            became_master=st.became_master,
            released_master=st.released_master,
            priority_zero_sent=st.priority_zero_sent,
            priority_zero_received=st.priority_zero_received,
            garps_sent=garps_sent,
            drops={r.value: int(st.rejected.get(r, 0)) for r in RejectReason},
        ),
    )


def _vip(v: Any, interface: str, *, excluded: bool) -> VipStatus:
    return VipStatus(address=f"{v.ip}/{v.prefixlen}", dev=v.dev or interface,
                     scope=v.scope or "global", excluded=excluded)


# ---- LVS ----------------------------------------------------------------------------------


def service_text(key: Any) -> str:
    """A kernel service as ipvsadm names it: ``TCP 10.0.0.1:80``, ``UDP [::1]:53``, ``FWM 1``."""
    if key.fwmark:
        return f"FWM {key.fwmark}"
    addr = f"[{key.addr}]" if getattr(key.addr, "version", 4) == 6 else str(key.addr)
    return f"{key.protocol.name} {addr}:{key.port}"


def lvs_stats(lvs: Any) -> LvsStatus:
    from vrrpd.fast_start import summary

    s = lvs.stats
    return LvsStatus(syncs=s.syncs, dumps=s.dumps, ops=s.ops, failures=s.failures,
                     last_error=s.last_error, services_owned=len(lvs.owned),
                     fast_start=summary())


def _zero_stats() -> IpvsStats:
    return IpvsStats(active_conns=0, inactive_conns=0, conns=0, inpkts=0, outpkts=0,
                     inbytes=0, outbytes=0)


def _add_stats(into: IpvsStats, stats: Any, active: int = 0, inactive: int = 0) -> None:
    into["active_conns"] += active
    into["inactive_conns"] += inactive
    into["conns"] += stats.conns
    into["inpkts"] += stats.inpkts
    into["outpkts"] += stats.outpkts
    into["inbytes"] += stats.inbytes
    into["outbytes"] += stats.outbytes


class _Static:
    """Per-config values that never change between reloads (address strings, server keys):
    computed once, so a status of 10,000 real servers does not re-format 10,000 addresses."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.servers: list[list[tuple[Any, tuple[Any, int], str]]] = [
            [(rs, (rs.address, rs.port), str(rs.address)) for rs in vs.real_servers]
            for vs in config.virtual_servers]


_static_cache: list[_Static] = []
_state_cache: list[tuple[Any, int, dict[int, Any]]] = []


def _static(config: Any) -> _Static:
    if not _static_cache or _static_cache[0].config is not config:
        _static_cache[:] = [_Static(config)]
    return _static_cache[0]


def _states_by_spec_id(core: Any) -> dict[int, Any]:
    """id(spec) -> CheckerState for the core's own spec objects (no spec hashing)."""
    states = getattr(core, "states", None) or []
    if not _state_cache or _state_cache[0][0] is not core or _state_cache[0][1] != len(states):
        _state_cache[:] = [(core, len(states), {id(st.spec): st for st in states})]
    return _state_cache[0][2]


def _by_key(items: Sequence[Any]) -> dict[tuple[Any, int], Any]:
    return {x.key: x for x in items}


def _aligned(items: Sequence[Any], index: int, key: tuple[Any, int],
             by_key: Callable[[], Mapping[tuple[Any, int], Any]]) -> Any:
    """``items[index]`` when it is the one for ``key`` (the usual case: both follow the
    config's order), else a lookup by key."""
    if index < len(items) and items[index].key == key:
        return items[index]
    return by_key().get(key)


def lvs_virtual_servers(lvs: Any, *, now: float | None = None) -> list[VirtualServerStatus]:
    """Every virtual server of an ``LvsRunner``: config, checker snapshot, cached IPVS table.

    IPVS counters come from the runner's last dump (every ``sync_interval``), not a new one:
    status must not issue netlink requests behind the reconciler's back."""
    now = time.monotonic() if now is None else now
    config = lvs.config
    static = _static(config)
    compiled = _attr(lvs, "compiled", "_compiled")
    if compiled is None:
        from vrrpd.lvs_desired import compile_config

        compiled = compile_config(config)
    services = {c.vs_key: tuple(s.key for s in c.services) for c in compiled}
    initial = {c.vs_key: c.initial for c in compiled}
    weights: Mapping[str, Mapping[Any, int]] = _attr(lvs, "weights", "_weights", default={})
    checkers = _attr(lvs, "checkers", "_checkers")
    snap = checkers.snapshot() if checkers is not None and hasattr(checkers, "snapshot") else None
    snaps = {v.key: v for v in snap.virtual_servers} if snap is not None else {}
    core = getattr(checkers, "core", None)
    specs = _attr(lvs, "specs", "_specs")
    if core is not None and not specs:
        from vrrpd.lvs_checks import health_specs

        specs = health_specs(config)
    spec_by_key = {s.key: s for s in specs or ()}
    by_id = _states_by_spec_id(core) if core is not None else {}
    observed = lvs.observed
    out: list[VirtualServerStatus] = []
    for vs, servers in zip(config.virtual_servers, static.servers, strict=True):
        key = vs.key
        vsnap = snaps.get(key)
        desired = (vsnap.desired if vsnap is not None
                   else weights.get(key, initial.get(key, {})))
        dest_stats: dict[tuple[Any, int], IpvsStats] = {}
        vs_stats: IpvsStats | None = None
        for skey in services.get(key, ()):
            obs = observed.get(skey)
            if obs is None:
                continue
            vs_stats = vs_stats or _zero_stats()
            _add_stats(vs_stats, obs.stats)
            for od in obs.dests:
                dk = (od.dest.key.addr, od.dest.key.port)
                _add_stats(dest_stats.setdefault(dk, _zero_stats()), od.stats,
                           od.active_conns, od.inactive_conns)
        snap_rss: Sequence[Any] = vsnap.real_servers if vsnap is not None else ()
        vspec = spec_by_key.get(key)
        spec_rss: Sequence[Any] = vspec.real_servers if vspec is not None else ()
        rss: list[RealServerStatus] = []
        for i, (rs, sk, addr) in enumerate(servers):
            rsnap = _aligned(snap_rss, i, sk, partial(_by_key, snap_rss))
            rspec = _aligned(spec_rss, i, sk, partial(_by_key, spec_rss))
            rss.append(RealServerStatus(
                address=addr, port=rs.port, sorry=False,
                configured_weight=rs.weight,
                alive=rsnap.alive if rsnap is not None else None,
                weight=rsnap.weight if rsnap is not None else rs.weight,
                ipvs_weight=desired.get(sk),
                checkers=_checkers(rsnap, rspec, core, by_id, now),
                stats=dest_stats.get(sk)))
        if vs.sorry_server is not None:
            sk = (vs.sorry_server.address, vs.sorry_server.port)
            rss.append(RealServerStatus(
                address=str(sk[0]), port=sk[1], sorry=True, configured_weight=1, alive=None,
                weight=1, ipvs_weight=desired.get(sk), checkers=[], stats=dest_stats.get(sk)))
        out.append(VirtualServerStatus(
            key=key, protocol=vs.protocol.value.lower(), scheduler=vs.scheduler.value,
            lvs_method=vs.lvs_method.value,
            services=[service_text(k) for k in services.get(key, ())],
            quorum=vs.quorum, hysteresis=vs.hysteresis,
            quorum_up=vsnap.quorum_up if vsnap is not None else None,
            alive_weight=vsnap.alive_weight if vsnap is not None else None,
            sorry_active=bool(vsnap.sorry_active) if vsnap is not None else False,
            real_servers=rss, stats=vs_stats))
    return out


def _checkers(rsnap: Any, rs_spec: Any, core: Any, by_id: Mapping[int, Any], now: float
              ) -> list[CheckerStatus]:
    if rsnap is None:
        return []
    specs = tuple(rs_spec.checkers) if rs_spec is not None else ()
    table = getattr(core, "checks", None) or {}
    out: list[CheckerStatus] = []
    for i, c in enumerate(rsnap.checks):
        state = None
        if i < len(specs):
            spec = specs[i]
            state = by_id.get(id(spec))
            if state is None or state.spec is not spec:
                state = table.get(spec)  # an equal spec shared with another server
        last_ok = getattr(state, "last_ok", None)
        latency = getattr(state, "last_latency", None)
        out.append(CheckerStatus(
            kind=c.kind, target=c.target, up=bool(c.up), runs=int(c.runs),
            retry_it=int(c.retry_it),
            last_ok=bool(last_ok) if last_ok is not None else None,
            last_result=c.detail,
            latency=float(latency) if latency is not None else None,
            next_in=max(0.0, c.next_at - now) if c.next_at is not None else None))
    return out
