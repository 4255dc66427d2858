"""The lab itself, proven with a keepalived-vs-keepalived election (the reference behaviour)."""

from __future__ import annotations

import time

import pytest

from tests.netns import confs
from tests.netns.lab import Lab, wait_until

pytestmark = pytest.mark.netns

VIP = "10.77.0.100"


def test_keepalived_pair_elects_higher_priority(lab: Lab) -> None:
    a, b, obs = lab.add_host("a"), lab.add_host("b"), lab.add_host("obs", 50)
    cap = lab.capture(obs)
    conf = lambda prio: confs.config(  # noqa: E731
        "lab", confs.instance("VI_1", vrid=51, priority=prio, vips=[f"{VIP}/24"],
                              auth_pass="rigpass1"))
    lab.keepalived(a, conf(150))
    lab.keepalived(b, conf(100))
    wait_until(lambda: a.has_ip(VIP), 8, what="VIP on the priority-150 router")
    time.sleep(2.2)  # two more advert intervals: the backup must stay backup
    assert a.has_ip(VIP) and not b.has_ip(VIP)
    ads = cap.adverts(51)
    senders = {p.src for p in ads if p.priority > 0}
    assert senders == {a.ip}, senders
    last = ads[-1]
    assert (last.dst, last.ttl, last.tos, last.version, last.type, last.priority,
            last.authtype, last.adv_int, last.vips, last.auth, last.checksum_ok, last.df) == (
        "224.0.0.18", 255, 0xC0, 2, 1, 150, 1, 1, (VIP,), b"rigpass1", True, False)
    assert last.src_mac == a.mac and last.dst_mac == "01:00:5e:00:00:12"
    garps = cap.garps(VIP)
    assert len(garps) == 5 and all(g.hwsrc == a.mac and g.op == 1 for g in garps)
    assert all(g.dst_mac == "ff:ff:ff:ff:ff:ff" for g in garps)


def test_lab_teardown_removes_everything() -> None:
    import subprocess

    lab = Lab()
    h = lab.add_host("x")
    proc = lab.spawn(h, ["sleep", "60"], "sleep")
    names = list(lab.namespaces)
    lab.close()
    assert proc.popen.poll() is not None
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in listed for n in names)
    assert not lab.tmp.exists()
