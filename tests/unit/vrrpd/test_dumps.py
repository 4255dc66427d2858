"""keepalived-compatible dump files: checked against files keepalived 2.2.7 wrote here
(dumps_golden/, see its README), from the real runner's status, and via real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from status_rigs import VrrpRig

from vrrpd.dumps import (
    DumpPaths,
    DumpWriter,
    format_check_data,
    format_data,
    format_stats,
    write_file,
)
from vrrpd.status import (
    DaemonStatus,
    InstanceCounters,
    InstanceStatus,
    IpvsStats,
    ReloadStats,
    StatusDocument,
    VirtualServerStatus,
    build_status,
)
from vrrpd.vrrp.packet import RejectReason

GOLDEN = Path(__file__).parent / "dumps_golden"
GARP = {"master_delay": 5.0, "master_repeat": 5, "master_refresh": 0.0,
        "master_refresh_repeat": 1, "lower_prio_delay": 5.0, "lower_prio_repeat": 5,
        "interval": 0.0}


@pytest.fixture
def utc() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def counters(sent: int = 0, received: int = 0, **drops: int) -> InstanceCounters:
    return InstanceCounters(
        adverts_sent=sent, adverts_received=received, transitions=2, became_master=1,
        released_master=0, priority_zero_sent=0, priority_zero_received=0, garps_sent=5,
        drops={r.value: drops.get(r.value, 0) for r in RejectReason})


def instance(name: str, **kw: Any) -> InstanceStatus:
    base: dict[str, Any] = dict(
        name=name, interface="d0", vrid=51, version=2, state="MASTER", wants_master=False,
        base_priority=100, effective_priority=100, priority_delta=0, fault=False,
        source="10.99.0.1", master={"address": "10.99.0.1", "priority": 100},
        last_transition=None, sync_group="G1", advert_int=1.0, preempt=True,
        preempt_delay=0.0, auth_type="pass", unicast_peers=[], vips=[], garp=dict(GARP),
        timer_late_max=0.0, counters=counters(3))
    base.update(kw)
    return InstanceStatus(**base)  # type: ignore[typeddict-item]


class _Fixed:
    def __init__(self, instances: Sequence[InstanceStatus] = (),
                 vss: Sequence[VirtualServerStatus] = ()) -> None:
        self.instances, self.vss = list(instances), list(vss)

    def status_instances(self) -> list[InstanceStatus]:
        return self.instances

    def status_virtual_servers(self) -> list[VirtualServerStatus]:
        return self.vss


def doc_of(instances: Sequence[InstanceStatus] = (), vss: Sequence[VirtualServerStatus] = (),
           router_id: str = "lab1") -> StatusDocument:
    daemon = DaemonStatus(router_id=router_id).daemon_info()
    return build_status(_Fixed(instances, vss), daemon=daemon, reloads=ReloadStats())


def keepalived_vrrp_scenario() -> StatusDocument:
    """What keepalived dumped in dumps_golden/keepalived-2.2.7.data, as our status."""
    vi1 = instance("VI_1", last_transition=1795458891.192642,
                   vips=[{"address": "10.99.0.100/24", "dev": "d0", "scope": "global",
                          "excluded": False}])
    vi2 = instance("VI_2", vrid=52, base_priority=90, effective_priority=90,
                   master={"address": "10.99.0.1", "priority": 90},
                   last_transition=1795458891.190638, preempt=False, auth_type="none",
                   unicast_peers=["10.99.0.2"],
                   vips=[{"address": "10.99.0.101/32", "dev": "d0", "scope": "global",
                          "excluded": False}])
    return doc_of([vi1, vi2])


def is_subsequence(ours: Sequence[str], theirs: Sequence[str]) -> list[str]:
    """The lines of ``ours`` missing from ``theirs`` (in order); [] = all found in order."""
    it = iter(theirs)
    return [line for line in ours if not any(line == t for t in it)]


def test_data_lines_are_keepalived_lines_in_keepalived_order(utc: None) -> None:
    ours = format_data(keepalived_vrrp_scenario()).splitlines()
    theirs = (GOLDEN / "keepalived-2.2.7.data").read_text().splitlines()
    assert is_subsequence(ours, theirs) == []
    for must in ("------< VRRP Topology >------", " VRRP Instance = VI_1", "   State = MASTER",
                 "   Last transition = 1795458891.192642 (Mon Nov 23 18:34:51.192642 2026)",
                 "   Password = secret"):
        assert must in theirs
    assert "   Password = secret" not in ours  # deliberately not written
    assert len(ours) >= 55  # most of keepalived's instance lines are there


def test_backup_data_and_stats_match_keepalived(utc: None) -> None:
    """A BACKUP following a priority-100 master, preempt_delay, an excluded VIP."""
    c = counters(0, 3)
    c["became_master"], c["transitions"] = 0, 1
    vi1 = instance("VI_1", interface="d1", state="BACKUP", base_priority=50,
                   effective_priority=50, source="10.99.0.2", sync_group=None,
                   master={"address": "10.99.0.1", "priority": 100},
                   last_transition=1795459727.210111, preempt_delay=10.0, auth_type="none",
                   vips=[{"address": "10.99.0.100/24", "dev": "d1", "scope": "global",
                          "excluded": False},
                         {"address": "10.99.0.200/24", "dev": "d1", "scope": "global",
                          "excluded": True}], counters=c)
    doc = doc_of([vi1], router_id="lb")
    ours = format_data(doc).splitlines()
    theirs = (GOLDEN / "keepalived-2.2.7-backup.data").read_text().splitlines()
    assert is_subsequence(ours, theirs) == []
    for line in ("   Master router = 10.99.0.1", "   Master priority = 100",
                 "   Preempt delay = 10 secs", "   Virtual IP Excluded :",
                 "     10.99.0.200/24 dev d1 scope global"):
        assert line in ours
    assert format_stats(doc) == (GOLDEN / "keepalived-2.2.7-backup.stats").read_text()


def test_stats_identical_to_keepalived() -> None:
    golden = (GOLDEN / "keepalived-2.2.7.stats").read_text()
    assert format_stats(keepalived_vrrp_scenario()) == golden


def test_stats_map_each_drop_reason_to_keepalived_counter() -> None:
    c = counters(7, 9, length=1, ttl=2, type=3, advert_interval=4, vip_list=5, auth_type=6,
                 password=8, checksum=11, vrid=12)
    c["priority_zero_received"], c["priority_zero_sent"] = 13, 14
    text = format_stats(doc_of([instance("VI_9", counters=c)]))
    assert text.splitlines() == [
        "VRRP Instance: VI_9", "  Advertisements:", "    Received: 9", "    Sent: 7",
        "  Became master: 1", "  Released master: 0", "  Packet Errors:", "    Length: 1",
        "    TTL: 2", "    Invalid Type: 3", "    Advertisement Interval: 4",
        "    Address List: 5", "  Authentication Errors:", "    Invalid Type: 0",
        "    Type Mismatch: 6", "    Failure: 8", "  Priority Zero:", "    Received: 13",
        "    Sent: 14"]


def _stats(**kw: int) -> IpvsStats:
    base = dict(active_conns=0, inactive_conns=0, conns=0, inpkts=0, outpkts=0, inbytes=0,
                outbytes=0)
    base.update(kw)
    return IpvsStats(**base)  # type: ignore[typeddict-item]


def test_check_data_lines_are_keepalived_lines_in_keepalived_order() -> None:
    def rs(port: int, weight: int, ipvs: int | None) -> dict[str, Any]:
        return {"address": "127.0.0.1", "port": port, "sorry": False,
                "configured_weight": weight, "alive": False, "weight": weight,
                "ipvs_weight": ipvs, "stats": _stats() if ipvs is not None else None,
                "checkers": [{"kind": "TCP_CHECK", "target": f"[127.0.0.1]:{port}",
                              "up": False, "runs": 2, "retry_it": 0, "last_ok": False,
                              "last_result": "connect failed", "latency": 0.001,
                              "next_in": 1.0}]}

    vs = VirtualServerStatus(  # type: ignore[typeddict-item]
        key="[10.0.0.1]:tcp:80", protocol="tcp", scheduler="rr", lvs_method="NAT",
        services=["TCP 10.0.0.1:80"], quorum=1, hysteresis=0, quorum_up=False, alive_weight=0,
        sorry_active=False, real_servers=[rs(22, 3, None), rs(1, 1, 0)], stats=_stats())
    ours = format_check_data(doc_of(vss=[vs], router_id="lab3")).splitlines()
    theirs = (GOLDEN / "keepalived_check-2.2.7.data").read_text().splitlines()
    assert is_subsequence(ours, theirs) == []
    assert "   RIP = 127.0.0.1, RPORT = 1, WEIGHT = 1 EFF WEIGHT = 1" in ours
    assert ours.count("   ------< Real server >------") == 2


async def test_data_from_the_real_runner_backup_shows_its_master() -> None:
    rig = VrrpRig()
    await rig.runner.start()
    try:
        rig.inject(52, 200, "10.0.0.200")
        doc = DaemonStatus(vrrp=rig.runner, recorder=rig.recorder,
                           garps=rig.garps).document()
    finally:
        await rig.runner.stop()
    text = format_data(doc)
    lines = text.splitlines()
    vi2 = lines[lines.index(" VRRP Instance = VI_2"):]
    assert vi2[1:6] == ["   VRRP Version = 2", "   State = BACKUP",
                        "   Master router = 10.0.0.9", "   Master priority = 200",
                        "   Flags: none"]
    assert " Router ID = dir1" in lines
    assert "     10.0.0.200/24 dev eth0 scope global" in vi2  # not " set": BACKUP
    assert "   Authentication type = SIMPLE_PASSWORD" in vi2
    assert format_stats(doc).count("VRRP Instance: ") == 2


def test_write_file_atomic_0600_and_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "keepalived.data"
    target.write_text("old")
    target.chmod(0o644)
    write_file(target, "new\n")
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "keepalived.stats"
    link.symlink_to(victim)
    write_file(link, "stats\n")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "stats\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


async def test_sigusr1_sigusr2_write_the_files(tmp_path: Path) -> None:
    rig = VrrpRig()
    await rig.runner.start()
    paths = DumpPaths(data=str(tmp_path / "k.data"), check_data=str(tmp_path / "kc.data"),
                      stats=str(tmp_path / "k.stats"))
    writer = DumpWriter(DaemonStatus(vrrp=rig.runner).document, paths)
    writer.install()
    try:
        loop = asyncio.get_running_loop()
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        deadline = loop.time() + 10
        while not (Path(paths.data).exists() and Path(paths.stats).exists()):
            assert loop.time() < deadline, "dump files not written"
            await asyncio.sleep(0.02)
        await writer.drain()
    finally:
        writer.uninstall()
        await rig.runner.stop()
    data = Path(paths.data).read_text()
    assert " VRRP Instance = VI_1" in data and "   State = BACKUP" in data
    assert Path(paths.stats).read_text().startswith("VRRP Instance: VI_1\n  Advertisements:\n")
    assert stat.S_IMODE(Path(paths.data).stat().st_mode) == 0o600
    assert not Path(paths.check_data).exists()  # no virtual servers: no checker file
