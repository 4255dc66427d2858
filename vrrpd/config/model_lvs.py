"""LVS blocks: virtual_server_group, virtual_server, real_server and every checker.

Inheritance is resolved by the loader: a real server carries the effective
``lvs_method``, ``inhibit_on_failure``, timers etc. (its own, else the virtual
server's), and each checker carries its effective timers (its own, else the
real server's, else the virtual server's, else keepalived's default for that
checker type).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from vrrpd.config.errors import Position
from vrrpd.config.model_common import Command, IPAddress
from vrrpd.config.valuemethods import value_methods


class Scheduler(enum.Enum):
    RR = "rr"
    WRR = "wrr"
    LC = "lc"
    WLC = "wlc"
    LBLC = "lblc"
    LBLCR = "lblcr"
    DH = "dh"
    SH = "sh"
    SED = "sed"
    NQ = "nq"
    FO = "fo"
    OVF = "ovf"
    MH = "mh"
    TWOS = "twos"


class SchedFlag(enum.Enum):
    """Scheduler flags (``-b`` of ipvsadm).  sh-/mh- names are aliases of flag-1/2."""

    FLAG_1 = "flag-1"  # sh-fallback / mh-fallback
    FLAG_2 = "flag-2"  # sh-port / mh-port
    FLAG_3 = "flag-3"


class LvsMethod(enum.Enum):
    NAT = "NAT"
    DR = "DR"
    TUN = "TUN"


class TunnelType(enum.Enum):
    IPIP = "ipip"
    GUE = "gue"
    GRE = "gre"


class Protocol(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class Tunnel:
    """``lvs_method TUN [type ipip|gue port N|gre] [nocsum|csum|remcsum]``."""

    type: TunnelType = TunnelType.IPIP
    port: int | None = None  # GUE only
    checksum: str | None = None  # "nocsum" | "csum" | "remcsum"


# ----------------------------------------------------------------- checkers

@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class CheckerBase:
    """Options every checker has (MISC_CHECK uses only the timers and alpha).

    ``kind`` is the config keyword (``TCP_CHECK``, ``HTTP_GET``, ...), set by each subclass.
    """

    kind: str = field(default="CHECKER", init=False)
    connect_ip: IPAddress | None = None  # None: the real server's address
    connect_port: int | None = None  # None: the real server's port
    bindto: IPAddress | None = None
    bind_if: str | None = None
    bind_port: int | None = None
    connect_timeout: float = 5.0
    fwmark: int | None = None
    retry: int = 1
    delay_before_retry: float = 1.0
    warmup: float | None = None  # None: random in [0, delay_loop] (keepalived default)
    delay_loop: float = 60.0
    alpha: bool = False
    log_all_failures: bool = False
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class TcpCheck(CheckerBase):
    kind: str = field(default="TCP_CHECK", init=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class Url:
    """``url { path digest status_code virtualhost regex ... }``.

    ``status_codes`` are inclusive (low, high) ranges; default 200-299.
    """

    path: str = "/"
    digest: str | None = None  # lower-case hex MD5 of the body
    status_codes: tuple[tuple[int, int], ...] = ((200, 299),)
    virtualhost: str | None = None
    regex: str | None = None
    regex_no_match: bool = False
    regex_options: tuple[str, ...] = ()  # keepalived's PCRE2 option names, lower case
    regex_min_offset: int = 0  # the search starts this far into the body
    regex_max_offset: int | None = None  # a match must start at or before this offset
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class HttpGetCheck(CheckerBase):
    kind: str = field(default="HTTP_GET", init=False)
    urls: tuple[Url, ...] = ()
    http_protocol: str = "1.0"  # "1.0" | "1.0C" | "1.1"
    virtualhost: str | None = None  # effective: checker's, else real server's, else VS's
    fast_recovery: bool = False
    enable_sni: bool = False  # meaningful for SSL_GET only


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class SslGetCheck(HttpGetCheck):
    kind: str = field(default="SSL_GET", init=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class SmtpHost:
    """A legacy ``host { connect_ip ... }`` sub-block of SMTP_CHECK."""

    connect_ip: IPAddress | None = None
    connect_port: int | None = None
    bindto: IPAddress | None = None
    bind_if: str | None = None
    bind_port: int | None = None
    connect_timeout: float | None = None
    fwmark: int | None = None


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class SmtpCheck(CheckerBase):
    kind: str = field(default="SMTP_CHECK", init=False)
    helo_name: str | None = None  # None: smtp_helo_name / local host name
    hosts: tuple[SmtpHost, ...] = ()


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class DnsCheck(CheckerBase):
    kind: str = field(default="DNS_CHECK", init=False)
    type: str = "SOA"  # A NS CNAME SOA MX TXT AAAA
    name: str = "."


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class UdpCheck(CheckerBase):
    kind: str = field(default="UDP_CHECK", init=False)
    payload: bytes | None = None  # None: random payload
    require_reply: bool = False
    reply_pattern: bytes | None = None  # expected reply prefix
    reply_mask: bytes | None = None  # per-nibble mask for X/x in require_reply (0 = ignore)
    min_reply_length: int = 0
    max_reply_length: int = 255


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class PingCheck(CheckerBase):
    kind: str = field(default="PING_CHECK", init=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class MiscCheck(CheckerBase):
    kind: str = field(default="MISC_CHECK", init=False)
    misc_path: Command
    misc_timeout: float | None = None  # None: delay_loop (keepalived)
    misc_dynamic: bool = False


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class FileCheck(CheckerBase):
    kind: str = field(default="FILE_CHECK", init=False)
    track_file: str
    dynamic: bool = False
    weight: int | None = None  # None: the track_file's weight
    reverse: bool = False


Checker = (TcpCheck | HttpGetCheck | SslGetCheck | SmtpCheck | DnsCheck | UdpCheck | PingCheck
           | MiscCheck | FileCheck)



# ----------------------------------------------------------------- servers

@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class RealServer:
    address: IPAddress
    port: int  # the virtual server's port when not written (0 for fwmark services)
    weight: int = 1
    lvs_method: LvsMethod = LvsMethod.NAT  # effective (own, else the virtual server's)
    tunnel: Tunnel | None = None  # set when lvs_method is TUN
    inhibit_on_failure: bool = False
    notify_up: Command | None = None
    notify_down: Command | None = None
    uthreshold: int = 0  # 0 = unlimited
    lthreshold: int = 0
    smtp_alert: bool = False
    virtualhost: str | None = None
    alpha: bool = False
    delay_loop: float = 60.0
    connect_timeout: float = 5.0
    retry: int | None = None  # None: each checker's own default
    delay_before_retry: float | None = None  # None: each checker's own default
    warmup: float | None = None
    checkers: tuple[Checker, ...] = ()
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class SorryServer:
    address: IPAddress
    port: int
    lvs_method: LvsMethod = LvsMethod.NAT
    tunnel: Tunnel | None = None
    inhibit: bool = False  # sorry_server_inhibit


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class VsgRange:
    """``IP[-LAST|/PREFIX] [PORT]`` in a virtual_server_group: first..last inclusive."""

    first: IPAddress
    last: IPAddress
    port: int = 0


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class VsgFwmark:
    fwmark: int
    family: str | None = None  # "inet" | "inet6"


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class VirtualServerGroup:
    name: str
    ranges: tuple[VsgRange, ...] = ()
    fwmarks: tuple[VsgFwmark, ...] = ()
    pos: Position | None = field(default=None, compare=False)


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class VirtualServer:
    """``virtual_server IP PORT | fwmark N | group NAME { ... }``.

    Exactly one of (``address``), ``fwmark``, ``group`` identifies the service.
    ``persistence_timeout`` None = not persistent (keyword alone = 360 s).
    """

    address: IPAddress | None = None
    port: int = 0
    fwmark: int | None = None
    group: str | None = None
    protocol: Protocol = Protocol.TCP  # keepalived: missing -> UDP (with a warning)
    scheduler: Scheduler = Scheduler.WLC
    sched_flags: frozenset[SchedFlag] = frozenset()
    ops: bool = False
    lvs_method: LvsMethod = LvsMethod.NAT
    tunnel: Tunnel | None = None
    persistence_timeout: int | None = None
    persistence_granularity: int | None = None  # as a prefix length (255.255.255.0 -> 24)
    persistence_engine: str | None = None
    ip_family: str | None = None  # "inet" | "inet6" for fwmark services
    ha_suspend: bool = False
    alpha: bool = False
    omega: bool = False
    inhibit_on_failure: bool = False
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: Command | None = None
    quorum_down: Command | None = None
    sorry_server: SorryServer | None = None
    virtualhost: str | None = None
    smtp_alert: bool = False
    delay_loop: float = 60.0
    connect_timeout: float = 5.0
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    real_servers: tuple[RealServer, ...] = ()
    pos: Position | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Human identity as keepalived prints it: ``[IP]:proto:PORT``, ``FWM N``, ``GROUP x``."""
        if self.group is not None:
            return f"GROUP {self.group}"
        if self.fwmark is not None:
            return f"FWM {self.fwmark}"
        return f"[{self.address}]:{self.protocol.value.lower()}:{self.port}"
