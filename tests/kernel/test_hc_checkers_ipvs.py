"""Health checkers driving the real IPVS table (guest): listeners stop and start, ipvsadm follows.

The whole chain: keepalived.conf -> ``LvsRunner`` with the real ``CheckerManager`` -> checker
results -> desired weights -> netlink -> kernel; ``ipvsadm -L -n`` is the independent reader.
Checks connect to listeners on 127.0.0.1 in the test's namespace (``connect_ip``/``connect_port``)
while the IPVS destinations are 10.255.0.x behind dummy0 (DR needs a unicast route).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from guest.netns import GuestNetns

from vrrpd.config.loader import load_text
from vrrpd.lvs import LvsRunner

pytestmark = pytest.mark.kernel

# connect_timeout 1 + retry 1 x delay_before_retry 0.5 + delay_loop 1
DETECT = 1.0 + 1 * 0.5 + 1.0
SLACK = 6.0  # guest Python is ~15x slower than the host; ipvsadm itself takes ~0.2 s here


def _check(port: int) -> str:
    return (f"TCP_CHECK {{\n connect_ip 127.0.0.1\n connect_port {port}\n connect_timeout 1\n"
            f" retry 1\n delay_before_retry 0.5\n }}")


async def _table(ns: GuestNetns) -> dict[str, dict[str, int]]:
    """``ipvsadm -L -n`` as {service: {dest: weight}} (run off the loop: the checkers run)."""
    out = await asyncio.to_thread(ns.ipvsadm, "-L", "-n")
    table: dict[str, dict[str, int]] = {}
    current: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("TCP", "UDP"):
            current = table.setdefault(parts[1], {})
        elif parts and parts[0] == "->" and parts[1] != "RemoteAddress:Port":
            current[parts[1]] = int(parts[3])
    return table


async def _wait(ns: GuestNetns, service: str, want: dict[str, int], timeout: float) -> float:
    start = time.monotonic()
    seen: dict[str, int] | None = None
    while time.monotonic() - start < timeout:
        seen = (await _table(ns)).get(service)
        if seen == want:
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    pytest.fail(f"{service}: wanted {want}, still {seen} after {timeout:.0f} s")


class Listeners:
    """TCP listeners on 127.0.0.1 that the test stops and starts."""

    def __init__(self) -> None:
        self.servers: dict[int, asyncio.Server] = {}

    async def start(self, port: int = 0) -> int:
        async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            w.close()

        server = await asyncio.start_server(handler, "127.0.0.1", port, reuse_address=True)
        port = server.sockets[0].getsockname()[1]
        self.servers[port] = server
        return port

    async def stop(self, port: int) -> None:
        server = self.servers.pop(port)
        server.close()
        await server.wait_closed()

    async def close(self) -> None:
        for port in list(self.servers):
            await self.stop(port)


@pytest.fixture
async def listeners() -> AsyncIterator[Listeners]:
    ls = Listeners()
    yield ls
    await ls.close()


async def _runner(text: str) -> LvsRunner:
    config, diags = load_text(text)
    assert not [d for d in diags if d.severity.name in ("FATAL", "ERROR")], diags
    runner = LvsRunner(config, sync_interval=30.0)
    await runner.start()
    return runner


async def test_listener_stop_start_and_inhibit_on_failure(
    ipvs_ns: GuestNetns, listeners: Listeners
) -> None:
    p1, p2 = await listeners.start(), await listeners.start()
    runner = await _runner(f"""
virtual_server 10.0.0.1 80 {{
  delay_loop 1
  lb_algo rr
  lb_kind DR
  protocol TCP
  real_server 10.255.0.11 80 {{
    weight 3
    {_check(p1)}
  }}
  real_server 10.255.0.12 80 {{
    weight 2
    inhibit_on_failure
    {_check(p2)}
  }}
}}
""")
    vs = "10.0.0.1:80"
    both = {"10.255.0.11:80": 3, "10.255.0.12:80": 2}
    try:
        await _wait(ipvs_ns, vs, both, SLACK)
        await listeners.stop(p1)
        took = await _wait(ipvs_ns, vs, {"10.255.0.12:80": 2}, DETECT + SLACK)
        assert took <= DETECT + SLACK
        await listeners.start(p1)
        await _wait(ipvs_ns, vs, both, 1.0 + SLACK)
        await listeners.stop(p2)  # inhibit_on_failure: stays, weight 0
        await _wait(ipvs_ns, vs, {"10.255.0.11:80": 3, "10.255.0.12:80": 0}, DETECT + SLACK)
    finally:
        await runner.stop()


async def test_losing_quorum_swaps_in_the_sorry_server(
    ipvs_ns: GuestNetns, listeners: Listeners
) -> None:
    p1, p2 = await listeners.start(), await listeners.start()
    runner = await _runner(f"""
virtual_server 10.0.0.2 80 {{
  delay_loop 1
  lb_algo rr
  lb_kind DR
  protocol TCP
  quorum 2
  sorry_server 10.255.0.99 80
  real_server 10.255.0.21 80 {{
    {_check(p1)}
  }}
  real_server 10.255.0.22 80 {{
    {_check(p2)}
  }}
}}
""")
    vs = "10.0.0.2:80"
    try:
        await _wait(ipvs_ns, vs, {"10.255.0.21:80": 1, "10.255.0.22:80": 1}, SLACK)
        await listeners.stop(p2)  # alive weight 1 < quorum 2
        await _wait(ipvs_ns, vs, {"10.255.0.99:80": 1}, DETECT + SLACK)
        await listeners.start(p2)
        await _wait(ipvs_ns, vs, {"10.255.0.21:80": 1, "10.255.0.22:80": 1}, 1.0 + SLACK)
    finally:
        await runner.stop()


async def test_misc_dynamic_exit_codes_set_the_weight(ipvs_ns: GuestNetns,
                                                      tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.write_text("12\n")
    script = tmp_path / "check.sh"
    script.write_text(f"#!/bin/sh\nexit $(cat {code})\n")
    script.chmod(0o755)
    runner = await _runner(f"""
virtual_server 10.0.0.3 80 {{
  delay_loop 1
  lb_algo wrr
  lb_kind DR
  protocol TCP
  real_server 10.255.0.31 80 {{
    weight 1
    MISC_CHECK {{
      misc_path "{script}"
      misc_timeout 5
      misc_dynamic
    }}
  }}
}}
""")
    vs = "10.0.0.3:80"
    try:
        await _wait(ipvs_ns, vs, {"10.255.0.31:80": 10}, SLACK)  # exit 12 -> weight 10
        code.write_text("40\n")
        await _wait(ipvs_ns, vs, {"10.255.0.31:80": 38}, 1.0 + SLACK)
        code.write_text("1\n")  # down (MISC_CHECK retry default 0)
        await _wait(ipvs_ns, vs, {}, 1.0 + SLACK)
    finally:
        await runner.stop()
