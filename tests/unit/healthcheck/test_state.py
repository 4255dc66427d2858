"""HealthCore: keepalived's checker timing and server state, stepped with an injected clock."""

from __future__ import annotations

import random
from collections.abc import Sequence
from ipaddress import IPv4Address, ip_address

import pytest

from healthcheck.model import (
    CheckResult,
    CheckSpec,
    CommandSpec,
    FileCheckSpec,
    MiscCheckSpec,
    RealServerSpec,
    SorryServerSpec,
    TcpCheckSpec,
    VirtualServerSpec,
)
from healthcheck.state import (
    Action,
    CheckTransition,
    FifoLine,
    HealthCore,
    RunCommand,
    WeightsChanged,
)

OK = CheckResult(True, "ok")
BAD = CheckResult(False, "refused")
VIP = "[10.0.0.1]:tcp:80"


def tcp(host: str, **kw: object) -> TcpCheckSpec:
    args: dict[str, object] = {"connect_port": 80, "retry": 2, "delay_before_retry": 1.0,
                               "delay_loop": 6.0, "warmup": 0.0}
    args.update(kw)
    return TcpCheckSpec(connect_ip=ip_address(host), **args)  # type: ignore[arg-type]


def rs(host: str, *checks: CheckSpec, **kw: object) -> RealServerSpec:
    return RealServerSpec(address=ip_address(host), port=80, checkers=checks, **kw)  # type: ignore[arg-type]


def vs(*servers: RealServerSpec, key: str = VIP, **kw: object) -> VirtualServerSpec:
    return VirtualServerSpec(key=key, real_servers=servers, **kw)  # type: ignore[arg-type]


def key(host: str, port: int = 80) -> tuple[IPv4Address, int]:
    return (IPv4Address(host), port)


def weights(actions: Sequence[Action]) -> list[dict[object, int]]:
    return [dict(a.servers) for a in actions if isinstance(a, WeightsChanged)]


def fifo(actions: Sequence[Action]) -> list[str]:
    return [a.line for a in actions if isinstance(a, FifoLine)]


def commands(actions: Sequence[Action]) -> list[tuple[str, tuple[str, ...]]]:
    return [(a.reason, a.command.argv) for a in actions if isinstance(a, RunCommand)]


def step(core: HealthCore, spec: CheckSpec, now: float, result: CheckResult) -> list[Action]:
    """Finish the probe of ``spec``, due exactly at ``now`` (other due probes stay running)."""
    if not core.checks[spec].running:
        assert core.due_at(spec) == pytest.approx(now), (core.due_at(spec), now)
        assert spec in core.pop_due(now)
    return core.on_result(spec, result, now)


def test_up_checker_is_retried_then_goes_down_and_one_success_brings_it_back() -> None:
    check = tcp("192.168.1.10")
    core = HealthCore([vs(rs("192.168.1.10", check))])
    assert weights(core.start(0.0)) == [{key("192.168.1.10"): 1}]
    assert step(core, check, 0.0, OK) == []
    assert core.due_at(check) == 6.0  # delay_loop after the probe ended
    # fails at 6: still up, retried delay_before_retry later, twice (retry 2)
    assert step(core, check, 6.0, BAD) == []
    assert core.checks[check].up and core.checks[check].retry_it == 1
    assert step(core, check, 7.0, BAD) == []
    actions = step(core, check, 8.0, BAD)  # third failure in a row: down
    assert [a.up for a in actions if isinstance(a, CheckTransition)] == [False]
    assert [a.retries for a in actions if isinstance(a, CheckTransition)] == [2]
    # the only server gone: the default quorum of 1 is lost too
    assert fifo(actions) == [f"RS [192.168.1.10]:tcp:80 {VIP} DOWN", f"VS {VIP} DOWN"]
    assert weights(actions) == [{}]
    # a down checker is probed every delay_loop, not retried
    assert core.due_at(check) == 14.0
    assert step(core, check, 14.0, BAD) == []
    actions = step(core, check, 20.0, OK)
    assert fifo(actions) == [f"RS [192.168.1.10]:tcp:80 {VIP} UP", f"VS {VIP} UP"]
    assert weights(actions) == [{key("192.168.1.10"): 1}]
    assert core.due_at(check) == 26.0


