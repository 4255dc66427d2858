from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping, Sequence
from dataclasses import replace
from ipaddress import IPv4Address
from typing import ClassVar

import pytest
import structlog
from ipvs_fake_kernel import FakeKernel

from healthcheck.model import ServerKey, VirtualServerSpec
from ipvs.errors import IPVSError, IPVSUnavailable
from ipvs.listing import render
from ipvs.model import (
    Destination,
    DestKey,
    Forward,
    ObservedDestination,
    ObservedService,
    Protocol,
    Service,
    ServiceKey,
    Timeouts,
)
from vrrpd.config.loader import load_text
from vrrpd.config.model import Config
from vrrpd.lvs import LvsRunner, OnChange

VIP = IPv4Address("192.168.244.10")
KEY = ServiceKey(socket.AF_INET, Protocol.TCP, VIP, 8066)
SVC = Service(KEY, "rr", frozenset({"persistent"}), 50)
RS1, RS2 = IPv4Address("192.168.244.148"), IPv4Address("192.168.244.149")
D1 = Destination(DestKey(RS1, 8066), weight=1, forward=Forward.DR)
D2 = Destination(DestKey(RS2, 8066), weight=1, forward=Forward.DR)
FOREIGN = ObservedService(Service(ServiceKey(socket.AF_INET, Protocol.UDP, VIP, 53), "wlc"),
                          (ObservedDestination(D1, active_conns=3),))


def seed(global_defs: str = "", w2: int = 1, extra: str = "") -> Config:
    text = f"""
global_defs {{
{global_defs}
}}
vrrp_instance VI_1 {{
    interface eth0
    virtual_router_id 51
    virtual_ipaddress {{
        192.168.244.10
    }}
}}
virtual_server 192.168.244.10 8066 {{
    lb_algo rr
    lb_kind DR
    persistence_timeout 50
    protocol TCP
    real_server 192.168.244.148 8066 {{
        weight 1
    }}
    real_server 192.168.244.149 8066 {{
        weight {w2}
    }}
{extra}
}}
"""
    result = load_text(text)
    assert not [d for d in result.diagnostics if d.severity >= 2], result.diagnostics
    return result.config


def runner(config: Config, kernel: FakeKernel, **kw: object) -> LvsRunner:
    kw.setdefault("checker_manager", None)
    return LvsRunner(config, client_factory=lambda: kernel, **kw)  # type: ignore[arg-type]


def table_of(kernel: FakeKernel) -> str:
    return render(kernel.table.values())


async def test_cold_start_programs_the_seed() -> None:
    kernel = FakeKernel()
    r = runner(seed(), kernel)
    await r.start()
    try:
        assert kernel.calls == [("dump_services", ()), ("new_service", (SVC,)),
                                ("new_dest", (KEY, D1)), ("new_dest", (KEY, D2))]
        assert "TCP  192.168.244.10:8066 rr persistent 50" in table_of(kernel)
        assert r.owned == {KEY}
    finally:
        await r.stop()


async def test_adopts_existing_entries_without_any_write() -> None:
    kernel = FakeKernel()
    kernel.table = {KEY: ObservedService(SVC, (ObservedDestination(D1, active_conns=4),
                                                ObservedDestination(D2)))}
    r = runner(seed(), kernel)
    await r.start()
    try:
        assert kernel.writes() == []
        assert kernel.table[KEY].dests[0].active_conns == 4  # untouched
        assert r.owned == {KEY}
    finally:
        await r.stop(keep=True)


async def test_adopt_fixes_only_what_differs() -> None:
    kernel = FakeKernel()
    kernel.table = {KEY: ObservedService(replace(SVC, scheduler="wlc"),
                                         (ObservedDestination(replace(D1, weight=9)),))}
    r = runner(seed(), kernel)
    await r.start()
    assert kernel.writes() == [("set_service", (SVC,)), ("new_dest", (KEY, D2)),
                               ("set_dest", (KEY, D1))]
    await r.stop(keep=True)


