"""IPVS value types shared by the netlink client, the reconciler and the listing.

Plain frozen values with no behaviour beyond identity: the reconciler compares
them, the client encodes and decodes them.  Addresses are ``ipaddress`` objects.
"""

from __future__ import annotations

import enum
import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

Address = IPv4Address | IPv6Address


class Protocol(enum.IntEnum):
    TCP = socket.IPPROTO_TCP
    UDP = socket.IPPROTO_UDP
    SCTP = 132


class Forward(enum.IntEnum):
    """IP_VS_CONN_F_* forwarding methods (the low bits of conn_flags)."""

    NAT = 0  # MASQ
    LOCAL = 1
    TUN = 2
    DR = 3  # DROUTE (ipvsadm prints "Route")
    BYPASS = 4


class TunnelType(enum.IntEnum):
    IPIP = 0
    GUE = 1
    GRE = 2


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """Identity of a virtual service: (af, protocol, addr, port) or (af, fwmark)."""

    af: int  # socket.AF_INET / AF_INET6
    protocol: Protocol | None = None  # None for fwmark services
    addr: Address | None = None
    port: int = 0
    fwmark: int = 0
    # computed once: keys are hashed many times per sync (tables, sets, lookups), and hashing
    # an address object runs Python code
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.fwmark:
            if self.addr is not None or self.protocol is not None:
                raise ValueError("a fwmark service has no address or protocol")
        elif self.addr is None or self.protocol is None:
            raise ValueError("a service needs an address and protocol, or a fwmark")
        object.__setattr__(self, "_hash",
                           hash((self.af, self.protocol, self.addr, self.port, self.fwmark)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class Service:
    key: ServiceKey
    scheduler: str = "wlc"
    # Scheduler/service flags by name: "persistent", "hashed", "onepacket",
    # "sched-flag-1".."sched-flag-3" (sh-fallback/sh-port/mh-*).
    flags: frozenset[str] = frozenset()
    timeout: int = 0  # persistence timeout, seconds (0 = not persistent)
    netmask: int = 32  # persistence granularity as a prefix length (128 for IPv6)
    pe_name: str = ""


@dataclass(frozen=True, slots=True)
class DestKey:
    addr: Address
    port: int
    _hash: int = field(init=False, repr=False, compare=False)  # as ServiceKey's

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.addr, self.port)))

    def __hash__(self) -> int:
        return self._hash


@dataclass(frozen=True, slots=True)
class Destination:
    key: DestKey
    weight: int = 1
    forward: Forward = Forward.DR
    u_threshold: int = 0
    l_threshold: int = 0
    af: int = 0  # 0 = same family as the service
    tun_type: TunnelType = TunnelType.IPIP
    tun_port: int = 0
    tun_flags: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    conns: int = 0
    inpkts: int = 0
    outpkts: int = 0
    inbytes: int = 0
    outbytes: int = 0
    cps: int = 0
    inpps: int = 0
    outpps: int = 0
    inbps: int = 0
    outbps: int = 0


@dataclass(frozen=True, slots=True)
class ObservedDestination:
    """A destination as read back from the kernel, with its live counters."""

    dest: Destination
    active_conns: int = 0
    inactive_conns: int = 0
    persist_conns: int = 0
    stats: Stats = field(default_factory=Stats)


@dataclass(frozen=True, slots=True)
class ObservedService:
    service: Service
    dests: tuple[ObservedDestination, ...] = ()
    stats: Stats = field(default_factory=Stats)


# --- added by the IPVS client (additive) ---------------------------------------------------

# Canonical service flag names (what the client decodes) and the ipvsadm/keepalived aliases it
# also accepts when encoding.  "hashed" is kernel-internal: never sent, never reported.
SERVICE_FLAG_BITS: dict[str, int] = {
    "persistent": 0x0001,
    "hashed": 0x0002,
    "onepacket": 0x0004,
    "sched-flag-1": 0x0008,
    "sched-flag-2": 0x0010,
    "sched-flag-3": 0x0020,
}
SERVICE_FLAG_ALIASES: dict[str, str] = {
    "flag-1": "sched-flag-1",
    "flag-2": "sched-flag-2",
    "flag-3": "sched-flag-3",
    "sh-fallback": "sched-flag-1",
    "sh-port": "sched-flag-2",
    "mh-fallback": "sched-flag-1",
    "mh-port": "sched-flag-2",
}


def canonical_flags(flags: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[str]:
    """Flag names with aliases resolved and "hashed" dropped; unknown names raise ValueError."""
    out = set()
    for name in flags:
        name = SERVICE_FLAG_ALIASES.get(name, name)
        if name not in SERVICE_FLAG_BITS:
            raise ValueError(f"unknown IPVS service flag {name!r}")
        if name != "hashed":
            out.add(name)
    return frozenset(out)


class TunnelFlag(enum.IntFlag):
    """IP_VS_TUNNEL_ENCAP_FLAG_* (GUE/GRE checksum options)."""

    NOCSUM = 0
    CSUM = 1
    REMCSUM = 2


class SyncState(enum.IntEnum):
    """IP_VS_STATE_*: which sync daemon."""

    MASTER = 1
    BACKUP = 2


@dataclass(frozen=True, slots=True)
class SyncDaemon:
    """A connection-sync daemon (ipvsadm --start-daemon); 0/None = kernel default."""

    state: SyncState
    mcast_ifn: str
    sync_id: int = 0
    sync_maxlen: int = 0
    mcast_group: Address | None = None  # default 224.0.0.81
    mcast_port: int = 0  # default 8848
    mcast_ttl: int = 0  # default 1


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Connection timeouts in seconds (ipvsadm --set tcp tcpfin udp); 0 = leave unchanged."""

    tcp: int = 0
    tcp_fin: int = 0
    udp: int = 0


@dataclass(frozen=True, slots=True)
class IPVSInfo:
    version: str  # "1.2.1"
    version_code: int  # 0x010201
    conn_tab_size: int
