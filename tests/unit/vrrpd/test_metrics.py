"""/metrics over real HTTP on 127.0.0.1 (random port), fed by the real runners' status."""

from __future__ import annotations

import asyncio
import re
import threading
import urllib.error
import urllib.request

import pytest
from ipvs_fake_kernel import FakeKernel
from prometheus_client import REGISTRY, generate_latest
from status_rigs import VrrpRig, lvs_conf, open_tcp_ports

from vrrpd.config.loader import load_text
from vrrpd.lvs import LvsRunner
from vrrpd.metrics import MetricsServer, make_registry, parse_listen
from vrrpd.status import DaemonStatus, ReloadStats, StatusDocument


def _scrape(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def test_scrape_real_endpoint_vrrp_lvs_reloads() -> None:
    rig = VrrpRig()
    await rig.runner.start()
    with open_tcp_ports() as (up, down):
        result = load_text(lvs_conf(up, down))
        kernel = FakeKernel()
        lvs = LvsRunner(result.config, client_factory=lambda: kernel,  # type: ignore[arg-type]
                        sync_interval=0.2)
        await lvs.start()
        reloads = ReloadStats()
        reloads.record(True)
        reloads.record(False, ["x"])
        reloads.record(False, ["y"])
        status = DaemonStatus(vrrp=rig.runner, lvs=lvs, recorder=rig.recorder,
                              garps=rig.garps, reloads=reloads)
        built_in: list[int] = []

        def document() -> StatusDocument:
            built_in.append(threading.get_ident())
            return status.document()

        server = MetricsServer(document, "127.0.0.1:0", loop=asyncio.get_running_loop())
        try:
            rig.inject(51, 0, "10.0.0.100")
            rig.inject(52, 200, "10.0.0.200", pw="wrong")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 8
            while loop.time() < deadline:
                checks = [c["runs"] for vs in status.document()["virtual_servers"]
                          for rs in vs["real_servers"] for c in rs["checkers"]]
                if rig.runner.instances["VI_1"].machine.state.value == "MASTER" and \
                        all(checks):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.05)  # GARP burst on the effects queue
            await lvs.sync()
            host, port = server.start()
            assert host == "127.0.0.1" and port > 0
            code, ctype, text = await asyncio.to_thread(
                _scrape, f"http://127.0.0.1:{port}/metrics")
        finally:
            server.stop()
            await lvs.stop()
            await rig.runner.stop()
    assert code == 200 and ctype.startswith("text/plain")
    assert built_in == [threading.get_ident()]  # built on the loop thread, once per scrape
    s = _samples(text)
    assert s['vrrpd_vrrp_state{instance="VI_1",state="MASTER"}'] == 1
    assert s['vrrpd_vrrp_state{instance="VI_1",state="BACKUP"}'] == 0
    assert s['vrrpd_vrrp_state{instance="VI_2",state="BACKUP"}'] == 1
    assert s['vrrpd_vrrp_instance_info{instance="VI_1",interface="eth0",source="10.0.0.1",'
             'vrid="51"}'] == 1
    assert s['vrrpd_vrrp_effective_priority{instance="VI_1"}'] == 100
    assert s['vrrpd_vrrp_transitions_total{instance="VI_1"}'] == 2
    assert s['vrrpd_vrrp_became_master_total{instance="VI_1"}'] == 1
    assert s['vrrpd_vrrp_adverts_sent_total{instance="VI_1"}'] >= 1
    assert s['vrrpd_vrrp_adverts_received_total{instance="VI_1"}'] == 1
    assert s['vrrpd_vrrp_priority_zero_received_total{instance="VI_1"}'] == 1
    assert s['vrrpd_vrrp_adverts_dropped_total{instance="VI_2",reason="password"}'] == 1
    assert s['vrrpd_vrrp_adverts_dropped_total{instance="VI_2",reason="ttl"}'] == 0
    assert s['vrrpd_vrrp_garps_sent_total{instance="VI_1"}'] == 5
    assert s['vrrpd_vrrp_garps_sent_total{instance="VI_2"}'] == 0
    vs = 'virtual_server="[10.0.0.1]:tcp:80"'
    assert s[f"vrrpd_virtual_server_quorum_up{{{vs}}}"] == 1
    assert s[f"vrrpd_virtual_server_alive_weight{{{vs}}}"] == 3
    rs_up = f'real_server="127.0.0.1:{up}",{vs}'
    rs_down = f'real_server="127.0.0.1:{down}",{vs}'
    assert s[f"vrrpd_real_server_alive{{{rs_up}}}"] == 1
    assert s[f"vrrpd_real_server_ipvs_weight{{{rs_up}}}"] == 3
    assert s[f"vrrpd_real_server_alive{{{rs_down}}}"] == 0
    assert s[f"vrrpd_real_server_ipvs_weight{{{rs_down}}}"] == 0  # inhibit_on_failure
    assert s[f'vrrpd_real_server_in_ipvs{{real_server="127.0.0.2:80",{vs}}}'] == 0  # sorry
    ck_up = f'kind="TCP_CHECK",real_server="127.0.0.1:{up}",target="[127.0.0.1]:{up}",{vs}'
    assert s[f"vrrpd_checker_up{{{ck_up}}}"] == 1
    assert s[f"vrrpd_checker_last_success{{{ck_up}}}"] == 1
    assert 0 < s[f"vrrpd_checker_latency_seconds{{{ck_up}}}"] < 1
    assert s[f"vrrpd_checker_runs_total{{{ck_up}}}"] >= 1
    ck_down = (f'kind="TCP_CHECK",real_server="127.0.0.1:{down}",'
               f'target="[127.0.0.1]:{down}",{vs}')
    assert s[f"vrrpd_checker_up{{{ck_down}}}"] == 0
    assert s[f"vrrpd_checker_last_success{{{ck_down}}}"] == 0
    assert s[f'vrrpd_ipvs_packets_total{{direction="in",{rs_up}}}'] == 0
    assert s[f"vrrpd_ipvs_active_connections{{{rs_up}}}"] == 0
    assert s["vrrpd_ipvs_failures_total"] == 0 and s["vrrpd_ipvs_syncs_total"] >= 1
    assert s['vrrpd_reloads_total{result="ok"}'] == 1
    assert s['vrrpd_reloads_total{result="failed"}'] == 2
    assert s["vrrpd_reload_last_success"] == 0
    # the TYPE line names the family with or without _total, depending on the client version
    assert re.search(r"^# TYPE vrrpd_vrrp_adverts_sent(_total)? counter$", text, re.M)
    assert "# TYPE vrrpd_vrrp_state gauge" in text
    # a private registry: the process-wide default one never sees these
    assert b"vrrpd_" not in generate_latest(REGISTRY)


