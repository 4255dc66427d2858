"""Misconfigured peers, as keepalived: no peering on an auth mismatch, and an advert-interval
mismatch is ignored without resetting the master-down timer -> two masters."""

from __future__ import annotations

import time

import pytest

from tests.netns import confs
from tests.netns.lab import Lab, wait_until
from tests.netns.pair import VIP, Pair

pytestmark = pytest.mark.netns

START = 6.0  # starting a daemon: python import measured up to ~3 s on the loaded box
CASES = [("vrrpd", "vrrpd"), ("vrrpd", "keepalived"), ("keepalived", "vrrpd"),
         ("keepalived", "keepalived")]
IDS = ["vd-vd", "vd-ka", "ka-vd", "ka-ka"]


def both_masters(p: Pair, timeout: float, kinds: tuple[str, str]) -> None:
    """Both hold the VIP throughout; every vrrpd keeps advertising.  (keepalived 2.2.7 as
    master restarts its advert timer on any received packet, even one it rejects, so its own
    adverts become sparse when the peer advertises in phase: not asserted for it.)"""
    wait_until(lambda: p.a.has_ip(VIP) and p.b.has_ip(VIP), timeout, what="two masters")
    t0 = time.time()
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        assert p.a.has_ip(VIP) and p.b.has_ip(VIP)
        time.sleep(0.1)
    senders = {x.src for x in p.cap.adverts() if x.time >= t0 and x.priority > 0}
    for host, kind in zip((p.a, p.b), kinds, strict=True):
        if kind == "vrrpd":
            assert host.ip in senders, f"{host.name} stopped advertising"


@pytest.mark.parametrize(("kind_a", "kind_b"), CASES, ids=IDS)
def test_auth_mismatch_means_no_peering(lab: Lab, kind_a: str, kind_b: str) -> None:
    p = Pair.build(lab)
    p.start(kind_a, p.a, 150, auth_pass="secret-1")
    p.start(kind_b, p.b, 100, auth_pass="secret-2")
    both_masters(p, confs.master_down(100) + START, (kind_a, kind_b))
    assert {x.auth for x in p.adverts(p.a)} == {b"secret-1"}


@pytest.mark.parametrize(("kind_a", "kind_b"), CASES, ids=IDS)
def test_advert_interval_mismatch_gives_two_masters(lab: Lab, kind_a: str, kind_b: str) -> None:
    p = Pair.build(lab)
    p.start(kind_a, p.a, 150, advert_int=1)
    p.start(kind_b, p.b, 100, advert_int=2)
    both_masters(p, confs.master_down(100, 2) + START, (kind_a, kind_b))
    assert {x.adv_int for x in p.adverts(p.b)} == {2}
