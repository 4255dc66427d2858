"""Value types of the health-check subsystem (built from the config by ``vrrpd.lvs``).

Everything here is frozen and hashable: a check spec *is* the identity of a probe, so two
real servers (in the same or in different virtual servers) carrying equal specs share one probe
and one retry state (see ``healthcheck.state``).  Addresses are ``ipaddress`` objects, times are
seconds as ``float``.  Nothing is left to resolve: the builder fills ``connect_ip``/``connect_port``
from the real server and every timer from checker -> real server -> virtual server -> default.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address

__all__ = [
    "CheckResult",
    "CheckSpec",
    "CommandSpec",
    "DnsCheckSpec",
    "FileCheckSpec",
    "HttpCheckSpec",
    "IPAddress",
    "MiscCheckSpec",
    "PingCheckSpec",
    "RealServerSpec",
    "ServerKey",
    "SmtpCheckSpec",
    "SorryServerSpec",
    "TcpCheckSpec",
    "UdpCheckSpec",
    "UrlSpec",
    "VirtualServerSpec",
]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command to run without a shell (``argv`` already split), optionally as user/group."""

    argv: tuple[str, ...]
    user: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _CheckCommon:
    """Fields every checker has.  ``warmup`` None = keepalived's default (``delay_loop``)."""

    connect_ip: IPAddress
    connect_port: int = 0
    bindto: IPAddress | None = None
    bind_if: str | None = None
    bind_port: int | None = None
    connect_timeout: float = 5.0
    fwmark: int | None = None
    retry: int = 1
    delay_before_retry: float = 1.0
    delay_loop: float = 60.0
    warmup: float | None = None
    alpha: bool = False

    @property
    def kind(self) -> str:
        return _KINDS[type(self).__name__]


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpCheckSpec(_CheckCommon):
    """TCP_CHECK: a connect (SYN, SYN-ACK) within ``connect_timeout`` is success."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlSpec:
    """One ``url {}``: every URL of an HTTP_GET/SSL_GET must pass.

    ``status_codes`` are inclusive ranges; ``digest`` is the lower-case hex MD5 of the body.
    ``virtualhost`` None = the checker's.  ``regex`` (Python ``re`` syntax, searched in the
    body decoded as latin-1, UTF-8 with the ``utf`` option) must match, or with
    ``regex_no_match`` must not.  ``regex_options``: keepalived's PCRE2 names; caseless,
    multiline, dotall, extended map to ``re`` flags, firstline makes a match start in the
    first line, others do not change the outcome here.  The search starts at
    ``regex_min_offset``; a match must start at or before ``regex_max_offset``.
    """

    path: str = "/"
    digest: str | None = None
    status_codes: tuple[tuple[int, int], ...] = ((200, 299),)
    virtualhost: str | None = None
    regex: str | None = None
    regex_no_match: bool = False
    regex_options: tuple[str, ...] = ()
    regex_min_offset: int = 0
    regex_max_offset: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpCheckSpec(_CheckCommon):
    """HTTP_GET (``ssl`` False) and SSL_GET (``ssl`` True).  ``http_protocol`` "1.0"|"1.0C"|"1.1".

    SSL_GET never verifies the certificate (keepalived's default without ssl {} ca).
    ``enable_sni`` sends the virtualhost (else connect_ip) as server name.
    """

    ssl: bool = False
    urls: tuple[UrlSpec, ...] = (UrlSpec(),)
    http_protocol: str = "1.0"
    virtualhost: str | None = None
    enable_sni: bool = False
    max_body: int = 1 << 20  # bytes read for the digest; a longer body fails the check


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpCheckSpec(_CheckCommon):
    """SMTP_CHECK: banner 220, ``HELO helo_name`` -> 250, ``QUIT``."""

    helo_name: str = "localhost"


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsCheckSpec(_CheckCommon):
    """DNS_CHECK: one query of ``type`` for ``name`` over UDP; a reply with the query's id,
    RCODE 0 and at least one answer record is success."""

    type: str = "SOA"
    name: str = "."


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpCheckSpec(_CheckCommon):
    """UDP_CHECK: send ``payload`` (None = random bytes).  Without ``require_reply`` only an ICMP
    error fails the check; with it a reply of min..max length that matches ``reply_pattern``
    (where ``reply_mask`` nibbles are 0 = ignored) over the shorter length is needed."""

    payload: bytes | None = None
    require_reply: bool = False
    reply_pattern: bytes | None = None
    reply_mask: bytes | None = None
    min_reply_length: int = 0
    max_reply_length: int = 255


@dataclass(frozen=True, slots=True, kw_only=True)
class PingCheckSpec(_CheckCommon):
    """PING_CHECK: one ICMP/ICMPv6 echo answered within ``connect_timeout``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MiscCheckSpec(_CheckCommon):
    """MISC_CHECK: exit 0 up, otherwise down.  ``timeout`` None = ``delay_loop``.

    With ``dynamic``: exit 1 down, 2..255 up and the real server's weight becomes
    ``exit - 2`` (its configured weight plus this checker's delta ``exit - 2 - weight``).
    """

    command: CommandSpec
    timeout: float | None = None
    dynamic: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FileCheckSpec(_CheckCommon):
    """FILE_CHECK on a ``track_file``: the file holds an integer v.

    ``weight`` 0: up iff v == 0.  Otherwise w = v * weight (negated with ``reverse``): down if
    w <= -254, else up; with ``dynamic`` w is added to the real server's weight.  A missing or
    unreadable file reads as 0 (keepalived).  Like keepalived, the manager watches the file with
    inotify (``healthcheck.filewatch``) and FILE_CHECK takes none of the timer options: the
    file is read at start and whenever it changes (polled every
    ``scheduler.FILE_POLL_INTERVAL`` only when its directory cannot be watched), and a down
    value is not retried.
    """

    path: str
    weight: int = 1
    reverse: bool = False
    dynamic: bool = False


CheckSpec = (TcpCheckSpec | HttpCheckSpec | SmtpCheckSpec | DnsCheckSpec | UdpCheckSpec
             | PingCheckSpec | MiscCheckSpec | FileCheckSpec)

_KINDS = {
    "TcpCheckSpec": "TCP_CHECK", "HttpCheckSpec": "HTTP_GET", "SmtpCheckSpec": "SMTP_CHECK",
    "DnsCheckSpec": "DNS_CHECK", "UdpCheckSpec": "UDP_CHECK", "PingCheckSpec": "PING_CHECK",
    "MiscCheckSpec": "MISC_CHECK", "FileCheckSpec": "FILE_CHECK", "_CheckCommon": "CHECKER",
}

# (address, port): identity of a destination inside one virtual server.
ServerKey = tuple[IPAddress, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class RealServerSpec:
    """A real server: alive while every checker is up (always alive without checkers)."""

    address: IPAddress
    port: int
    weight: int = 1
    inhibit_on_failure: bool = False
    notify_up: CommandSpec | None = None
    notify_down: CommandSpec | None = None
    checkers: tuple[CheckSpec, ...] = ()

    @property
    def key(self) -> ServerKey:
        return (self.address, self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class SorryServerSpec:
    address: IPAddress
    port: int
    inhibit: bool = False  # sorry_server_inhibit: weight 0 instead of absent while quorum is up
    weight: int = 1

    @property
    def key(self) -> ServerKey:
        return (self.address, self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualServerSpec:
    """A virtual server.  ``key`` is keepalived's text identity (``[10.0.0.1]:tcp:80``,
    ``FWM 1``, ``GROUP name``): unique, used in the callback, snapshot and notify-FIFO lines.
    ``protocol`` (lower case) is printed in the real servers' FIFO lines.
    """

    key: str
    protocol: str = "tcp"
    real_servers: tuple[RealServerSpec, ...] = ()
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: CommandSpec | None = None
    quorum_down: CommandSpec | None = None
    sorry_server: SorryServerSpec | None = None
    omega: bool = False


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One probe's outcome; ``latency`` in seconds.

    ``weight`` is None unless the probe reports a dynamic weight: for a ``misc_dynamic``
    MISC_CHECK it is ``exit - 2`` (the weight the real server should get), for a ``dynamic``
    FILE_CHECK the value ``w`` added to the real server's weight.
    """

    ok: bool
    detail: str
    weight: int | None = None
    latency: float = 0.0
