"""One running vrrp_instance: its machine plus the I/O bindings the runner needs.

The pure translations from the config model live here too (``machine_config``, ``vips_of``,
``expectations``), so the runner only wires and dispatches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import structlog

from vrrpd.config.model import InitialState, VrrpInstance
from vrrpd.vrrp.addresses import Vip
from vrrpd.vrrp.garp import GarpTarget
from vrrpd.vrrp.machine import Machine, MachineConfig, TrackersChanged
from vrrpd.vrrp.notify import NotifyCommands
from vrrpd.vrrp.packet import Advert, RxExpectations, auth_data_for, encode_ip, wire_advert_int
from vrrpd.vrrp.sockets import IpIdent, PacketTransport, destinations
from vrrpd.vrrp.syncgroup import SyncGroupCoordinator
from vrrpd.vrrp.tracking import Tracked

__all__ = ["Effect", "InstanceRuntime", "advert_addresses", "expectations", "machine_config",
           "vips_of"]

Effect = Callable[[], Awaitable[None] | None]


def vips_of(inst: VrrpInstance) -> tuple[Vip, ...]:
    """Every IPv4 address the instance configures when MASTER (advertised and excluded)."""
    out = []
    for v in (*inst.virtual_ipaddresses, *inst.virtual_ipaddresses_excluded):
        if not isinstance(v.address, IPv4Interface):
            continue  # IPv6 VIPs are not supported by this VRRPv2 engine (logged at start)
        out.append(Vip(address=str(v.ip), prefixlen=v.prefixlen, dev=v.dev or inst.interface,
                       broadcast=str(v.brd) if v.brd is not None else None,
                       scope=v.scope or "global", label=v.label))
    return tuple(out)


def advert_addresses(inst: VrrpInstance) -> tuple[IPv4Address, ...]:
    """The VIPs carried in adverts (``virtual_ipaddress`` only, IPv4, in config order)."""
    return tuple(v.ip for v in inst.virtual_ipaddresses if isinstance(v.ip, IPv4Address))


def expectations(inst: VrrpInstance) -> RxExpectations:
    auth = inst.authentication
    return RxExpectations(
        vrid=inst.virtual_router_id,
        advert_int=wire_advert_int(inst.advert_int),
        auth_type=int(auth.auth_type),
        auth_data=auth_data_for(int(auth.auth_type), auth.auth_pass),
        addresses=advert_addresses(inst),
        check_ttl=not inst.uses_unicast,
        vip_mismatch_drops=True,  # keepalived 2.2.7
    )


def machine_config(inst: VrrpInstance, own_ip: IPv4Address, *, coordinated: bool
                   ) -> MachineConfig:
    return MachineConfig(
        name=inst.name,
        vrid=inst.virtual_router_id,
        priority=inst.priority,
        advert_int=float(wire_advert_int(inst.advert_int)),
        own_ip=own_ip,
        start_as_master=inst.state is InitialState.MASTER,
        nopreempt=inst.nopreempt,
        preempt_delay=inst.preempt_delay,
        garp_master_delay=inst.garp_master_delay,
        garp_master_repeat=inst.garp_master_repeat,
        garp_master_refresh=inst.garp_master_refresh,
        garp_master_refresh_repeat=inst.garp_master_refresh_repeat,
        garp_lower_prio_delay=inst.garp_lower_prio_delay,
        garp_lower_prio_repeat=inst.garp_lower_prio_repeat,
        garp_interval=inst.garp_interval,
        coordinated=coordinated,
    )


@dataclass(eq=False)
class InstanceRuntime:
    """Mutable per-instance state owned by the runner (one event loop, no locking needed)."""

    inst: VrrpInstance
    machine: Machine
    transport: PacketTransport
    src: IPv4Address
    vips: tuple[Vip, ...]
    garp_targets: tuple[GarpTarget, ...]
    tracked: tuple[Tracked, ...]
    notify: NotifyCommands
    group: SyncGroupCoordinator | None = None
    log: Any = None
    expect: RxExpectations = field(init=False)
    dests: tuple[IPv4Address, ...] = field(init=False)
    ident: IpIdent = field(default_factory=IpIdent)
    timer: Any = None  # timers.TimerHandle (or asyncio.TimerHandle): cancel(), when()
    timer_late_max: float = 0.0  # worst lateness of a timer callback seen (seconds)
    trackers: TrackersChanged | None = None
    effects: asyncio.Queue[Effect] = field(default_factory=asyncio.Queue)
    worker: asyncio.Task[None] | None = None
    garp_task: asyncio.Task[None] | None = None
    vipset: bool = False  # the VIPs are on the interfaces (last AddVips/RemoveVips effect)
    _auth: bytes = field(init=False, repr=False)
    _addresses: tuple[IPv4Address, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.use_config(self.inst)
        if self.log is None:
            self.log = structlog.get_logger("vrrpd.vrrp").bind(instance=self.inst.name)

    def use_config(self, inst: VrrpInstance) -> None:
        """Take ``inst`` (same VRID and interface, e.g. after a reload) for what goes on the wire
        and what received adverts must match: VIP list, auth, interval, unicast peers."""
        self.inst = inst
        self.expect = expectations(inst)
        peers = [str(p.address) for p in inst.unicast_peers]
        self.dests = tuple(IPv4Address(d) for d in destinations(peers))
        a = inst.authentication
        self._auth = auth_data_for(int(a.auth_type), a.auth_pass)
        self._addresses = advert_addresses(inst)

    @property
    def name(self) -> str:
        return self.inst.name

    def send_advert(self, priority: int) -> int:
        """Send one advert to each destination now; returns how many the kernel took."""
        advert = Advert(self.inst.virtual_router_id, priority, self.expect.advert_int,
                        int(self.inst.authentication.auth_type), self._auth, self._addresses)
        sent = 0
        for dst in self.dests:
            packet = encode_ip(advert, src=self.src, dst=dst, ident=self.ident.next())
            sent += self.transport.send(packet, str(dst))
        return sent
