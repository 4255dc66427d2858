"""VRRP blocks: vrrp_script, track_file, vrrp_sync_group, vrrp_instance."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from vrrpd.config.errors import Position
from vrrpd.config.model_common import Command, IPAddress, IPInterface
from vrrpd.config.valuemethods import value_methods


class InitialState(enum.Enum):
    """``state MASTER|BACKUP`` (upper case only, as keepalived)."""

    MASTER = "MASTER"
    BACKUP = "BACKUP"


class AuthType(enum.IntEnum):
    """VRRPv2 auth type as on the wire."""

    NONE = 0
    PASS = 1
    AH = 2


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class VrrpScript:
    """``vrrp_script NAME { script ... interval timeout weight rise fall user }``."""

    name: str
    script: Command
    interval: float = 1.0
    timeout: float = 1.0  # keepalived: defaults to interval
    weight: int = 0  # -253..253; see weight_reverse
    weight_reverse: bool = False  # `weight N reverse`
    rise: int = 1
    fall: int = 1
    init_fail: bool = False  # start in the failed state
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class TrackFile:
    """``track_file NAME { file PATH weight N [reverse] init_file [VALUE] [overwrite] }``.

    ``vrrp_track_file`` (the older spelling) loads into the same type.
    """

    name: str
    file: str
    weight: int = 1
    weight_reverse: bool = False
    init_file: bool = False
    init_value: int = 0
    init_overwrite: bool = False
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class TrackInterface:
    """A ``track_interface`` line: ``IFNAME [weight N [reverse]]``; weight 0 = FAULT on down."""

    name: str
    weight: int = 0
    reverse: bool = False
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class TrackScriptRef:
    """One line of ``track_script``: ``NAME [weight N [reverse]]``; None = the script's weight."""

    name: str
    weight: int | None = None
    reverse: bool = False
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class TrackFileRef:
    """One line of ``track_file`` inside an instance/group; None = the track_file's weight."""

    name: str
    weight: int | None = None
    reverse: bool = False
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class Authentication:
    auth_type: AuthType = AuthType.NONE
    # The password as written; on the wire it is truncated to 8 bytes and NUL padded.
    auth_pass: str = ""


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class VirtualIpAddress:
    """A ``virtual_ipaddress`` line: ``ADDR[/PREFIX] [brd IP] [dev IF] [scope S] [label L] ...``.

    ``address`` holds the address and its prefix (/32 or /128 when none was written).
    ``dev`` None means the instance's interface.
    """

    address: IPInterface
    brd: IPAddress | None = None
    dev: str | None = None
    scope: str | None = None  # site|link|host|nowhere|global (None = kernel default, global)
    label: str | None = None
    no_track: bool = False
    pos: Position | None = field(default=None, compare=False)

    @property
    def ip(self) -> IPAddress:
        return self.address.ip

    @property
    def prefixlen(self) -> int:
        return self.address.network.prefixlen


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class VirtualRoute:
    """A ``virtual_routes`` line: ``[src IP] DEST[/PREFIX] [via|gw GW] [dev IF] [scope S]
    [table T] [metric M] ...`` or ``blackhole|unreachable|prohibit DEST``."""

    to: IPv4Network | IPv6Network
    via: IPAddress | None = None
    src: IPAddress | None = None
    dev: str | None = None
    scope: str | None = None
    table: str | None = None
    metric: int | None = None
    type: str | None = None  # blackhole, unreachable, prohibit, throw, ... (None = unicast)
    options: tuple[str, ...] = ()  # anything else we kept verbatim (not acted on)
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class UnicastPeer:
    address: IPAddress
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class SyncGroup:
    """``vrrp_sync_group NAME { group { INSTANCE ... } notify_* smtp_alert track_* }``."""

    name: str
    members: tuple[str, ...] = ()  # instance names, in written order
    notify_master: Command | None = None
    notify_backup: Command | None = None
    notify_fault: Command | None = None
    notify_stop: Command | None = None
    notify: Command | None = None
    # None only while loading: the loader resolves it (own, else global smtp_alert_vrrp, else
    # global smtp_alert, else off), so a loaded Config always holds a bool
    smtp_alert: bool | None = None
    global_tracking: bool = False
    sync_group_tracking_weight: bool = False
    track_interfaces: tuple[TrackInterface, ...] = ()
    track_scripts: tuple[TrackScriptRef, ...] = ()
    track_files: tuple[TrackFileRef, ...] = ()
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class VrrpInstance:
    """``vrrp_instance NAME { ... }`` with every default resolved.

    ``priority`` is the configured base priority (255 when ``state MASTER`` and no
    priority was written, else 100).  ``garp_*`` come from global_defs'
    ``vrrp_garp_*`` unless the instance sets its own.  ``accept`` defaults to
    ``not strict_mode``.
    """

    name: str
    interface: str
    virtual_router_id: int
    interface_pos: Position | None = field(default=None, compare=False)  # the 'interface' line
    state: InitialState = InitialState.BACKUP
    priority: int = 100
    advert_int: float = 1.0
    version: int = 2
    authentication: Authentication = Authentication()
    virtual_ipaddresses: tuple[VirtualIpAddress, ...] = ()
    virtual_ipaddresses_excluded: tuple[VirtualIpAddress, ...] = ()
    virtual_routes: tuple[VirtualRoute, ...] = ()
    track_interfaces: tuple[TrackInterface, ...] = ()
    track_scripts: tuple[TrackScriptRef, ...] = ()
    track_files: tuple[TrackFileRef, ...] = ()
    dont_track_primary: bool = False
    unicast_src_ip: IPAddress | None = None
    unicast_peers: tuple[UnicastPeer, ...] = ()
    mcast_src_ip: IPAddress | None = None
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0  # 0 = off
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_delay: float = 5.0
    garp_lower_prio_repeat: int = 5
    garp_interval: float = 0.0
    notify_master: Command | None = None
    notify_backup: Command | None = None
    notify_fault: Command | None = None
    notify_stop: Command | None = None
    notify: Command | None = None  # generic: gets INSTANCE name STATE priority appended
    notify_master_rx_lower_pri: Command | None = None
    smtp_alert: bool = False
    nopreempt: bool = False
    preempt_delay: float = 0.0
    use_vmac: bool = False
    vmac_name: str | None = None  # None: vrrp.<VRID>
    vmac_xmit_base: bool = False
    strict_mode: bool = False  # instance strict_mode or global vrrp_strict
    accept: bool = True
    skip_check_adv_addr: bool = False
    debug: int = 0
    lvs_sync_daemon_interface: str | None = None  # deprecated; global lvs_sync_daemon wins
    sync_group: str | None = None  # name of the vrrp_sync_group this instance belongs to
    pos: Position | None = field(default=None, compare=False)

    @property
    def uses_unicast(self) -> bool:
        return bool(self.unicast_peers)
