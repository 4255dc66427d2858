"""ipvs.dumpdecode: the compiled-layout destination decoder and the per-dump reuse must give
exactly what the generic ipvs.replies decoders give, for the kernel's attribute order (6.1's
ip_vs_genl_fill_dest) and for any other order or attribute set (fallback)."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from ipvs import replies
from ipvs.dumpdecode import DumpDecoder
from ipvs.model import Destination, DestKey, Forward, Protocol, Service, ServiceKey, TunnelType
from ipvs.wire import nested, nla, nla_be16, nla_u8, nla_u16, nla_u32

V4, V6 = socket.AF_INET, socket.AF_INET6


def stats(kind: int, values: list[int], wide: bool) -> bytes:
    parts = []
    for k, v in enumerate(values, 1):
        fmt = "=Q" if wide or k in (4, 5) else "=I"
        parts.append(nla(k, struct.pack(fmt, v & (2**64 - 1 if "Q" in fmt else 2**32 - 1))))
    return nested(kind, parts)


def kernel_dest(addr: IPv4Address | IPv6Address, port: int, fwd: int, weight: int, u: int,
                low: int, conns: tuple[int, int, int], counters: list[int], *, tun: bool = True,
                order: list[int] | None = None) -> bytes:
    """A GET_DEST reply payload in the kernel's attribute order (or ``order``)."""
    af = V6 if addr.version == 6 else V4
    attrs = {
        1: nla(1, addr.packed.ljust(16, b"\0")), 2: nla_be16(2, port), 3: nla_u32(3, fwd),
        4: nla_u32(4, weight), 13: nla_u8(13, 0), 14: nla_be16(14, 0), 15: nla_u16(15, 0),
        5: nla_u32(5, u), 6: nla_u32(6, low), 7: nla_u32(7, conns[0]), 8: nla_u32(8, conns[1]),
        9: nla_u32(9, conns[2]), 11: nla_u16(11, af), 10: stats(10, counters, False),
        12: stats(12, counters, True),
    }
    if not tun:
        for k in (13, 14, 15):
            del attrs[k]
    keys = order if order is not None else list(attrs)
    return b"".join(attrs[k] for k in keys if k in attrs)


addrs = st.one_of(st.integers(1, 2**32 - 1).map(IPv4Address),
                  st.integers(1, 2**128 - 1).map(IPv6Address))
u32 = st.integers(0, 2**32 - 1)
dest_args = st.tuples(addrs, st.integers(0, 65535), st.sampled_from([0, 2, 3]), u32, u32, u32,
                      st.tuples(u32, u32, u32), st.lists(u32, min_size=10, max_size=10))


@settings(max_examples=200, deadline=None)
@given(dest_args, st.sampled_from([V4, V6]), st.booleans())
def test_fast_decode_equals_generic(args: tuple, service_af: int, tun: bool) -> None:  # type: ignore[type-arg]
    payload = kernel_dest(*args, tun=tun)
    decoder = DumpDecoder()
    assert decoder.dest(payload, service_af) == replies.dest(payload, service_af)
    assert decoder.fast == 1 and decoder.slow == 0


def test_many_destinations_share_a_layout_and_unchanged_ones_are_reused() -> None:
    decoder = DumpDecoder()
    payloads = [kernel_dest(IPv4Address(f"10.1.0.{i}"), 80, 3, i, 0, 0, (i, 0, 0), [i] * 10)
                for i in range(1, 50)]
    first = [decoder.dest(p, V4) for p in payloads]
    assert first == [replies.dest(p, V4) for p in payloads]
    assert (decoder.fast, decoder.slow, decoder.reused) == (49, 0, 0)
    decoder.next_dump()
    again = [decoder.dest(p, V4) for p in payloads]
    assert all(a is b for a, b in zip(again, first, strict=True))  # nothing rebuilt
    assert decoder.reused == 49
    decoder.next_dump()
    busy = [kernel_dest(IPv4Address(f"10.1.0.{i}"), 80, 3, i, 0, 0, (i + 1, 0, 0), [i + 1] * 10)
            for i in range(1, 50)]
    third = [decoder.dest(p, V4) for p in busy]
    assert third == [replies.dest(p, V4) for p in busy]
    # counters changed, the configured part did not: the Destination objects are shared
    assert all(a.dest is b.dest for a, b in zip(third, first, strict=True))


