"""Config -> the health-check subsystem's specs (``healthcheck.model``), pure.

The config model has already resolved inheritance (checker -> real server -> virtual server
-> default); here the remaining blanks are filled from the real server (``connect_ip``,
``connect_port``) and from ``global_defs`` (script user, SMTP HELO name), and FILE_CHECK's
``track_file`` name is resolved to its path and weight.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

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


def command_spec(cmd: Command | None, g: GlobalDefs) -> CommandSpec | None:
    if cmd is None:
        return None
    return CommandSpec(tuple(cmd.argv), cmd.user or g.script_user,
                       cmd.group or (g.script_group if cmd.user is None else None))


def check_spec(c: Checker, rs: RealServer, vs: VirtualServer, g: GlobalDefs,
               track_files: Mapping[str, TrackFile]) -> CheckSpec | None:
    """One checker's spec; None for a FILE_CHECK naming an unknown track_file."""
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
                             virtualhost=u.virtualhost) for u in c.urls) or (UrlSpec(),)
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
                       if (spec := check_spec(c, rs, vs, g, config.track_files)) is not None)
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
