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
    initial_dests: tuple[Destination, ...]  # ``initial`` applied to ``dests``


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
    initial = initial_weights(vs)
    return CompiledVs(
        vs_key=vs.key,
        services=tuple(make_service(vs, k) for k in keys),
        dests=dests,
        initial=initial,
        initial_dests=weighted(dests, initial),
    )


# vs.key -> (the virtual server, its group, what they compiled to)
CompileCache = dict[str, tuple[VirtualServer, VirtualServerGroup | None, CompiledVs]]


def compile_config(config: Config, cache: CompileCache | None = None) -> list[CompiledVs]:
    """Every virtual server compiled; with ``cache`` (filled in place) a reload recompiles
    only the virtual servers (or their groups) that changed.

    The cache is found by the virtual server's key and checked by equality (the very
    objects, or equal ones from a fresh parse): hashing a whole virtual server with its real
    servers and checkers would cost more than the comparison."""
    groups = config.virtual_server_groups
    out = []
    fresh: CompileCache = {}
    for vs in config.virtual_servers:
        group = groups.get(vs.group) if vs.group is not None else None
        key = vs.key
        hit = cache.get(key) if cache is not None else None
        if (hit is not None and (hit[0] is vs or hit[0] == vs)
                and (hit[1] is group or hit[1] == group)):
            compiled = hit[2]
        else:
            compiled = compile_vs(vs, groups)
        fresh.setdefault(key, (vs, group, compiled))
        out.append(compiled)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    return out


def weighted(templates: Mapping[ServerKey, Destination],
             wanted: Mapping[ServerKey, int]) -> tuple[Destination, ...]:
    """The destinations at the ``wanted`` weights, in that order (templates reused when the
    weight is the configured one); servers the config does not know are ignored."""
    dests = []
    for key, weight in wanted.items():
        template = templates.get(key)
        if template is None:
            continue
        dests.append(template if template.weight == weight else replace(template, weight=weight))
    return tuple(dests)


# vs_key -> (compiled virtual server, the weights mapping, its destinations)
DesiredCache = dict[str, tuple[CompiledVs, Mapping[ServerKey, int], tuple[Destination, ...]]]


def desired(compiled: Sequence[CompiledVs], weights: Weights,
            cache: DesiredCache | None = None) -> dict[ServiceKey, DesiredService]:
    """The reconciler's desired state; a VS missing from ``weights`` uses its initial weights.

    A weight for a server the config does not know (stale checker state) is ignored.  With
    ``cache`` (filled in place), a virtual server whose compiled form and weights mapping
    are the very objects of the last call keeps its destination objects: unchanged entries
    stay identical (the reconciler's cheapest comparison) and nothing is rebuilt.
    """
    out: dict[ServiceKey, DesiredService] = {}
    fresh: DesiredCache = {}
    for vs in compiled:
        wanted = weights.get(vs.vs_key)
        if wanted is None:
            dests = vs.initial_dests
        else:
            hit = cache.get(vs.vs_key) if cache is not None else None
            if hit is not None and hit[0] is vs and hit[1] is wanted:
                dests = hit[2]
            else:
                dests = weighted(vs.dests, wanted)
            fresh[vs.vs_key] = (vs, wanted, dests)
        for svc in vs.services:
            out[svc.key] = DesiredService(svc, dests)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    return out