async def test_drift_repaired_within_one_sync_and_foreign_left_alone() -> None:
    kernel = FakeKernel()
    kernel.table = {FOREIGN.service.key: FOREIGN}
    r = runner(seed(), kernel)
    await r.start()
    try:
        # ipvsadm -d
        kernel.table = {k: replace(v, dests=v.dests[:1]) if k == KEY else v
                        for k, v in kernel.table.items()}
        kernel.reset_calls()
        result = await r.sync()
        assert kernel.writes() == [("new_dest", (KEY, D2))]
        assert result.dumped and not result.failed
        # ipvsadm -C (the foreign service goes too; it is not ours to restore)
        kernel.table = {}
        kernel.reset_calls()
        await r.sync()
        assert kernel.writes() == [("new_service", (SVC,)), ("new_dest", (KEY, D1)),
                                   ("new_dest", (KEY, D2))]
        kernel.table[FOREIGN.service.key] = FOREIGN
    finally:
        await r.stop()
    assert kernel.table == {FOREIGN.service.key: FOREIGN}


async def test_background_loop_repairs_drift_and_survives_failures() -> None:
    kernel = FakeKernel()
    r = runner(seed(), kernel, sync_interval=0.05, retry_interval=0.02)
    await r.start()
    try:
        kernel.fail_next("dump_services", times=2)
        kernel.fail_next("new_dest", times=1)
        kernel.table = {}
        for _ in range(200):
            await asyncio.sleep(0.02)
            if KEY in kernel.table and len(kernel.table[KEY].dests) == 2:
                break
        assert len(kernel.table[KEY].dests) == 2
        assert r.stats.failures == 3
        assert r.stats.last_error is not None
    finally:
        await r.stop()


async def test_reload_changing_one_real_server_is_exactly_one_request() -> None:
    kernel = FakeKernel()
    r = runner(seed(), kernel)
    await r.start()
    kernel.reset_calls()
    result = await r.apply_config(seed(w2=7))
    assert kernel.calls == [("set_dest", (KEY, replace(D2, weight=7)))]
    assert len(result.ops) == 1
    kernel.reset_calls()
    await r.apply_config(seed(w2=7))  # same config again: nothing at all
    assert kernel.calls == []
    # a removed virtual server is deleted; one added is created
    other = "}\nvirtual_server 10.0.0.1 80 {\n protocol TCP\n real_server 10.1.1.1 80 {\n }"
    await r.apply_config(seed(w2=7, extra=other))
    assert [c[0] for c in kernel.calls] == ["new_service", "new_dest"]
    kernel.reset_calls()
    await r.apply_config(seed(w2=7))
    assert [c[0] for c in kernel.calls] == ["delete_service"]
    await r.stop()


@pytest.mark.parametrize(("flush_on_stop", "keep", "expected"), [
    # the cached table is exact after a clean sync: stop needs no dump
    ("", False, ["delete_dest", "delete_dest", "delete_service"]),
    ("lvs_flush_on_stop VS", False, ["delete_service"]),
    ("lvs_flush_on_stop", False, ["flush"]),
    ("", True, []),
])
async def test_stop_modes(flush_on_stop: str, keep: bool, expected: list[str]) -> None:
    kernel = FakeKernel()
    kernel.table = {FOREIGN.service.key: FOREIGN}
    r = runner(seed(flush_on_stop), kernel, keep_on_stop=keep)
    await r.start()
    kernel.reset_calls()
    await r.stop()
    assert [c[0] for c in kernel.calls] == expected
    assert kernel.closed == 1
    if expected == ["flush"]:
        assert kernel.table == {}
    elif keep:
        assert set(kernel.table) == {KEY, FOREIGN.service.key}
    else:
        assert kernel.table == {FOREIGN.service.key: FOREIGN}


async def test_stop_reads_the_kernel_when_the_cache_is_uncertain() -> None:
    kernel = FakeKernel()
    r = runner(seed(), kernel)
    await r.start()
    kernel.fail_next("dump_services")
    await r.sync()  # failed: the cache is no longer trusted
    kernel.table[KEY] = replace(kernel.table[KEY], dests=kernel.table[KEY].dests[:1])  # drift
    kernel.reset_calls()
    await r.stop()
    assert [c[0] for c in kernel.calls] == ["dump_services", "delete_dest", "delete_service"]
    assert kernel.table == {}