def test_a_success_during_retries_resets_the_retry_count() -> None:
    check = tcp("192.168.1.10", retry=1, delay_before_retry=2.0)
    core = HealthCore([vs(rs("192.168.1.10", check))])
    core.start(0.0)
    step(core, check, 0.0, OK)
    assert step(core, check, 6.0, BAD) == []
    assert step(core, check, 8.0, OK) == []
    assert core.checks[check].retry_it == 0
    assert step(core, check, 14.0, BAD) == []  # retried again, not down
    assert core.due_at(check) == 16.0
    assert weights(step(core, check, 16.0, BAD)) == [{}]


def test_retry_zero_goes_down_on_first_failure() -> None:
    check = tcp("192.168.1.10", retry=0)
    core = HealthCore([vs(rs("192.168.1.10", check))])
    core.start(0.0)
    assert weights(step(core, check, 0.0, BAD)) == [{}]
    assert core.due_at(check) == 6.0


def test_alpha_starts_down_until_the_first_success() -> None:
    check = tcp("192.168.1.10", alpha=True)
    core = HealthCore([vs(rs("192.168.1.10", check))])
    assert weights(core.start(0.0)) == [{}]
    actions = step(core, check, 0.0, BAD)  # down already: no retries, no transition
    assert actions == []
    assert core.due_at(check) == 6.0
    actions = step(core, check, 6.0, OK)
    assert weights(actions) == [{key("192.168.1.10"): 1}]
    assert fifo(actions) == [f"RS [192.168.1.10]:tcp:80 {VIP} UP", f"VS {VIP} UP"]


