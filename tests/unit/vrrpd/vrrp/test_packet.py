"""VRRPv2 codec: golden bytes from keepalived 2.2.7, every rejection reason, and properties
checked against scapy as an independent implementation."""

from __future__ import annotations

import dataclasses
import struct
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP
from scapy.layers.vrrp import VRRP

from vrrpd.vrrp.packet import (
    Advert,
    AuthType,
    Received,
    Rejection,
    RejectReason,
    RxExpectations,
    auth_data_for,
    checksum,
    decode,
    encode_ip,
    encode_vrrp,
    peek_vrid,
    wire_advert_int,
)

VECTORS = Path(__file__).parent / "vectors"
DIRECTOR = IPv4Address("10.77.0.1")
GROUP = IPv4Address("224.0.0.18")
VIP100 = IPv4Address("10.77.0.100")
VIP200 = IPv4Address("10.77.0.200")
VIP201 = IPv4Address("10.77.0.201")
PASS = auth_data_for(AuthType.PASS, "rigpass1")


def vector(name: str) -> bytes:
    return bytes.fromhex((VECTORS / name).read_text().strip())


def vrid51(priority: int = 150) -> Advert:
    return Advert(vrid=51, priority=priority, advert_int=1, auth_type=AuthType.PASS,
                  auth_data=PASS, addresses=(VIP100,))


def vrid52(priority: int = 150) -> Advert:
    return Advert(vrid=52, priority=priority, advert_int=1, auth_type=AuthType.NONE,
                  auth_data=bytes(8), addresses=(VIP200, VIP201))


def expect_for(advert: Advert, **overrides: object) -> RxExpectations:
    fields: dict[str, object] = dict(
        vrid=advert.vrid, advert_int=advert.advert_int, auth_type=advert.auth_type,
        auth_data=advert.auth_data, addresses=advert.addresses)
    fields.update(overrides)
    return RxExpectations(**fields)  # type: ignore[arg-type]


# Golden vectors: (file stem, advert, IP ident keepalived used)
GOLDEN = [
    ("vrrpv2_vrid51_auth_pass", vrid51(), 1),
    ("vrrpv2_vrid51_auth_pass_prio0", vrid51(0), 4),
    ("vrrpv2_vrid52_noauth", vrid52(), 1),
    ("vrrpv2_vrid52_noauth_prio0", vrid52(0), 4),
]


