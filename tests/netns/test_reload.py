"""SIGHUP reload of a running vrrpd MASTER (``-P``) next to a keepalived 2.2.7 (or vrrpd) BACKUP,
judged from outside: the observer's capture (adverts, gratuitous ARPs), ``ip monitor address``
in the master's namespace (catches even a millisecond-long VIP removal) and ``vrrpd status``.

Each test proves that the reload did only what the config change asks: no transition, no
priority-0 advert except from a removed instance, no VIP of a kept instance ever deleted.
keepalived 2.2.7 drops adverts whose VIP list differs from its own, so when the VIP list of a
shared instance changes the backup is reloaded as well (as an operator does), right after.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.netns import confs
from tests.netns.lab import REPO, Host, Lab, Proc, wait_until
from tests.netns.pair import VIP, Pair

pytestmark = pytest.mark.netns

START = 6.0  # starting a daemon: python imports measured up to ~3 s on the loaded box
VIP2 = "10.77.0.101"
VIP_B = "10.77.0.200"  # of the second instance (VRID 52)
RELOAD_WAIT = 10.0  # parse + apply measured well under 1 s; generous for a loaded 2-core box


@pytest.fixture
def lab_prefix() -> str:
    """The conftest ``lab`` with this test file's namespace prefix."""
    return "rl"


def conf_text(router: str, *instances: str) -> str:
    return confs.config(router, *instances)


# garp_master_delay 1 s: the takeover's delayed GARP burst is over before a test reloads
def vi1(priority: int, vips: tuple[str, ...] = (VIP,)) -> str:
    return confs.instance("VI_1", vrid=51, priority=priority, vips=[f"{v}/24" for v in vips],
                          garp_master_delay=1)


def vi2(priority: int) -> str:
    return confs.instance("VI_2", vrid=52, priority=priority, vips=[f"{VIP_B}/24"],
                          garp_master_delay=1)


def config_path(proc: Proc) -> Path:
    args = list(proc.popen.args)  # type: ignore[arg-type]
    return Path(args[args.index("-f") + 1])


class Master:
    """vrrpd on host a with a control socket and an address monitor."""

    def __init__(self, lab: Lab, host: Host, text: str) -> None:
        self.lab, self.host = lab, host
        self.ctl = lab.tmp / f"{lab.id}-a.ctl"
        self.proc = lab.vrrpd(host, text, "--control-socket", str(self.ctl))
        self.conf = config_path(self.proc)
        self.mon = lab.spawn(host, ["ip", "-ts", "monitor", "address"], "ipmon")

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, "-m", "vrrpd", "status", "--json", "--socket", str(self.ctl)],
            capture_output=True, text=True, timeout=20, cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def instances(self) -> dict[str, dict[str, Any]]:
        return {i["name"]: i for i in self.status()["instances"]}

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.proc.output().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                ev = json.loads(line)
                if ev.get("event") == name:
                    out.append(ev)
        return out

    def reload(self, text: str | None, event: str = "reloaded") -> dict[str, Any]:
        """Rewrite the config (None: leave the file alone), SIGHUP, wait for ``event``."""
        if text is not None:
            self.conf.write_text(text)
        before = len(self.events(event))
        self.proc.signal(signal.SIGHUP)
        wait_until(lambda: len(self.events(event)) > before, RELOAD_WAIT,
                   what=f"vrrpd log event {event}")
        return self.events(event)[-1]

    def deleted(self) -> list[str]:
        """Addresses removed from any interface of host a since the monitor started."""
        return re.findall(r"Deleted \d+: \S+\s+inet (\S+)", self.mon.output())


def reload_keepalived(proc: Proc, text: str) -> None:
    config_path(proc).write_text(text)
    proc.signal(signal.SIGHUP)


def build(lab: Lab, master_text: str, peer_kind: str, peer_text: str
          ) -> tuple[Pair, Master, Proc]:
    p = Pair.build(lab)
    peer = lab.daemon(peer_kind, p.b, peer_text)
    m = Master(lab, p.a, master_text)
    p.wait_master(p.a, confs.master_down(150) + START)
    # b may have been MASTER for a moment before a started: let its delayed GARP burst pass
    time.sleep(2.0)
    return p, m, peer


