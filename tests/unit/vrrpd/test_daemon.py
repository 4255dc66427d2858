"""``vrrpd -f CONF`` as a process: exit 4 on a config that cannot run, pid file, SIGTERM -> 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def vrrpd(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "vrrpd", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_missing_config_is_fatal_exit_4(tmp_path: Path) -> None:
    proc = vrrpd("-f", str(tmp_path / "nope.conf"), "-n", "-P")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 4, (out, err)
    assert "cannot read config file" in err


def test_sigterm_stops_gracefully_and_removes_the_pid_file(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("global_defs {\n  router_id t\n}\nvrrp_scritp x {\n}\n")  # typo: a warning
    pid = tmp_path / "vrrpd.pid"
    proc = vrrpd("-f", str(conf), "-n", "-P", "-p", str(pid), "--log-format", "json")
    deadline = time.monotonic() + 20
    while not pid.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid.read_text().strip() == str(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, (out, err)
    assert "vrrp_scritp" in err  # warnings are printed, the daemon still runs
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "signal" and e.get("signal") == "SIGTERM" for e in events), out
    assert not pid.exists()


def test_checker_priority_sets_the_nice_value(tmp_path: Path) -> None:
    conf = tmp_path / "k.conf"
    conf.write_text("global_defs {\n  checker_priority 7\n}\n")
    pid = tmp_path / "vrrpd.pid"
    proc = vrrpd("-f", str(conf), "-n", "-p", str(pid), "--log-format", "json")
    try:
        deadline = time.monotonic() + 20
        while not pid.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        nice = None
        while nice != 7 and proc.poll() is None and time.monotonic() < deadline:
            stat = Path(f"/proc/{proc.pid}/stat").read_text()
            nice = int(stat.rsplit(")", 1)[1].split()[16])  # field 19: nice
            time.sleep(0.05)
        assert nice == 7
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, (out, err)