async def test_global_lvs_settings_flush_and_timeouts_not_the_sync_daemon() -> None:
    """lvs_sync_daemon belongs to the VRRP side (vrrpd.lvs_syncd, test_lvs_syncd.py)."""
    kernel = FakeKernel()
    kernel.table = {FOREIGN.service.key: FOREIGN}
    cfg = seed("lvs_flush\nlvs_timeouts tcp 900 udp 60\nlvs_sync_daemon eth0 VI_1")
    r = runner(cfg, kernel)
    await r.start()
    assert [c[0] for c in kernel.calls[:3]] == ["flush", "set_timeouts", "dump_services"]
    assert kernel.timeouts == Timeouts(tcp=900, tcp_fin=0, udp=60)
    assert set(kernel.table) == {KEY}
    await r.stop()
    assert not [c for c in kernel.calls if "daemon" in c[0]]


async def test_start_fails_loudly_without_ipvs() -> None:
    class NoIpvs(FakeKernel):
        async def open(self) -> None:
            raise IPVSUnavailable("no IPVS in this kernel")

    with pytest.raises(IPVSUnavailable):
        await runner(seed(), NoIpvs()).start()


async def test_failed_service_add_skips_its_dests_and_is_retried() -> None:
    kernel = FakeKernel()
    kernel.fail_next("new_service")
    r = runner(seed(), kernel)
    await r.start()
    assert [c[0] for c in kernel.calls] == ["dump_services", "new_service"]
    assert r.stats.failures == 1 and kernel.table == {}
    await r.sync()
    assert len(kernel.table[KEY].dests) == 2
    await r.stop()



async def test_a_failure_repeated_on_every_retry_is_logged_once_then_counted() -> None:
    """A kernel that keeps refusing an entry: one error line for it, then one summary line
    per retry (not one line per entry per retry); a clean run re-arms the error line."""
    class Refusing(FakeKernel):
        refuse = 3  # RS1's add fails on start and on two retries

        async def new_dest(self, key: ServiceKey, dest: Destination) -> None:
            if dest.key.addr == RS1 and self.refuse:
                self.refuse -= 1
                raise IPVSError("Invalid argument [EINVAL]", operation="AddDest")
            await super().new_dest(key, dest)

    kernel = Refusing()
    r = runner(seed(), kernel)
    with structlog.testing.capture_logs() as logs:
        await r.start()
        await r.sync()
        await r.sync()
    events = [e["event"] for e in logs if e["log_level"] in ("error", "warning")]
    assert events == ["ipvs_op_failed", "ipvs_ops_still_failing", "ipvs_ops_still_failing"]
    assert all(e["count"] == 1 for e in logs if e["event"] == "ipvs_ops_still_failing")
    assert r.stats.failures == 3
    with structlog.testing.capture_logs() as logs:
        await r.sync()  # the kernel takes it now: a clean run
        kernel.fail_next("delete_dest")
        stray = ObservedDestination(Destination(DestKey(IPv4Address("192.168.244.150"), 8066)))
        kernel.table[KEY] = replace(kernel.table[KEY], dests=(*kernel.table[KEY].dests, stray))
        await r.sync()  # a new failure (removing the stray dest) is news again
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["ipvs_op_failed"]
    assert len(kernel.table[KEY].dests) == 3
    await r.stop()

class FakeCheckers:
    instances: ClassVar[list[FakeCheckers]] = []

    def __init__(self, specs: Sequence[VirtualServerSpec], on_change: OnChange) -> None:
        self.specs = specs
        self.on_change = on_change
        self.started = self.stopped = False
        FakeCheckers.instances.append(self)

    async def start(self) -> None:
        self.started = True
        for vs in self.specs:  # like the real manager: report the initial weights at start
            self.on_change(vs.key, {rs.key: rs.weight for rs in vs.real_servers})

    async def stop(self) -> None:
        self.stopped = True

    def report(self, servers: Mapping[ServerKey, int]) -> None:
        self.on_change(self.specs[0].key, servers)


