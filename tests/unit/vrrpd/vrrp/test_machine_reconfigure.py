"""Machine ``Reconfigure`` (reload): new settings without a transition; the normal rules decide
what a new priority does."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from vrrpd.vrrp.machine import (
    AdvertReceived,
    Machine,
    MachineConfig,
    Reconfigure,
    SendAdvert,
    Start,
    State,
    Tick,
    Transition,
    WantMaster,
    master_down_interval,
)
from vrrpd.vrrp.packet import Advert

OURS = IPv4Address("10.0.0.2")
PEER = IPv4Address("10.0.0.3")


def cfg(**kw: object) -> MachineConfig:
    base: dict[str, object] = dict(name="VI_1", vrid=51, priority=100, own_ip=OURS,
                                   garp_master_delay=0.0)
    base.update(kw)
    return MachineConfig(**base)  # type: ignore[arg-type]


def advert(prio: int) -> AdvertReceived:
    return AdvertReceived(PEER, Advert(51, prio, 1, 0, b"\0" * 8, ()))


def master(config: MachineConfig) -> Machine:
    mc = Machine(config)
    mc.step(Start(), 0.0)
    mc.step(Tick(), mc.next_deadline or 0.0)
    assert mc.state is State.MASTER
    return mc


def test_same_config_is_a_no_op() -> None:
    mc = master(cfg())
    deadline = mc.next_deadline
    assert mc.step(Reconfigure(cfg()), 5.0) == []
    assert mc.next_deadline == deadline and mc.stats.transitions == 2


def test_master_priority_change_goes_into_the_next_advert_without_transition() -> None:
    mc = master(cfg())
    t = mc.next_deadline or 0.0
    assert mc.step(Reconfigure(cfg(priority=180)), t - 0.5) == []
    assert mc.state is State.MASTER and mc.priority == 180 and mc.stats.transitions == 2
    assert mc.step(Tick(), t) == [SendAdvert(180)]


def test_lowered_master_yields_to_a_higher_advert_by_the_normal_rules() -> None:
    mc = master(cfg(priority=150))
    mc.step(Reconfigure(cfg(priority=90)), 4.0)
    actions = mc.step(advert(100), 4.1)
    assert isinstance(actions[0], Transition) and mc.state is State.BACKUP
    assert SendAdvert(0) not in actions  # leaving on a higher advert: no priority 0


def test_backup_timer_moves_by_the_change_of_the_skew() -> None:
    mc = Machine(cfg())
    mc.step(Start(), 0.0)
    mc.step(advert(150), 1.0)
    before = mc.next_deadline
    assert before == pytest.approx(1.0 + master_down_interval(1.0, 100))
    mc.step(Reconfigure(cfg(priority=200)), 2.0)
    assert mc.next_deadline == pytest.approx(1.0 + master_down_interval(1.0, 200))
    # now higher than the master: its adverts are ignored, the timer runs out (preemption)
    mc.step(advert(150), 3.0)
    assert mc.next_deadline == pytest.approx(1.0 + master_down_interval(1.0, 200))
    mc.step(Tick(), mc.next_deadline or 0.0)
    assert mc.state is State.MASTER


def test_advert_interval_change_rearms_the_master_advert() -> None:
    mc = master(cfg(advert_int=3.0))
    mc.step(Reconfigure(cfg(advert_int=1.0)), 4.0)
    assert (mc.next_deadline or 0) <= 5.0


def test_leaving_a_sync_group_while_waiting_becomes_master() -> None:
    mc = Machine(cfg(coordinated=True))
    mc.step(Start(), 0.0)
    actions = mc.step(Tick(), mc.next_deadline or 0.0)
    assert any(isinstance(a, WantMaster) for a in actions) and mc.wants_master
    actions = mc.step(Reconfigure(cfg(coordinated=False)), 10.0)
    assert mc.state is State.MASTER and not mc.wants_master
    assert SendAdvert(100) in actions


def test_vrid_cannot_change() -> None:
    mc = Machine(cfg())
    with pytest.raises(ValueError):
        mc.step(Reconfigure(replace(cfg(), vrid=52)), 0.0)
