"""Config -> desired IPVS state (pure).

:func:`compile_config` turns every ``virtual_server`` into a :class:`CompiledVs`: the kernel
services it stands for (one per address, port or fwmark of a ``virtual_server_group``) and a
destination template for each of its real servers and its sorry server.  :func:`desired`
then combines them with the desired weights of the health-check subsystem
(``{vs_key: {(addr, port): weight}}``, absent = not in IPVS) into the reconciler's input.

keepalived's meanings: ``lb_algo``/``lvs_sched`` -> scheduler, ``lb_kind``/``lvs_method`` ->
forwarding, ``persistence_timeout`` -> the persistent flag and timeout,
``persistence_granularity`` -> netmask, ``persistence_engine`` -> pe name, ``ops`` -> one-packet
scheduling, ``sh-port``/``mh-fallback``... -> scheduler flags 1..3.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address

from ipvs.model import Destination, DestKey, Forward, Protocol, Service, ServiceKey, TunnelType
from ipvs.reconcile import DesiredService
from vrrpd.config.model import (
    Config,
    LvsMethod,
    RealServer,
    SorryServer,
    Tunnel,
    VirtualServer,
    VirtualServerGroup,
)

ServerKey = tuple[IPv4Address | IPv6Address, int]
Weights = Mapping[str, Mapping[ServerKey, int]]  # vs_key -> {(addr, port): weight}

FORWARD = {LvsMethod.NAT: Forward.NAT, LvsMethod.DR: Forward.DR, LvsMethod.TUN: Forward.TUN}
TUN_FLAGS = {None: 0, "nocsum": 0, "csum": 1, "remcsum": 2}  # IP_VS_TUNNEL_ENCAP_FLAG_*
MAX_GROUP_EXPANSION = 65536  # a typo like 10.0.0.1-10.255.0.1 must not eat the machine


@dataclass(frozen=True, slots=True)
class CompiledVs:
    vs_key: str
    services: tuple[Service, ...]
    dests: Mapping[ServerKey, Destination]  # templates at the configured weight
    initial: Mapping[ServerKey, int]  # desired weights before any check ran


def af_of(addr: IPv4Address | IPv6Address) -> int:
    return socket.AF_INET6 if addr.version == 6 else socket.AF_INET


def _family(name: str | None) -> int | None:
    return {"inet": socket.AF_INET, "inet6": socket.AF_INET6}.get(name or "")


def service_keys(vs: VirtualServer, groups: Mapping[str, VirtualServerGroup]) -> list[ServiceKey]:
    """The kernel services of one virtual_server (a group expands to many)."""
    proto = Protocol[vs.protocol.value]
    rs_af = af_of(vs.real_servers[0].address) if vs.real_servers else None
    default_af = _family(vs.ip_family) or rs_af or socket.AF_INET
    if vs.address is not None:
        return [ServiceKey(af_of(vs.address), proto, vs.address, vs.port)]
    if vs.fwmark is not None:
        return [ServiceKey(default_af, fwmark=vs.fwmark)]
    group = groups.get(vs.group or "")
    if group is None:
        return []
    keys: list[ServiceKey] = []
    for r in group.ranges:
        for addr in _expand(r.first, r.last):
            keys.append(ServiceKey(af_of(addr), proto, addr, r.port or vs.port))
            if len(keys) > MAX_GROUP_EXPANSION:
                raise ValueError(f"virtual_server_group {group.name} expands to too many services")
    for fw in group.fwmarks:
        keys.append(ServiceKey(_family(fw.family) or default_af, fwmark=fw.fwmark))
    return list(dict.fromkeys(keys))


def _expand(first: IPv4Address | IPv6Address,
            last: IPv4Address | IPv6Address) -> Iterator[IPv4Address | IPv6Address]:
    for n in range(int(first), int(last) + 1):
        yield ip_address(n) if first.version == 4 else IPv6Address(n)


def make_service(vs: VirtualServer, key: ServiceKey) -> Service:
    flags = {f"sched-flag-{f.value.rsplit('-', 1)[1]}" for f in vs.sched_flags}
    if vs.ops:
        flags.add("onepacket")
    full = 128 if key.af == socket.AF_INET6 else 32
    if vs.persistence_timeout is not None:
        flags.add("persistent")
    netmask = vs.persistence_granularity if vs.persistence_granularity is not None else full
    return Service(
        key=key,
        scheduler=vs.scheduler.value,
        flags=frozenset(flags),
        timeout=vs.persistence_timeout or 0,
        netmask=min(netmask, full),
        pe_name=vs.persistence_engine or "",
    )


def make_dest(server: RealServer | SorryServer, weight: int, service_af: int) -> Destination:
    tunnel: Tunnel | None = server.tunnel
    af = af_of(server.address)
    return Destination(
        key=DestKey(server.address, server.port),
        weight=weight,
        forward=FORWARD[server.lvs_method],
        u_threshold=getattr(server, "uthreshold", 0),
        l_threshold=getattr(server, "lthreshold", 0),
        af=0 if af == service_af else af,
        tun_type=TunnelType[tunnel.type.name] if tunnel else TunnelType.IPIP,
        tun_port=(tunnel.port or 0) if tunnel else 0,
        tun_flags=TUN_FLAGS.get(tunnel.checksum, 0) if tunnel else 0,
    )


def initial_weights(vs: VirtualServer) -> dict[ServerKey, int]:
    """Desired weights at start, before any check ran (keepalived's startup).

    A real server without checkers, or whose checkers have no ``alpha``, goes in at once at
    its weight; with ``alpha`` it starts down (weight 0 with ``inhibit_on_failure``, else
    absent).  Quorum and the sorry server as ``healthcheck.state`` applies them later: while
    quorum is lost the sorry server replaces the pool (inhibited dead servers stay at 0).
    """
    alive: dict[ServerKey, int] = {}
    out: dict[ServerKey, int] = {}
    for rs in vs.real_servers:
        key = (rs.address, rs.port)
        down = bool(rs.checkers) and (rs.alpha or vs.alpha or any(c.alpha for c in rs.checkers))
        if not down:
            alive[key] = rs.weight
        elif rs.inhibit_on_failure:
            out[key] = 0
    quorum_up = sum(alive.values()) >= vs.quorum and sum(alive.values()) > 0
    sorry = vs.sorry_server
    if sorry is None or quorum_up:
        out.update(alive)
        if sorry is not None and sorry.inhibit:
            out[(sorry.address, sorry.port)] = 0
        return out
    out[(sorry.address, sorry.port)] = 1
    return out


def compile_vs(vs: VirtualServer, groups: Mapping[str, VirtualServerGroup]) -> CompiledVs:
    keys = service_keys(vs, groups)
    service_af = keys[0].af if keys else socket.AF_INET
    dests: dict[ServerKey, Destination] = {}
    for rs in vs.real_servers:
        dests.setdefault((rs.address, rs.port), make_dest(rs, rs.weight, service_af))
    if vs.sorry_server is not None:
        s = vs.sorry_server
        dests.setdefault((s.address, s.port), make_dest(s, 1, service_af))
    return CompiledVs(
        vs_key=vs.key,
        services=tuple(make_service(vs, k) for k in keys),
        dests=dests,
        initial=initial_weights(vs),
    )


CompileCache = dict[tuple[VirtualServer, VirtualServerGroup | None], CompiledVs]


def compile_config(config: Config, cache: CompileCache | None = None) -> list[CompiledVs]:
    """Every virtual server compiled; with ``cache`` (filled in place) a reload recompiles
    only the virtual servers (or their groups) that changed."""
    groups = config.virtual_server_groups
    out = []
    fresh: CompileCache = {}
    for vs in config.virtual_servers:
        key = (vs, groups.get(vs.group) if vs.group is not None else None)
        compiled = cache.get(key) if cache is not None else None
        if compiled is None:
            compiled = compile_vs(vs, groups)
        fresh[key] = compiled
        out.append(compiled)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    return out


def desired(compiled: Sequence[CompiledVs], weights: Weights) -> dict[ServiceKey, DesiredService]:
    """The reconciler's desired state; a VS missing from ``weights`` uses its initial weights.

    A weight for a server the config does not know (stale checker state) is ignored.
    """
    out: dict[ServiceKey, DesiredService] = {}
    for vs in compiled:
        wanted = weights.get(vs.vs_key, vs.initial)
        for svc in vs.services:
            dests = []
            for key, weight in wanted.items():
                template = vs.dests.get(key)
                if template is None:
                    continue
                dests.append(template if template.weight == weight
                             else replace(template, weight=weight))
            out[svc.key] = DesiredService(svc, tuple(dests))
    return out