def test_another_attribute_order_falls_back_to_the_generic_decoder() -> None:
    decoder = DumpDecoder()
    normal = kernel_dest(IPv4Address("10.0.0.1"), 80, 3, 1, 0, 0, (0, 0, 0), [0] * 10)
    # same length, different order: the header check must refuse the compiled layout
    swapped = kernel_dest(IPv4Address("10.0.0.2"), 80, 3, 7, 0, 0, (0, 0, 0), [0] * 10,
                          order=[1, 2, 4, 3, 13, 14, 15, 5, 6, 7, 8, 9, 11, 10, 12])
    assert len(swapped) == len(normal)
    assert decoder.dest(normal, V4) == replies.dest(normal, V4)
    got = decoder.dest(swapped, V4)
    assert got == replies.dest(swapped, V4) and got.dest.weight == 7
    assert (decoder.fast, decoder.slow) == (1, 1)


def test_truncated_or_odd_payloads_decode_like_replies() -> None:
    decoder = DumpDecoder()
    addr = nla(1, IPv4Address("10.0.0.9").packed.ljust(16, b"\0"))
    odd = addr + nla_be16(2, 8080) + nla_u8(13, 2)
    assert decoder.dest(odd, V4) == replies.dest(odd, V4)


def test_services_are_reused_when_their_bytes_are_unchanged() -> None:
    payload = nla_u16(1, V4) + nla_u16(2, 6) + nla(3, IPv4Address("10.0.0.1").packed.ljust(
        16, b"\0")) + nla_be16(4, 80) + nla(6, b"wrr\0") + nla(7, struct.pack("=II", 2, 0xFFFF)) \
        + nla_u32(8, 0) + nla(9, b"\xff\xff\xff\xff") + stats(10, [0] * 10, False)
    decoder = DumpDecoder()
    first = decoder.service(payload)
    assert first == replies.service(payload)
    decoder.next_dump()
    assert decoder.service(payload) is first and decoder.reused == 1
    decoder.next_dump()
    decoder.next_dump()  # two dumps later the cache has forgotten it
    assert decoder.service(payload) is not first


def test_a_service_with_unchanged_destinations_is_the_same_object() -> None:
    svc_payload = nla_u16(1, V4) + nla_u16(5, 0) + nla_u32(5, 7) + nla(6, b"rr\0") \
        + nla(7, struct.pack("=II", 0, 0xFFFF)) + nla_u32(8, 0) + nla(9, b"\xff" * 4)
    dests = [kernel_dest(IPv4Address(f"10.2.0.{i}"), 80, 3, 1, 0, 0, (0, 0, 0), [0] * 10)
             for i in range(1, 4)]
    decoder = DumpDecoder()

    def dump(payloads: list[bytes]) -> object:
        decoder.next_dump()
        svc = decoder.service(svc_payload)
        return decoder.with_dests(svc, tuple(decoder.dest(p, V4) for p in payloads))

    first = dump(dests)
    assert dump(dests) is first
    changed = dump([*dests[:2], kernel_dest(IPv4Address("10.2.0.3"), 80, 3, 9, 0, 0, (0, 0, 0),
                                            [0] * 10)])
    assert changed is not first and changed.dests[2].dest.weight == 9  # type: ignore[attr-defined]


def dest_payload(addr: IPv4Address | IPv6Address, port: int, fwd: int, weight: int, af: int,
                 tun: tuple[int, int, int], conns: tuple[int, int, int]) -> bytes:
    """A GET_DEST reply payload (kernel order) with every configured field chosen."""
    return (nla(1, addr.packed.ljust(16, b"\0")) + nla_be16(2, port) + nla_u32(3, fwd)
            + nla_u32(4, weight) + nla_u8(13, tun[0]) + nla_be16(14, tun[1])
            + nla_u16(15, tun[2]) + nla_u32(5, 0) + nla_u32(6, 0) + nla_u32(7, conns[0])
            + nla_u32(8, conns[1]) + nla_u32(9, conns[2]) + nla_u16(11, af)
            + stats(10, [0] * 10, False) + stats(12, [0] * 10, True))


