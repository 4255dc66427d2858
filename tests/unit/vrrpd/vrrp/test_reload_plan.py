"""reload_plan: keepalived's matching (interface + VRID + family + unicast, not the name) and the
kept / changed / removed / added split."""

from __future__ import annotations

from vrrpd.config.loader import load_text
from vrrpd.config.model import Config
from vrrpd.vrrp.reload_plan import instance_key, plan_reload


def cfg(body: str) -> Config:
    config, diags = load_text("global_defs {\n script_user root\n enable_script_security\n}\n"
                              + body)
    assert not [d for d in diags if d.severity.name not in ("WARNING",)], diags
    return config


def inst(name: str, vrid: int = 51, prio: int = 100, vips: tuple[str, ...] = ("10.0.0.100/24",),
         iface: str = "eth0", extra: str = "") -> str:
    lines = "".join(f"  {v}\n" for v in vips)
    return (f"vrrp_instance {name} {{\n interface {iface}\n virtual_router_id {vrid}\n"
            f" priority {prio}\n advert_int 1\n virtual_ipaddress {{\n{lines} }}\n{extra}}}\n")


def test_identical_configs_keep_everything() -> None:
    text = inst("VI_1") + inst("VI_2", 52, vips=("10.0.0.200/24",))
    plan = plan_reload(cfg(text), cfg("# a comment moves every position\n" + text))
    assert plan.kept == ("VI_1", "VI_2") and plan.empty
    assert not plan.changed and not plan.removed and not plan.added


def test_vip_added_and_removed_are_listed_per_address() -> None:
    old = cfg(inst("VI_1", vips=("10.0.0.100/24", "10.0.0.101/24")))
    new = cfg(inst("VI_1", vips=("10.0.0.100/24", "10.0.0.102/24")))
    plan = plan_reload(old, new)
    (c,) = plan.changed
    assert c.fields == ("virtual_ipaddresses",)
    assert [v.address for v in c.vips_added] == ["10.0.0.102"]
    assert [v.address for v in c.vips_removed] == ["10.0.0.101"]
    assert not c.machine_changed and not c.trackers_changed and not c.renamed


def test_prefix_change_is_add_then_remove_of_the_same_address() -> None:
    plan = plan_reload(cfg(inst("VI_1", vips=("10.0.0.100/24",))),
                       cfg(inst("VI_1", vips=("10.0.0.100/32",))))
    (c,) = plan.changed
    assert [(v.address, v.prefixlen) for v in c.vips_added] == [("10.0.0.100", 32)]
    assert [(v.address, v.prefixlen) for v in c.vips_removed] == [("10.0.0.100", 24)]


def test_priority_change_is_a_machine_change_in_place() -> None:
    plan = plan_reload(cfg(inst("VI_1", prio=100)), cfg(inst("VI_1", prio=150)))
    (c,) = plan.changed
    assert c.fields == ("priority",) and c.machine_changed
    assert not c.vips_added and not c.vips_removed


def test_rename_on_same_interface_and_vrid_is_the_same_instance() -> None:
    plan = plan_reload(cfg(inst("VI_1")), cfg(inst("VI_NEW")))
    (c,) = plan.changed
    assert c.renamed and c.old.name == "VI_1" and c.name == "VI_NEW"
    assert c.fields == ("name",)
    assert not plan.removed and not plan.added
    assert plan.summary()["changed"] == ["VI_1->VI_NEW"]


def test_vrid_or_interface_change_is_remove_plus_add_even_with_the_same_name() -> None:
    plan = plan_reload(cfg(inst("VI_1", vrid=51)), cfg(inst("VI_1", vrid=52)))
    assert [i.name for i in plan.removed] == ["VI_1"] and [i.name for i in plan.added] == ["VI_1"]
    assert plan.removed[0].virtual_router_id == 51 and plan.added[0].virtual_router_id == 52
    plan = plan_reload(cfg(inst("VI_1", iface="eth0")), cfg(inst("VI_1", iface="eth1")))
    assert [i.interface for i in plan.removed] == ["eth0"]
    assert [i.interface for i in plan.added] == ["eth1"]


