"""The LVS runner against the real kernel: seed listing, adopt, drift repair, foreign services,
one-request reloads, stop modes, global LVS settings.  ipvsadm is the independent reader."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from guest.netns import GuestNetns

from ipvs.batch import BatchSender
from ipvs.client import IPVSClient
from ipvs.listing import render
from vrrpd.config.loader import load, load_text
from vrrpd.config.model import Config
from vrrpd.lvs import LvsRunner
from vrrpd.lvs_cli import read_listing
from vrrpd.lvs_syncd import SyncDaemonDriver

pytestmark = pytest.mark.kernel

SEED = Path(__file__).parents[2] / "etc" / "seed000-mycat-master.conf"  # the seed, as published
PAD = " " * 9
SEED_TABLE = [
    "TCP  192.168.244.10:8066 rr persistent 50",
    f"  -> 192.168.244.148:8066         Route   1      0          0{PAD}",
    f"  -> 192.168.244.149:8066         Route   1      0          0{PAD}",
]
WRITES = {"new_service", "set_service", "delete_service", "new_dest", "set_dest",
          "delete_dest", "flush"}


class CountingClient(IPVSClient):
    """The real client, recording the name of every netlink request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[str] = []

    async def _do(self, op: str, *args: Any, **kw: Any) -> list[Any]:  # type: ignore[override]
        self.requests.append(op)
        return await super()._do(op, *args, **kw)

    def writes(self) -> list[str]:
        return [r for r in self.requests if r in WRITES]


def seed_config(w149: int = 1) -> Config:
    text = SEED.read_text()
    if w149 != 1:
        head, tail = text.split("real_server 192.168.244.149 8066 {")
        text = head + "real_server 192.168.244.149 8066 {" + tail.replace(
            "weight 1", f"weight {w149}", 1)
    return load_text(text, filename=str(SEED)).config


def make_runner(config: Config, **kw: Any) -> tuple[LvsRunner, CountingClient]:
    client = CountingClient()
    kw.setdefault("checker_manager", None)
    return LvsRunner(config, client_factory=lambda: client, **kw), client


def table(ns: GuestNetns) -> list[str]:
    return ns.ipvsadm("-L", "-n").splitlines()[3:]


def add_seed_with_ipvsadm(ns: GuestNetns) -> None:
    ns.ipvsadm("-A", "-t", "192.168.244.10:8066", "-s", "rr", "-p", "50")
    for rs in ("192.168.244.148", "192.168.244.149"):
        ns.ipvsadm("-a", "-t", "192.168.244.10:8066", "-r", f"{rs}:8066", "-g", "-w", "1")


@pytest.fixture
def seed_ns(ipvs_ns: GuestNetns) -> GuestNetns:
    # the director's own address on the real servers' subnet (seed: 192.168.244.146/24)
    ipvs_ns.ip("addr", "add", "192.168.244.146/24", "dev", "dummy0")
    return ipvs_ns


async def test_seed_scenario_prints_the_seeds_listing(seed_ns: GuestNetns) -> None:
    config, _diagnostics = load(SEED, config_id="keepalived01")
    runner = LvsRunner(config)  # the real client and the real health checkers
    await runner.start()
    try:
        assert table(seed_ns) == SEED_TABLE
        # our own listing (vrrpd --list-ipvs) is byte-identical to ipvsadm's
        assert await read_listing() == seed_ns.ipvsadm("-L", "-n")
    finally:
        await runner.stop()
    assert table(seed_ns) == []