def test_warmup_spreads_first_runs_over_the_interval() -> None:
    checks = [tcp(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", warmup=6.0) for i in range(10_000)]
    servers = [rs(str(c.connect_ip), c) for c in checks]
    core = HealthCore([vs(*servers)], rng=random.Random(7))
    core.start(100.0)
    firsts = sorted(core.due_at(c) or 0.0 for c in checks)
    assert firsts[0] >= 100.0 and firsts[-1] <= 106.0
    buckets = [0] * 6
    for t in firsts:
        buckets[min(5, int(t - 100.0))] += 1
    # uniform: ~1667 per second; a burst would put thousands in one bucket
    assert all(1450 < b < 1900 for b in buckets), buckets
    # what the driver would launch in the first 10 ms: ~17, not 10,000
    assert 0 < len(core.pop_due(100.01)) < 40


def test_warmup_default_is_delay_loop_and_zero_is_immediate() -> None:
    a = tcp("192.168.1.10", warmup=None, delay_loop=3.0)
    b = tcp("192.168.1.11", warmup=0.0)
    core = HealthCore([vs(rs("192.168.1.10", a), rs("192.168.1.11", b))], rng=random.Random(1))
    core.start(50.0)
    assert 50.0 <= (core.due_at(a) or 0) <= 53.0
    assert core.due_at(b) == 50.0


def test_inhibit_on_failure_keeps_the_server_with_weight_zero() -> None:
    check = tcp("192.168.1.10", retry=0)
    core = HealthCore([vs(rs("192.168.1.10", check, weight=3, inhibit_on_failure=True),
                          rs("192.168.1.11", weight=2))])
    assert weights(core.start(0.0)) == [{key("192.168.1.10"): 3, key("192.168.1.11"): 2}]
    assert weights(step(core, check, 0.0, BAD)) == [
        {key("192.168.1.10"): 0, key("192.168.1.11"): 2}]


def test_real_server_is_up_only_while_all_its_checkers_are_up() -> None:
    a = tcp("192.168.1.10", retry=0)
    b = tcp("192.168.1.10", retry=0, connect_port=8080)
    core = HealthCore([vs(rs("192.168.1.10", a, b))])
    core.start(0.0)
    assert weights(step(core, a, 0.0, BAD)) == [{}]
    assert step(core, b, 0.0, BAD) == [CheckTransition(b, False, "refused", 0)]
    assert weights(step(core, a, 6.0, OK)) == []  # b still down
    actions = step(core, b, 6.0, OK)
    assert weights(actions) == [{key("192.168.1.10"): 1}]


def _quorum_core(**kw: object) -> tuple[HealthCore, list[TcpCheckSpec]]:
    checks = [tcp(f"192.168.1.{10 + i}", retry=0) for i in range(4)]
    servers = [rs(str(c.connect_ip), c) for c in checks]
    core = HealthCore([vs(*servers, quorum_up=CommandSpec(("/bin/qup",)),
                          quorum_down=CommandSpec(("/bin/qdown", "x")),
                          **kw)])  # type: ignore[arg-type]
    return core, checks


def test_quorum_with_hysteresis_and_its_commands() -> None:
    core, checks = _quorum_core(quorum=3, hysteresis=1)
    core.start(0.0)
    # 4 alive: quorum up.  Lost only below quorum - hysteresis = 2.
    assert fifo(step(core, checks[0], 0.0, BAD)) == [f"RS [192.168.1.10]:tcp:80 {VIP} DOWN"]
    assert commands(step(core, checks[1], 0.0, BAD)) == []  # 2 alive: still up
    actions = step(core, checks[2], 0.0, BAD)  # 1 alive < 2: lost
    assert fifo(actions) == [f"RS [192.168.1.12]:tcp:80 {VIP} DOWN", f"VS {VIP} DOWN"]
    assert commands(actions) == [("quorum_down", ("/bin/qdown", "x"))]
    assert not core.snapshot().virtual_servers[0].quorum_up
    # gained only at quorum + hysteresis = 4
    assert commands(step(core, checks[0], 6.0, OK)) == []
    assert commands(step(core, checks[1], 6.0, OK)) == []  # 3 alive: not yet
    actions = step(core, checks[2], 6.0, OK)
    assert commands(actions) == [("quorum_up", ("/bin/qup",))]
    assert fifo(actions)[-1] == f"VS {VIP} UP"


def test_quorum_notifications_at_start() -> None:
    # quorum met at start (4 >= 3 + 1): quorum_up runs and "VS ... UP" is written
    core, _ = _quorum_core(quorum=3, hysteresis=1)
    actions = core.start(0.0)
    assert commands(actions) == [("quorum_up", ("/bin/qup",))]
    assert fifo(actions) == [f"VS {VIP} UP"]
    assert core.snapshot().virtual_servers[0].quorum_up
    # 4 < 4 + 1: starts with quorum down; without a sorry server nothing is notified
    core, _ = _quorum_core(quorum=4, hysteresis=1)
    actions = core.start(0.0)
    assert commands(actions) == [] and fifo(actions) == []
    assert not core.snapshot().virtual_servers[0].quorum_up
    # ... with one, quorum_down runs and the sorry server is brought in
    sorry = SorryServerSpec(address=ip_address("192.168.9.9"), port=8080)
    core, _ = _quorum_core(quorum=4, hysteresis=1, sorry_server=sorry)
    actions = core.start(0.0)
    assert commands(actions) == [("quorum_down", ("/bin/qdown", "x"))]
    assert fifo(actions) == [f"VS {VIP} DOWN"]
    assert weights(actions) == [{key("192.168.9.9", 8080): 1}]
    # no real server notifications at start
    assert not [a for a in actions if isinstance(a, RunCommand) and a.reason.startswith("notify")]


def test_sorry_server_replaces_the_pool_while_quorum_is_lost() -> None:
    sorry = SorryServerSpec(address=ip_address("192.168.9.9"), port=8080)
    core, checks = _quorum_core(quorum=3, sorry_server=sorry)
    assert len(weights(core.start(0.0))[0]) == 4
    step(core, checks[0], 0.0, BAD)
    actions = step(core, checks[1], 0.0, BAD)  # 2 < 3: sorry server only
    assert weights(actions) == [{key("192.168.9.9", 8080): 1}]
    assert core.snapshot().virtual_servers[0].sorry_active
    actions = step(core, checks[0], 6.0, OK)
    assert weights(actions) == [{key("192.168.1.10"): 1, key("192.168.1.12"): 1,
                                 key("192.168.1.13"): 1}]


def test_sorry_server_inhibit_and_inhibited_real_servers() -> None:
    sorry = SorryServerSpec(address=ip_address("192.168.9.9"), port=80, inhibit=True)
    a = tcp("192.168.1.10", retry=0)
    core = HealthCore([vs(rs("192.168.1.10", a, inhibit_on_failure=True, weight=2),
                          sorry_server=sorry, quorum=2)])
    assert weights(core.start(0.0)) == [{key("192.168.1.10"): 2, key("192.168.9.9"): 0}]
    assert weights(step(core, a, 0.0, BAD)) == [{key("192.168.1.10"): 0, key("192.168.9.9"): 1}]


def test_alpha_with_sorry_server_starts_on_the_sorry_server() -> None:
    sorry = SorryServerSpec(address=ip_address("192.168.9.9"), port=80)
    a = tcp("192.168.1.10", alpha=True)
    core = HealthCore([vs(rs("192.168.1.10", a), sorry_server=sorry)])
    assert weights(core.start(0.0)) == [{key("192.168.9.9"): 1}]
    assert weights(step(core, a, 0.0, OK)) == [{key("192.168.1.10"): 1}]


def test_misc_dynamic_sets_the_weight_from_the_exit_code() -> None:
    m = MiscCheckSpec(connect_ip=ip_address("192.168.1.10"), command=CommandSpec(("/c",)),
                      dynamic=True, retry=0, warmup=0.0, delay_loop=5.0)
    core = HealthCore([vs(rs("192.168.1.10", m, weight=5))])
    assert weights(core.start(0.0)) == [{key("192.168.1.10"): 5}]
    assert weights(step(core, m, 0.0, CheckResult(True, "exit 12", 10))) == [
        {key("192.168.1.10"): 10}]
    assert step(core, m, 5.0, CheckResult(True, "exit 0")) == []  # weight unchanged
    assert weights(step(core, m, 10.0, CheckResult(True, "exit 2", 0))) == [
        {key("192.168.1.10"): 0}]
    assert weights(step(core, m, 15.0, CheckResult(False, "exit 1"))) == [{}]
    assert weights(step(core, m, 20.0, CheckResult(True, "exit 255", 253))) == [
        {key("192.168.1.10"): 253}]


def test_two_misc_dynamic_and_a_file_check_add_their_deltas() -> None:
    m1 = MiscCheckSpec(connect_ip=ip_address("192.168.1.10"), command=CommandSpec(("/a",)),
                       dynamic=True, warmup=0.0)
    m2 = MiscCheckSpec(connect_ip=ip_address("192.168.1.10"), command=CommandSpec(("/b",)),
                       dynamic=True, warmup=0.0)
    f = FileCheckSpec(connect_ip=ip_address("192.168.1.10"), path="/x", dynamic=True,
                      warmup=0.0)
    core = HealthCore([vs(rs("192.168.1.10", m1, m2, f, weight=4))])
    core.start(0.0)
    core.pop_due(0.0)
    core.on_result(m1, CheckResult(True, "", 10), 0.0)  # +6
    core.on_result(m2, CheckResult(True, "", 3), 0.0)  # -1
    actions = core.on_result(f, CheckResult(True, "", 7), 0.0)  # +7
    assert weights(actions) == [{key("192.168.1.10"): 4 + 6 - 1 + 7}]


def test_identical_checks_are_one_probe_fanned_out_to_every_virtual_server() -> None:
    shared = tcp("192.168.1.10", retry=0)
    other = tcp("192.168.1.10", retry=0, connect_timeout=2.0)  # different parameters
    vs1 = vs(rs("192.168.1.10", shared), key="[10.0.0.1]:tcp:80")
    vs2 = vs(rs("192.168.1.10", tcp("192.168.1.10", retry=0)), key="[10.0.0.2]:tcp:80")
    vs3 = vs(rs("192.168.1.10", other), key="[10.0.0.3]:tcp:80")
    core = HealthCore([vs1, vs2, vs3])
    core.start(0.0)
    assert len(core.checks) == 2
    assert sorted(core.pop_due(0.0), key=lambda s: s.connect_timeout) == [other, shared]
    actions = core.on_result(shared, BAD, 0.0)
    assert fifo(actions) == ["RS [192.168.1.10]:tcp:80 [10.0.0.1]:tcp:80 DOWN",
                             "VS [10.0.0.1]:tcp:80 DOWN",
                             "RS [192.168.1.10]:tcp:80 [10.0.0.2]:tcp:80 DOWN",
                             "VS [10.0.0.2]:tcp:80 DOWN"]
    assert [a.vs_key for a in actions if isinstance(a, WeightsChanged)] == [
        "[10.0.0.1]:tcp:80", "[10.0.0.2]:tcp:80"]
    assert core.desired()["[10.0.0.3]:tcp:80"] == {key("192.168.1.10"): 1}


def test_notify_commands_run_on_transitions_not_at_start_and_omega_on_stop() -> None:
    up, down = CommandSpec(("/up",), user="nobody"), CommandSpec(("/down",))
    a = tcp("192.168.1.10", retry=0)
    b = tcp("192.168.1.11", retry=0)
    qd = CommandSpec(("/qd",))
    core = HealthCore([
        vs(rs("192.168.1.10", a, notify_up=up, notify_down=down),
           rs("192.168.1.11", b, notify_down=down), omega=True, quorum_down=qd),
        vs(rs("192.168.1.12", notify_down=down), key="[10.0.0.2]:tcp:80")])
    assert commands(core.start(0.0)) == []
    assert commands(step(core, a, 0.0, BAD)) == [("notify_down", ("/down",))]
    assert commands(step(core, a, 6.0, OK)) == [("notify_up", ("/up",))]
    assert [a.command.user for a in step(core, a, 12.0, BAD) if isinstance(a, RunCommand)] == [
        None]
    stop = core.stop()
    # omega: the still-alive .11 gets notify_down, quorum_down runs; VS 2 has no omega
    assert commands(stop) == [("notify_down", ("/down",)), ("quorum_down", ("/qd",))]
    assert fifo(stop) == [f"RS [192.168.1.11]:tcp:80 {VIP} DOWN", f"VS {VIP} DOWN"]
    assert core.next_deadline() is None


def test_fwmark_and_ipv6_keys_format_like_keepalived() -> None:
    c = tcp("2001:db8::10", retry=0, connect_port=443)
    server = RealServerSpec(address=ip_address("2001:db8::10"), port=443, checkers=(c,))
    core = HealthCore([VirtualServerSpec(key="FWM 7", protocol="udp", real_servers=(server,))])
    core.start(0.0)
    assert fifo(step(core, c, 0.0, BAD)) == ["RS [2001:db8::10]:udp:443 FWM 7 DOWN",
                                             "VS FWM 7 DOWN"]


def test_duplicate_virtual_server_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        HealthCore([vs(), vs()])


def test_reload_keeps_the_state_of_unchanged_checks_and_quorum() -> None:
    a = tcp("192.168.1.10", retry=0)
    b = tcp("192.168.1.11", retry=0)
    old = HealthCore([vs(rs("192.168.1.10", a), rs("192.168.1.11", b), quorum=2)])
    old.start(0.0)
    step(old, a, 0.0, BAD)  # a down, quorum (2) lost
    assert old.checks[b].running  # popped with a: b's probe is in flight during the reload
    c = tcp("192.168.1.12", retry=0, warmup=3.0)
    new = HealthCore([vs(rs("192.168.1.10", a), rs("192.168.1.11", b), rs("192.168.1.12", c),
                         quorum=2)], rng=random.Random(3))
    actions = new.start(1.0, previous=old)
    # c is new and up, b up: alive weight 2 >= quorum: quorum regained (and notified)
    assert fifo(actions) == [f"VS {VIP} UP"]
    assert weights(actions) == [{key("192.168.1.11"): 1, key("192.168.1.12"): 1}]
    assert not new.checks[a].up and new.due_at(a) == 6.0  # kept its schedule
    assert new.checks[b].running and new.due_at(b) is None
    assert 1.0 <= (new.due_at(c) or 0) <= 4.0  # warmup from the reload
    # b's result lands in the new core
    assert weights(new.on_result(b, BAD, 1.5)) == [{key("192.168.1.12"): 1}]
    assert new.due_at(b) == 7.5


def test_reload_of_a_new_virtual_server_uses_initial_rules() -> None:
    a = tcp("192.168.1.10", alpha=True)
    old = HealthCore([vs(rs("192.168.1.10", a))])
    old.start(0.0)
    new = HealthCore([vs(rs("192.168.1.10", a)), vs(rs("192.168.1.10", a), key="FWM 9")])
    actions = new.start(2.0, previous=old)
    assert [w.vs_key for w in actions if isinstance(w, WeightsChanged)] == [VIP, "FWM 9"]
    assert fifo(actions) == []
    assert not new.snapshot().virtual_servers[1].quorum_up


def test_file_check_is_read_at_once_every_second_and_never_retried() -> None:
    f = FileCheckSpec(connect_ip=ip_address("192.168.1.10"), path="/x", retry=3,
                      delay_loop=60.0, warmup=30.0)
    core = HealthCore([vs(rs("192.168.1.10", f))])
    core.start(0.0)
    assert core.due_at(f) == 0.0
    assert step(core, f, 0.0, OK) == []
    assert core.due_at(f) == 1.0
    assert weights(step(core, f, 1.0, BAD)) == [{}]  # down at the first bad value
    assert core.due_at(f) == 2.0


def test_a_running_probe_is_never_started_again_so_scripts_cannot_pile_up() -> None:
    m = MiscCheckSpec(connect_ip=ip_address("192.168.1.10"), command=CommandSpec(("/slow",)),
                      delay_loop=1.0, warmup=0.0)
    core = HealthCore([vs(rs("192.168.1.10", m))])
    core.start(0.0)
    assert core.pop_due(0.0) == [m]
    assert core.pop_due(100.0) == []  # still running 100 s later: not started twice
    assert core.next_deadline() is None
    core.on_result(m, OK, 100.0)
    assert core.due_at(m) == 101.0