async def test_stop_releases_the_port_and_collect_without_loop() -> None:
    status = DaemonStatus()
    server = MetricsServer(status.document, "127.0.0.1:0")  # no loop: built in the thread
    _host, port = server.start()
    code, _ctype, text = await asyncio.to_thread(_scrape, f"http://127.0.0.1:{port}/metrics")
    assert code == 200
    assert 'vrrpd_reloads_total{result="ok"} 0.0' in text
    assert "vrrpd_vrrp_state{" not in text  # nothing running: no series, no made-up ones
    server.stop()
    with pytest.raises(urllib.error.URLError):
        await asyncio.to_thread(_scrape, f"http://127.0.0.1:{port}/metrics")


def test_registry_is_private_and_reads_at_scrape_time() -> None:
    calls = []
    doc = DaemonStatus().document()

    def document() -> StatusDocument:
        calls.append(1)
        return doc

    registry = make_registry(document)
    assert calls == []  # registering does not build a document
    generate_latest(registry)
    generate_latest(registry)
    assert len(calls) == 2


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9650", ("127.0.0.1", 9650)),
    ("[::1]:9650", ("::1", 9650)),
    (":9650", ("0.0.0.0", 9650)),
    ("9650", ("0.0.0.0", 9650)),
])
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("bad", ["localhost", "1.2.3.4:http", "1.2.3.4:70000"])
def test_parse_listen_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(bad)
