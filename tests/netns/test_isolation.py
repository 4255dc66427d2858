"""Process isolation on the host kernel (no IPVS): a config with VRRP and a virtual server runs
as a parent with a VRRP child (-P) and a checker child (-C).  The checker child cannot open
IPVS here, exits 1 and is respawned with backoff, while VRRP keeps advertising on time.  Then:
kill -9 of the VRRP child (respawned, instance recovers), SIGTERM (clean, bounded, nothing
left), kill -9 of the parent (no orphan child)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.netns import confs
from tests.netns.capture import Advert, Capture
from tests.netns.lab import REPO, Host, Lab, Proc, run, wait_until

pytestmark = pytest.mark.netns

VIP = "10.77.0.100"
VRID = 61
STOP_BOUND = 10.0  # seconds from SIGTERM to the parent's exit (measured: well under 1 s)
VS = """\
virtual_server 10.77.0.100 80 {
    delay_loop 2
    lb_algo rr
    lb_kind DR
    protocol TCP
    real_server 10.77.0.5 80 {
        TCP_CHECK {
            connect_timeout 1
        }
    }
}
"""


@pytest.fixture
def lab_prefix() -> str:
    return "iso"


class Daemon:
    """An isolated vrrpd (no -P/-C) with every runtime path in the lab's directory."""

    def __init__(self, lab: Lab, host: Host, priority: int = 100) -> None:
        tag = f"{host.name}-iso"
        conf = confs.config(f"r-{host.name}", confs.instance(
            "VI_1", vrid=VRID, priority=priority, vips=[f"{VIP}/24"])) + VS
        cfg = lab.write(f"{tag}.conf", conf)
        self.ctl = lab.tmp / f"{tag}.ctl"
        self.pid_file = lab.tmp / f"{tag}.pid"
        self.vrrp_pid_file = lab.tmp / f"{tag}.vrrp.pid"
        self.check_pid_file = lab.tmp / f"{tag}.check.pid"
        self.data, self.stats = lab.tmp / f"{tag}.data", lab.tmp / f"{tag}.stats"
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc: Proc = lab.spawn(host, [
            sys.executable, "-m", "vrrpd", "-n", "-l", "-f", str(cfg), "--log-format", "json",
            "--control-socket", str(self.ctl), "-p", str(self.pid_file),
            "-r", str(self.vrrp_pid_file), "-c", str(self.check_pid_file),
            "--data-file", str(self.data),
            "--check-data-file", str(lab.tmp / f"{tag}.check.data"),
            "--stats-file", str(self.stats)], "vrrpd",
            (self.pid_file,), env)

    def status(self) -> dict[str, Any]:
        out = subprocess.run([sys.executable, "-m", "vrrpd", "status", "--json", "--socket",
                              str(self.ctl)], capture_output=True, text=True, timeout=20,
                             cwd=REPO, check=True).stdout
        doc: dict[str, Any] = json.loads(out)
        return doc

    def processes(self) -> dict[str, dict[str, Any]]:
        return {p["role"]: p for p in self.status()["processes"]}

    def vrrp_pid(self) -> int | None:
        try:
            return int(self.vrrp_pid_file.read_text())
        except (OSError, ValueError):
            return None


