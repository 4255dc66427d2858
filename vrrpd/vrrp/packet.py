"""VRRPv2 advertisement codec (RFC 3768 as keepalived 2.2.7 puts it on the wire). Pure.

Send path: ``encode_vrrp(advert)`` (the VRRP message) and ``encode_ip(advert, src=, dst=, ident=)``
(the whole IPv4 packet for an ``IP_HDRINCL`` raw socket: TOS 0xC0, TTL 255, protocol 112, no DF,
header checksum filled in).  Both are a couple of precompiled ``struct`` calls.

Receive path: ``decode(ip_packet, expect=RxExpectations(...))`` returns a ``Received`` (the advert
plus the source/destination/TTL from the IP header) or a ``Rejection`` whose ``reason`` says which
check failed.  Checks run in keepalived's order: IP header sanity, length (bytes after the IP
total length, e.g. Ethernet padding, are ignored), VRID, TTL 255 (multicast only), version, auth
type, password, advert interval, type, checksum, VIP list.

Wire facts: 8 auth bytes always follow the addresses (zeros without auth; PASS truncated to 8
bytes and NUL padded); the checksum covers the VRRP message only, no pseudo-header.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Final

__all__ = [
    "AUTH_LEN",
    "VRRP_PROTO",
    "VRRP_TTL",
    "Advert",
    "AuthType",
    "Received",
    "RejectReason",
    "Rejection",
    "RxExpectations",
    "auth_data_for",
    "checksum",
    "decode",
    "encode_ip",
    "encode_vrrp",
    "peek_vrid",
    "wire_advert_int",
]

VRRP_PROTO: Final = 112
VRRP_TTL: Final = 255
VRRP_VERSION: Final = 2
VRRP_TYPE_ADVERT: Final = 1
AUTH_LEN: Final = 8
IP_TOS: Final = 0xC0
_HDR_LEN: Final = 8  # version/type, vrid, priority, count, auth type, advert int, checksum
_NO_AUTH: Final = bytes(AUTH_LEN)

_VRRP_HDR = struct.Struct("!BBBBBBH")
# version/ihl, tos, total length, id, flags/fragment, ttl, proto, checksum, src, dst
_IP_HDR = struct.Struct("!BBHHHBBH4s4s")


class AuthType(enum.IntEnum):
    """VRRPv2 auth type (same values as ``vrrpd.config.model_vrrp.AuthType``)."""

    NONE = 0
    PASS = 1
    AH = 2


def auth_data_for(auth_type: int, password: str | bytes = b"") -> bytes:
    """The 8 auth bytes keepalived sends: PASS truncated to 8 and NUL padded, else zeros."""
    if auth_type != AuthType.PASS:
        return _NO_AUTH
    raw = password.encode("utf-8", "surrogateescape") if isinstance(password, str) else password
    return raw[:AUTH_LEN].ljust(AUTH_LEN, b"\0")


def wire_advert_int(seconds: float) -> int:
    """VRRPv2 carries whole seconds: round half up, at least 1, at most 255."""
    return max(1, min(255, int(seconds + 0.5)))


@dataclass(frozen=True, slots=True)
class Advert:
    """One VRRPv2 advertisement, field by field as on the wire (``count`` is ``len(addresses)``)."""

    vrid: int
    priority: int
    advert_int: int  # whole seconds
    auth_type: int
    auth_data: bytes  # exactly 8 bytes
    addresses: tuple[IPv4Address, ...]
    version: int = VRRP_VERSION
    type: int = VRRP_TYPE_ADVERT

    def __post_init__(self) -> None:
        if len(self.auth_data) != AUTH_LEN:
            raise ValueError(f"auth_data must be {AUTH_LEN} bytes, got {len(self.auth_data)}")
        if len(self.addresses) > 255:
            raise ValueError("at most 255 addresses fit in a VRRPv2 advert")


@dataclass(frozen=True, slots=True)
class RxExpectations:
    """What one instance accepts (keepalived compares each advert against its own config).

    ``check_ttl``: multicast adverts must arrive with TTL 255 (keepalived skips it for unicast).
    ``vip_mismatch_drops``: 2.2.7 drops an advert whose VIP list differs from ours; False gives
    2.3.3+ behaviour (accepted, ``Received.vip_mismatch`` set so the caller can log and count).
    """

    vrid: int
    advert_int: int
    auth_type: int = AuthType.NONE
    auth_data: bytes = _NO_AUTH
    addresses: tuple[IPv4Address, ...] = ()
    check_ttl: bool = True
    vip_mismatch_drops: bool = True
    version: int = VRRP_VERSION
    address_set: frozenset[IPv4Address] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "address_set", frozenset(self.addresses))


@dataclass(frozen=True, slots=True)
class Received:
    """A valid advert with what the IP header said about it."""

    advert: Advert
    src: IPv4Address
    dst: IPv4Address
    ttl: int
    vip_mismatch: bool = False  # only with RxExpectations(vip_mismatch_drops=False)


class RejectReason(enum.Enum):
    """Why an incoming packet was dropped; one counter each."""

    IP_HEADER = "ip_header"  # not IPv4, bad IHL, not protocol 112, bad header checksum
    LENGTH = "length"
    VRID = "vrid"
    TTL = "ttl"
    VERSION = "version"
    AUTH_TYPE = "auth_type"
    PASSWORD = "password"
    ADVERT_INTERVAL = "advert_interval"  # ignored WITHOUT resetting the master-down timer
    TYPE = "type"
    CHECKSUM = "checksum"
    VIP_LIST = "vip_list"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str
    src: IPv4Address | None = None  # known once the IP header was readable
    vrid: int | None = None  # known once the VRRP header was readable


def checksum(data: bytes) -> int:
    """Internet checksum (RFC 1071).  Sum of 16-bit words mod 0xFFFF via one big integer."""
    if len(data) & 1:
        data += b"\0"
    rem = int.from_bytes(data, "big") % 0xFFFF
    if rem == 0:
        return 0 if any(data) else 0xFFFF
    return ~rem & 0xFFFF


def _sums_to_zero(data: bytes) -> bool:
    """True when ``data`` (checksum field included) has a valid Internet checksum."""
    if len(data) & 1:
        data += b"\0"
    value = int.from_bytes(data, "big")
    return value != 0 and value % 0xFFFF == 0


def encode_vrrp(advert: Advert) -> bytes:
    """The VRRP message: header, addresses, 8 auth bytes; checksum filled in."""
    body = b"".join([a.packed for a in advert.addresses]) + advert.auth_data
    head = _VRRP_HDR.pack(
        (advert.version << 4) | advert.type, advert.vrid, advert.priority,
        len(advert.addresses), advert.auth_type, advert.advert_int, 0,
    )
    csum = checksum(head + body)
    return head[:6] + csum.to_bytes(2, "big") + body


def encode_ip(advert: Advert, *, src: IPv4Address, dst: IPv4Address, ident: int) -> bytes:
    """The whole IPv4 packet as keepalived sends it (TOS 0xC0, TTL 255, no DF)."""
    payload = encode_vrrp(advert)
    head = _IP_HDR.pack(0x45, IP_TOS, 20 + len(payload), ident & 0xFFFF, 0, VRRP_TTL,
                        VRRP_PROTO, 0, src.packed, dst.packed)
    csum = checksum(head)
    return head[:10] + csum.to_bytes(2, "big") + head[12:] + payload


def peek_vrid(ip_packet: bytes) -> int | None:
    """The VRID byte, for demultiplexing before ``decode`` (None if the packet is too short)."""
    if not ip_packet:
        return None
    ihl = (ip_packet[0] & 0x0F) * 4
    return ip_packet[ihl + 1] if len(ip_packet) > ihl + 1 else None


def decode(ip_packet: bytes, *, expect: RxExpectations) -> Received | Rejection:
    """Validate and decode one IPv4 packet carrying a VRRPv2 advert (see the module docstring)."""
    data = ip_packet
    n = len(data)
    if n < 20 or data[0] >> 4 != 4:
        return Rejection(RejectReason.IP_HEADER, f"not an IPv4 packet ({n} bytes)")
    ihl = (data[0] & 0x0F) * 4
    if ihl < 20 or n < ihl:
        return Rejection(RejectReason.IP_HEADER, f"bad IP header length {ihl} ({n} bytes)")
    src = IPv4Address(data[12:16])
    if data[9] != VRRP_PROTO:
        return Rejection(RejectReason.IP_HEADER, f"IP protocol {data[9]}, expected 112", src)
    if not _sums_to_zero(data[:ihl]):
        return Rejection(RejectReason.IP_HEADER, "bad IP header checksum", src)
    tot_len = (data[2] << 8) | data[3]
    if tot_len > n:
        return Rejection(RejectReason.LENGTH, f"IP total length {tot_len} > {n} bytes received",
                         src)
    vrrp_len = tot_len - ihl
    if vrrp_len < _HDR_LEN + AUTH_LEN:
        return Rejection(RejectReason.LENGTH, f"VRRP message of {vrrp_len} bytes is too short",
                         src)
    vers_type, vrid, priority, count, auth_type, adver_int, _ = _VRRP_HDR.unpack_from(data, ihl)
    want_len = _HDR_LEN + 4 * count + AUTH_LEN
    if vrrp_len != want_len:
        return Rejection(RejectReason.LENGTH,
                         f"VRRP message of {vrrp_len} bytes, {want_len} expected for "
                         f"{count} addresses", src, vrid)
    if vrid != expect.vrid:
        return Rejection(RejectReason.VRID, f"VRID {vrid}, expected {expect.vrid}", src, vrid)
    ttl = data[8]
    if expect.check_ttl and ttl != VRRP_TTL:
        return Rejection(RejectReason.TTL, f"TTL {ttl}, expected 255", src, vrid)
    version = vers_type >> 4
    if version != expect.version:
        return Rejection(RejectReason.VERSION, f"version {version}, expected {expect.version}",
                         src, vrid)
    if auth_type != expect.auth_type:
        return Rejection(RejectReason.AUTH_TYPE,
                         f"auth type {auth_type}, expected {int(expect.auth_type)}", src, vrid)
    auth_at = ihl + _HDR_LEN + 4 * count
    auth_data = data[auth_at:auth_at + AUTH_LEN]
    if auth_type == AuthType.PASS and auth_data != expect.auth_data:
        return Rejection(RejectReason.PASSWORD, "password mismatch", src, vrid)
    if adver_int != expect.advert_int:
        return Rejection(RejectReason.ADVERT_INTERVAL,
                         f"advert interval {adver_int} s, ours {expect.advert_int} s", src, vrid)
    vtype = vers_type & 0x0F
    if vtype != VRRP_TYPE_ADVERT:
        return Rejection(RejectReason.TYPE, f"type {vtype}, expected 1 (advertisement)", src,
                         vrid)
    if not _sums_to_zero(data[ihl:tot_len]):
        return Rejection(RejectReason.CHECKSUM, "bad VRRP checksum", src, vrid)
    addresses = tuple(
        IPv4Address(data[i:i + 4]) for i in range(ihl + _HDR_LEN, auth_at, 4)
    )
    mismatch = count != len(expect.addresses) or frozenset(addresses) != expect.address_set
    if mismatch and expect.vip_mismatch_drops:
        return Rejection(RejectReason.VIP_LIST,
                         f"VIP list {_fmt(addresses)} differs from ours "
                         f"{_fmt(expect.addresses)}", src, vrid)
    advert = Advert(vrid, priority, adver_int, auth_type, auth_data, addresses, version, vtype)
    return Received(advert, src, IPv4Address(data[16:20]), ttl, mismatch)


def _fmt(addresses: tuple[IPv4Address, ...]) -> str:
    return "[" + ", ".join(str(a) for a in addresses) + "]"