def after(p: Pair, t0: float) -> tuple[list[Any], list[Any]]:
    pk = p.cap.packets()
    ads = [x for x in pk if hasattr(x, "vrid") and x.time >= t0]
    garps = [x for x in pk if hasattr(x, "psrc") and x.psrc == x.pdst and x.time >= t0]
    return ads, garps


def assert_no_flap(p: Pair, m: Master, t0: float, transitions: dict[str, int],
                   keep: tuple[str, ...] = (VIP,), quiet_vrids: tuple[int, ...] = (51,)) -> None:
    ads, _ = after(p, t0)
    zero = [x for x in ads if x.priority == 0 and x.vrid in quiet_vrids]
    assert zero == [], f"priority-0 adverts: {zero}"
    from_b = [x for x in ads if x.src == p.b.ip and x.priority > 0]
    assert from_b == [], f"the backup advertised (took over): {from_b}"
    gone = [a for a in m.deleted() if a.split("/")[0] in keep]
    assert gone == [], f"VIPs of kept instances were deleted: {gone}"
    now = {n: i["counters"]["transitions"] for n, i in m.instances().items()}
    assert {n: now[n] for n in transitions} == transitions, (transitions, now)
    assert all(m.host.has_ip(v) for v in keep)


@pytest.mark.parametrize("peer_kind", ["keepalived", "vrrpd"])
def test_vip_added_then_removed(lab: Lab, peer_kind: str) -> None:
    p, m, peer = build(lab, conf_text("ra", vi1(150)), peer_kind, conf_text("rb", vi1(100)))
    before = {n: i["counters"]["transitions"] for n, i in m.instances().items()}
    t0 = time.time()
    ev = m.reload(conf_text("ra", vi1(150, (VIP, VIP2))))
    reload_keepalived(peer, conf_text("rb", vi1(100, (VIP, VIP2))))
    wait_until(lambda: p.a.has_ip(VIP2), 3.0, what="the added VIP on a")
    time.sleep(2.5)  # a few adverts with the new list; the backup must stay quiet
    ads, garps = after(p, t0)
    assert {x.psrc for x in garps if x.hwsrc == p.a.mac} == {VIP2}, garps
    assert len([x for x in garps if x.psrc == VIP2]) >= 5
    assert ads[-1].src == p.a.ip and ads[-1].vips == (VIP, VIP2)
    assert_no_flap(p, m, t0, before)
    assert not p.b.has_ip(VIP2)
    assert ev["seconds"] < 2.0

    t1 = time.time()
    m.reload(conf_text("ra", vi1(150)))
    reload_keepalived(peer, conf_text("rb", vi1(100)))
    wait_until(lambda: not p.a.has_ip(VIP2), 3.0, what="the dropped VIP gone from a")
    time.sleep(2.5)
    ads, garps = after(p, t1)
    assert ads[-1].src == p.a.ip and ads[-1].vips == (VIP,)
    assert [g for g in garps if g.hwsrc == p.a.mac] == []  # nothing to announce
    assert_no_flap(p, m, t1, before)
    assert [a.split("/")[0] for a in m.deleted()] == [VIP2]
    r = m.status()["reloads"]
    assert (r["succeeded"], r["failed"], r["last_result"]) == (2, 0, "ok")