@pytest.mark.parametrize(("stem", "advert", "ident"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_encode_matches_keepalived_bytes(stem: str, advert: Advert, ident: int) -> None:
    assert encode_vrrp(advert) == vector(f"{stem}.vrrp.hex")
    assert encode_ip(advert, src=DIRECTOR, dst=GROUP, ident=ident) == vector(f"{stem}.ip.hex")


@pytest.mark.parametrize(("stem", "advert", "ident"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_decode_keepalived_bytes(stem: str, advert: Advert, ident: int) -> None:
    got = decode(vector(f"{stem}.ip.hex"), expect=expect_for(advert))
    assert got == Received(advert=advert, src=DIRECTOR, dst=GROUP, ttl=255)
    # The same packet cut out of the Ethernet frame, padded to the 60-byte minimum frame.
    frame = vector(f"{stem}.frame.hex")
    padded = frame[14:] + bytes(max(0, 60 - len(frame)) + 6)
    assert len(padded) > len(vector(f"{stem}.ip.hex"))
    assert decode(padded, expect=expect_for(advert)) == got


def test_pass_auth_is_truncated_and_padded() -> None:
    assert auth_data_for(AuthType.PASS, "rigpass1-and-more") == b"rigpass1"
    assert auth_data_for(AuthType.PASS, "abc") == b"abc\0\0\0\0\0"
    assert auth_data_for(AuthType.NONE, "ignored") == bytes(8)
    with pytest.raises(ValueError, match="8 bytes"):
        Advert(vrid=1, priority=100, advert_int=1, auth_type=1, auth_data=b"short",
               addresses=())


def test_wire_advert_int_rounds_to_whole_seconds() -> None:
    assert [wire_advert_int(s) for s in (0.2, 1.0, 1.4, 1.5, 2.6, 300)] == [1, 1, 1, 2, 3, 255]


def test_peek_vrid() -> None:
    assert peek_vrid(vector("vrrpv2_vrid52_noauth.ip.hex")) == 52
    assert peek_vrid(b"") is None
    assert peek_vrid(bytes.fromhex("45") + bytes(19)) is None


# ---- rejections -------------------------------------------------------------------------

def _refresh_checksums(pkt: bytearray, *, ip: bool = True, vrrp: bool = True) -> bytes:
    """Recompute checksums after a mutation so that only the intended check can fail."""
    ihl = (pkt[0] & 0x0F) * 4
    if vrrp:
        tot = min(len(pkt), struct.unpack_from("!H", pkt, 2)[0])
        pkt[ihl + 6:ihl + 8] = b"\0\0"
        pkt[ihl + 6:ihl + 8] = checksum(bytes(pkt[ihl:tot])).to_bytes(2, "big")
    if ip:
        pkt[10:12] = b"\0\0"
        pkt[10:12] = checksum(bytes(pkt[:ihl])).to_bytes(2, "big")
    return bytes(pkt)


def mutated(offset: int, value: int, *, base: str = "vrrpv2_vrid51_auth_pass") -> bytes:
    pkt = bytearray(vector(f"{base}.ip.hex"))
    pkt[offset] = value
    return _refresh_checksums(pkt)


def rejected(data: bytes, expect: RxExpectations) -> Rejection:
    got = decode(data, expect=expect)
    assert isinstance(got, Rejection), got
    return got


E51 = expect_for(vrid51())


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"),
    (mutated(0, 0x65), "IPv6 version nibble"),
    (mutated(0, 0x44), "IHL 16 bytes"),
    (mutated(9, 17), "UDP, not VRRP"),
    (bytes([*vector("vrrpv2_vrid51_auth_pass.ip.hex")[:10], 0, 0,
            *vector("vrrpv2_vrid51_auth_pass.ip.hex")[12:]]), "IP checksum zeroed"),
])
def test_reject_ip_header(data: bytes, why: str) -> None:
    assert rejected(data, E51).reason is RejectReason.IP_HEADER, why


def test_reject_length() -> None:
    good = vector("vrrpv2_vrid51_auth_pass.ip.hex")
    truncated = rejected(good[:-1], E51)
    assert truncated.reason is RejectReason.LENGTH and "total length 40" in truncated.detail
    # count says 2 addresses but only one is there
    assert rejected(mutated(23, 2), E51).reason is RejectReason.LENGTH
    # IP total length cut to leave a VRRP message shorter than header + auth
    pkt = bytearray(good)
    pkt[2:4] = (20 + 12).to_bytes(2, "big")
    assert rejected(_refresh_checksums(pkt, vrrp=False), E51).reason is RejectReason.LENGTH


def test_reject_vrid() -> None:
    got = rejected(vector("vrrpv2_vrid51_auth_pass.ip.hex"), expect_for(vrid51(), vrid=52))
    assert (got.reason, got.vrid, got.src) == (RejectReason.VRID, 51, DIRECTOR)


def test_reject_ttl_only_when_asked() -> None:
    hop = mutated(8, 64)
    got = rejected(hop, E51)
    assert got.reason is RejectReason.TTL and "TTL 64" in got.detail
    accepted = decode(hop, expect=expect_for(vrid51(), check_ttl=False))
    assert isinstance(accepted, Received) and accepted.ttl == 64


def test_reject_version() -> None:
    assert rejected(mutated(20, 0x31), E51).reason is RejectReason.VERSION


def test_reject_auth_type_and_password() -> None:
    pkt = vector("vrrpv2_vrid51_auth_pass.ip.hex")
    assert rejected(pkt, expect_for(vrid51(), auth_type=AuthType.NONE, auth_data=bytes(8))
                    ).reason is RejectReason.AUTH_TYPE
    wrong = expect_for(vrid51(), auth_data=auth_data_for(AuthType.PASS, "rigpass2"))
    assert rejected(pkt, wrong).reason is RejectReason.PASSWORD
    # Only the first 8 characters count, as on the wire
    longer = expect_for(vrid51(), auth_data=auth_data_for(AuthType.PASS, "rigpass1-more"))
    assert isinstance(decode(pkt, expect=longer), Received)


def test_no_auth_ignores_auth_bytes() -> None:
    pkt = bytearray(vector("vrrpv2_vrid52_noauth.ip.hex"))
    pkt[-1] = 0x55
    got = decode(_refresh_checksums(pkt), expect=expect_for(vrid52()))
    assert isinstance(got, Received) and got.advert.auth_data == bytes(7) + b"\x55"


def test_reject_advert_interval() -> None:
    got = rejected(vector("vrrpv2_vrid51_auth_pass.ip.hex"), expect_for(vrid51(), advert_int=2))
    assert got.reason is RejectReason.ADVERT_INTERVAL and "ours 2" in got.detail


def test_reject_type() -> None:
    assert rejected(mutated(20, 0x22), E51).reason is RejectReason.TYPE


def test_reject_checksum() -> None:
    pkt = bytearray(vector("vrrpv2_vrid51_auth_pass.ip.hex"))
    pkt[26] ^= 0x01
    assert rejected(bytes(pkt), E51).reason is RejectReason.CHECKSUM


def test_reject_vip_list() -> None:
    pkt = vector("vrrpv2_vrid52_noauth.ip.hex")
    other = expect_for(vrid52(), addresses=(VIP200, IPv4Address("10.77.0.202")))
    assert rejected(pkt, other).reason is RejectReason.VIP_LIST
    fewer = expect_for(vrid52(), addresses=(VIP200,))
    assert rejected(pkt, fewer).reason is RejectReason.VIP_LIST
    # Order does not matter
    swapped = expect_for(vrid52(), addresses=(VIP201, VIP200))
    assert isinstance(decode(pkt, expect=swapped), Received)
    # 2.3.3+ behaviour: accepted, flagged
    lenient = decode(pkt, expect=expect_for(vrid52(), addresses=(VIP200,),
                                            vip_mismatch_drops=False))
    assert isinstance(lenient, Received) and lenient.vip_mismatch


def test_checks_run_in_keepalived_order() -> None:
    # bad TTL and bad version: TTL is checked first
    pkt = bytearray(vector("vrrpv2_vrid51_auth_pass.ip.hex"))
    pkt[8], pkt[20] = 64, 0x31
    assert rejected(_refresh_checksums(pkt), E51).reason is RejectReason.TTL
    # wrong interval and broken checksum: the interval wins (the advert is ignored, no reset)
    pkt = bytearray(vector("vrrpv2_vrid51_auth_pass.ip.hex"))
    pkt[25] = 3
    assert rejected(bytes(pkt), E51).reason is RejectReason.ADVERT_INTERVAL
    # wrong type and wrong VIP list: type first; VIP list last after the checksum
    assert rejected(mutated(20, 0x22), expect_for(vrid51(), addresses=())
                    ).reason is RejectReason.TYPE


# ---- properties -------------------------------------------------------------------------

addresses = st.builds(IPv4Address, st.integers(0, 2**32 - 1))


@st.composite
def adverts(draw: st.DrawFn) -> Advert:
    auth_type = draw(st.sampled_from([AuthType.NONE, AuthType.PASS]))
    auth = draw(st.binary(min_size=8, max_size=8)) if auth_type == AuthType.PASS else bytes(8)
    return Advert(
        vrid=draw(st.integers(1, 255)), priority=draw(st.integers(0, 255)),
        advert_int=draw(st.integers(1, 255)), auth_type=auth_type, auth_data=auth,
        addresses=tuple(draw(st.lists(addresses, max_size=20))))


def _words_sum(data: bytes) -> int:
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | (data[i + 1] if i + 1 < len(data) else 0)
        total = (total & 0xFFFF) + (total >> 16)
    return total


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_checksum_matches_word_by_word_reference(data: bytes) -> None:
    assert checksum(data) == (~_words_sum(data) & 0xFFFF)


@settings(deadline=None)
@given(adverts(), addresses, addresses, st.integers(0, 0xFFFF))
def test_round_trip(advert: Advert, src: IPv4Address, dst: IPv4Address, ident: int) -> None:
    pkt = encode_ip(advert, src=src, dst=dst, ident=ident)
    assert decode(pkt, expect=expect_for(advert)) == Received(advert, src, dst, 255)
    assert pkt[20:] == encode_vrrp(advert)


@settings(max_examples=150, deadline=None)  # scapy is slow on a loaded machine
@given(adverts(), addresses, addresses, st.integers(0, 0xFFFF))
def test_scapy_agrees(advert: Advert, src: IPv4Address, dst: IPv4Address, ident: int) -> None:
    ours = encode_ip(advert, src=src, dst=dst, ident=ident)
    seen = IP(ours)
    v = seen[VRRP]
    assert (seen.version, seen.ihl, seen.tos, seen.len, seen.id, int(seen.flags), seen.frag,
            seen.ttl, seen.proto, seen.src, seen.dst) == (
        4, 5, 0xC0, len(ours), ident, 0, 0, 255, 112, str(src), str(dst))
    assert (v.version, v.type, v.vrid, v.priority, v.ipcount, v.authtype, v.adv) == (
        2, 1, advert.vrid, advert.priority, len(advert.addresses), advert.auth_type,
        advert.advert_int)
    assert [IPv4Address(a) for a in v.addrlist] == list(advert.addresses)
    assert struct.pack("!II", v.auth1, v.auth2) == advert.auth_data
    # scapy builds the same packet from the fields, computing both checksums itself
    rebuilt = IP(tos=0xC0, id=ident, ttl=255, src=str(src), dst=str(dst)) / VRRP(
        vrid=advert.vrid, priority=advert.priority, authtype=advert.auth_type,
        adv=advert.advert_int, addrlist=[str(a) for a in advert.addresses],
        auth1=v.auth1, auth2=v.auth2)
    assert bytes(rebuilt) == ours


@settings(max_examples=60, deadline=None)
@given(adverts(), addresses, st.data())
def test_single_bit_flip_is_rejected_or_visible(advert: Advert, src: IPv4Address,
                                                data: st.DataObject) -> None:
    pkt = encode_ip(advert, src=src, dst=GROUP, ident=7)
    original = decode(pkt, expect=expect_for(advert))
    assert isinstance(original, Received)
    bit = data.draw(st.integers(0, len(pkt) * 8 - 1))
    flipped = bytearray(pkt)
    flipped[bit // 8] ^= 0x80 >> (bit % 8)
    got = decode(bytes(flipped), expect=expect_for(advert))
    assert isinstance(got, Rejection) or got != original


def test_every_bit_flip_of_golden_packet() -> None:
    pkt = vector("vrrpv2_vrid52_noauth.ip.hex")
    expect = expect_for(vrid52())
    original = decode(pkt, expect=expect)
    reasons = set()
    for bit in range(len(pkt) * 8):
        flipped = bytearray(pkt)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        got = decode(bytes(flipped), expect=expect)
        assert isinstance(got, Rejection) or got != original, bit
        if isinstance(got, Rejection):
            reasons.add(got.reason)
    assert {RejectReason.IP_HEADER, RejectReason.CHECKSUM} <= reasons


def test_advert_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        vrid51().priority = 1  # type: ignore[misc]