async def test_listing_matches_ipvsadm_on_a_varied_table(ipvs_ns: GuestNetns) -> None:
    cmds = [
        "-A -t 192.168.244.10:8066 -s rr -p 50", "-A -t 10.0.0.2:1 -s wlc -b flag-3",
        "-A -t 10.0.0.10:1 -s rr -p 300 -M 255.255.255.0", "-A -u 10.0.0.1:1 -s mh -b mh-port",
        "-A -u 10.0.0.9:1 -s sh -b sh-fallback,sh-port -o -p 20",
        "-A -u 10.0.0.1:5060 -s rr -p 30 --pe sip", "-A -f 1 -s rr",
        "-A -f 2 -6 -s rr -p 50 -M 64", "-A --sctp-service [2001:db8::1]:80 -s wrr",
        "-A -t 200.0.0.1:1 -s rr", "-A -t 100.0.0.1:1 -s rr", "-A -t 150.0.0.1:1 -s rr",
        "-a --sctp-service [2001:db8::1]:80 -r [2001:db8::99]:80 -m -w 12",
        "-a -t 10.0.0.10:1 -r 10.1.0.1:0 -i -w 3", "-a -t 10.0.0.10:1 -r 10.1.0.2:80 -m -w 0",
        "-a -f 1 -r 10.1.0.100:0 -g", "-a -f 1 -r 10.1.0.20:0 -g", "-a -f 1 -r 10.1.0.2:0 -g",
        "-a -t 200.0.0.1:1 -r 200.0.0.2:1 -g", "-a -t 200.0.0.1:1 -r 10.0.0.2:1 -g",
        "-a -t 200.0.0.1:1 -r 150.0.0.2:1 -g",
    ]
    for cmd in cmds:
        ipvs_ns.ipvsadm(*cmd.split())
    async with IPVSClient() as client:
        info = await client.info()
        dumped = await client.dump_services()
        ours = render(dumped, version=info.version, size=info.conn_tab_size)
    batch = BatchSender()
    try:
        assert await batch.dump() == dumped  # the runner's fast dump reads the same table
    finally:
        batch.close()
    theirs = ipvs_ns.ipvsadm("-L", "-n")
    assert ours == theirs, f"ours:\n{ours}\nipvsadm:\n{theirs}"


async def test_adopts_entries_created_with_ipvsadm(seed_ns: GuestNetns) -> None:
    add_seed_with_ipvsadm(seed_ns)
    runner, client = make_runner(seed_config())
    await runner.start()
    try:
        assert client.writes() == []  # no delete, no re-add
        assert table(seed_ns) == SEED_TABLE
    finally:
        await runner.stop()
    assert table(seed_ns) == []


async def test_drift_is_repaired_within_one_sync(seed_ns: GuestNetns) -> None:
    runner, client = make_runner(seed_config(), sync_interval=3600)
    await runner.start()
    try:
        seed_ns.ipvsadm("-d", "-t", "192.168.244.10:8066", "-r", "192.168.244.149:8066")
        client.requests.clear()
        await runner.sync()
        assert client.writes() == ["new_dest"]
        assert table(seed_ns) == SEED_TABLE
        seed_ns.ipvsadm("-C")
        client.requests.clear()
        await runner.sync()
        assert client.writes() == ["new_service", "new_dest", "new_dest"]
        assert table(seed_ns) == SEED_TABLE
        # a weight changed by hand is set back
        seed_ns.ipvsadm("-e", "-t", "192.168.244.10:8066", "-r", "192.168.244.148:8066", "-g",
                        "-w", "9")
        client.requests.clear()
        await runner.sync()
        assert client.writes() == ["set_dest"]
        assert table(seed_ns) == SEED_TABLE
    finally:
        await runner.stop()


async def test_background_sync_repairs_a_flush(seed_ns: GuestNetns) -> None:
    runner, _client = make_runner(seed_config(), sync_interval=1.0)
    await runner.start()
    try:
        seed_ns.ipvsadm("-C")
        deadline = time.monotonic() + 30  # the guest runs Python ~15x slower than the host
        while table(seed_ns) != SEED_TABLE and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert table(seed_ns) == SEED_TABLE
    finally:
        await runner.stop()


async def test_foreign_service_is_left_alone(seed_ns: GuestNetns) -> None:
    seed_ns.ipvsadm("-A", "-u", "192.168.244.10:53", "-s", "wlc")
    seed_ns.ipvsadm("-a", "-u", "192.168.244.10:53", "-r", "192.168.244.200:53", "-g", "-w", "4")
    foreign = table(seed_ns)
    runner, client = make_runner(seed_config())
    await runner.start()
    await runner.sync()
    await runner.stop()
    assert "delete_service" in client.requests
    assert table(seed_ns) == foreign


async def test_reload_changing_one_real_server_is_one_netlink_request(
        seed_ns: GuestNetns) -> None:
    runner, client = make_runner(seed_config())
    await runner.start()
    try:
        client.requests.clear()
        await runner.apply_config(seed_config(w149=5))
        assert client.requests == ["set_dest"]  # not even a dump
        assert table(seed_ns)[2].split()[:3] == ["->", "192.168.244.149:8066", "Route"]
        assert table(seed_ns)[2].split()[3] == "5"
    finally:
        await runner.stop()


