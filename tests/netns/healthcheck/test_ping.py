"""PING_CHECK inside a network namespace (raw and unprivileged ICMP sockets, IPv4 and IPv6)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from healthcheck.checkers import ping
from healthcheck.model import CheckResult, PingCheckSpec
from tests.netns.healthcheck.hc_ns import Namespace

pytestmark = pytest.mark.netns


@pytest.fixture
def ns() -> Iterator[Namespace]:
    n = Namespace()
    try:
        yield n
    finally:
        n.close()


def _wait_local_route(ns: Namespace, addr: str) -> None:
    """An IPv6 address is usable once its local route exists (carrier and DAD settle async)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "-n", ns.name, "-6", "route", "show", "table", "local"],
                             capture_output=True, text=True, timeout=10).stdout
        addrs = subprocess.run(["ip", "-n", ns.name, "-6", "addr", "show", "dev", "d0"],
                               capture_output=True, text=True, timeout=10).stdout
        if f"local {addr} " in out and "tentative" not in addrs:
            return
        time.sleep(0.05)
    pytest.fail(f"{addr} never became usable")


def _probe(ns: Namespace, spec: PingCheckSpec) -> CheckResult:
    return ns.run(ping.probe(spec))


def _spec(addr: str, timeout: float = 2.0) -> PingCheckSpec:
    """2 s where a reply is expected (a loaded 2-core machine), 0.5 s where none is."""
    return PingCheckSpec(connect_ip=ip_address(addr), connect_timeout=timeout)


@pytest.mark.parametrize("unprivileged", [False, True])
def test_ping_up_down_up(ns: Namespace, unprivileged: bool) -> None:
    if unprivileged:  # ICMP datagram sockets for gid 0 (per-namespace sysctl)
        ns.sysctl("net.ipv4.ping_group_range", "0 0")
    assert ns.uses_raw_socket(_spec("10.77.0.1")) is not unprivileged
    assert _probe(ns, _spec("10.77.0.1")).ok
    ns.ip("addr", "add", "10.77.0.5/32", "dev", "d0")
    res = _probe(ns, _spec("10.77.0.5"))
    assert res.ok and res.detail == "echo reply", res.detail
    ns.ip("addr", "del", "10.77.0.5/32", "dev", "d0")
    res = _probe(ns, _spec("10.77.0.5", 0.5))  # routed out of d0: nobody answers ARP
    assert not res.ok and res.detail == "no echo reply within 0.5s"
    assert 0.45 < res.latency < 2.0
    ns.ip("addr", "add", "10.77.0.5/32", "dev", "d0")
    assert _probe(ns, _spec("10.77.0.5")).ok


def test_ping_ipv6(ns: Namespace) -> None:
    assert _probe(ns, _spec("::1")).ok
    ns.ip("-6", "addr", "add", "fd00:77::1/64", "dev", "d0", "nodad")
    _wait_local_route(ns, "fd00:77::1")
    assert _probe(ns, _spec("fd00:77::1")).ok
    res = _probe(ns, _spec("fd00:77::9", 0.5))
    assert not res.ok
