"""sockets: destinations, IPv4 ID counter, the recording fake pool (raw sockets: tests/netns)."""

from __future__ import annotations

from vrrpd.vrrp.fakes import FakeSocketPool
from vrrpd.vrrp.sockets import VRRP_GROUP, IpIdent, destinations


def test_destinations_multicast_or_each_peer() -> None:
    assert destinations() == (VRRP_GROUP,) == ("224.0.0.18",)
    assert destinations(["10.0.0.2", "10.0.0.3"]) == ("10.0.0.2", "10.0.0.3")


def test_ip_ident_starts_at_one_and_wraps() -> None:
    ident = IpIdent()
    assert [ident.next(), ident.next()] == [1, 2]
    late = IpIdent(0xFFFE)
    assert [late.next(), late.next()] == [0xFFFF, 0]


def test_fake_pool_one_transport_per_interface() -> None:
    got: list[tuple[bytes, int]] = []
    pool = FakeSocketPool(lambda data, ifindex: got.append((data, ifindex)))
    a = pool.get("eth0", 2, join_multicast=False)
    assert pool.get("eth0", 2) is a and a.join_multicast
    pool.get("eth1", 3)
    assert pool.opened == ["eth0", "eth1"]
    assert a.send(b"x", "224.0.0.18") and a.sent == [(b"x", "224.0.0.18")]
    pool.inject(3, b"pkt")
    assert got == [(b"pkt", 3)]
    pool.close()
    assert not a.send(b"y", "224.0.0.18")