@pytest.mark.parametrize(("global_defs", "keep", "left", "writes"), [
    ("", False, [], ["delete_dest", "delete_dest", "delete_service"]),
    ("lvs_flush_on_stop VS", False, [], ["delete_service"]),
    ("", True, SEED_TABLE, []),
])
async def test_stop_removes_own_entries_unless_kept(
        seed_ns: GuestNetns, global_defs: str, keep: bool, left: list[str],
        writes: list[str]) -> None:
    text = SEED.read_text().replace("router_id LVS_DEVEL", f"router_id LVS_DEVEL\n{global_defs}")
    runner, client = make_runner(load_text(text).config, keep_on_stop=keep)
    await runner.start()
    client.requests.clear()
    await runner.stop()
    assert client.writes() == writes
    assert table(seed_ns) == left


async def test_lvs_flush_timeouts_and_sync_daemon(seed_ns: GuestNetns) -> None:
    seed_ns.ipvsadm("-A", "-t", "10.9.9.9:80", "-s", "rr")
    text = SEED.read_text().replace(
        "router_id LVS_DEVEL",
        "router_id LVS_DEVEL\nlvs_flush\nlvs_timeouts tcp 900 tcpfin 30 udp 60\n"
        "lvs_sync_daemon dummy0 VI_1")
    config = load_text(text).config
    runner, _client = make_runner(config)
    driver = SyncDaemonDriver(config)  # lvs_sync_daemon is VRRP's (vrrpd.daemon.build_runners)
    await runner.start()
    await driver.start()
    try:
        assert table(seed_ns) == SEED_TABLE  # the stale entry was flushed
        assert "900 30 60" in seed_ns.ipvsadm("-L", "--timeout")
        daemons = seed_ns.ipvsadm("-L", "--daemon")
        assert "backup sync daemon (mcast=dummy0, syncid=51" in daemons
        driver.vrrp_state_changed("VI_1", "MASTER")
        deadline = time.monotonic() + 20
        while "master sync daemon" not in daemons and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            daemons = seed_ns.ipvsadm("-L", "--daemon")
        assert "master sync daemon (mcast=dummy0, syncid=51" in daemons
        assert "backup sync daemon" not in daemons
    finally:
        await driver.stop()
        await runner.stop()
    assert seed_ns.ipvsadm("-L", "--daemon").strip() == ""
    assert driver.failures == 0, driver.last_error


