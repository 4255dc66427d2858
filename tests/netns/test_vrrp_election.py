"""Election, tie-break, preemption and nopreempt: vrrpd pairs, mixed pairs with keepalived
2.2.7 in both roles, and the keepalived pair whose outcome they must match."""

from __future__ import annotations

import pytest

from tests.netns import confs
from tests.netns.lab import Lab, wait_until
from tests.netns.pair import PAIR_IDS, PAIRS, VIP, Pair

pytestmark = pytest.mark.netns

MDI_150 = confs.master_down(150)  # 3.414 s
MDI_100 = confs.master_down(100)  # 3.609 s
START = 6.0  # starting a daemon: python import measured up to ~3 s on the loaded box


@pytest.mark.parametrize(("kind_a", "kind_b"), PAIRS, ids=PAIR_IDS)
def test_election_by_priority(lab: Lab, kind_a: str, kind_b: str) -> None:
    p = Pair.build(lab)
    p.start(kind_a, p.a, 150)
    p.start(kind_b, p.b, 100)
    p.wait_master(p.a, MDI_150 + START)
    p.hold_master(p.a, 2.5)
    last = p.adverts(p.a)[-1]
    assert (last.priority, last.vips, last.checksum_ok) == (150, (VIP,), True)


@pytest.mark.parametrize(("kind_a", "kind_b"), PAIRS, ids=PAIR_IDS)
def test_equal_priority_higher_address_wins(lab: Lab, kind_a: str, kind_b: str) -> None:
    """Both become master while VRRP multicast is dropped; once it flows, the master with the
    lower address yields to the equal-priority master with the higher one (b, 10.77.0.2)."""
    p = Pair.build(lab)
    for h in (p.a, p.b):
        h.block_multicast()
    p.start(kind_a, p.a, 100)
    p.start(kind_b, p.b, 100)
    wait_until(lambda: p.a.has_ip(VIP) and p.b.has_ip(VIP), MDI_100 + START,
               what="both masters while partitioned")
    for h in (p.a, p.b):
        h.unblock_multicast()
    p.wait_master(p.b, 3.0)
    p.hold_master(p.b, 2.5)


@pytest.mark.parametrize(("kind_a", "kind_b"), PAIRS, ids=PAIR_IDS)
def test_higher_priority_preempts_when_it_returns(lab: Lab, kind_a: str, kind_b: str) -> None:
    p = Pair.build(lab)
    p.start(kind_b, p.b, 100)
    p.wait_master(p.b, MDI_100 + START)
    p.start(kind_a, p.a, 150)
    p.wait_master(p.a, MDI_150 + START)
    p.hold_master(p.a, 1.5)


@pytest.mark.parametrize(("kind_a", "kind_b"), PAIRS, ids=PAIR_IDS)
def test_nopreempt_keeps_the_current_master(lab: Lab, kind_a: str, kind_b: str) -> None:
    p = Pair.build(lab)
    p.start(kind_b, p.b, 100, nopreempt=True)
    p.wait_master(p.b, MDI_100 + START)
    p.start(kind_a, p.a, 150, nopreempt=True)
    # well past the returning node's start plus its Master_Down_Interval
    p.hold_master(p.b, START + MDI_150 + 1.0)
    assert not [x for x in p.adverts(p.a) if x.priority > 0]