def test_priority_change_keeps_master_until_the_normal_rules_say_otherwise(lab: Lab) -> None:
    p, m, _ = build(lab, conf_text("ra", vi1(150)), "keepalived", conf_text("rb", vi1(100)))
    before = {n: i["counters"]["transitions"] for n, i in m.instances().items()}
    t0 = time.time()
    m.reload(conf_text("ra", vi1(120)))
    time.sleep(2.5)
    ads, _ = after(p, t0)
    assert ads and ads[-1].src == p.a.ip and ads[-1].priority == 120
    assert_no_flap(p, m, t0, before)
    assert m.instances()["VI_1"]["base_priority"] == 120
    # below the backup: keepalived (preempting) takes over after its Master_Down_Interval,
    # a steps down on its higher advert -- the normal election, no priority 0 from a reload
    t1 = time.time()
    m.reload(conf_text("ra", vi1(80)))
    p.wait_master(p.b, confs.master_down(100) + 2.0)
    ads, _ = after(p, t1)
    assert [x for x in ads if x.priority == 0] == []
    assert m.instances()["VI_1"]["state"] == "BACKUP"


def test_instance_added_leaves_the_running_one_alone(lab: Lab) -> None:
    p, m, _ = build(lab, conf_text("ra", vi1(150)), "keepalived", conf_text("rb", vi1(100)))
    before = {n: i["counters"]["transitions"] for n, i in m.instances().items()}
    t0 = time.time()
    m.reload(conf_text("ra", vi1(150), vi2(150)))
    # nobody else runs VRID 52: MASTER after its own Master_Down_Interval
    wait_until(lambda: p.a.has_ip(VIP_B), confs.master_down(150) + 2.0, what="VI_2 MASTER")
    time.sleep(1.0)
    assert_no_flap(p, m, t0, before, quiet_vrids=(51, 52))
    ads, garps = after(p, t0)
    assert {x.psrc for x in garps if x.hwsrc == p.a.mac} == {VIP_B}
    assert {x.vrid for x in ads if x.src == p.a.ip} == {51, 52}
    assert m.instances()["VI_2"]["state"] == "MASTER"


def test_instance_removed_sends_priority_zero_for_it_only(lab: Lab) -> None:
    p, m, _ = build(lab, conf_text("ra", vi1(150), vi2(150)), "keepalived",
                    conf_text("rb", vi1(100)))
    wait_until(lambda: p.a.has_ip(VIP_B), 3.0, what="VI_2 MASTER on a")
    before = {"VI_1": m.instances()["VI_1"]["counters"]["transitions"]}
    t0 = time.time()
    m.reload(conf_text("ra", vi1(150)))
    wait_until(lambda: not p.a.has_ip(VIP_B), 3.0, what="VI_2's VIP removed")
    time.sleep(2.0)
    ads, _ = after(p, t0)
    bye = [x for x in ads if x.priority == 0]
    assert [(x.src, x.vrid) for x in bye] == [(p.a.ip, 52)], bye
    assert [x for x in ads if x.vrid == 52 and x.time > bye[0].time] == []
    assert_no_flap(p, m, t0, before)
    assert list(m.instances()) == ["VI_1"]
    assert [a.split("/")[0] for a in m.deleted()] == [VIP_B]


def test_unreadable_config_keeps_the_old_one_running(lab: Lab) -> None:
    p, m, _ = build(lab, conf_text("ra", vi1(150)), "keepalived", conf_text("rb", vi1(100)))
    before = {n: i["counters"]["transitions"] for n, i in m.instances().items()}
    t0 = time.time()
    good = m.conf.read_text()
    m.conf.unlink()
    m.conf.mkdir()  # a directory where the file was: cannot be read (FATAL)
    ev = m.reload(None, event="reload_rejected")
    assert "previous configuration" in ev["action"]
    time.sleep(2.5)
    ads, _ = after(p, t0)
    assert len([x for x in ads if x.src == p.a.ip and x.priority == 150]) >= 2
    assert_no_flap(p, m, t0, before)
    r = m.status()["reloads"]
    assert (r["succeeded"], r["failed"], r["last_result"]) == (0, 1, "failed")
    assert any("cannot read config file" in e for e in r["errors"]), r["errors"]
    # fixed: the next SIGHUP applies (nothing changed) and clears the error
    m.conf.rmdir()
    m.conf.write_text(good)
    m.reload(None)
    r = m.status()["reloads"]
    assert (r["succeeded"], r["failed"], r["last_result"], r["errors"]) == (1, 1, "ok", [])