def test_daemon_programs_the_seed_and_cleans_up_on_sigterm(seed_ns: GuestNetns) -> None:
    """``vrrpd -C -n -f CONF`` end to end (checkers + IPVS only, as keepalived -C)."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", seed_ns.name, sys.executable, "-m", "vrrpd", "-C", "-n", "-l",
         "-f", str(SEED)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 90  # interpreter start-up is slow under TCG
        while table(seed_ns) != SEED_TABLE and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.3)
        assert table(seed_ns) == SEED_TABLE
        listing = seed_ns.run(sys.executable, "-m", "vrrpd", "--list-ipvs").stdout
        assert listing == seed_ns.ipvsadm("-L", "-n")  # the CLI listing, byte for byte
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, output
        assert table(seed_ns) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def bulk_config(services: int, dests: int) -> tuple[str, set[str]]:
    """A config and the ``ipvsadm -S -n`` lines it must produce."""
    text, lines = [], set()
    for i in range(services):
        vip = f"10.0.{i // 200}.{i % 200 + 1}"
        text.append(f"virtual_server {vip} 80 {{\n lb_algo wrr\n lb_kind DR\n protocol TCP\n")
        lines.add(f"-A -t {vip}:80 -s wrr")
        for r in range(dests):
            rs = f"10.{1 + i // 200}.{i % 200}.{r + 1}"
            text.append(f" real_server {rs} 80 {{\n  weight {r + 1}\n }}\n")
            lines.add(f"-a -t {vip}:80 -r {rs}:80 -g -w {r + 1}")
        text.append("}\n")
    # a scheduler this kernel lacks (twos came in 6.3): its service and dests fail, alone
    text.append("virtual_server 10.9.0.1 80 {\n lb_algo twos\n protocol TCP\n"
                " real_server 10.9.1.1 80 {\n }\n real_server 10.9.1.2 80 {\n }\n}\n")
    return "".join(text), lines


async def test_bulk_programming_is_pipelined_exact_and_isolates_failures(
        ipvs_ns: GuestNetns) -> None:
    text, expected = bulk_config(60, 4)
    runner = LvsRunner(load_text(text).config, checker_manager=None, sync_interval=3600)
    await runner.start()  # the default client: bulk writes go through ipvs.batch
    try:
        assert set(ipvs_ns.ipvsadm("-S", "-n").splitlines()) == expected
        assert runner.stats.failures == 3  # twos service + its two dests, nothing else
        assert runner.stats.ops == 60 * 5 + 3
        ipvs_ns.ipvsadm("-C")
        result = await runner.sync()
        assert len(result.ops) == 60 * 5 + 3 and len(result.failed) == 3
        assert set(ipvs_ns.ipvsadm("-S", "-n").splitlines()) == expected
    finally:
        await runner.stop()
    assert ipvs_ns.ipvsadm("-S", "-n").strip() == ""


def _dest_row(ns: GuestNetns, rs: str) -> tuple[int, int, int] | None:
    """(weight, active, inactive) of destination ``rs`` as ipvsadm prints it, None if absent."""
    for line in table(ns):
        parts = line.split()
        if parts[:2] == ["->", rs]:
            return int(parts[3]), int(parts[4]), int(parts[5])
    return None


@pytest.mark.parametrize(("udp_timeout", "drain_timeout", "why"), [
    (5, 120.0, "connections ended"),  # the entries expire long before the drain timeout
    (300, 4.0, "drain timeout"),  # the entries outlive the drain timeout
])
async def test_failed_real_server_drains_at_weight_zero(
        ipvs_ns: GuestNetns, udp_timeout: int, drain_timeout: float, why: str) -> None:
    """--drain-timeout: a real server that fails stays in IPVS at weight 0 while it has
    connections, and is deleted once they are gone or the timeout has passed."""
    text = (f"global_defs {{\n lvs_timeouts udp {udp_timeout}\n}}\n"
            "virtual_server 10.0.9.1 53 {\n lb_algo rr\n lb_kind DR\n protocol UDP\n"
            " real_server 10.255.9.1 53 {\n  weight 1\n }\n"
            " real_server 10.255.9.2 53 {\n  weight 1\n }\n}\n")
    config = load_text(text).config
    runner = LvsRunner(config, checker_manager=None, sync_interval=3600,
                       drain_timeout=drain_timeout)
    await runner.start()
    try:
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
        try:  # eight flows from this namespace: rr gives each real server four
            for s in socks:
                s.sendto(b"q", ("10.0.9.1", 53))
        finally:
            for s in socks:
                s.close()
        deadline = time.monotonic() + 10
        while ((row := _dest_row(ipvs_ns, "10.255.9.2:53")) is None or row[1] + row[2] == 0) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert row is not None and row[0] == 1 and row[1] + row[2] > 0, table(ipvs_ns)
        started = time.monotonic()
        vs_key = config.virtual_servers[0].key
        runner.on_weights(vs_key, {(ipaddress.ip_address("10.255.9.1"), 53): 1})  # .2 failed
        await runner.reconcile_cached()
        row = _dest_row(ipvs_ns, "10.255.9.2:53")
        assert row is not None and row[0] == 0 and row[1] + row[2] > 0, table(ipvs_ns)
        seen_draining = False
        while (row := _dest_row(ipvs_ns, "10.255.9.2:53")) is not None \
                and time.monotonic() - started < 90:
            assert row[0] == 0, table(ipvs_ns)
            seen_draining = seen_draining or row[1] + row[2] > 0
            await asyncio.sleep(0.25)
        gone_after = time.monotonic() - started
        assert row is None, f"still there after {gone_after:.1f}s: {table(ipvs_ns)}"
        assert seen_draining
        if why == "drain timeout":  # removed at the deadline although connections remain
            assert drain_timeout <= gone_after < drain_timeout + 30
        else:  # removed when the entries expired, long before the drain timeout
            assert gone_after < 60
        assert _dest_row(ipvs_ns, "10.255.9.1:53") is not None
    finally:
        await runner.stop()
