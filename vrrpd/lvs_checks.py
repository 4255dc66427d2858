"""Config -> the health-check subsystem's specs (``healthcheck.model``), pure.

The config model has already resolved inheritance (checker -> real server -> virtual server
-> default); here the remaining blanks are filled from the real server (``connect_ip``,
``connect_port``) and from ``global_defs`` (script user, SMTP HELO name), and FILE_CHECK's
``track_file`` name is resolved to its path and weight.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from healthcheck.model import (
    CheckSpec,
    CommandSpec,
    DnsCheckSpec,
    FileCheckSpec,
    HttpCheckSpec,
    MiscCheckSpec,
    PingCheckSpec,
    RealServerSpec,
    SmtpCheckSpec,
    SorryServerSpec,
    TcpCheckSpec,
    UdpCheckSpec,
    UrlSpec,
    VirtualServerSpec,
)
from vrrpd.config.model import (
    Checker,
    Command,
    Config,
    DnsCheck,
    FileCheck,
    GlobalDefs,
    HttpGetCheck,
    MiscCheck,
    PingCheck,
    RealServer,
    SmtpCheck,
    SslGetCheck,
    TcpCheck,
    TrackFile,
    UdpCheck,
    VirtualServer,
)

if TYPE_CHECKING:
    from vrrpd.vrrp.notify import NotifyFifo

log = structlog.get_logger("vrrpd.lvs_checks")


def command_spec(cmd: Command | None, g: GlobalDefs) -> CommandSpec | None:
    if cmd is None:
        return None
    return CommandSpec(tuple(cmd.argv), cmd.user or g.script_user,
                       cmd.group or (g.script_group if cmd.user is None else None))


def check_specs(c: Checker, rs: RealServer, vs: VirtualServer, g: GlobalDefs,
                track_files: Mapping[str, TrackFile]) -> tuple[CheckSpec, ...]:
    """The specs of one configured checker: usually one; none for a FILE_CHECK naming an
    unknown track_file; one per ``host {}`` for an SMTP_CHECK with host blocks (see
    ``smtp_specs``)."""
    if isinstance(c, SmtpCheck) and c.hosts:
        return smtp_specs(c, rs, vs, g)
    spec = check_spec(c, rs, vs, g, track_files)
    return () if spec is None else (spec,)


def smtp_specs(c: SmtpCheck, rs: RealServer, vs: VirtualServer,
               g: GlobalDefs) -> tuple[CheckSpec, ...]:
    """keepalived 2.x turns every (deprecated) ``host {}`` of an SMTP_CHECK into a checker of
    its own on the real server (so the real server is up only while every host passes, each
    with its own retries).  A host starts from the SMTP_CHECK's connection options and
    overrides them; the SMTP_CHECK's own target is checked as well only when it set a
    connection option itself (connect_ip, connect_port, bindto, bind_if, bind_port, fwmark,
    connect_timeout) -- as keepalived 2.2.7's config dump shows.  A connect_timeout counts when
    it differs from the real server's (the model holds resolved values).  keepalived 2.2.7
    dumps a host's own timeout as 0 when the host sets none; here it inherits the checker's."""
    base = check_spec(c, rs, vs, g, {})
    assert isinstance(base, SmtpCheckSpec)
    own = any(v is not None for v in (c.connect_ip, c.connect_port, c.bindto, c.bind_if,
                                      c.bind_port, c.fwmark)) \
        or c.connect_timeout != rs.connect_timeout
    out: list[CheckSpec] = [base] if own else []
    for h in c.hosts:
        changes: dict[str, Any] = {
            name: value for name in ("connect_ip", "connect_port", "bindto", "bind_if",
                                     "bind_port", "connect_timeout", "fwmark")
            if (value := getattr(h, name)) is not None}
        spec = dataclasses.replace(base, **changes)
        if spec not in out:
            out.append(spec)
    return tuple(out)


def check_spec(c: Checker, rs: RealServer, vs: VirtualServer, g: GlobalDefs,
               track_files: Mapping[str, TrackFile]) -> CheckSpec | None:
    """One checker's spec; None for a FILE_CHECK naming an unknown track_file.  (SMTP_CHECK
    ``host {}`` blocks are expanded by ``check_specs``.)"""
    common: dict[str, Any] = {
        "connect_ip": c.connect_ip or rs.address,
        "connect_port": c.connect_port if c.connect_port is not None else rs.port,
        "bindto": c.bindto, "bind_if": c.bind_if, "bind_port": c.bind_port,
        "connect_timeout": c.connect_timeout, "fwmark": c.fwmark, "retry": c.retry,
        "delay_before_retry": c.delay_before_retry, "delay_loop": c.delay_loop,
        "warmup": c.warmup, "alpha": c.alpha or rs.alpha or vs.alpha,
    }
    if isinstance(c, HttpGetCheck):  # SslGetCheck is a subclass
        vhost = c.virtualhost or rs.virtualhost or vs.virtualhost
        urls = tuple(UrlSpec(path=u.path, digest=u.digest, status_codes=u.status_codes,
                             virtualhost=u.virtualhost, regex=u.regex,
                             regex_no_match=u.regex_no_match, regex_options=u.regex_options,
                             regex_min_offset=u.regex_min_offset,
                             regex_max_offset=u.regex_max_offset)
                     for u in c.urls) or (UrlSpec(),)
        return HttpCheckSpec(**common, ssl=isinstance(c, SslGetCheck), urls=urls,
                             http_protocol=c.http_protocol, virtualhost=vhost,
                             enable_sni=c.enable_sni)
    if isinstance(c, TcpCheck):
        return TcpCheckSpec(**common)
    if isinstance(c, SmtpCheck):
        helo = c.helo_name or g.smtp_helo_name or socket.gethostname()
        return SmtpCheckSpec(**common, helo_name=helo)
    if isinstance(c, DnsCheck):
        return DnsCheckSpec(**common, type=c.type, name=c.name)
    if isinstance(c, UdpCheck):
        return UdpCheckSpec(**common, payload=c.payload, require_reply=c.require_reply,
                            reply_pattern=c.reply_pattern, reply_mask=c.reply_mask,
                            min_reply_length=c.min_reply_length,
                            max_reply_length=c.max_reply_length)
    if isinstance(c, PingCheck):
        return PingCheckSpec(**common)
    if isinstance(c, MiscCheck):
        cmd = command_spec(c.misc_path, g)
        assert cmd is not None
        return MiscCheckSpec(**common, command=cmd, timeout=c.misc_timeout,
                             dynamic=c.misc_dynamic)
    if isinstance(c, FileCheck):
        tf = track_files.get(c.track_file)
        if tf is None:
            return None
        return FileCheckSpec(**common, path=tf.file,
                             weight=c.weight if c.weight is not None else tf.weight,
                             reverse=c.reverse or tf.weight_reverse, dynamic=c.dynamic)
    raise TypeError(f"unknown checker {type(c).__name__}")


def vs_spec(vs: VirtualServer, config: Config) -> VirtualServerSpec:
    g = config.global_defs
    servers = []
    seen = set()
    for rs in vs.real_servers:
        if (rs.address, rs.port) in seen:
            continue
        seen.add((rs.address, rs.port))
        checks = tuple(spec for c in rs.checkers
                       for spec in check_specs(c, rs, vs, g, config.track_files))
        servers.append(RealServerSpec(
            address=rs.address, port=rs.port, weight=rs.weight,
            inhibit_on_failure=rs.inhibit_on_failure,
            notify_up=command_spec(rs.notify_up, g), notify_down=command_spec(rs.notify_down, g),
            checkers=checks,
        ))
    sorry = None
    if vs.sorry_server is not None:
        ss = vs.sorry_server
        sorry = SorryServerSpec(address=ss.address, port=ss.port, inhibit=ss.inhibit)
    return VirtualServerSpec(
        key=vs.key, protocol=vs.protocol.value.lower(), real_servers=tuple(servers),
        quorum=vs.quorum, hysteresis=vs.hysteresis,
        quorum_up=command_spec(vs.quorum_up, g), quorum_down=command_spec(vs.quorum_down, g),
        sorry_server=sorry, omega=vs.omega,
    )


class SpecCache:
    """Reuse the specs of unchanged virtual servers across reloads (while global_defs and
    track_files are unchanged), so comparing old and new specs is mostly identity checks."""

    def __init__(self) -> None:
        self._context: tuple[object, object] | None = None
        self._specs: dict[VirtualServer, VirtualServerSpec] = {}

    def specs(self, config: Config) -> list[VirtualServerSpec]:
        context = (config.global_defs, dict(config.track_files))
        if context != self._context:
            self._context, self._specs = context, {}
        fresh = {vs: self._specs.get(vs) or vs_spec(vs, config) for vs in config.virtual_servers}
        self._specs = fresh
        return [fresh[vs] for vs in config.virtual_servers]


def health_specs(config: Config) -> list[VirtualServerSpec]:
    return [vs_spec(vs, config) for vs in config.virtual_servers]


class LvsNotifyFifo:
    """The checkers' notify-FIFO sink (``CheckerManager(on_fifo=...)``): like keepalived, every
    ``RS ...``/``VS ...`` line goes to the global ``notify_fifo`` and to ``lvs_notify_fifo``
    (each when configured; one write when both name the same FIFO).  Never blocks: a FIFO
    without a reader keeps at most a pipe buffer of lines, then lines are dropped (logged)."""

    def __init__(self, paths: Sequence[str]) -> None:
        from vrrpd.vrrp.notify import NotifyFifo  # only with a FIFO configured

        self.fifos: list[NotifyFifo] = []
        for path in dict.fromkeys(paths):
            try:
                self.fifos.append(NotifyFifo(path))
            except (OSError, ValueError) as exc:
                log.warning("lvs_notify_fifo_unusable", path=path, error=str(exc))

    def __call__(self, line: str) -> None:
        for fifo in self.fifos:
            fifo.write_line(line)

    def close(self) -> None:
        for fifo in self.fifos:
            fifo.close()


def lvs_notify_fifo(g: GlobalDefs) -> LvsNotifyFifo | None:
    """The sink for ``global_defs`` ``notify_fifo`` / ``lvs_notify_fifo``; None without both."""
    paths = [cmd.argv[0] for cmd in (g.notify_fifo, g.lvs_notify_fifo)
             if cmd is not None and cmd.argv]
    return LvsNotifyFifo(paths) if paths else None
