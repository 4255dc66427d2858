"""Trackers drive mastership: a vrrp_script weight, the interface's carrier (FAULT), and a sync
group moving two instances together."""

from __future__ import annotations

import pytest

from tests.netns import confs
from tests.netns.lab import Lab, wait_until
from tests.netns.pair import VIP, Pair

pytestmark = pytest.mark.netns

START = 6.0  # starting a daemon: python import measured up to ~3 s on the loaded box
VIP2 = "10.77.0.200"


def test_script_weight_flips_mastership_and_back(lab: Lab) -> None:
    p = Pair.build(lab)
    flag = lab.tmp / "fail-a"
    scripts = confs.script("chk", f"/usr/bin/test ! -e {flag}", interval=1, weight=-60)
    p.start("vrrpd", p.a, 150, scripts=scripts, track_scripts=["chk"])
    p.start("vrrpd", p.b, 100)
    p.wait_master(p.a, confs.master_down(150) + START)
    flag.touch()  # a: 150 - 60 = 90 < 100: b takes over
    p.wait_master(p.b, 1.0 + confs.master_down(100) + 1.5)
    assert 90 in {x.priority for x in p.adverts(p.a)}
    flag.unlink()  # a back to 150: preempts
    p.wait_master(p.a, 1.0 + confs.master_down(150) + 1.5)
    p.hold_master(p.a, 1.5)


@pytest.mark.parametrize("kind_a", ["vrrpd", "keepalived"])
def test_carrier_loss_is_fault_and_the_vip_moves(lab: Lab, kind_a: str) -> None:
    p = Pair.build(lab)
    p.start(kind_a, p.a, 150)
    p.start("vrrpd", p.b, 100)
    p.wait_master(p.a, confs.master_down(150) + START)
    p.a.carrier(False)  # eth0 of a stays admin up, loses carrier
    wait_until(lambda: not p.a.has_ip(VIP), 2.0, what="a dropping its VIP in FAULT")
    wait_until(lambda: p.b.has_ip(VIP), confs.master_down(100) + 1.5, what="VIP on b")
    p.a.carrier(True)
    p.wait_master(p.a, confs.master_down(150) + 2.0)


def test_sync_group_moves_two_instances_together(lab: Lab) -> None:
    p = Pair.build(lab)
    flag = lab.tmp / "fail-a"

    def conf(prio: int, with_script: bool) -> str:
        track = ["chk"] if with_script else []
        return confs.config(
            "sg",
            confs.script("chk", f"/usr/bin/test ! -e {flag}", weight=0) if with_script else "",
            confs.sync_group("G1", ["VI_1", "VI_2"]),
            confs.instance("VI_1", vrid=51, priority=prio, vips=[f"{VIP}/24"]),
            confs.instance("VI_2", vrid=52, priority=prio, vips=[f"{VIP2}/24"],
                           track_scripts=track))

    lab.vrrpd(p.a, conf(150, True))
    lab.vrrpd(p.b, conf(100, False))
    wait_until(lambda: p.master_is(p.a) and p.master_is(p.a, VIP2),
               confs.master_down(150) + START, what="a master of both")
    flag.touch()  # VI_2 of a goes FAULT; the group takes VI_1 with it
    wait_until(lambda: p.master_is(p.b) and p.master_is(p.b, VIP2), 2.0 + 1.5,
               what="b master of both")
    assert [x.priority for x in p.adverts(p.a, 51) if x.priority == 0], "VI_1 left with prio 0"
    flag.unlink()
    wait_until(lambda: p.master_is(p.a) and p.master_is(p.a, VIP2),
               1.0 + confs.master_down(150) + 1.5, what="a master of both again")


@pytest.mark.parametrize("kind_b", ["vrrpd", "keepalived"])
def test_unicast_peers_with_multicast_blocked(lab: Lab, kind_b: str) -> None:
    p = Pair.build(lab)
    for h in (p.a, p.b):
        h.block_multicast()
    ua = p.start("vrrpd", p.a, 150, unicast_src=p.a.ip, unicast_peers=[p.b.ip])
    p.start(kind_b, p.b, 100, unicast_src=p.b.ip, unicast_peers=[p.a.ip])
    p.wait_master(p.a, confs.master_down(150) + START)
    # without working unicast b would take over after its Master_Down_Interval
    p.wait_master(p.a, 0.1)
    import time

    end = time.monotonic() + confs.master_down(100) + 1.0
    while time.monotonic() < end:
        assert p.master_is(p.a)
        time.sleep(0.1)
    assert not p.cap.adverts(), "multicast adverts escaped the block"
    ua.crash()
    wait_until(lambda: p.b.has_ip(VIP), confs.master_down(100) + 1.0, what="b taking over")
