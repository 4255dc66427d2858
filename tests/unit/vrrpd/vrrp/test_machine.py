"""VRRP state machine: one test per keepalived rule, stepped with an injected clock."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vrrpd.vrrp.machine import (
    Action,
    AddVips,
    AdvertReceived,
    AdvertRejected,
    ClearFault,
    ForceBackup,
    ForceFault,
    GroupMaster,
    Machine,
    MachineConfig,
    MasterRxLowerPri,
    Notify,
    RemoveVips,
    SendAdvert,
    SendGarps,
    Start,
    State,
    Stop,
    Tick,
    TrackersChanged,
    Transition,
    WantMaster,
    effective_priority,
    master_down_interval,
    skew_time,
)
from vrrpd.vrrp.packet import Advert, Rejection, RejectReason

OURS = IPv4Address("10.0.0.2")
LOWER_IP = IPv4Address("10.0.0.1")
HIGHER_IP = IPv4Address("10.0.0.3")
MDI_100 = 3 + 156 / 256  # priority 100, advert_int 1: 3.609375 s


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def debug(self, event: str, **kw: Any) -> None:
        self.lines.append(("debug", event, kw))


def config(**kw: Any) -> MachineConfig:
    base: dict[str, Any] = dict(name="VI_1", vrid=51, priority=100, advert_int=1.0, own_ip=OURS)
    base.update(kw)
    return MachineConfig(**base)


def advert(priority: int, vrid: int = 51) -> Advert:
    return Advert(vrid=vrid, priority=priority, advert_int=1, auth_type=0, auth_data=bytes(8),
                  addresses=(IPv4Address("10.0.0.100"),))


def rx(priority: int, src: IPv4Address = HIGHER_IP) -> AdvertReceived:
    return AdvertReceived(src, advert(priority))


def started(now: float = 0.0, **kw: Any) -> Machine:
    m = Machine(config(**kw), log=RecordingLog())
    m.step(Start(), now)
    return m


def run_until(m: Machine, until: float) -> list[tuple[float, Action]]:
    """Step the machine at each of its deadlines up to ``until`` (the driver's job)."""
    out: list[tuple[float, Action]] = []
    while (d := m.next_deadline) is not None and d <= until:
        out.extend((d, a) for a in m.step(Tick(), d))
    return out


def master(now: float = 0.0, **kw: Any) -> Machine:
    m = started(now, **kw)
    run_until(m, now + m.master_down_interval)
    assert m.state is State.MASTER
    return m


def kinds(actions: list[Action]) -> list[type]:
    return [type(a) for a in actions]


# ---- timers -----------------------------------------------------------------------------

def test_master_down_interval_and_skew() -> None:
    assert master_down_interval(1.0, 100) == pytest.approx(3.609375)
    assert skew_time(100) == pytest.approx(0.609375)
    assert master_down_interval(2.0, 254) == pytest.approx(6 + 2 / 256)


def test_backup_takes_over_after_master_down_interval_in_order() -> None:
    m = started(10.0)
    assert m.state is State.BACKUP
    assert m.next_deadline == pytest.approx(10.0 + MDI_100)
    assert m.step(Tick(), 10.0 + MDI_100 - 0.001) == []  # early tick: nothing
    actions = m.step(Tick(), 10.0 + MDI_100)
    assert actions == [
        Transition(State.BACKUP, State.MASTER, "master down timer expired"),
        SendAdvert(100), AddVips(), SendGarps(5, 0.0, "takeover"), Notify(State.MASTER, 100),
    ]
    assert m.state is State.MASTER


def test_tick_a_hair_early_counts_as_on_time() -> None:
    # asyncio may run a call_at() callback up to its clock resolution early
    m = started(0.0)
    assert m.step(Tick(), MDI_100 - 5e-7)[0] == Transition(
        State.BACKUP, State.MASTER, "master down timer expired")


def test_start_notifies_backup() -> None:
    m = Machine(config(), log=RecordingLog())
    assert m.state is State.INIT and m.next_deadline is None
    assert m.step(Start(), 0.0) == [Transition(State.INIT, State.BACKUP, "start"),
                                    Notify(State.BACKUP, 100)]


def test_master_sends_advert_every_interval_keeping_cadence() -> None:
    m = master(0.0, advert_int=2.0, garp_master_delay=0)
    t0 = 3 * 2.0 + 156 / 256
    sent = [(t, a) for t, a in run_until(m, t0 + 10.01) if isinstance(a, SendAdvert)]
    assert [round(t - t0, 6) for t, _ in sent] == [2, 4, 6, 8, 10]
    assert all(a == SendAdvert(100) for _, a in sent)
    # A late tick (loaded machine) does not shift the cadence.
    due = m.next_deadline
    assert due is not None
    assert m.step(Tick(), due + 0.3) == [SendAdvert(100)]
    assert m.next_deadline == pytest.approx(due + 2.0)


def test_garp_schedule_after_takeover() -> None:
    m = master(0.0, garp_master_delay=5.0, garp_master_repeat=3, garp_interval=0.01,
               garp_master_refresh=60.0, garp_master_refresh_repeat=2)
    t0 = MDI_100
    garps = [(round(t - t0, 6), a) for t, a in run_until(m, t0 + 125) if isinstance(a, SendGarps)]
    assert garps == [(5.0, SendGarps(3, 0.01, "garp_master_delay")),
                     (60.0, SendGarps(2, 0.01, "garp_master_refresh")),
                     (120.0, SendGarps(2, 0.01, "garp_master_refresh"))]


def test_no_second_garp_burst_with_zero_delay() -> None:
    m = master(0.0, garp_master_delay=0)
    assert not [a for _, a in run_until(m, 30) if isinstance(a, SendGarps)]


# ---- backup receiving -------------------------------------------------------------------

def test_priority_zero_means_wait_skew_only() -> None:
    m = started(0.0)
    assert m.step(rx(0), 2.0) == []
    assert m.next_deadline == pytest.approx(2.0 + skew_time(100))
    actions = m.step(Tick(), 2.0 + skew_time(100))
    assert Transition(State.BACKUP, State.MASTER, "master down timer expired") in actions
    assert m.stats.priority_zero_received == 1


def test_higher_priority_advert_resets_backup_timer() -> None:
    m = started(0.0)
    m.step(rx(150), 3.0)
    assert m.next_deadline == pytest.approx(3.0 + MDI_100)
    assert m.step(Tick(), MDI_100) == []
    assert m.state is State.BACKUP
    assert m.master == (HIGHER_IP, 150)


def test_equal_priority_advert_resets_backup_timer_whatever_the_address() -> None:
    m = started(0.0)
    m.step(rx(100, LOWER_IP), 3.0)
    assert m.next_deadline == pytest.approx(3.0 + MDI_100)


def test_lower_priority_is_ignored_so_backup_preempts() -> None:
    m = started(0.0)
    for t in (1.0, 2.0, 3.0):
        assert m.step(rx(50, HIGHER_IP), t) == []
    assert m.next_deadline == pytest.approx(MDI_100)
    run_until(m, MDI_100)
    assert m.state is State.MASTER


def test_rejected_advert_interval_does_not_reset_timer() -> None:
    m = started(0.0)
    rejection = Rejection(RejectReason.ADVERT_INTERVAL, "advert interval 2 s, ours 1 s",
                          HIGHER_IP, 51)
    for t in (1.0, 2.0, 3.0):
        assert m.step(AdvertRejected(rejection), t) == []
    assert m.next_deadline == pytest.approx(MDI_100)
    run_until(m, MDI_100)
    assert m.state is State.MASTER  # two masters, as keepalived
    assert m.stats.rejected[RejectReason.ADVERT_INTERVAL] == 3


def test_own_advert_is_ignored() -> None:
    m = started(0.0)
    m.step(rx(200, OURS), 1.0)
    assert m.next_deadline == pytest.approx(MDI_100)


# ---- master receiving -------------------------------------------------------------------

def test_master_asserts_itself_against_lower_priority() -> None:
    m = master(0.0, garp_lower_prio_repeat=4, garp_lower_prio_delay=5.0, garp_master_delay=0)
    now = 10.0
    assert m.step(rx(50, HIGHER_IP), now) == [
        SendAdvert(100), SendGarps(4, 0.0, "lower priority advert"),
        MasterRxLowerPri(HIGHER_IP, 50)]
    assert m.state is State.MASTER
    later = [a for t, a in run_until(m, now + 5.0) if isinstance(a, SendGarps)]
    assert later == [SendGarps(4, 0.0, "garp_lower_prio_delay")]


def test_master_asserts_against_equal_priority_from_lower_address() -> None:
    m = master(0.0)
    actions = m.step(rx(100, LOWER_IP), 10.0)
    assert m.state is State.MASTER and actions[0] == SendAdvert(100)


@pytest.mark.parametrize(("prio", "src"), [(150, LOWER_IP), (100, HIGHER_IP)])
def test_master_yields_to_higher_priority_or_equal_from_higher_address(
        prio: int, src: IPv4Address) -> None:
    m = master(0.0)
    actions = m.step(rx(prio, src), 10.0)
    assert kinds(actions) == [Transition, RemoveVips, Notify]  # no priority 0 here
    assert actions[2] == Notify(State.BACKUP, 100)
    assert m.state is State.BACKUP
    assert m.next_deadline == pytest.approx(10.0 + MDI_100)
    assert m.master == (src, prio)


def test_two_address_owners_the_one_hearing_the_other_backs_down() -> None:
    m = Machine(config(priority=255), log=RecordingLog())
    m.step(Start(), 0.0)
    actions = m.step(rx(255, LOWER_IP), 1.0)
    assert m.priority == 254 and m.state is State.BACKUP
    assert actions[0] == Transition(
        State.MASTER, State.BACKUP,
        "advert with higher priority from 10.0.0.1 (255 vs our 254)")


def test_master_answers_priority_zero_at_once() -> None:
    m = master(0.0, garp_master_delay=0)
    assert m.step(rx(0), 10.0) == [SendAdvert(100)]
    assert m.next_deadline == pytest.approx(11.0)


# ---- preemption -------------------------------------------------------------------------

def test_nopreempt_keeps_lower_priority_master() -> None:
    m = started(0.0, nopreempt=True)
    for t in range(1, 30):
        m.step(rx(50), float(t))
        run_until(m, float(t))
    assert m.state is State.BACKUP
    # ... until that master goes silent
    run_until(m, 29 + MDI_100)
    assert m.state is State.MASTER


def test_nopreempt_is_ignored_with_state_master() -> None:
    m = started(0.0, nopreempt=True, start_as_master=True)
    assert not m.nopreempt
    for t in (1.0, 2.0, 3.0):
        m.step(rx(50), t)
    run_until(m, MDI_100)
    assert m.state is State.MASTER


def test_preempt_delay_counts_from_start_then_preempts() -> None:
    m = started(0.0, preempt_delay=10.0)
    t = 1.0
    while m.state is State.BACKUP and t < 30:
        run_until(m, t)
        if m.state is State.BACKUP:
            m.step(rx(50), t)
        t += 1.0
    # adverts up to t=9 reset the timer; from t=10 they are ignored: master at 9 + MDI
    assert m.state is State.MASTER
    assert m.stats.became_master == 1
    assert 9 + MDI_100 <= t - 1.0 < 9 + MDI_100 + 1.0


def test_preempt_delay_restarts_after_a_higher_master() -> None:
    m = started(0.0, preempt_delay=5.0)
    m.step(rx(150), 6.0)  # a higher master cancels the preempt timer
    m.step(rx(50), 7.0)  # a lower one starts it again: until 12
    for t in (8.0, 9.0, 10.0, 11.0):
        m.step(rx(50), t)
    assert m.next_deadline == pytest.approx(11.0 + MDI_100)
    m.step(rx(50), 12.0)  # delay over: ignored
    assert m.next_deadline == pytest.approx(11.0 + MDI_100)
    m.step(rx(100), 13.0)  # an equal-priority master stops the delay as well (keepalived: >=)
    m.step(rx(50), 14.0)  # so a lower one starts it again: until 19
    m.step(rx(50), 18.5)
    assert m.next_deadline == pytest.approx(18.5 + MDI_100)


# ---- start -------------------------------------------------------------------------------

def test_priority_255_owner_becomes_master_at_once() -> None:
    m = Machine(config(priority=255, start_as_master=True), log=RecordingLog())
    actions = m.step(Start(), 5.0)
    assert kinds(actions) == [Transition, SendAdvert, AddVips, SendGarps, Notify]
    assert actions[1] == SendAdvert(255) and m.state is State.MASTER


def test_state_master_below_255_waits_the_full_interval() -> None:
    m = started(0.0, start_as_master=True, priority=200)
    assert m.state is State.BACKUP
    mdi = 3 + 56 / 256
    assert not [a for _, a in run_until(m, mdi - 0.01) if isinstance(a, SendAdvert)]
    assert m.state is State.BACKUP
    run_until(m, mdi)
    assert m.state is State.MASTER


# ---- trackers ---------------------------------------------------------------------------

def test_effective_priority_clamps() -> None:
    assert effective_priority(100, 200) == 254
    assert effective_priority(100, -150) == 1
    assert effective_priority(100, -20) == 80
    assert effective_priority(255, 0) == 255
    assert effective_priority(255, -10) == 255  # the owner ignores tracker weights
    assert effective_priority(255, 10) == 255


def test_priority_change_in_backup_moves_the_running_timer_by_the_skew() -> None:
    m = started(0.0)
    m.step(rx(200), 1.0)
    assert m.next_deadline == pytest.approx(1.0 + MDI_100)
    m.step(TrackersChanged(priority_delta=50), 2.0)
    assert m.priority == 150
    assert m.next_deadline == pytest.approx(1.0 + 3 + 106 / 256)


def test_tracker_weight_changes_advertised_priority() -> None:
    m = master(0.0, garp_master_delay=0)
    assert m.step(TrackersChanged(priority_delta=-60, reason="chk_nginx down"), 4.0) == []
    assert m.priority == 40
    assert run_until(m, MDI_100 + 1.0)[-1][1] == SendAdvert(40)
    # A backup with 60 + 50 now sees this master as lower and takes over (simulated below).


def test_weight_zero_fault_from_master_and_recovery() -> None:
    m = master(0.0)
    actions = m.step(TrackersChanged(fault=True, reason="eth1 down"), 5.0)
    assert actions == [Transition(State.MASTER, State.FAULT, "eth1 down"), SendAdvert(0),
                       RemoveVips(), Notify(State.FAULT, 100)]
    assert m.next_deadline is None
    assert m.step(rx(50), 6.0) == [] and m.state is State.FAULT
    actions = m.step(TrackersChanged(fault=False, reason="eth1 up"), 7.0)
    assert actions == [Transition(State.FAULT, State.BACKUP, "eth1 up: fault cleared"),
                       Notify(State.BACKUP, 100)]
    assert m.next_deadline == pytest.approx(7.0 + MDI_100)
    assert m.stats.priority_zero_sent == 1


def test_fault_before_start_starts_in_fault() -> None:
    m = Machine(config(), log=RecordingLog())
    assert m.step(TrackersChanged(fault=True), 0.0) == []
    assert m.step(Start(), 0.0)[-1] == Notify(State.FAULT, 100)
    assert m.state is State.FAULT


# ---- stop ---------------------------------------------------------------------------------

def test_stop_from_master_sends_priority_zero() -> None:
    m = master(0.0)
    assert m.step(Stop(), 9.0) == [Transition(State.MASTER, State.STOPPED, "shutdown"),
                                   SendAdvert(0), RemoveVips(), Notify(State.STOPPED, 100)]
    assert m.next_deadline is None and m.step(Stop(), 9.5) == []
    assert Notify(State.STOPPED, 100).state.value == "STOP"


def test_stop_from_backup_only_notifies() -> None:
    m = started(0.0)
    assert kinds(m.step(Stop(), 1.0)) == [Transition, Notify]


# ---- the one place that changes state ----------------------------------------------------

def test_transitions_are_logged_and_counted() -> None:
    log = RecordingLog()
    m = Machine(config(), log=log)
    m.step(Start(), 0.0)
    run_until(m, MDI_100)
    m.step(rx(200), 5.0)
    changes = [(event, kw["reason"]) for level, event, kw in log.lines
               if level == "info" and "->" in event]
    assert changes == [("INIT -> BACKUP", "start"),
                       ("BACKUP -> MASTER", "master down timer expired"),
                       ("MASTER -> BACKUP",
                        "advert with higher priority from 10.0.0.3 (200 vs our 100)")]
    assert m.stats.transitions == 3 and m.stats.became_master == 1
    assert m.stats.released_master == 1


# ---- sync-group hooks -----------------------------------------------------------------------

def test_coordinated_machine_asks_before_becoming_master() -> None:
    m = started(0.0, coordinated=True)
    actions = m.step(Tick(), MDI_100)
    assert actions == [WantMaster("master down timer expired")]
    assert m.state is State.BACKUP and m.wants_master and m.next_deadline is None
    actions = m.step(GroupMaster("group VG_1"), MDI_100 + 0.5)
    assert kinds(actions) == [Transition, SendAdvert, AddVips, SendGarps, Notify]
    assert m.state is State.MASTER and not m.wants_master


def test_coordinated_wish_withdrawn_by_a_valid_advert() -> None:
    m = started(0.0, coordinated=True)
    m.step(Tick(), MDI_100)
    m.step(rx(150), 4.0)
    assert not m.wants_master and m.next_deadline == pytest.approx(4.0 + MDI_100)


def test_force_backup_and_fault() -> None:
    m = master(0.0)
    actions = m.step(ForceBackup("VI_2 saw a higher master"), 5.0)
    assert kinds(actions) == [Transition, RemoveVips, Notify]  # no priority 0, as keepalived
    assert m.state is State.BACKUP and m.next_deadline == pytest.approx(5.0 + MDI_100)
    m.step(ForceFault("VI_2 fault"), 6.0)
    assert m.state is State.FAULT
    m.step(TrackersChanged(fault=False), 7.0)  # own trackers fine, group still faulted
    assert m.state is State.FAULT
    m.step(ClearFault("VI_2 recovered"), 8.0)
    assert m.state is State.BACKUP
    assert m.step(GroupMaster(), 9.0)[0] == Transition(State.BACKUP, State.MASTER, "sync group")


def test_group_master_ignored_outside_backup() -> None:
    m = Machine(config(), log=RecordingLog())
    m.step(TrackersChanged(fault=True), 0.0)
    m.step(Start(), 0.0)
    assert m.step(GroupMaster(), 1.0) == [] and m.state is State.FAULT


# ---- two machines on a simulated wire ---------------------------------------------------------

class Wire:
    """Delivers every SendAdvert to the other machines instantly; steps at deadlines."""

    def __init__(self, *machines: Machine) -> None:
        self.machines = list(machines)
        self.log: list[tuple[float, str, Action]] = []
        self.down: set[str] = set()
        self.partitioned = False

    def _deliver(self, sender: Machine, actions: list[Action], now: float) -> None:
        for a in actions:
            self.log.append((now, sender.config.name, a))
            if isinstance(a, SendAdvert) and not self.partitioned:
                for other in self.machines:
                    if other is not sender and other.config.name not in self.down:
                        self._deliver(other, other.step(
                            AdvertReceived(sender.config.own_ip, advert(a.priority)), now), now)

    def event(self, m: Machine, event: Any, now: float) -> None:
        self._deliver(m, m.step(event, now), now)

    def run(self, until: float) -> None:
        while True:
            live = [m for m in self.machines if m.config.name not in self.down]
            due = [(m.next_deadline, i) for i, m in enumerate(live) if m.next_deadline is not None]
            if not due or min(due)[0] > until:  # type: ignore[operator]
                return
            t, i = min(due)  # type: ignore[type-var]
            assert t is not None
            self._deliver(live[i], live[i].step(Tick(), t), t)

    def masters(self) -> list[str]:
        return [m.config.name for m in self.machines if m.state is State.MASTER]


def pair(a_kw: dict[str, Any], b_kw: dict[str, Any]) -> tuple[Wire, Machine, Machine]:
    a = Machine(config(name="A", own_ip=LOWER_IP, **a_kw), log=RecordingLog())
    b = Machine(config(name="B", own_ip=HIGHER_IP, **b_kw), log=RecordingLog())
    return Wire(a, b), a, b


def test_wire_election_by_priority_and_priority_zero_handover() -> None:
    w, a, b = pair({"priority": 150}, {"priority": 100})
    w.event(a, Start(), 0.0)
    w.event(b, Start(), 0.0)
    w.run(20.0)
    assert w.masters() == ["A"]
    w.event(a, Stop(), 20.25)
    w.run(20.25 + skew_time(100) - 0.001)
    assert b.state is State.BACKUP
    w.run(20.25 + skew_time(100))
    assert w.masters() == ["B"]


def test_wire_equal_priority_tie_break_by_address() -> None:
    w, a, b = pair({}, {})
    w.partitioned = True  # split brain: both become MASTER
    w.event(a, Start(), 0.0)
    w.event(b, Start(), 0.0)
    w.run(10.0)
    assert w.masters() == ["A", "B"]
    w.partitioned = False
    w.run(30.0)
    assert w.masters() == ["B"]  # equal priority: the higher address wins
    assert a.master == (HIGHER_IP, 100)


def test_wire_tracker_weight_flips_mastership_and_back() -> None:
    w, a, b = pair({"priority": 150}, {"priority": 100})
    w.event(a, Start(), 0.0)
    w.event(b, Start(), 0.0)
    w.run(10.0)
    w.event(a, TrackersChanged(priority_delta=-60), 10.0)
    w.run(20.0)
    assert w.masters() == ["B"]
    w.event(a, TrackersChanged(priority_delta=0), 20.0)
    w.run(30.0)
    assert w.masters() == ["A"]


def test_wire_silent_master_taken_over_within_master_down_interval() -> None:
    w, a, b = pair({"priority": 150}, {"priority": 100})
    w.event(a, Start(), 0.0)
    w.event(b, Start(), 0.0)
    w.run(10.0)
    last = max(t for t, name, act in w.log if name == "A" and isinstance(act, SendAdvert))
    w.down.add("A")  # SIGKILL: no priority 0
    w.run(last + MDI_100 - 0.001)
    assert b.state is State.BACKUP
    w.run(last + MDI_100)
    assert b.state is State.MASTER


def test_config_is_a_value() -> None:
    c = config()
    assert replace(c, priority=5).priority == 5 and c.priority == 100


# ---- invariants under arbitrary event sequences -------------------------------------------

EVENTS = st.one_of(
    st.just(Start()), st.just(Stop()), st.just(Tick()), st.just(Tick()), st.just(Tick()),
    st.builds(lambda p, s: AdvertReceived(s, advert(p)), st.integers(0, 255),
              st.sampled_from([LOWER_IP, OURS, HIGHER_IP])),
    st.just(AdvertRejected(Rejection(RejectReason.ADVERT_INTERVAL, "x", HIGHER_IP, 51))),
    st.builds(TrackersChanged, st.integers(-300, 300), st.booleans()),
    st.just(GroupMaster()), st.just(ForceBackup()), st.just(ForceFault()), st.just(ClearFault()),
)


@settings(max_examples=300, deadline=None)
@given(priority=st.integers(1, 255), start_as_master=st.booleans(), nopreempt=st.booleans(),
       preempt_delay=st.sampled_from([0.0, 5.0]), coordinated=st.booleans(),
       steps=st.lists(st.tuples(EVENTS, st.floats(0.0, 5.0)), max_size=40))
def test_invariants_hold_for_any_event_sequence(
        priority: int, start_as_master: bool, nopreempt: bool, preempt_delay: float,
        coordinated: bool, steps: list[tuple[Any, float]]) -> None:
    m = Machine(config(priority=priority, start_as_master=start_as_master, nopreempt=nopreempt,
                       preempt_delay=preempt_delay, coordinated=coordinated), log=RecordingLog())
    now, vips_held = 0.0, False
    for event, gap in steps:
        deadline = m.next_deadline
        now = deadline if isinstance(event, Tick) and deadline is not None else now + gap
        before = m.state
        actions = m.step(event, now)
        transitions = [a for a in actions if isinstance(a, Transition)]
        for a in actions:
            if isinstance(a, AddVips):
                assert not vips_held
                vips_held = True
            elif isinstance(a, RemoveVips):
                assert vips_held
                vips_held = False
            elif isinstance(a, SendAdvert) and a.priority == 0:
                assert transitions and transitions[0].old is State.MASTER
            elif isinstance(a, SendAdvert):
                assert m.state is State.MASTER and a.priority == m.priority
        if transitions:
            assert transitions[0].old is before
            assert [a.new for a in transitions] == [
                a.state for a in actions if isinstance(a, Notify)]
        assert vips_held == (m.state is State.MASTER)
        assert 1 <= m.priority <= 255
        if m.state is State.MASTER:
            assert m.next_deadline is not None
        elif m.state is State.BACKUP:
            assert (m.next_deadline is not None) != m.wants_master
        else:
            assert m.next_deadline is None and not m.wants_master
        if m.wants_master:
            assert coordinated
