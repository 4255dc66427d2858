"""--drain-timeout: the CLI option reaches the LVS runner, and while a destination drains the
background loop looks at the kernel every DRAIN_POLL seconds instead of every sync_interval."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from ipvs_fake_kernel import FakeKernel
from test_lvs_runner import KEY, RS1, runner, seed

import vrrpd.lvs
from vrrpd.cli import build_parser
from vrrpd.daemon import build_runners


def test_cli_option_reaches_the_lvs_runner() -> None:
    config = seed()
    args = build_parser().parse_args(["-C", "--drain-timeout", "12.5", "-f", "x.conf"])
    runners = dict(build_runners(config, args))
    assert runners["lvs"].drain_timeout == 12.5  # type: ignore[attr-defined]
    args = build_parser().parse_args(["-C", "-f", "x.conf"])
    assert dict(build_runners(config, args))["lvs"].drain_timeout == 0.0  # type: ignore[attr-defined]


async def test_draining_destination_is_polled_and_removed_when_idle(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vrrpd.lvs, "DRAIN_POLL", 0.05)
    kernel = FakeKernel()
    r = runner(seed(), kernel, drain_timeout=60.0, sync_interval=3600)
    await r.start()
    try:
        busy = replace(kernel.table[KEY].dests[1], inactive_conns=1)
        kernel.table[KEY] = replace(kernel.table[KEY], dests=(kernel.table[KEY].dests[0], busy))
        await r.sync()
        r.on_weights(r.config.virtual_servers[0].key, {(RS1, 8066): 1})
        for _ in range(100):  # the checker change is applied by the background loop
            await asyncio.sleep(0.01)
            if kernel.table[KEY].dests[1].dest.weight == 0:
                break
        assert [o.dest.weight for o in kernel.table[KEY].dests] == [1, 0]
        dumps = sum(1 for c in kernel.calls if c[0] == "dump_services")
        await asyncio.sleep(0.3)  # sync_interval is an hour: only the drain poll dumps
        assert sum(1 for c in kernel.calls if c[0] == "dump_services") > dumps
        assert len(kernel.table[KEY].dests) == 2  # still busy: kept at weight 0
        idle = replace(kernel.table[KEY].dests[1], inactive_conns=0)
        kernel.table[KEY] = replace(kernel.table[KEY], dests=(kernel.table[KEY].dests[0], idle))
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(kernel.table[KEY].dests) == 1:
                break
        assert [o.dest.key.addr for o in kernel.table[KEY].dests] == [RS1]
    finally:
        await r.stop()
