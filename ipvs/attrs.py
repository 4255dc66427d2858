"""IPVS request attributes from plain values: netlink attributes, the service identity, a
whole service, a whole destination.

:mod:`ipvs.wire` encodes the model's values with these; the daemon's cold start
(:mod:`vrrpd.lvs_direct`) encodes values read straight from the config text with them, before
the model (dataclasses, enums, ``ipaddress``) is imported.  One layout for both, so the bytes
cannot drift apart.  Attribute numbers and widths from the kernel's uapi ``linux/ip_vs.h``;
ports big-endian, addresses 16-byte ``nf_inet_addr`` blobs, an IPv4 service netmask a
big-endian mask, an IPv6 one a host-order prefix length.  Imports ``_socket`` and ``struct``.
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its enums cost start-up time (ipvs.replay)
import struct

TYPE_CHECKING = False  # typing / collections.abc cost start-up time here
if TYPE_CHECKING:
    from collections.abc import Sequence

ALL_FLAGS_MASK = 0xFFFFFFFF
# the IPVS_CMD_* sent before the model is imported (ipvs.wire.Cmd has them all)
IPVS_CMD_NEW_SERVICE, IPVS_CMD_DEL_SERVICE, IPVS_CMD_GET_SERVICE, IPVS_CMD_NEW_DEST = 1, 3, 4, 5
_AF_INET6 = socket.AF_INET6


def nla(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def nla_u8(kind: int, v: int) -> bytes:
    return nla(kind, struct.pack("=B", v))


def nla_u16(kind: int, v: int) -> bytes:
    return nla(kind, struct.pack("=H", v))


def nla_be16(kind: int, v: int) -> bytes:
    return nla(kind, struct.pack(">H", v))


def nla_u32(kind: int, v: int) -> bytes:
    return nla(kind, struct.pack("=I", v))


def nla_str(kind: int, v: str) -> bytes:
    return nla(kind, v.encode() + b"\0")


def nested(kind: int, parts: Sequence[bytes]) -> bytes:
    return nla(kind, b"".join(parts))  # no NLA_F_NESTED, as pyroute2 (the kernel accepts both)


def pack_netmask(af: int, prefix: int) -> bytes:
    if af == _AF_INET6:
        return struct.pack("=I", prefix)
    mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0
    return struct.pack("!I", mask)


def key_parts(af: int, protocol: int, addr: bytes, port: int, fwmark: int) -> list[bytes]:
    """The attributes naming a service: a fwmark, or protocol + address (packed, 4 or 16
    bytes) + port."""
    parts = [nla_u16(1, af)]
    if fwmark:
        parts.append(nla_u32(5, fwmark))
    else:
        parts += [nla_u16(2, protocol), nla(3, addr.ljust(16, b"\0")), nla_be16(4, port)]
    return parts


def service_parts(key: list[bytes], scheduler: str, flag_bits: int, timeout: int, af: int,
                  netmask: int, pe_name: str) -> list[bytes]:
    """The attributes of a whole service (``key``: :func:`key_parts`)."""
    parts = [*key, nla_str(6, scheduler), nla(7, struct.pack("=II", flag_bits, ALL_FLAGS_MASK)),
             nla_u32(8, timeout), nla(9, pack_netmask(af, netmask))]
    if pe_name:
        parts.append(nla_str(11, pe_name))
    return parts


# A whole destination in one pack (ports pre-swapped to network order): the attributes
# ipvs.netlink.dest_attrs lists, in the same order, with the same padding, behind the header
# of the nested IPVS_CMD_ATTR_DEST.  Fields: length, type, then per attribute (length, type,
# value): af, address, port, forwarding, weight, upper and lower threshold, tunnel type,
# tunnel port, tunnel flags.
DEST_FIELDS = "HH HHH2x HH16s HHH2x HHI HHI HHI HHI HHB3x HHH2x HHH2x"
DEST = struct.Struct("=" + DEST_FIELDS)
DEST_KEY_FIELDS = "HH HHH2x HH16s HHH2x"
DEST_KEY = struct.Struct("=" + DEST_KEY_FIELDS)
DEST_LEN, DEST_KEY_LEN = DEST.size, DEST_KEY.size
_HTONS = socket.htons


def dest_attr(af: int, addr: bytes, port: int, forward: int, weight: int, u_threshold: int,
              l_threshold: int, tun_type: int, tun_port: int, tun_flags: int) -> bytes:
    """The nested IPVS_CMD_ATTR_DEST of a whole destination (``addr`` packed)."""
    return DEST.pack(DEST_LEN, 2, 6, 11, af, 20, 1, addr, 6, 2, _HTONS(port),
                     8, 3, forward, 8, 4, weight, 8, 5, u_threshold, 8, 6, l_threshold,
                     5, 13, tun_type, 6, 14, _HTONS(tun_port), 6, 15, tun_flags)
