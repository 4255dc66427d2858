"""The kernel tier itself: the guest has IPVS, namespaces are fresh and entered."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from guest.netns import GuestNetns

pytestmark = pytest.mark.kernel


def test_runs_in_guest_with_ipvs(ipvs_modules: tuple[str, ...]) -> None:
    assert os.environ.get("VRRPD_IN_GUEST") == "1"
    assert Path("/proc/net/ip_vs").exists()
    assert {"rr", "wlc", "sh", "mh"} <= set(ipvs_modules)


def test_namespace_is_fresh_and_entered(ipvs_ns: GuestNetns) -> None:
    ipvs_ns.ipvsadm("-A", "-t", "192.0.2.1:80", "-s", "rr")
    ipvs_ns.ipvsadm("-a", "-t", "192.0.2.1:80", "-r", "198.51.100.7:80", "-g")
    own = Path("/proc/net/ip_vs").read_text()  # this thread is inside the namespace
    assert "C0000201:0050 rr" in own
    assert "C6336407:0050      Route   1" in own