primable = st.builds(
    lambda a, port, w, f, af, tun: Destination(DestKey(a, port), w, Forward(f), 0, 0, af,
                                               TunnelType(tun[0]), tun[1], tun[2]),
    addrs, st.integers(0, 65535), st.integers(0, 2**32 - 1), st.sampled_from([0, 2, 3]),
    st.sampled_from([0, V4, V6]),
    st.tuples(st.integers(0, 2), st.integers(0, 65535), st.integers(0, 3)))


@settings(max_examples=300, deadline=None)
@given(primable, st.sampled_from([V4, V6]), st.tuples(u32, u32, u32))
def test_a_primed_destination_decodes_as_that_object_only_when_equal(
        dest: Destination, service_af: int, conns: tuple[int, int, int]) -> None:
    family = dest.af or service_af
    payload = dest_payload(dest.key.addr, dest.key.port, int(dest.forward), dest.weight, family,
                           (int(dest.tun_type), dest.tun_port, dest.tun_flags), conns)
    decoder = DumpDecoder()
    decoder.prime(service_af, [dest])
    got = decoder.dest(payload, service_af)
    assert got == replies.dest(payload, service_af)  # counters included
    assert (got.dest is dest) == (got.dest == dest)
    consistent = (dest.key.addr.version == (6 if family == V6 else 4)
                  and dest.af != service_af)
    assert (got.dest is dest) == consistent


def test_a_primed_destination_reported_with_other_values_is_decoded() -> None:
    ours = Destination(DestKey(IPv4Address("10.3.0.1"), 80), weight=4)
    decoder = DumpDecoder()
    decoder.prime(V4, [ours])
    drifted = kernel_dest(IPv4Address("10.3.0.1"), 80, 3, 9, 0, 0, (0, 0, 0), [0] * 10)
    got = decoder.dest(drifted, V4)
    assert got.dest is not ours and got.dest.weight == 9
    same = kernel_dest(IPv4Address("10.3.0.1"), 80, 3, 4, 0, 0, (5, 0, 0), [7] * 10)
    assert decoder.dest(same, V4).dest is ours


def test_priming_an_equal_new_object_replaces_the_cached_one() -> None:
    """A reload recompiles a virtual server: its unchanged destinations become new (equal)
    objects; primed with them, the next dump returns them even for unchanged payloads."""
    old = Destination(DestKey(IPv4Address("10.3.0.1"), 80), weight=4)
    new = Destination(DestKey(IPv4Address("10.3.0.1"), 80), weight=4)
    payload = kernel_dest(IPv4Address("10.3.0.1"), 80, 3, 4, 0, 0, (0, 0, 0), [0] * 10)
    decoder = DumpDecoder()
    decoder.prime(V4, [old])
    assert decoder.dest(payload, V4).dest is old
    decoder.next_dump()
    assert decoder.dest(payload, V4).dest is old  # the cached payload
    decoder.prime(V4, [new])
    for _ in range(4):
        decoder.next_dump()
        got = decoder.dest(payload, V4)
        assert got.dest is new and got == replies.dest(payload, V4)


def test_a_primed_service_decodes_as_that_object_while_equal() -> None:
    def payload(scheduler: bytes, conns: int) -> bytes:
        return (nla_u16(1, V4) + nla_u16(2, 6) + nla(3, IPv4Address("10.0.0.1").packed.ljust(
            16, b"\0")) + nla_be16(4, 80) + nla(6, scheduler + b"\0")
            + nla(7, struct.pack("=II", 2, 0xFFFF)) + nla_u32(8, 0) + nla(9, b"\xff" * 4)
            + stats(10, [conns] * 10, False))

    key = ServiceKey(V4, Protocol.TCP, IPv4Address("10.0.0.1"), 80)
    ours = Service(key, "wrr", frozenset(), 0, 32)
    decoder = DumpDecoder()
    decoder.prime_service(ours)
    first = decoder.service(payload(b"wrr", 0))
    assert first == replies.service(payload(b"wrr", 0)) and first.service is ours
    busy = decoder.service(payload(b"wrr", 5))  # counters changed: decoded again, still ours
    assert busy.service is ours and busy.stats.conns == 5
    other = decoder.service(payload(b"rr", 0))  # not what we programmed: the kernel's value
    assert other.service is not ours and other.service.scheduler == "rr"
    again = Service(key, "wrr", frozenset(), 0, 32)  # a reload recompiled it: equal, new
    decoder.prime_service(again)
    for _ in range(3):
        decoder.next_dump()
        assert decoder.service(payload(b"wrr", 0)).service is again