def test_unicast_vs_multicast_is_a_different_instance() -> None:
    peers = " unicast_peer {\n  10.0.0.9\n }\n"
    a, b = cfg(inst("VI_1")), cfg(inst("VI_1", extra=peers))
    assert instance_key(a.vrrp_instances[0]) != instance_key(b.vrrp_instances[0])
    plan = plan_reload(a, b)
    assert len(plan.removed) == 1 and len(plan.added) == 1
    # a changed peer list of a unicast instance is a change in place
    c = cfg(inst("VI_1", extra=" unicast_peer {\n  10.0.0.8\n }\n"))
    (change,) = plan_reload(b, c).changed
    assert change.fields == ("unicast_peers",)


def test_added_and_removed_instances() -> None:
    old = cfg(inst("VI_1") + inst("VI_2", 52, vips=("10.0.0.200/24",)))
    new = cfg(inst("VI_1") + inst("VI_3", 53, vips=("10.0.0.30/24",)))
    plan = plan_reload(old, new)
    assert plan.kept == ("VI_1",)
    assert [i.name for i in plan.removed] == ["VI_2"]
    assert [i.name for i in plan.added] == ["VI_3"]


def test_tracker_weight_change_is_a_tracker_change() -> None:
    script = 'vrrp_script chk {\n script "/bin/true"\n interval 1\n weight %d\n}\n'
    track = " track_script {\n  chk\n }\n"
    old = cfg(script % 10 + inst("VI_1", extra=track))
    new = cfg(script % 20 + inst("VI_1", extra=track))
    plan = plan_reload(old, new)
    (c,) = plan.changed
    assert c.trackers_changed and c.fields == ()
    assert plan.scripts_changed == ("chk",)
    # the command alone changing: the instance is untouched, the script tracker restarts
    new2 = cfg(script.replace("/bin/true", "/bin/false") % 10 + inst("VI_1", extra=track))
    plan2 = plan_reload(old, new2)
    assert plan2.kept == ("VI_1",) and plan2.scripts_changed == ("chk",) and not plan2.empty


def test_sync_group_membership_change_rebuilds_the_group() -> None:
    group = "vrrp_sync_group G {\n group {\n %s\n }\n}\n"
    two = inst("VI_1") + inst("VI_2", 52, vips=("10.0.0.200/24",))
    three = two + inst("VI_3", 53, vips=("10.0.0.30/24",))
    plan = plan_reload(cfg(group % "VI_1\n VI_2" + two),
                       cfg(group % "VI_1\n VI_2\n VI_3" + three))
    assert plan.groups_rebuilt == ("G",)
    assert {c.name for c in plan.changed} == {"VI_1", "VI_2"}
    assert all(c.group_changed and c.machine_changed and c.fields == () for c in plan.changed)
    assert [i.name for i in plan.added] == ["VI_3"]
    # unchanged membership: the group and its members are kept
    same = plan_reload(cfg(group % "VI_1\n VI_2" + two), cfg(group % "VI_1\n VI_2" + two))
    assert same.groups_kept == ("G",) and same.kept == ("VI_1", "VI_2")
    # group dissolved (one member left): removed
    gone = plan_reload(cfg(group % "VI_1\n VI_2" + two), cfg(two))
    assert gone.groups_removed == ("G",) and all(c.group_changed for c in gone.changed)


def test_two_unicast_instances_on_one_key_prefer_the_same_name() -> None:
    peers = " unicast_peer {\n  10.0.0.9\n }\n"
    old = cfg(inst("A", extra=peers) + inst("B", extra=peers.replace("9", "8")))
    new = cfg(inst("B", extra=peers.replace("9", "8")) + inst("A", extra=peers))
    plan = plan_reload(old, new)
    assert set(plan.kept) == {"A", "B"} and not plan.changed
