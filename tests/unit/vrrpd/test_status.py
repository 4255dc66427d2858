"""Status document from the REAL runners: VrrpRunner on the recording I/O fakes, LvsRunner on
the fake kernel with the real CheckerManager probing real TCP ports on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from ipvs_fake_kernel import FakeKernel
from status_rigs import VrrpRig, lvs_conf, open_tcp_ports

from vrrpd.config.loader import load_text
from vrrpd.lvs import LvsRunner
from vrrpd.status import DaemonStatus, ReloadStats, build_status
from vrrpd.status_text import format_status
from vrrpd.vrrp.packet import RejectReason


@pytest.fixture
async def vrrp_rig() -> AsyncIterator[VrrpRig]:
    rig = VrrpRig()
    await rig.runner.start()
    try:
        yield rig
    finally:
        await rig.runner.stop()


async def test_vrrp_instances_state_master_counters_and_drops(vrrp_rig: VrrpRig) -> None:
    rig = vrrp_rig
    rig.inject(51, 0, "10.0.0.100")  # VI_1's master leaves: takeover after the skew
    rig.inject(52, 200, "10.0.0.200")  # VI_2 follows a priority-200 master
    rig.inject(52, 200, "10.0.0.200", pw="wrong")  # dropped: password
    rig.inject(52, 200, "10.0.0.201")  # dropped: VIP list
    await asyncio.sleep(0.8)  # skew for priority 100 = 0.61 s
    await asyncio.sleep(0.05)  # effects queue: GARP burst

    status = DaemonStatus(vrrp=rig.runner, recorder=rig.recorder, garps=rig.garps)
    doc = status.document()
    assert json.loads(json.dumps(doc)) == doc  # plain JSON
    assert doc["daemon"]["router_id"] == "dir1" and doc["daemon"]["parts"] == ["vrrp"]
    vi1, vi2 = doc["instances"]
    assert (vi1["name"], vi1["interface"], vi1["vrid"], vi1["state"]) == \
        ("VI_1", "eth0", 51, "MASTER")
    assert vi1["master"] == {"address": "10.0.0.1", "priority": 100}
    assert vi1["base_priority"] == vi1["effective_priority"] == 100
    c1 = vi1["counters"]
    assert c1["adverts_sent"] >= 1 and c1["adverts_received"] == 1
    assert c1["priority_zero_received"] == 1 and c1["became_master"] == 1
    assert c1["transitions"] == 2  # INIT -> BACKUP -> MASTER
    assert c1["garps_sent"] == 5  # one burst of garp_master_repeat for one VIP
    assert vi1["last_transition"] is not None
    assert vi1["vips"] == [{"address": "10.0.0.100/24", "dev": "eth0", "scope": "global",
                            "excluded": False}]
    assert set(c1["drops"]) == {r.value for r in RejectReason}
    assert sum(c1["drops"].values()) == 0

    assert vi2["state"] == "BACKUP"
    assert vi2["master"] == {"address": "10.0.0.9", "priority": 200}
    c2 = vi2["counters"]
    assert c2["drops"]["password"] == 1 and c2["drops"]["vip_list"] == 1
    assert c2["adverts_received"] == 1 and c2["adverts_sent"] == 0
    assert c2["garps_sent"] == 0

    text = format_status(doc)
    lines = text.splitlines()
    header = next(ln for ln in lines if "NAME" in ln and "STATE" in ln)
    row1 = next(ln for ln in lines if ln.strip().startswith("VI_1 "))
    assert row1.split()[:4] == ["VI_1", "eth0", "51", "MASTER"]
    assert "10.0.0.1 (us)" in row1 and header.index("MASTER") == row1.index("10.0.0.1")
    row2 = next(ln for ln in lines if ln.strip().startswith("VI_2 "))
    assert "10.0.0.9 (200)" in row2
    assert "VI_2: drops password=1 vip_list=1" in text


def test_reloads_in_document_and_text() -> None:
    reloads = ReloadStats()
    reloads.record(True, at=100.0)
    reloads.record(False, ["keepalived.conf:3:1: unknown keyword 'prio'"], at=200.0)
    status = DaemonStatus(reloads=reloads, config_path="/etc/keepalived/keepalived.conf")
    doc = status.document()
    assert doc["reloads"] == {"succeeded": 1, "failed": 1, "last_result": "failed",
                              "last_at": 200.0,
                              "errors": ["keepalived.conf:3:1: unknown keyword 'prio'"]}
    text = format_status(doc, now=260.0)
    assert "last reload: failed 1m00s ago (1 ok, 1 failed)" in text
    assert "    keepalived.conf:3:1: unknown keyword 'prio'" in text
    reloads.record(True, at=300.0)
    assert status.document()["reloads"]["errors"] == []


class _OwnSource:
    """A runner that implements the StatusSource methods itself is asked directly."""

    def status_instances(self) -> list[Any]:
        return [{"name": "X"}]

    def status_virtual_servers(self) -> list[Any]:
        return [{"key": "FWM 1"}]


def test_runner_with_own_status_methods_is_used_directly() -> None:
    own = _OwnSource()
    doc = DaemonStatus(vrrp=own, lvs=None).document()
    assert doc["instances"] == [{"name": "X"}] and doc["virtual_servers"] == []
    assert build_status(own)["virtual_servers"] == [{"key": "FWM 1"}]


# ---- LVS ----------------------------------------------------------------------------------


@pytest.fixture
def tcp_ports() -> Iterator[tuple[int, int]]:
    with open_tcp_ports() as ports:
        yield ports


async def test_lvs_virtual_servers_with_real_checkers(tcp_ports: tuple[int, int]) -> None:
    up, down = tcp_ports
    result = load_text(lvs_conf(up, down))
    assert not [d for d in result.diagnostics if d.severity.name != "WARNING"]
    kernel = FakeKernel()
    lvs = LvsRunner(result.config, client_factory=lambda: kernel,  # type: ignore[arg-type]
                    sync_interval=0.2)
    await lvs.start()
    try:
        status = DaemonStatus(lvs=lvs)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 8
        while True:
            doc = status.document()
            checks = [c for rs in doc["virtual_servers"][0]["real_servers"]
                      for c in rs["checkers"]]
            if all(c["runs"] >= 1 for c in checks) or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        await lvs.sync()  # the cached table now holds the checker's weights
        doc = status.document()
    finally:
        await lvs.stop()
    assert json.loads(json.dumps(doc)) == doc
    (vs,) = doc["virtual_servers"]
    assert vs["key"] == "[10.0.0.1]:tcp:80" and vs["services"] == ["TCP 10.0.0.1:80"]
    assert (vs["scheduler"], vs["lvs_method"], vs["quorum_up"], vs["alive_weight"]) == \
        ("rr", "NAT", True, 3)
    rs_up, rs_down, sorry = vs["real_servers"]
    assert (rs_up["port"], rs_up["alive"], rs_up["ipvs_weight"]) == (up, True, 3)
    (c_up,) = rs_up["checkers"]
    assert c_up["kind"] == "TCP_CHECK" and c_up["up"] and c_up["last_ok"] is True
    assert c_up["target"] == f"[127.0.0.1]:{up}"
    assert c_up["latency"] is not None and 0 < c_up["latency"] < 1
    assert (rs_down["alive"], rs_down["ipvs_weight"]) == (False, 0)  # inhibited, not removed
    (c_down,) = rs_down["checkers"]
    assert c_down["up"] is False and c_down["last_ok"] is False
    assert c_down["last_result"] != "not run yet"
    assert sorry["sorry"] and sorry["ipvs_weight"] is None  # quorum holds: not in IPVS
    # IPVS counters come from the cached table: present once the services are in it
    assert rs_up["stats"] is not None and rs_up["stats"]["active_conns"] == 0
    assert vs["stats"] is not None
    assert doc["lvs"] is not None and doc["lvs"]["services_owned"] == 1
    assert doc["lvs"]["failures"] == 0 and doc["lvs"]["syncs"] >= 1

    text = format_status(doc)
    assert "[10.0.0.1]:tcp:80  rr NAT  quorum up (alive weight 3, quorum 1)" in text
    row = next(ln for ln in text.splitlines() if f"127.0.0.1:{down}" in ln)
    assert row.split()[1:4] == ["1", "0", "DEAD"] and "TCP_CHECK" in row


def _shared_conf(up: int, extra_rs: str = "") -> str:
    check = "TCP_CHECK {\n connect_timeout 1\n retry 0\n warmup 0\n }"
    vs = ""
    for vip in ("10.0.0.1", "10.0.0.2"):
        vs += (f"virtual_server {vip} 80 {{\n delay_loop 1\n lb_algo wrr\n lb_kind DR\n"
               f" protocol TCP\n real_server 127.0.0.1 {up} {{\n weight 2\n {check}\n }}\n"
               f"{extra_rs if vip == '10.0.0.2' else ''}}}\n")
    return vs


async def _wait_checked(status: DaemonStatus) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 8
    while True:
        doc = status.document()
        runs = [c["runs"] for vs in doc["virtual_servers"] for rs in vs["real_servers"]
                for c in rs["checkers"]]
        if (runs and all(runs)) or loop.time() > deadline:
            return doc
        await asyncio.sleep(0.05)


async def test_shared_checker_and_reload_are_reflected(tcp_ports: tuple[int, int]) -> None:
    up, down = tcp_ports
    kernel = FakeKernel()
    lvs = LvsRunner(load_text(_shared_conf(up)).config,
                    client_factory=lambda: kernel)  # type: ignore[arg-type]
    await lvs.start()
    try:
        status = DaemonStatus(lvs=lvs)
        doc = await _wait_checked(status)
        # one probe shared by both virtual servers: both show its result and latency
        shared = [vs["real_servers"][0]["checkers"][0] for vs in doc["virtual_servers"]]
        assert [c["last_ok"] for c in shared] == [True, True]
        assert all(c["latency"] is not None for c in shared)
        assert shared[0]["runs"] == shared[1]["runs"]
        extra = (f" real_server 127.0.0.1 {down} {{\n weight 5\n TCP_CHECK {{\n"
                 " connect_timeout 1\n retry 0\n warmup 0\n }\n }\n")
        await lvs.apply_config(load_text(_shared_conf(up, extra)).config)
        doc = await _wait_checked(status)
    finally:
        await lvs.stop()
    vs2 = doc["virtual_servers"][1]
    assert [(rs["port"], rs["configured_weight"]) for rs in vs2["real_servers"]] == \
        [(up, 2), (down, 5)]
    assert vs2["real_servers"][1]["alive"] is False
    assert vs2["real_servers"][1]["checkers"][0]["last_ok"] is False
