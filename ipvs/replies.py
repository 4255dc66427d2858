"""Decoding IPVS replies with ``struct``: raw attributes straight to ``ipvs.model`` values.

pyroute2 builds an object per attribute (~0.5 ms per destination on the host, ~15x that in the
test guest): a 1,000 x 10 table would cost seconds of event-loop time per dump.
``ipvs.client.IPVSReply`` keeps the attribute chain as bytes and the functions below read it
directly (~20x faster; ``ipvs.dumpdecode`` is faster still for whole-table dumps).
Attribute numbers and widths are the kernel's (include/uapi/linux/ip_vs.h), as in
``ipvs.netlink``, which encodes requests.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address

from .model import (
    SERVICE_FLAG_BITS,
    Address,
    Destination,
    DestKey,
    Forward,
    IPVSInfo,
    ObservedDestination,
    ObservedService,
    Protocol,
    Service,
    ServiceKey,
    Stats,
    SyncDaemon,
    SyncState,
    Timeouts,
    TunnelType,
)

_NLA = struct.Struct("=HH")
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_BE16 = struct.Struct("!H")
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER

# IPVS_CMD_ATTR_*
(CMD_SERVICE, CMD_DEST, CMD_DAEMON, CMD_TIMEOUT_TCP, CMD_TIMEOUT_TCP_FIN,
 CMD_TIMEOUT_UDP) = range(1, 7)
# IPVS_INFO_ATTR_* (top level of the GET_INFO reply)
INFO_VERSION, INFO_CONN_TAB_SIZE = 1, 2
# IPVS_SVC_ATTR_*
(SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK, SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT,
 SVC_NETMASK, SVC_STATS, SVC_PE_NAME, SVC_STATS64) = range(1, 13)
# IPVS_DEST_ATTR_*
(DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT, DEST_U_THRESH, DEST_L_THRESH,
 DEST_ACTIVE_CONNS, DEST_INACT_CONNS, DEST_PERSIST_CONNS, DEST_STATS, DEST_ADDR_FAMILY,
 DEST_STATS64, DEST_TUN_TYPE, DEST_TUN_PORT, DEST_TUN_FLAGS) = range(1, 16)
# IPVS_DAEMON_ATTR_*
(DAEMON_STATE, DAEMON_MCAST_IFN, DAEMON_SYNC_ID, DAEMON_SYNC_MAXLEN, DAEMON_MCAST_GROUP,
 DAEMON_MCAST_GROUP6, DAEMON_MCAST_PORT, DAEMON_MCAST_TTL) = range(1, 9)
# IPVS_STATS_ATTR_* 1..10; in STATS only INBYTES/OUTBYTES (4, 5) are 64-bit
_STATS_WIDE = frozenset({4, 5})
_FWD_MASK = 0x0007

Attrs = dict[int, bytes]


def __getattr__(name: str) -> object:
    """``IPVSReply`` (the pyroute2 reply class) lives in ``ipvs.client``: importing pyroute2
    is not free, and the daemon's struct-only paths never need it."""
    if name == "IPVSReply":
        from .client import IPVSReply

        return IPVSReply
    raise AttributeError(name)


def attrs(data: bytes) -> Attrs:
    """One level of netlink attributes: type -> payload (the last one wins)."""
    out: Attrs = {}
    offset, end = 0, len(data)
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            break
        out[kind & _NLA_TYPE_MASK] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def _u8(a: Attrs, k: int) -> int:
    v = a.get(k)
    return v[0] if v else 0


def _u16(a: Attrs, k: int) -> int:
    v = a.get(k)
    return int(_U16.unpack_from(v)[0]) if v else 0


def _u32(a: Attrs, k: int) -> int:
    v = a.get(k)
    return int(_U32.unpack_from(v)[0]) if v else 0


def _be16(a: Attrs, k: int) -> int:
    v = a.get(k)
    return int(_BE16.unpack_from(v)[0]) if v else 0


def _str(a: Attrs, k: int) -> str:
    v = a.get(k)
    return v.split(b"\0", 1)[0].decode(errors="replace") if v else ""


def _addr(af: int, data: bytes) -> Address:
    return IPv6Address(data[:16]) if af == socket.AF_INET6 else IPv4Address(data[:4])


def stats(a: Attrs, wide: bool) -> Stats:
    values = []
    for kind in range(1, 11):
        v = a.get(kind)
        if not v:
            values.append(0)
        elif wide or kind in _STATS_WIDE:
            values.append(int(_U64.unpack_from(v)[0]))
        else:
            values.append(int(_U32.unpack_from(v)[0]))
    return Stats(*values)


def _stats_of(a: Attrs, legacy: int, wide: int) -> Stats:
    """STATS64 when the kernel sent it, else the legacy 32-bit STATS."""
    if wide in a:
        return stats(attrs(a[wide]), True)
    if legacy in a:
        return stats(attrs(a[legacy]), False)
    return Stats()


