"""The running daemon's operator interfaces: `vrrpd status`, SIGUSR1/SIGUSR2 dumps, /metrics.

One vrrpd in a namespace of its own (a veth pair, no peer: it becomes MASTER after
Master_Down_Interval); everything is read through the interfaces an operator uses.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.netns

VRRPD = [sys.executable, "-m", "vrrpd"]
CONF = """\
global_defs {
    router_id ops1
}
vrrp_instance VI_OPS {
    state BACKUP
    interface eth0
    virtual_router_id 61
    priority 120
    advert_int 1
    virtual_ipaddress {
        10.66.0.100/24
    }
}
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"op{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        for dev in ("lo", "eth0", "eth1"):
            _ip("-n", name, "link", "set", dev, "up")
        _ip("-n", name, "addr", "add", "10.66.0.1/24", "dev", "eth0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_status_dumps_and_metrics_of_a_running_daemon(ns: str, tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text(CONF)
    ctl, data, stats = tmp_path / "v.ctl", tmp_path / "v.data", tmp_path / "v.stats"
    log = (tmp_path / "v.log").open("w")
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, *VRRPD, "-f", str(conf), "-n", "--control-socket", str(ctl),
         "--metrics", "127.0.0.1:0", "--data-file", str(data), "--stats-file", str(stats)],
        stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd())
    try:
        _wait(ctl.exists, 15, "the control socket")
        assert ctl.stat().st_mode & 0o777 == 0o600

        def status() -> dict[str, Any]:
            out = subprocess.run(
                ["ip", "netns", "exec", ns, *VRRPD, "status", "--json", "--socket", str(ctl)],
                capture_output=True, text=True, check=True).stdout
            return dict(json.loads(out))

        def instance() -> dict[str, Any]:
            doc = status()
            return dict(next(i for i in doc["instances"] if i["name"] == "VI_OPS"))

        # priority 120: Master_Down_Interval 3 + 136/256 s, then MASTER
        _wait(lambda: instance()["state"] == "MASTER", 10, "MASTER in vrrpd status")
        inst = instance()
        assert inst["vrid"] == 61 and inst["interface"] == "eth0"

        os.kill(proc.pid, signal.SIGUSR2)  # `ip netns exec` execs: proc.pid is vrrpd
        os.kill(proc.pid, signal.SIGUSR1)
        _wait(lambda: stats.exists() and data.exists(), 5, "the dump files")
        assert re.search(r"^VRRP Instance: VI_OPS$", stats.read_text(), re.M)
        text = data.read_text()
        assert " VRRP Instance = VI_OPS" in text and "   State = MASTER" in text

        port = int(re.findall(r'"listen":"127\.0\.0\.1:(\d+)"',
                              (tmp_path / "v.log").read_text())[0])
        scrape = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c",
             f"import urllib.request;print(urllib.request.urlopen("
             f"'http://127.0.0.1:{port}/metrics').read().decode())"],
            capture_output=True, text=True, check=True).stdout
        assert 'vrrpd_vrrp_state{instance="VI_OPS",state="MASTER"} 1.0' in scrape
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    assert not ctl.exists(), "control socket left behind after stop"

