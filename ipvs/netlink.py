"""The IPVS generic-netlink family: our own message classes on pyroute2's NLA machinery.

pyroute2's own IPVS classes mis-type several attributes (see shared/notes/libraries.md), so the
family is described here from the kernel's uapi (include/uapi/linux/ip_vs.h), plus pure
converters from ``ipvs.model`` values to request attributes (replies are decoded with ``struct``
in ``ipvs.replies``: pyroute2's per-attribute objects are too slow for big dumps).  Byte order:
ports (service, destination, tunnel) are big-endian; the IPv4 service netmask is a big-endian
mask while the IPv6 one is a prefix length in host order; the sync-daemon multicast port is in
host order; addresses are 16-byte ``nf_inet_addr`` blobs (IPv4 in the first 4 bytes).
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from pyroute2.netlink import genlmsg, nla

from .model import (
    SERVICE_FLAG_BITS,
    Address,
    Destination,
    DestKey,
    Service,
    ServiceKey,
    SyncDaemon,
    Timeouts,
    canonical_flags,
)
from .wire import (  # noqa: F401  (re-exported: the family's constants live in ipvs.wire)
    ALL_FLAGS_MASK,
    FAMILY,
    FWD_MASK,
    GENL_VERSION,
    Cmd,
    pack_addr,
    pack_netmask,
)

_STATS_NAMES = ("CONNS", "INPKTS", "OUTPKTS", "INBYTES", "OUTBYTES",
                "CPS", "INPPS", "OUTPPS", "INBPS", "OUTBPS")


class StatsAttrs(nla):
    """IPVS_STATS_ATTR_* (legacy 32-bit counters, bytes 64-bit)."""

    nla_map = (
        (0, "IPVS_STATS_ATTR_UNSPEC", "none"),
        *(
            (i, f"IPVS_STATS_ATTR_{n}", "uint64" if n in ("INBYTES", "OUTBYTES") else "uint32")
            for i, n in enumerate(_STATS_NAMES, start=1)
        ),
        (11, "IPVS_STATS_ATTR_PAD", "none"),
    )


class Stats64Attrs(nla):
    nla_map = (
        (0, "IPVS_STATS_ATTR_UNSPEC", "none"),
        *((i, f"IPVS_STATS_ATTR_{n}", "uint64") for i, n in enumerate(_STATS_NAMES, start=1)),
        (11, "IPVS_STATS_ATTR_PAD", "none"),
    )


class ServiceAttrs(nla):
    nla_map = (
        (0, "IPVS_SVC_ATTR_UNSPEC", "none"),
        (1, "IPVS_SVC_ATTR_AF", "uint16"),
        (2, "IPVS_SVC_ATTR_PROTOCOL", "uint16"),
        (3, "IPVS_SVC_ATTR_ADDR", "cdata"),
        (4, "IPVS_SVC_ATTR_PORT", "be16"),
        (5, "IPVS_SVC_ATTR_FWMARK", "uint32"),
        (6, "IPVS_SVC_ATTR_SCHED_NAME", "asciiz"),
        (7, "IPVS_SVC_ATTR_FLAGS", "svc_flags"),
        (8, "IPVS_SVC_ATTR_TIMEOUT", "uint32"),
        (9, "IPVS_SVC_ATTR_NETMASK", "cdata"),
        (10, "IPVS_SVC_ATTR_STATS", "stats"),
        (11, "IPVS_SVC_ATTR_PE_NAME", "asciiz"),
        (12, "IPVS_SVC_ATTR_STATS64", "stats64"),
    )

    class svc_flags(nla):
        """struct ip_vs_flags."""

        fields = (("flags", "I"), ("mask", "I"))

    stats = StatsAttrs
    stats64 = Stats64Attrs


class DestAttrs(nla):
    nla_map = (
        (0, "IPVS_DEST_ATTR_UNSPEC", "none"),
        (1, "IPVS_DEST_ATTR_ADDR", "cdata"),
        (2, "IPVS_DEST_ATTR_PORT", "be16"),
        (3, "IPVS_DEST_ATTR_FWD_METHOD", "uint32"),
        (4, "IPVS_DEST_ATTR_WEIGHT", "uint32"),
        (5, "IPVS_DEST_ATTR_U_THRESH", "uint32"),
        (6, "IPVS_DEST_ATTR_L_THRESH", "uint32"),
        (7, "IPVS_DEST_ATTR_ACTIVE_CONNS", "uint32"),
        (8, "IPVS_DEST_ATTR_INACT_CONNS", "uint32"),
        (9, "IPVS_DEST_ATTR_PERSIST_CONNS", "uint32"),
        (10, "IPVS_DEST_ATTR_STATS", "stats"),
        (11, "IPVS_DEST_ATTR_ADDR_FAMILY", "uint16"),
        (12, "IPVS_DEST_ATTR_STATS64", "stats64"),
        (13, "IPVS_DEST_ATTR_TUN_TYPE", "uint8"),
        (14, "IPVS_DEST_ATTR_TUN_PORT", "be16"),
        (15, "IPVS_DEST_ATTR_TUN_FLAGS", "uint16"),
    )

    stats = StatsAttrs
    stats64 = Stats64Attrs


class DaemonAttrs(nla):
    nla_map = (
        (0, "IPVS_DAEMON_ATTR_UNSPEC", "none"),
        (1, "IPVS_DAEMON_ATTR_STATE", "uint32"),
        (2, "IPVS_DAEMON_ATTR_MCAST_IFN", "asciiz"),
        (3, "IPVS_DAEMON_ATTR_SYNC_ID", "uint32"),
        (4, "IPVS_DAEMON_ATTR_SYNC_MAXLEN", "uint16"),
        (5, "IPVS_DAEMON_ATTR_MCAST_GROUP", "cdata"),
        (6, "IPVS_DAEMON_ATTR_MCAST_GROUP6", "cdata"),
        (7, "IPVS_DAEMON_ATTR_MCAST_PORT", "uint16"),
        (8, "IPVS_DAEMON_ATTR_MCAST_TTL", "uint8"),
    )


class IPVSMessage(genlmsg):
    """Requests of every command (IPVS_CMD_ATTR_*); the GET_INFO reply numbers its attributes
    IPVS_INFO_ATTR_* instead (VERSION = 1, CONN_TAB_SIZE = 2): see ``ipvs.replies``."""

    nla_map = (
        (0, "IPVS_CMD_ATTR_UNSPEC", "none"),
        (1, "IPVS_CMD_ATTR_SERVICE", "service"),
        (2, "IPVS_CMD_ATTR_DEST", "dest"),
        (3, "IPVS_CMD_ATTR_DAEMON", "daemon"),
        (4, "IPVS_CMD_ATTR_TIMEOUT_TCP", "uint32"),
        (5, "IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", "uint32"),
        (6, "IPVS_CMD_ATTR_TIMEOUT_UDP", "uint32"),
    )

    service = ServiceAttrs
    dest = DestAttrs
    daemon = DaemonAttrs


def request(cmd: Cmd, attrs: list[tuple[str, Any]] | None = None) -> IPVSMessage:
    msg = IPVSMessage()
    msg["cmd"] = int(cmd)
    msg["version"] = GENL_VERSION
    msg["attrs"] = list(attrs or [])
    return msg


# ---------------------------------------------------------------- addresses


def _af_of(addr: Address) -> int:
    return socket.AF_INET6 if addr.version == 6 else socket.AF_INET


# ---------------------------------------------------------------- services


def service_key_attrs(key: ServiceKey) -> list[tuple[str, Any]]:
    attrs: list[tuple[str, Any]] = [("IPVS_SVC_ATTR_AF", key.af)]
    if key.fwmark:
        attrs.append(("IPVS_SVC_ATTR_FWMARK", key.fwmark))
    else:
        assert key.addr is not None and key.protocol is not None
        attrs += [
            ("IPVS_SVC_ATTR_PROTOCOL", int(key.protocol)),
            ("IPVS_SVC_ATTR_ADDR", pack_addr(key.addr)),
            ("IPVS_SVC_ATTR_PORT", key.port),
        ]
    return attrs


def service_attrs(service: Service) -> list[tuple[str, Any]]:
    """The full service (NEW/SET need every field: a partial SET resets the rest)."""
    bits = 0
    for name in canonical_flags(service.flags):
        bits |= SERVICE_FLAG_BITS[name]
    attrs = service_key_attrs(service.key)
    attrs += [
        ("IPVS_SVC_ATTR_SCHED_NAME", service.scheduler),
        ("IPVS_SVC_ATTR_FLAGS", {"flags": bits, "mask": ALL_FLAGS_MASK}),
        ("IPVS_SVC_ATTR_TIMEOUT", service.timeout),
        ("IPVS_SVC_ATTR_NETMASK", pack_netmask(service.key.af, service.netmask)),
    ]
    if service.pe_name:
        attrs.append(("IPVS_SVC_ATTR_PE_NAME", service.pe_name))
    return attrs


# ---------------------------------------------------------------- destinations


def dest_key_attrs(service_af: int, key: DestKey) -> list[tuple[str, Any]]:
    return [
        ("IPVS_DEST_ATTR_ADDR_FAMILY", _af_of(key.addr)),
        ("IPVS_DEST_ATTR_ADDR", pack_addr(key.addr)),
        ("IPVS_DEST_ATTR_PORT", key.port),
    ]


def dest_attrs(service_af: int, dest: Destination) -> list[tuple[str, Any]]:
    attrs = dest_key_attrs(service_af, dest.key)
    if dest.af:
        attrs[0] = ("IPVS_DEST_ATTR_ADDR_FAMILY", dest.af)
    attrs += [
        ("IPVS_DEST_ATTR_FWD_METHOD", int(dest.forward)),
        ("IPVS_DEST_ATTR_WEIGHT", dest.weight),
        ("IPVS_DEST_ATTR_U_THRESH", dest.u_threshold),
        ("IPVS_DEST_ATTR_L_THRESH", dest.l_threshold),
        ("IPVS_DEST_ATTR_TUN_TYPE", int(dest.tun_type)),
        ("IPVS_DEST_ATTR_TUN_PORT", dest.tun_port),
        ("IPVS_DEST_ATTR_TUN_FLAGS", dest.tun_flags),
    ]
    return attrs


# ---------------------------------------------------------------- daemons, config, info


def daemon_attrs(daemon: SyncDaemon) -> list[tuple[str, Any]]:
    attrs: list[tuple[str, Any]] = [
        ("IPVS_DAEMON_ATTR_STATE", int(daemon.state)),
        ("IPVS_DAEMON_ATTR_MCAST_IFN", daemon.mcast_ifn),
        ("IPVS_DAEMON_ATTR_SYNC_ID", daemon.sync_id),
    ]
    if daemon.sync_maxlen:
        attrs.append(("IPVS_DAEMON_ATTR_SYNC_MAXLEN", daemon.sync_maxlen))
    if isinstance(daemon.mcast_group, IPv4Address):
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_GROUP", daemon.mcast_group.packed))
    elif isinstance(daemon.mcast_group, IPv6Address):
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_GROUP6", daemon.mcast_group.packed))
    if daemon.mcast_port:
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_PORT", daemon.mcast_port))
    if daemon.mcast_ttl:
        attrs.append(("IPVS_DAEMON_ATTR_MCAST_TTL", daemon.mcast_ttl))
    return attrs


def timeout_attrs(timeouts: Timeouts) -> list[tuple[str, Any]]:
    return [
        ("IPVS_CMD_ATTR_TIMEOUT_TCP", timeouts.tcp),
        ("IPVS_CMD_ATTR_TIMEOUT_TCP_FIN", timeouts.tcp_fin),
        ("IPVS_CMD_ATTR_TIMEOUT_UDP", timeouts.udp),
    ]
