"""The demo's building blocks on the host kernel (no IPVS needed): the seed 000 topology in
namespaces, two vrrpd directors (``-P``) elect dir1, a real client is answered through the VIP,
dir1 is killed (SIGKILL + cable pulled) and dir2 takes over while the client keeps asking.
The IPVS acts run in the kernel tier (tests/kernel/test_demo_lvs.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vrrpd.demo.report import Reporter
from vrrpd.demo.script import Options, ipvs_available, run_demo

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
# Master_Down_Interval of dir2 (priority 99, advert_int 1) = 3 + 157/256 s
MASTER_DOWN = 3 + (256 - 99) / 256


def _leftovers(tag: str) -> list[str]:
    found = []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [line for line in namespaces.splitlines() if line.startswith(f"{tag}-")]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if tag.encode() in cmdline:
                found.append(f"pid {proc.name}: {cmdline!r}")
    return found


def test_vrrp_only_demo_elects_fails_over_and_cleans_up() -> None:
    out = io.StringIO()
    result = run_demo(Reporter(out), Options(vrrp_only=True))
    text = out.getvalue()
    assert result.topology_id.startswith("dm")
    assert result.master == "dir1", text
    assert result.spread == {"dir1": 20}, text  # the VIP answers from the master only
    assert result.after_failover and set(result.after_failover) == {"dir2"}, text
    # the backup waits for its Master_Down_Interval after the master's last advert (sent at
    # most 1 s before the kill), then takes over: never before, not much later
    assert result.takeover_seconds is not None
    assert MASTER_DOWN - 1.0 <= result.takeover_seconds <= MASTER_DOWN + 2.5, text
    assert result.gap_seconds is not None
    assert result.gap_seconds <= MASTER_DOWN + 3.0, text
    assert "dir2: vrrpd exited 0 and released the VIP" in text
    assert _leftovers(result.topology_id) == []


def test_without_ipvs_in_guest_mode_the_demo_says_so() -> None:
    if ipvs_available():
        pytest.skip("this kernel has IPVS: the no-IPVS path cannot be shown here")
    proc = subprocess.run(
        [sys.executable, "-m", "vrrpd.demo", "--inside-guest"], capture_output=True, text=True,
        timeout=60, stdin=subprocess.DEVNULL, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 3
    assert "no IPVS" in proc.stderr and "--vrrp-only" in proc.stderr
