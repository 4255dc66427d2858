"""Tracker weights add up as keepalived's: positive while up, negative while down, 0 = FAULT."""

from __future__ import annotations

from vrrpd.config.loader import load_text
from vrrpd.vrrp.tracking import Kind, Tracked, contribution, picture, tracked_for

CONF = """
vrrp_script chk_a {
    script "/bin/true"
    weight -20
}
vrrp_script chk_b {
    script "/bin/true"
    weight 10
}
track_file tf {
    file /tmp/x
    weight 3
}
vrrp_sync_group G { group { VI_1 VI_2 } track_interface { eth9 } }
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 1
    virtual_ipaddress { 10.0.0.1 }
    track_script { chk_a
                   chk_b weight 5 }
    track_file { tf }
    track_interface { eth1 weight -30 }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 2
    dont_track_primary
    virtual_ipaddress { 10.0.0.2 }
}
"""


def test_tracked_for_collects_own_group_and_primary_interface() -> None:
    config, diags = load_text(CONF)
    assert not [d for d in diags if d.severity.name != "WARNING"], diags
    t1 = tracked_for(config, config.instance("VI_1"))
    assert t1 == (
        Tracked(Kind.INTERFACE, "eth0"),
        Tracked(Kind.INTERFACE, "eth1", -30),
        Tracked(Kind.SCRIPT, "chk_a", -20),
        Tracked(Kind.SCRIPT, "chk_b", 5),
        Tracked(Kind.FILE, "tf", 3),
        Tracked(Kind.INTERFACE, "eth9"),
    )
    t2 = tracked_for(config, config.instance("VI_2"))
    assert t2 == (Tracked(Kind.INTERFACE, "eth9"),)


def test_contributions() -> None:
    up, down = True, False
    assert contribution(Tracked(Kind.SCRIPT, "s", 10), up) == 10
    assert contribution(Tracked(Kind.SCRIPT, "s", 10), down) == 0
    assert contribution(Tracked(Kind.SCRIPT, "s", -10), up) == 0
    assert contribution(Tracked(Kind.SCRIPT, "s", -10), down) == -10
    assert contribution(Tracked(Kind.SCRIPT, "s", 10, reverse=True), down) == -10
    assert contribution(Tracked(Kind.INTERFACE, "i", 0), down) is None
    assert contribution(Tracked(Kind.INTERFACE, "i", 0), up) == 0
    assert contribution(Tracked(Kind.INTERFACE, "i", 0, reverse=True), up) is None
    assert contribution(Tracked(Kind.FILE, "f", 3), 4) == 12
    assert contribution(Tracked(Kind.FILE, "f", 0), 1) is None
    assert contribution(Tracked(Kind.FILE, "f", -100), 3) is None  # below -253


def test_picture_sums_and_faults() -> None:
    tracked = (Tracked(Kind.INTERFACE, "eth0"), Tracked(Kind.SCRIPT, "a", -20),
               Tracked(Kind.SCRIPT, "b", 5))
    pic = picture(tracked, {(Kind.INTERFACE, "eth0"): True, (Kind.SCRIPT, "a"): False})
    assert (pic.priority_delta, pic.fault) == (-15, False)  # missing status counts as up
    pic = picture(tracked, {(Kind.INTERFACE, "eth0"): False})
    assert pic.fault and "interface eth0 down" in pic.reason
