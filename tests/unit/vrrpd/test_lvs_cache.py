"""The IPVS start cache's payloads (decoded with the dump decoder's reply parsers) and when the
LVS runner writes the cache (recording fake kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ipvs_fake_kernel import FakeKernel
from structlog.testing import capture_logs

from ipvs import replies
from ipvs.batch import op_payload
from ipvs.model import ServiceKey
from ipvs.reconcile import AddDest, AddService, DesiredService, plan, same_dest, same_service
from ipvs.wire import Cmd
from vrrpd import fast_start, lvs_cache
from vrrpd.config.loader import load
from vrrpd.fast_start import CacheSettings, read_cache
from vrrpd.lvs import LvsRunner
from vrrpd.lvs_desired import compile_config, desired

CONF = """\
global_defs {
    router_id lc
%s}
virtual_server_group G {
    10.8.0.10-12 443
    fwmark 7
}
virtual_server group G {
    lb_algo sh
    lb_kind DR
    persistence_timeout 300
    protocol TCP
    sh-port
    real_server 10.8.1.1 443 {
        weight 3
        TCP_CHECK {
            connect_timeout 1
        }
    }
    real_server 10.8.1.2 443 {
        weight 0
    }
}
virtual_server fd00::10 80 {
    lb_algo wrr
    lb_kind NAT
    protocol UDP
    sorry_server fd00::99 80
    real_server fd00::1 8080 {
        weight 7
        uthreshold 100
        lthreshold 10
    }
    real_server fd00::2 8080 {
        weight 1
    }
}
virtual_server 10.8.0.20 25 {
    lb_algo rr
    lb_kind TUN
    protocol TCP
    alpha
    real_server 10.8.3.1 25 {
        weight 2
        HTTP_GET {
            url {
                path /
            }
        }
    }
}
"""


def loaded(tmp_path: Path, global_defs: str = "") -> tuple[Path, object]:
    conf = tmp_path / "keepalived.conf"
    conf.write_text(CONF % global_defs)
    result = load(str(conf), config_id="n1")
    assert not [d for d in result.diagnostics if d.severity >= 2], result.diagnostics
    return conf, result.config


def decoded(cmds: bytes, payloads: list[bytes]
            ) -> dict[ServiceKey, tuple[object, list[object]]]:
    """Rebuild the table the requests make, decoding each with ``ipvs.replies``."""
    table: dict[ServiceKey, tuple[object, list[object]]] = {}
    for cmd, payload in zip(cmds, payloads, strict=True):
        top = replies.attrs(payload)
        if cmd == Cmd.NEW_SERVICE:
            service = replies.service(top[1]).service
            table[service.key] = (service, [])
        else:
            assert cmd == Cmd.NEW_DEST
            key = replies.service(top[1]).service.key
            table[key][1].append(replies.dest(top[2], key.af).dest)
    return table


def test_payloads_decode_to_the_initial_desired_table(tmp_path: Path) -> None:
    _, config = loaded(tmp_path)
    want: dict[ServiceKey, DesiredService] = desired(compile_config(config), {})  # type: ignore[arg-type]
    assert len(want) == 6  # the group's 3 addresses and its fwmark, fd00::10, 10.8.0.20
    cmds, payloads = lvs_cache.build_requests(want)
    assert set(cmds) == {Cmd.NEW_SERVICE, Cmd.NEW_DEST}
    table = decoded(cmds, payloads)
    assert table.keys() == want.keys()
    for key, (service, dests) in table.items():
        assert same_service(service, want[key].service), key  # type: ignore[arg-type]
        assert len(dests) == len(want[key].dests)
        for got, exp in zip(dests, want[key].dests, strict=True):
            assert same_dest(got, exp, key.af), (key, got, exp)  # type: ignore[arg-type]
    # initial weights (lvs_desired.initial_weights): checked servers in at their weight,
    # under alpha absent until their first check succeeds
    group_dests = {str(d.key.addr): d.weight for d in want[next(iter(want))].dests}
    assert group_dests == {"10.8.1.1": 3, "10.8.1.2": 0}
    alpha = next(s for k, s in want.items() if k.port == 25)
    assert not alpha.dests
    assert sum(len(d) for _, d in table.values()) == 4 * 2 + 2


def test_payloads_are_the_batch_senders_requests_in_order(tmp_path: Path) -> None:
    _, config = loaded(tmp_path)
    want = desired(compile_config(config), {})  # type: ignore[arg-type]
    ops = plan(want, {}, ())
    assert [type(o) for o in ops].count(AddService) == len(want)
    cmds, payloads = lvs_cache.build_requests(want)
    assert list(zip(cmds, payloads, strict=True)) == [
        (int(c), p) for c, p in map(op_payload, ops)]
    assert all(isinstance(o, AddService | AddDest) for o in ops)


def runner_for(config: object, kernel: FakeKernel) -> LvsRunner:
    return LvsRunner(config, client_factory=lambda: kernel,  # type: ignore[arg-type,return-value]
                     checker_manager=None)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CacheSettings:
    s = CacheSettings(str(tmp_path / "keepalived.conf"), "n1", str(tmp_path / "cache"), True)
    monkeypatch.setattr(fast_start, "STATE", s)
    return s


async def test_cold_start_writes_the_cache(tmp_path: Path, settings: CacheSettings) -> None:
    _, config = loaded(tmp_path)
    kernel = FakeKernel()
    r = runner_for(config, kernel)
    await r.start()
    try:
        cache = read_cache(settings)
        fast_start.check_key(cache["key"], settings)
        cmds, payloads = cache["cmds"], cache["payloads"]
        assert isinstance(cmds, bytes) and isinstance(payloads, list)
        table = decoded(cmds, payloads)
        assert table.keys() == kernel.table.keys()
        for key, (service, dests) in table.items():
            assert same_service(service, kernel.table[key].service)  # type: ignore[arg-type]
            assert {d.key for d in dests} == {  # type: ignore[attr-defined]
                o.dest.key for o in kernel.table[key].dests}
        assert cache["services"] == len(kernel.table)
    finally:
        await r.stop()


async def table_kept_cache_removed(tmp_path: Path, settings: CacheSettings
                                   ) -> tuple[object, FakeKernel]:
    """A cold start (which wrote the cache) stopped with -I: its table stays in the kernel;
    then the cache is removed.  Returns the config and that kernel."""
    _, config = loaded(tmp_path)
    kernel = FakeKernel()
    first = runner_for(config, kernel)
    await first.start()
    await first.stop(keep=True)
    Path(settings.cache_file()).unlink()
    return config, kernel


def as_if_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's start-up programmed the table from the config text (vrrpd.lvs_direct)."""
    monkeypatch.setattr(fast_start, "OUTCOME", {"result": "direct", "failed": 0})
    monkeypatch.setattr(lvs_cache, "_logged", False)


