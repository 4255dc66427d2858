"""VrrpRunner.apply_config on the recording fakes: a reload changes what it must and nothing else
(no transition, no priority 0, no VIP removed and re-added) for kept and changed instances."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from tests.unit.vrrpd.vrrp.test_runner import PEER, Rig, conf
from vrrpd.config.loader import load_text
from vrrpd.config.model import Config
from vrrpd.vrrp.fakes import ok_result
from vrrpd.vrrp.machine import State


def inst(name: str, vrid: int, prio: int, vips: tuple[str, ...], extra: str = "") -> str:
    lines = "".join(f"  {v}/24\n" for v in vips)
    return (f"vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n"
            f" priority {prio}\n advert_int 1\n authentication {{\n auth_type PASS\n"
            f" auth_pass pw\n }}\n virtual_ipaddress {{\n{lines} }}\n{extra}}}\n")


def cfg(text: str) -> Config:
    config, diags = load_text(text)
    assert not [d for d in diags if d.severity.name != "WARNING"], diags
    return config


class ReloadRig(Rig):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.states: list[tuple[str, str]] = []
        self.runner._on_state = lambda name, state: self.states.append((name, state))

    def removals(self) -> list[str]:
        return [v.address for op, v in self.addresses.calls if op == "remove"]

    def additions(self) -> list[str]:
        return [v.address for op, v in self.addresses.calls if op == "add"]

    def garps(self) -> list[str]:
        return [t.vip for _, t in self.garp.sent]

    def transitions(self) -> int:
        return sum(rt.machine.stats.transitions for rt in self.runner.instances.values())


@pytest.fixture
def make() -> Iterator:  # type: ignore[type-arg]
    rigs: list[ReloadRig] = []

    def factory(text: str) -> ReloadRig:
        rigs.append(ReloadRig(text))
        return rigs[-1]

    yield factory


async def settle() -> None:
    await asyncio.sleep(0.05)


async def master_rig(make, text: str) -> ReloadRig:  # type: ignore[no-untyped-def]
    rig = make(text)
    await rig.runner.start()
    await settle()
    assert all(rt.machine.state is State.MASTER for rt in rig.runner.instances.values())
    rig.addresses.calls.clear()
    rig.garp.sent.clear()
    rig.states.clear()
    return rig


async def test_vip_added_and_removed_while_master_without_flap(make) -> None:  # type: ignore[no-untyped-def]
    rig = await master_rig(make, conf(inst("VI_1", 51, 255, ("10.0.0.100", "10.0.0.101"))))
    n_sent = len(rig.sent(51))
    plan = await rig.runner.apply_config(
        cfg(conf(inst("VI_1", 51, 255, ("10.0.0.100", "10.0.0.102")))))
    await settle()
    assert [c.name for c in plan.changed] == ["VI_1"]
    rt = rig.runner.instances["VI_1"]
    assert rt.machine.state is State.MASTER and rig.states == [] and rig.transitions() == 1
    assert rig.additions() == ["10.0.0.102"] and rig.removals() == ["10.0.0.101"]
    assert rig.addresses.has("10.0.0.100") and rig.addresses.has("10.0.0.102")
    assert not rig.addresses.has("10.0.0.101")
    assert rig.garps() == ["10.0.0.102"] * 5  # only the added VIP is announced
    ads = rig.sent(51)[n_sent:]
    assert 0 not in [a.priority for a in ads]
    await asyncio.sleep(1.0)  # the next advert carries the new list
    assert rig.sent(51)[-1].addresses == (IPv4Address("10.0.0.100"), IPv4Address("10.0.0.102"))
    await rig.runner.stop()


async def test_identical_config_changes_nothing(make) -> None:  # type: ignore[no-untyped-def]
    text = conf(inst("VI_1", 51, 255, ("10.0.0.100",)))
    rig = await master_rig(make, text)
    timer = rig.runner.instances["VI_1"].timer.when()
    plan = await rig.runner.apply_config(cfg(text))
    await settle()
    assert plan.kept == ("VI_1",) and plan.empty
    assert rig.addresses.calls == [] and rig.garp.sent == [] and rig.states == []
    assert rig.runner.instances["VI_1"].timer.when() == timer  # advert schedule untouched


async def test_priority_change_keeps_master_and_goes_into_adverts(make) -> None:  # type: ignore[no-untyped-def]
    rig = make(conf(inst("VI_1", 51, 100, ("10.0.0.100",))))
    await rig.runner.start()
    rig.inject(51, 0, "10.0.0.100")  # the other master leaves: MASTER after the skew
    await asyncio.sleep(0.8)
    rt = rig.runner.instances["VI_1"]
    assert rt.machine.state is State.MASTER
    rig.addresses.calls.clear()
    rig.states.clear()
    await rig.runner.apply_config(cfg(conf(inst("VI_1", 51, 180, ("10.0.0.100",)))))
    await asyncio.sleep(1.1)
    assert rt.machine.state is State.MASTER and rig.states == []
    assert rig.addresses.calls == []
    assert rig.sent(51)[-1].priority == 180
    assert 0 not in [a.priority for a in rig.sent(51)]
    await rig.runner.stop()


async def test_backup_priority_raised_preempts_by_the_normal_rules(make) -> None:  # type: ignore[no-untyped-def]
    rig = make(conf(inst("VI_1", 51, 100, ("10.0.0.100",))))
    await rig.runner.start()
    rt = rig.runner.instances["VI_1"]
    rig.inject(51, 150, "10.0.0.100", ident=1)
    assert rt.machine.state is State.BACKUP and rt.machine.master == (PEER, 150)
    await rig.runner.apply_config(cfg(conf(inst("VI_1", 51, 200, ("10.0.0.100",)))))
    assert rt.machine.state is State.BACKUP and rt.machine.priority == 200
    # the master-down timer moved by the change of the skew, not restarted
    rig.inject(51, 150, "10.0.0.100", ident=2)  # now lower than ours: ignored
    assert rt.machine.state is State.BACKUP
    await rig.runner.stop()


async def test_removed_instance_sends_priority_zero_and_others_are_untouched(make) -> None:  # type: ignore[no-untyped-def]
    text = conf(inst("VI_1", 51, 255, ("10.0.0.100",), ' notify_stop "/bin/echo stop1"\n')
                + inst("VI_2", 52, 255, ("10.0.0.200",)))
    rig = await master_rig(make, text)
    plan = await rig.runner.apply_config(cfg(conf(inst("VI_2", 52, 255, ("10.0.0.200",)))))
    await settle()
    assert [i.name for i in plan.removed] == ["VI_1"] and plan.kept == ("VI_2",)
    assert list(rig.runner.instances) == ["VI_2"]
    assert rig.sent(51)[-1].priority == 0
    assert 0 not in [a.priority for a in rig.sent(52)]
    assert rig.removals() == ["10.0.0.100"] and rig.addresses.has("10.0.0.200")
    assert rig.states == [("VI_1", "STOP")]
    assert ("/bin/echo", "stop1") in [c[0] for c in rig.procs.calls]
    # its VRID is no longer claimed
    rig.inject(51, 100, "10.0.0.100")
    assert rig.runner.unknown_vrid[(2, 51)] == 1
    await rig.runner.stop()


async def test_added_instance_starts_fresh(make) -> None:  # type: ignore[no-untyped-def]
    rig = await master_rig(make, conf(inst("VI_1", 51, 255, ("10.0.0.100",))))
    plan = await rig.runner.apply_config(cfg(conf(inst("VI_1", 51, 255, ("10.0.0.100",))
                                                  + inst("VI_2", 52, 255, ("10.0.0.200",)))))
    await settle()
    assert [i.name for i in plan.added] == ["VI_2"]
    assert rig.runner.instances["VI_2"].machine.state is State.MASTER  # owner: at once
    assert rig.states == [("VI_2", "MASTER")]
    assert rig.addresses.has("10.0.0.200") and rig.garps() == ["10.0.0.200"] * 5
    assert "10.0.0.100" not in rig.removals()
    await rig.runner.stop()
    assert not rig.addresses.has("10.0.0.200")


async def test_rename_keeps_state_and_vips(make) -> None:  # type: ignore[no-untyped-def]
    rig = await master_rig(make, conf(inst("VI_1", 51, 255, ("10.0.0.100",))))
    rt = rig.runner.instances["VI_1"]
    await rig.runner.apply_config(cfg(conf(inst("VI_RENAMED", 51, 255, ("10.0.0.100",)))))
    await settle()
    assert list(rig.runner.instances) == ["VI_RENAMED"]
    assert rig.runner.instances["VI_RENAMED"] is rt and rt.machine.state is State.MASTER
    assert rig.addresses.calls == [] and rig.states == []
    await rig.runner.stop()
    assert rig.states == [("VI_RENAMED", "STOP")]


async def test_vrid_change_is_a_new_instance(make) -> None:  # type: ignore[no-untyped-def]
    rig = await master_rig(make, conf(inst("VI_1", 51, 255, ("10.0.0.100",))))
    await rig.runner.apply_config(cfg(conf(inst("VI_1", 61, 255, ("10.0.0.100",)))))
    await settle()
    assert rig.sent(51)[-1].priority == 0  # the old router left
    assert rig.runner.instances["VI_1"].inst.virtual_router_id == 61
    assert rig.states == [("VI_1", "STOP"), ("VI_1", "MASTER")]
    assert rig.addresses.has("10.0.0.100")
    await rig.runner.stop()


async def test_sync_group_gains_a_member(make) -> None:  # type: ignore[no-untyped-def]
    group = "vrrp_sync_group G {\n group {\n %s\n }\n}\n"
    two = inst("VI_1", 51, 255, ("10.0.0.100",)) + inst("VI_2", 52, 255, ("10.0.0.200",))
    rig = await master_rig(make, conf(group % "VI_1\n VI_2" + two))
    old = rig.runner.groups["G"]
    plan = await rig.runner.apply_config(cfg(conf(
        group % "VI_1\n VI_2\n VI_3" + two + inst("VI_3", 53, 100, ("10.0.0.30",)))))
    await settle()
    assert plan.groups_rebuilt == ("G",)
    new = rig.runner.groups["G"]
    assert new is not old and new.members == ("VI_1", "VI_2", "VI_3")
    assert all(rt.group is new and rt.machine.config.coordinated
               for rt in rig.runner.instances.values())
    assert rig.runner.instances["VI_3"].machine.state is State.BACKUP
    assert rig.states == [("VI_3", "BACKUP")]  # the members already MASTER did not move
    # a better peer for VI_1: the rebuilt coordinator takes the whole group to BACKUP
    rig.inject(51, 255, "10.0.0.100")
    await settle()
    assert {n: rt.machine.state for n, rt in rig.runner.instances.items()} == {
        "VI_1": State.BACKUP, "VI_2": State.BACKUP, "VI_3": State.BACKUP}
    await rig.runner.stop()


async def test_group_member_leaves_the_group_while_waiting(make) -> None:  # type: ignore[no-untyped-def]
    group = "vrrp_sync_group G {\n group {\n VI_1\n VI_2\n }\n}\n"
    track = ' track_script {\n  chk\n }\n'
    script = 'vrrp_script chk {\n script "/bin/false"\n interval 1\n weight 0\n}\n'
    text = conf(script + group + inst("VI_1", 51, 255, ("10.0.0.100",), track)
                + inst("VI_2", 52, 255, ("10.0.0.200",)))
    rig = make(text)
    rig.procs.default = ok_result(1)  # the script fails
    await rig.runner.start()
    await asyncio.sleep(1.2)
    vi1, vi2 = rig.runner.instances["VI_1"], rig.runner.instances["VI_2"]
    assert vi1.machine.state is State.FAULT and vi2.machine.state is State.FAULT  # held
    await rig.runner.apply_config(cfg(conf(script + inst("VI_1", 51, 255, ("10.0.0.100",), track)
                                           + inst("VI_2", 52, 255, ("10.0.0.200",)))))
    await settle()
    assert rig.runner.groups == {}
    assert vi1.machine.state is State.FAULT  # its own tracker
    assert vi2.machine.state is State.MASTER  # released from the group fault
    await rig.runner.stop()


async def test_changed_script_restarts_with_status_carried(make) -> None:  # type: ignore[no-untyped-def]
    script = 'vrrp_script chk {\n script "%s"\n interval 1\n weight -50\n}\n'
    track = ' track_script {\n  chk\n }\n'
    rig = await master_rig(make, conf(script % "/bin/true"
                                      + inst("VI_1", 51, 255, ("10.0.0.100",), track)))
    old_tracker = rig.runner._scripts["chk"]
    await rig.runner.apply_config(cfg(conf(script % "/usr/bin/true"
                                           + inst("VI_1", 51, 255, ("10.0.0.100",), track))))
    await settle()
    new_tracker = rig.runner._scripts["chk"]
    assert new_tracker is not old_tracker and new_tracker.spec.argv == ("/usr/bin/true",)
    assert new_tracker.ok and rig.states == []
    await rig.runner.stop()
