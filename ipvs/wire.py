"""IPVS generic-netlink requests encoded with ``struct`` alone (no pyroute2).

The daemon's hot paths (bulk programming, dumps) use these bytes directly: importing pyroute2
costs ~0.1 s on a host and seconds in the TCG test guest, and its per-attribute objects cost
~1 ms per request there.  The bytes are identical to what ``ipvs.netlink`` builds on pyroute2's
NLA machinery (tests/unit/ipvs/test_batch.py checks it with hypothesis), attribute numbers and
widths from the kernel's include/uapi/linux/ip_vs.h.  Byte order: ports (service, destination,
tunnel) big-endian; IPv4 service netmask a big-endian mask, IPv6 a host-order prefix length;
the sync-daemon multicast port host order; addresses 16-byte ``nf_inet_addr`` blobs.
"""

from __future__ import annotations

import enum
import functools
import socket
import struct
from ipaddress import IPv4Address, IPv6Address

from . import attrs
from .attrs import (  # noqa: F401  (re-exported: the attribute layouts live in ipvs.attrs)
    ALL_FLAGS_MASK,
    DEST_FIELDS,
    DEST_KEY,
    DEST_KEY_FIELDS,
    DEST_KEY_LEN,
    DEST_LEN,
    key_parts,
    nested,
    nla,
    nla_be16,
    nla_str,
    nla_u8,
    nla_u16,
    nla_u32,
    pack_netmask,
    service_parts,
)
from .model import (
    SERVICE_FLAG_BITS,
    Address,
    Destination,
    DestKey,
    Service,
    ServiceKey,
    SyncDaemon,
    SyncState,
    Timeouts,
    canonical_flags,
)
from .nlmsg import (  # noqa: F401  (re-exported: the netlink framing lives in ipvs.nlmsg)
    CTRL_ATTR_FAMILY_ID,
    CTRL_ATTR_FAMILY_NAME,
    CTRL_CMD_GETFAMILY,
    GENL_ID_CTRL,
    GENL_VERSION,
    NETLINK_CAP_ACK,
    NETLINK_GENERIC,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOL_NETLINK,
    encode,
)

FAMILY = "IPVS"
FWD_MASK = 0x0007


class Cmd(enum.IntEnum):
    """IPVS_CMD_*: all 17 commands (the kernel implements every one but SET_INFO)."""

    NEW_SERVICE = attrs.IPVS_CMD_NEW_SERVICE
    SET_SERVICE = 2
    DEL_SERVICE = attrs.IPVS_CMD_DEL_SERVICE
    GET_SERVICE = attrs.IPVS_CMD_GET_SERVICE
    NEW_DEST = attrs.IPVS_CMD_NEW_DEST
    SET_DEST = 6
    DEL_DEST = 7
    GET_DEST = 8
    NEW_DAEMON = 9
    DEL_DAEMON = 10
    GET_DAEMON = 11
    SET_CONFIG = 12
    GET_CONFIG = 13
    SET_INFO = 14
    GET_INFO = 15
    ZERO = 16
    FLUSH = 17


def pack_addr(addr: Address) -> bytes:
    """A 16-byte nf_inet_addr."""
    return addr.packed.ljust(16, b"\0")


def service_key_nla(key: ServiceKey) -> list[bytes]:
    if key.fwmark:
        return key_parts(key.af, 0, b"", 0, key.fwmark)
    assert key.addr is not None and key.protocol is not None
    return key_parts(key.af, int(key.protocol), key.addr.packed, key.port, 0)


def service_nla(service: Service) -> list[bytes]:
    bits = 0
    for name in canonical_flags(service.flags):
        bits |= SERVICE_FLAG_BITS[name]
    return service_parts(service_key_nla(service.key), service.scheduler, bits,
                         service.timeout, service.key.af, service.netmask, service.pe_name)


_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6


def dest_attr(dest: Destination) -> bytes:
    """The nested IPVS_CMD_ATTR_DEST of a full destination."""
    key = dest.key
    addr = key.addr
    return attrs.dest_attr(
        dest.af or (_AF_INET6 if isinstance(addr, IPv6Address) else _AF_INET), addr.packed,
        key.port, dest.forward, dest.weight, dest.u_threshold, dest.l_threshold, dest.tun_type,
        dest.tun_port, dest.tun_flags)


def dest_key_attr(key: DestKey) -> bytes:
    """The nested IPVS_CMD_ATTR_DEST naming a destination (delete)."""
    addr = key.addr
    return DEST_KEY.pack(
        DEST_KEY_LEN, 2, 6, 11, _AF_INET6 if isinstance(addr, IPv6Address) else _AF_INET,
        20, 1, addr.packed, 6, 2, socket.htons(key.port))


@functools.lru_cache(maxsize=16)
def dest_request(key_len: int, fields: str = DEST_FIELDS) -> struct.Struct:
    """A whole destination request in one pack: the message header, a service identity of
    ``key_len`` bytes (:func:`service_key_attr`), the fields of :func:`dest_attr` (or of
    :func:`dest_key_attr` with ``DEST_KEY_FIELDS``)."""
    return struct.Struct(f"=IHHIIBBH{key_len}s{fields}")


@functools.lru_cache(maxsize=8192)
def service_key_attr(key: ServiceKey) -> bytes:
    """The nested service identity, shared by every destination op of that service."""
    return nested(1, service_key_nla(key))


def daemon_attr(daemon: SyncDaemon) -> bytes:
    """The nested IPVS_CMD_ATTR_DAEMON (as ``ipvs.netlink.daemon_attrs``)."""
    parts = [nla_u32(1, int(daemon.state)), nla_str(2, daemon.mcast_ifn),
             nla_u32(3, daemon.sync_id)]
    if daemon.sync_maxlen:
        parts.append(nla_u16(4, daemon.sync_maxlen))
    if isinstance(daemon.mcast_group, IPv4Address):
        parts.append(nla(5, daemon.mcast_group.packed))
    elif isinstance(daemon.mcast_group, IPv6Address):
        parts.append(nla(6, daemon.mcast_group.packed))
    if daemon.mcast_port:
        parts.append(nla_u16(7, daemon.mcast_port))
    if daemon.mcast_ttl:
        parts.append(nla_u8(8, daemon.mcast_ttl))
    return nested(3, parts)


def daemon_state_attr(state: SyncState) -> bytes:
    return nested(3, [nla_u32(1, int(SyncState(state)))])


def timeouts_attrs(timeouts: Timeouts) -> bytes:
    return nla_u32(4, timeouts.tcp) + nla_u32(5, timeouts.tcp_fin) + nla_u32(6, timeouts.udp)