async def test_start_that_adopts_writes_nothing(tmp_path: Path,
                                                settings: CacheSettings) -> None:
    config, kernel = await table_kept_cache_removed(tmp_path, settings)
    second = runner_for(config, kernel)  # the table is there: adopted, not a cold start
    await second.start()
    await second.stop()
    assert not Path(settings.cache_file()).exists()
    assert lvs_cache.why_not(second, type("R", (), {"error": None, "failed": [], "ops": []})()
                             ) == "table_not_empty"


async def test_start_after_a_direct_programming_writes_the_cache(
        tmp_path: Path, settings: CacheSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    """lvs_direct filled the table before the parse (outcome "direct"): the first sync finds
    every entry as wanted and the cache is written for the next start."""
    config, kernel = await table_kept_cache_removed(tmp_path, settings)
    as_if_direct(monkeypatch)
    second = runner_for(config, kernel)
    await second.start()
    await second.stop()
    assert Path(settings.cache_file()).exists()


async def test_direct_programming_that_differs_is_repaired_and_reported(
        tmp_path: Path, settings: CacheSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    _, config = loaded(tmp_path)
    kernel = FakeKernel()
    first = runner_for(config, kernel)
    await first.start()
    await first.stop(keep=True)
    key = next(iter(kernel.table))
    del kernel.table[key]  # as if the early requests had missed a service
    Path(settings.cache_file()).unlink()
    as_if_direct(monkeypatch)
    with capture_logs() as logs:
        second = runner_for(config, kernel)
        await second.start()
    await second.stop(keep=True)
    assert key in kernel.table  # repaired by the first sync
    warned = [e for e in logs if e["event"] == "lvs_fast_start_mismatch"]
    assert len(warned) == 1 and warned[0]["how"] == "direct" and warned[0]["ops"] >= 1
    assert not Path(settings.cache_file()).exists()  # not a table lvs_direct made


async def test_lvs_flush_writes_nothing(tmp_path: Path, settings: CacheSettings) -> None:
    _, config = loaded(tmp_path, "    lvs_flush\n")
    r = runner_for(config, FakeKernel())
    await r.start()
    await r.stop()
    assert not Path(settings.cache_file()).exists()


async def test_no_cache_option_writes_nothing(tmp_path: Path, settings: CacheSettings) -> None:
    settings.enabled = False
    _, config = loaded(tmp_path)
    r = runner_for(config, FakeKernel())
    await r.start()
    await r.stop()
    assert not Path(settings.cache_file()).exists()


async def test_failed_sync_writes_nothing(tmp_path: Path, settings: CacheSettings) -> None:
    _, config = loaded(tmp_path)
    kernel = FakeKernel()
    kernel.fail_next("new_dest")
    r = runner_for(config, kernel)
    await r.start()
    await r.stop()
    assert not Path(settings.cache_file()).exists()

