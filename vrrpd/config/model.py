"""The typed model of a keepalived.conf: what the loader produces and the daemon consumes.

Every value is resolved: keepalived's defaults are filled in, aliases folded
(``lb_algo`` -> ``scheduler``), and settings inherited down the LVS tree
(virtual server -> real server -> checker) are copied into the child, so a
consumer never has to look at a parent to know a value.  Times are seconds as
``float``; addresses are ``ipaddress`` objects; commands are :class:`Command`.

Top level: :class:`Config`.  VRRP blocks live in ``model_vrrp``, LVS blocks and
checkers in ``model_lvs``; both are re-exported here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from vrrpd.config.errors import Position
from vrrpd.config.model_common import Command, IPAddress
from vrrpd.config.model_lvs import (
    Checker,
    DnsCheck,
    FileCheck,
    HttpGetCheck,
    LvsMethod,
    MiscCheck,
    PingCheck,
    Protocol,
    RealServer,
    SchedFlag,
    Scheduler,
    SmtpCheck,
    SmtpHost,
    SorryServer,
    SslGetCheck,
    TcpCheck,
    Tunnel,
    TunnelType,
    UdpCheck,
    Url,
    VirtualServer,
    VirtualServerGroup,
    VsgFwmark,
    VsgRange,
)
from vrrpd.config.model_vrrp import (
    Authentication,
    AuthType,
    InitialState,
    SyncGroup,
    TrackFile,
    TrackFileRef,
    TrackInterface,
    TrackScriptRef,
    UnicastPeer,
    VirtualIpAddress,
    VirtualRoute,
    VrrpInstance,
    VrrpScript,
)
from vrrpd.config.valuemethods import value_methods

__all__ = [
    "AuthType", "Authentication", "Checker", "Command", "Config", "DnsCheck", "FileCheck",
    "FlushOnStop", "GlobalDefs", "HttpGetCheck", "IPAddress", "InitialState", "LvsMethod",
    "LvsSyncDaemon", "LvsTimeouts", "MiscCheck", "PingCheck", "Protocol", "RealServer",
    "SchedFlag", "Scheduler", "SmtpCheck", "SmtpHost", "SorryServer", "SslConfig", "SslGetCheck",
    "SyncGroup", "TcpCheck", "TrackFile", "TrackFileRef", "TrackInterface", "TrackScriptRef",
    "Tunnel", "TunnelType", "UdpCheck", "UnicastPeer", "Url", "VirtualIpAddress", "VirtualRoute",
    "VirtualServer", "VirtualServerGroup", "VrrpInstance", "VrrpScript", "VsgFwmark", "VsgRange",
]


VRRP_MCAST_GROUP4 = IPv4Address("224.0.0.18")
VRRP_MCAST_GROUP6 = IPv6Address("ff02::12")


class FlushOnStop(enum.Enum):
    """``lvs_flush_on_stop``: what to delete from IPVS when stopping."""

    NONE = "none"  # keyword absent: delete our own services one by one (keepalived default)
    VS = "VS"  # delete only the virtual servers we configured
    ALL = "ALL"  # flush the whole IPVS table


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class LvsTimeouts:
    """``lvs_timeouts tcp N tcpfin N udp N`` (seconds; None = leave the kernel's value)."""

    tcp: int | None = None
    tcpfin: int | None = None
    udp: int | None = None


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class LvsSyncDaemon:
    """``lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] [maxlen N] [port N] [ttl N] [group IP]``."""

    interface: str
    instance: str  # the vrrp_instance whose state drives master/backup sync
    id: int | None = None  # None: the instance's VRID (keepalived's default)
    maxlen: int | None = None
    port: int = 8848
    ttl: int | None = None
    group: IPAddress | None = None  # None: 224.0.0.81


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class GlobalDefs:
    notification_email: tuple[str, ...] = ()
    notification_email_from: str | None = None  # None: keepalived@<hostname>
    smtp_server: IPAddress | None = None  # or a host name, see smtp_server_name
    smtp_server_name: str | None = None  # set when smtp_server was a name, not an address
    smtp_port: int = 25
    smtp_helo_name: str | None = None  # None: local host name
    smtp_connect_timeout: float = 30.0
    smtp_alert: bool | None = None  # global default for every smtp_alert (None = unset)
    smtp_alert_vrrp: bool | None = None
    smtp_alert_checker: bool | None = None
    router_id: str | None = None  # None: the local host name
    no_email_faults: bool = False  # no smtp_alert mail on entering FAULT
    no_checker_emails: bool = False  # real-server mails only when the real server changes
    script_user: str | None = None  # None: keepalived_script if it exists, else root
    script_group: str | None = None
    enable_script_security: bool = False
    default_interface: str | None = None  # for static addresses (keepalived: eth0)
    # Gratuitous ARP defaults, inherited by every vrrp_instance that does not set its own.
    vrrp_garp_master_delay: float = 5.0
    vrrp_garp_master_repeat: int = 5
    vrrp_garp_master_refresh: float = 0.0  # 0 = no periodic refresh
    vrrp_garp_master_refresh_repeat: int = 1
    vrrp_garp_interval: float = 0.0  # delay between ARPs of one burst
    vrrp_gna_interval: float = 0.0
    vrrp_garp_lower_prio_delay: float | None = None  # None: vrrp_garp_master_delay
    vrrp_garp_lower_prio_repeat: int | None = None  # None: vrrp_garp_master_repeat
    vrrp_version: int = 2
    vrrp_mcast_group4: IPv4Address = VRRP_MCAST_GROUP4
    vrrp_mcast_group6: IPv6Address = VRRP_MCAST_GROUP6
    vrrp_strict: bool = False
    vrrp_skip_check_adv_addr: bool = False
    vrrp_check_unicast_src: bool = False
    vrrp_priority: int | None = None  # process scheduling priority (nice), not VRRP priority
    checker_priority: int | None = None
    lvs_flush: bool = False
    lvs_flush_on_stop: FlushOnStop = FlushOnStop.NONE
    lvs_timeouts: LvsTimeouts = LvsTimeouts()
    lvs_sync_daemon: LvsSyncDaemon | None = None
    enable_traps: bool = False
    enable_snmp_vrrp: bool = False
    enable_snmp_checker: bool = False
    enable_dbus: bool = False
    notify_fifo: Command | None = None
    vrrp_notify_fifo: Command | None = None
    lvs_notify_fifo: Command | None = None


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class SslConfig:
    """Top-level ``SSL { password ca certificate key }`` used by SSL_GET."""

    password: str | None = None
    ca: str | None = None
    certificate: str | None = None
    key: str | None = None


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class Config:
    """A whole keepalived.conf.

    Ordered blocks are tuples in file order; blocks referred to by name are
    dicts keyed by name.  Items dropped with an ERROR diagnostic are absent.
    """

    global_defs: GlobalDefs = GlobalDefs()
    vrrp_scripts: Mapping[str, VrrpScript] = field(default_factory=dict)
    track_files: Mapping[str, TrackFile] = field(default_factory=dict)
    vrrp_sync_groups: Mapping[str, SyncGroup] = field(default_factory=dict)
    vrrp_instances: tuple[VrrpInstance, ...] = ()
    virtual_server_groups: Mapping[str, VirtualServerGroup] = field(default_factory=dict)
    virtual_servers: tuple[VirtualServer, ...] = ()
    ssl: SslConfig | None = None
    # Where the config came from (the main file), for messages.
    source: Position | None = field(default=None, compare=False)

    def instance(self, name: str) -> VrrpInstance:
        for inst in self.vrrp_instances:
            if inst.name == name:
                return inst
        raise KeyError(name)