async def test_checker_changes_are_applied_against_the_cache() -> None:
    FakeCheckers.instances.clear()
    kernel = FakeKernel()
    r = runner(seed(), kernel, checker_manager=FakeCheckers, sync_interval=3600)
    await r.start()
    checkers = FakeCheckers.instances[-1]
    assert checkers.started
    kernel.reset_calls()
    checkers.report({(RS1, 8066): 1})  # RS2 went down
    for _ in range(100):
        await asyncio.sleep(0.01)
        if kernel.calls:
            break
    assert kernel.calls == [("delete_dest", (KEY, D2.key))]  # no dump: one request
    await r.stop()
    assert checkers.stopped


async def test_drain_keeps_a_busy_destination_at_weight_zero() -> None:
    FakeCheckers.instances.clear()
    kernel = FakeKernel()
    r = runner(seed(), kernel, checker_manager=FakeCheckers, drain_timeout=60.0,
               sync_interval=3600)
    await r.start()
    kernel.table[KEY] = replace(kernel.table[KEY], dests=(
        kernel.table[KEY].dests[0], replace(kernel.table[KEY].dests[1], active_conns=2)))
    await r.sync()
    kernel.reset_calls()
    FakeCheckers.instances[-1].report({(RS1, 8066): 1})
    await r.reconcile_cached()
    # the leaving destination's connections are read first (the cache's may be stale)
    assert kernel.calls == [("dump_dests", (KEY,)), ("set_dest", (KEY, replace(D2, weight=0)))]
    kernel.table[KEY] = replace(kernel.table[KEY], dests=(
        kernel.table[KEY].dests[0], replace(kernel.table[KEY].dests[1], active_conns=0)))
    kernel.reset_calls()
    await r.sync()
    assert kernel.writes() == [("delete_dest", (KEY, D2.key))]
    await r.stop()


async def test_a_slow_dump_stretches_the_sync_interval() -> None:
    class SlowDump(FakeKernel):
        def __init__(self) -> None:
            super().__init__()
            self.dumps: list[tuple[float, float]] = []

        async def dump_services(self) -> list[ObservedService]:
            start = asyncio.get_running_loop().time()
            await asyncio.sleep(0.1)
            out = await super().dump_services()
            self.dumps.append((start, asyncio.get_running_loop().time()))
            return out

    kernel = SlowDump()
    r = runner(seed(), kernel, sync_interval=0.01, max_sync_share=0.5)
    await r.start()
    try:
        while len(kernel.dumps) < 3:
            await asyncio.sleep(0.05)
    finally:
        await r.stop()
    # each dump took >= 0.1 s, so at most half the time may go to syncing: >= 0.2 s between
    gaps = [b[0] - a[1] for a, b in zip(kernel.dumps[1:], kernel.dumps[2:], strict=False)]
    assert gaps and min(gaps) >= 0.19
    assert r.stats.last_sync_seconds >= 0.1


class ReloadingCheckers(FakeCheckers):
    reloads: ClassVar[list[Sequence[VirtualServerSpec]]] = []

    async def reload(self, specs: Sequence[VirtualServerSpec]) -> None:
        ReloadingCheckers.reloads.append(specs)
        self.specs = specs
        await self.start()  # reports the desired weights again, as the real manager does


async def test_reload_hands_new_specs_to_the_running_checkers() -> None:
    FakeCheckers.instances.clear()
    ReloadingCheckers.reloads.clear()
    kernel = FakeKernel()
    r = runner(seed(), kernel, checker_manager=ReloadingCheckers, sync_interval=3600)
    await r.start()
    (checkers,) = FakeCheckers.instances
    kernel.reset_calls()
    await r.apply_config(seed(w2=7))
    assert FakeCheckers.instances == [checkers] and not checkers.stopped  # same manager
    assert [rs.weight for rs in ReloadingCheckers.reloads[-1][0].real_servers] == [1, 7]
    assert kernel.calls == [("set_dest", (KEY, replace(D2, weight=7)))]
    await r.apply_config(seed(w2=7))  # unchanged specs: no reload at all
    assert len(ReloadingCheckers.reloads) == 1
    await r.stop()
