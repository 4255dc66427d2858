"""addresses: value conversions and the recording fake (netlink itself: tests/netns)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface

import pytest

from vrrpd.config.model_vrrp import VirtualIpAddress
from vrrpd.vrrp.addresses import Vip, link_info_from_msg, parse_scope
from vrrpd.vrrp.fakes import FakeAddressManager


def test_parse_scope() -> None:
    assert [parse_scope(s) for s in ("global", "site", "link", "host", "nowhere")] == [
        0, 200, 253, 254, 255]
    assert parse_scope("253") == 253 and parse_scope(200) == 200
    with pytest.raises(KeyError):
        parse_scope("planet")


def test_vip_from_config_defaults_dev_to_instance_interface() -> None:
    line = VirtualIpAddress(address=IPv4Interface("10.0.0.5/24"), brd=IPv4Address("10.0.0.255"),
                            scope="link", label="eth0:v")
    vip = Vip.from_config(line, "eth0")
    assert vip == Vip("10.0.0.5", 24, "eth0", "10.0.0.255", "link", "eth0:v")
    bare = Vip.from_config(VirtualIpAddress(address=IPv4Interface("10.0.0.6/32"), dev="eth1"),
                           "eth0")
    assert bare == Vip("10.0.0.6", 32, "eth1", None, "global", None)


def test_link_info_uses_running_flag_not_admin_flag() -> None:
    msg = {"index": 3, "flags": 0x1003, "ifname": "eth0", "address": "02:00:00:77:00:01",
           "operstate": "LOWERLAYERDOWN"}
    info = link_info_from_msg(msg)
    assert info.admin_up and not info.running
    assert info.mac == bytes.fromhex("020000770001") and info.name == "eth0" and info.index == 3
    assert link_info_from_msg({**msg, "flags": 0x11043}).running


async def test_fake_is_idempotent_and_records() -> None:
    mgr = FakeAddressManager.with_links("eth0", primary={"eth0": "10.0.0.1"})
    vip = Vip("10.0.0.100", 24, "eth0")
    assert (await mgr.add(vip)).outcome == "added"
    assert (await mgr.add(vip)).outcome == "exists"
    assert mgr.has("10.0.0.100", "eth0")
    assert (await mgr.remove(vip)).outcome == "removed"
    assert (await mgr.remove(vip)).outcome == "absent"
    mgr.fail.add("10.0.0.100")
    res = await mgr.add(vip)
    assert not res.ok and res.error
    assert [c for c, _ in mgr.calls] == ["add", "add", "remove", "remove", "add"]
    assert await mgr.primary_ipv4("eth0") == "10.0.0.1"
    with pytest.raises(LookupError):
        await mgr.link("eth9")