def service(payload: bytes) -> ObservedService:
    """The nested IPVS_CMD_ATTR_SERVICE of a GET_SERVICE reply."""
    a = attrs(payload)
    af = _u16(a, SVC_AF)
    fwmark = _u32(a, SVC_FWMARK)
    if fwmark:
        key = ServiceKey(af=af, fwmark=fwmark)
    else:
        key = ServiceKey(af=af, protocol=Protocol(_u16(a, SVC_PROTOCOL)),
                         addr=_addr(af, a[SVC_ADDR]), port=_be16(a, SVC_PORT))
    bits = _u32(a, SVC_FLAGS)  # struct ip_vs_flags: flags first, then mask
    netmask = a.get(SVC_NETMASK, b"")
    if len(netmask) < 4:
        prefix = 0
    elif af == socket.AF_INET6:
        prefix = int(_U32.unpack_from(netmask)[0])
    else:
        prefix = bin(int.from_bytes(netmask[:4], "big")).count("1")
    return ObservedService(
        service=Service(
            key=key,
            scheduler=_str(a, SVC_SCHED_NAME),
            flags=frozenset(name for name, bit in SERVICE_FLAG_BITS.items()
                            if bits & bit and name != "hashed"),
            timeout=_u32(a, SVC_TIMEOUT),
            netmask=prefix,
            pe_name=_str(a, SVC_PE_NAME),
        ),
        stats=_stats_of(a, SVC_STATS, SVC_STATS64),
    )


def dest(payload: bytes, service_af: int) -> ObservedDestination:
    """The nested IPVS_CMD_ATTR_DEST of a GET_DEST reply; ``af`` 0 when it is the service's."""
    a = attrs(payload)
    af = _u16(a, DEST_ADDR_FAMILY) or service_af
    return ObservedDestination(
        dest=Destination(
            key=DestKey(addr=_addr(af, a[DEST_ADDR]), port=_be16(a, DEST_PORT)),
            weight=_u32(a, DEST_WEIGHT),
            forward=Forward(_u32(a, DEST_FWD_METHOD) & _FWD_MASK),
            u_threshold=_u32(a, DEST_U_THRESH),
            l_threshold=_u32(a, DEST_L_THRESH),
            af=0 if af == service_af else af,
            tun_type=TunnelType(_u8(a, DEST_TUN_TYPE)),
            tun_port=_be16(a, DEST_TUN_PORT),
            tun_flags=_u16(a, DEST_TUN_FLAGS),
        ),
        active_conns=_u32(a, DEST_ACTIVE_CONNS),
        inactive_conns=_u32(a, DEST_INACT_CONNS),
        persist_conns=_u32(a, DEST_PERSIST_CONNS),
        stats=_stats_of(a, DEST_STATS, DEST_STATS64),
    )


def daemon(payload: bytes) -> SyncDaemon:
    a = attrs(payload)
    group: Address | None = None
    if a.get(DAEMON_MCAST_GROUP6):
        group = IPv6Address(a[DAEMON_MCAST_GROUP6][:16])
    elif a.get(DAEMON_MCAST_GROUP):
        group = IPv4Address(a[DAEMON_MCAST_GROUP][:4])
    return SyncDaemon(
        state=SyncState(_u32(a, DAEMON_STATE)),
        mcast_ifn=_str(a, DAEMON_MCAST_IFN),
        sync_id=_u32(a, DAEMON_SYNC_ID),
        sync_maxlen=_u16(a, DAEMON_SYNC_MAXLEN),
        mcast_group=group,
        mcast_port=_u16(a, DAEMON_MCAST_PORT),  # host order
        mcast_ttl=_u8(a, DAEMON_MCAST_TTL),
    )


def timeouts(top: bytes) -> Timeouts:
    """The GET_CONFIG reply's top-level attributes."""
    a = attrs(top)
    return Timeouts(_u32(a, CMD_TIMEOUT_TCP), _u32(a, CMD_TIMEOUT_TCP_FIN),
                    _u32(a, CMD_TIMEOUT_UDP))


def info(top: bytes) -> IPVSInfo:
    """The GET_INFO reply's top-level attributes (their own IPVS_INFO_ATTR_* numbering)."""
    a = attrs(top)
    code = _u32(a, INFO_VERSION)
    return IPVSInfo(version=f"{code >> 16}.{(code >> 8) & 0xFF}.{code & 0xFF}",
                    version_code=code, conn_tab_size=_u32(a, INFO_CONN_TAB_SIZE))


def nested(top: bytes, kind: int) -> bytes | None:
    """The payload of top-level attribute ``kind`` of a reply, if present."""
    return attrs(top).get(kind)