def gone(pid: int) -> bool:
    """No such process, or a zombie nobody reaped yet (it runs nothing any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(p) for p in text.split()]


def advert_intervals(adverts: list[Advert], since: float, until: float) -> list[float]:
    times = [a.time for a in adverts if since <= a.time <= until and a.priority > 0]
    return [b - a for a, b in itertools.pairwise(times)]


def wait_master(lab: Lab, host: Host, timeout: float) -> None:
    wait_until(lambda: host.has_ip(VIP), timeout, what=f"{host.name} holding {VIP}")


def test_vrrp_runs_on_while_the_checker_child_crash_loops_then_recovers_and_stops(
        lab: Lab) -> None:
    a, obs = lab.add_host("a", 1), lab.add_host("obs", 50)
    cap: Capture = lab.capture(obs)
    d = Daemon(lab, a)
    wait_master(lab, a, confs.master_down(100) + 15)

    # the whole daemon in one status: three processes, the checker child crash-looping
    wait_until(lambda: d.processes()["check"]["restarts"] >= 2, 20,
               what="the checker child to be respawned twice")
    procs = d.processes()
    assert procs["parent"]["pid"] == d.proc.pid == int(d.pid_file.read_text())
    assert procs["vrrp"]["alive"] and procs["vrrp"]["ready"]
    assert procs["vrrp"]["pid"] == d.vrrp_pid() and procs["vrrp"]["restarts"] == 0
    assert "exit 1" in (procs["check"]["last_exit"] or "")
    doc = d.status()
    assert [i["name"] for i in doc["instances"]] == ["VI_1"]
    assert doc["instances"][0]["state"] == "MASTER"
    text = subprocess.run([sys.executable, "-m", "vrrpd", "status", "--socket", str(d.ctl)],
                          capture_output=True, text=True, timeout=20, cwd=REPO).stdout
    assert "PROCESS" in text and "check" in text and "VI_1" in text
    # SIGUSR1/SIGUSR2 to the parent reach the VRRP child: keepalived.data / .stats
    d.proc.signal(signal.SIGUSR1)
    d.proc.signal(signal.SIGUSR2)
    wait_until(lambda: d.data.exists() and d.stats.exists(), 10, what="the dump files")
    assert "VI_1" in d.data.read_text()
    assert d.proc.alive() and d.processes()["vrrp"]["restarts"] == 0

    # VRRP on time through the crash loop (each respawn is a Python start-up on 2 cores)
    t0 = time.time()
    time.sleep(8)
    gaps = advert_intervals(cap.adverts(VRID), t0, time.time())
    assert len(gaps) >= 6, gaps
    late = max(abs(g - 1.0) for g in gaps)
    print(f"\nadvert interval during the checker crash loop: max |gap-1s| = {late * 1000:.1f} ms"
          f" over {len(gaps)} intervals")
    assert late < 0.25, gaps

    # kill -9 the VRRP child: respawned, the instance is MASTER again
    old = d.vrrp_pid()
    assert old is not None
    os.kill(old, signal.SIGKILL)
    killed = time.time()
    wait_until(lambda: (p := d.vrrp_pid()) is not None and p != old and not gone(p), 10,
               what="a new VRRP child")
    wait_until(lambda: any(ad.time > killed + 0.5 and ad.src == a.ip and ad.priority == 100
                           for ad in cap.adverts(VRID)),
               confs.master_down(100) + 15, what="adverts from the new VRRP child")
    wait_master(lab, a, 5)
    procs = d.processes()
    assert procs["vrrp"]["restarts"] == 1 and procs["vrrp"]["last_exit"] == "killed by SIGKILL"
    assert d.proc.alive()

    # SIGTERM: priority 0, VIP gone, every child gone, exit 0, bounded
    kids = children_of(d.proc.pid)
    assert d.vrrp_pid() in kids
    started = time.monotonic()
    d.proc.signal(signal.SIGTERM)
    rc = d.proc.popen.wait(STOP_BOUND)
    took = time.monotonic() - started
    print(f"stop: parent exited {rc} {took * 1000:.0f} ms after SIGTERM")
    assert rc == 0
    assert all(gone(k) for k in kids), kids
    assert not a.has_ip(VIP)
    wait_until(lambda: any(ad.priority == 0 and ad.src == a.ip for ad in cap.adverts(VRID)), 5,
               what="the priority-0 advert")
    for path in (d.pid_file, d.vrrp_pid_file, d.check_pid_file, d.ctl):
        assert not path.exists(), path


def test_a_killed_parent_leaves_no_orphan(lab: Lab) -> None:
    a = lab.add_host("a", 1)
    d = Daemon(lab, a)
    wait_until(lambda: d.vrrp_pid() is not None and d.ctl.exists(), 30,
               what="the VRRP child")
    wait_until(lambda: d.processes()["vrrp"]["ready"], 30, what="the VRRP child ready")
    vrrp = d.vrrp_pid()
    assert vrrp is not None and not gone(vrrp)
    kids = children_of(d.proc.pid)
    assert vrrp in kids
    os.kill(d.proc.pid, signal.SIGKILL)  # the parent only, not its process group
    d.proc.popen.wait(5)
    wait_until(lambda: all(gone(k) for k in kids), 5, what=f"children {kids} to die")
    # nothing left running in the director's namespace
    wait_until(lambda: not run(["ip", "netns", "pids", a.ns]).split(), 5,
               what="an empty namespace")
