"""VrrpRunner wired to the recording fakes: routing by VRID, rejections, timers via call_at,
becoming MASTER (advert, VIPs, GARPs, notify in order), sync groups and stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from vrrpd.config.loader import load_text
from vrrpd.vrrp.fakes import (
    FakeAddressManager,
    FakeGarpSender,
    FakeLinkMonitor,
    FakeProcessRunner,
    FakeSocketPool,
)
from vrrpd.vrrp.links import LinkCallback
from vrrpd.vrrp.machine import State
from vrrpd.vrrp.packet import (
    Advert,
    RejectReason,
    RxExpectations,
    auth_data_for,
    decode,
    encode_ip,
)
from vrrpd.vrrp.runner import VrrpRunner

PEER = IPv4Address("10.0.0.9")
OURS = "10.0.0.1"


def conf(body: str) -> str:
    return "global_defs {\n script_user root\n enable_script_security\n}\n" + body


def instance(name: str, vrid: int, prio: int, vip: str, extra: str = "") -> str:
    return (f"vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n"
            f" priority {prio}\n advert_int 1\n authentication {{\n auth_type PASS\n"
            f" auth_pass pw\n }}\n virtual_ipaddress {{\n {vip}/24\n }}\n{extra}}}\n")


class Rig:
    def __init__(self, text: str) -> None:
        config, diags = load_text(text)
        assert not [d for d in diags if d.severity.name != "WARNING"], diags
        self.addresses = FakeAddressManager.with_links("eth0", primary={"eth0": OURS})
        self.garp = FakeGarpSender()
        self.procs = FakeProcessRunner()
        self.pools: list[FakeSocketPool] = []
        self.monitors: list[FakeLinkMonitor] = []

        def pool(cb):  # type: ignore[no-untyped-def]
            self.pools.append(FakeSocketPool(cb))
            return self.pools[-1]

        def monitor(cb: LinkCallback) -> FakeLinkMonitor:
            self.monitors.append(FakeLinkMonitor(cb, list(self.addresses.links.values())))
            return self.monitors[-1]

        self.runner = VrrpRunner(config, addresses=self.addresses, socket_pool=pool,
                                 garp_sender=self.garp, link_monitor=monitor,
                                 process_runner=self.procs)

    @property
    def transport(self):  # type: ignore[no-untyped-def]
        return self.pools[0].transports[2]

    def sent(self, vrid: int | None = None) -> list[Advert]:
        expect = RxExpectations(vrid=vrid or 0, advert_int=1, auth_type=1,
                                auth_data=auth_data_for(1, "pw"), check_ttl=True,
                                vip_mismatch_drops=False)
        out = []
        for packet, _dst in self.transport.sent:
            v = packet[21]
            res = decode(packet, expect=RxExpectations(**{**_fields(expect), "vrid": v}))
            assert not hasattr(res, "reason"), res
            if vrid is None or v == vrid:
                out.append(res.advert)  # type: ignore[union-attr]
        return out

    def inject(self, vrid: int, prio: int, vip: str, pw: str = "pw", ident: int = 1) -> None:
        adv = Advert(vrid, prio, 1, 1, auth_data_for(1, pw), (IPv4Address(vip),))
        self.pools[0].inject(2, encode_ip(adv, src=PEER, dst=IPv4Address("224.0.0.18"),
                                          ident=ident))


def _fields(e: RxExpectations) -> dict:  # type: ignore[type-arg]
    return {"vrid": e.vrid, "advert_int": e.advert_int, "auth_type": e.auth_type,
            "auth_data": e.auth_data, "addresses": e.addresses, "check_ttl": e.check_ttl,
            "vip_mismatch_drops": e.vip_mismatch_drops}


@pytest.fixture
def rig_factory() -> Iterator:  # type: ignore[type-arg]
    rigs: list[Rig] = []

    def make(text: str) -> Rig:
        rigs.append(Rig(text))
        return rigs[-1]

    yield make


async def test_priority_zero_takeover_after_skew_then_stop(rig_factory) -> None:  # type: ignore[no-untyped-def]
    notify = ' notify_master "/bin/echo master"\n notify_stop "/bin/echo stop"\n'
    rig = rig_factory(conf(instance("VI_1", 51, 100, "10.0.0.100", notify)))
    await rig.runner.start()
    rt = rig.runner.instances["VI_1"]
    assert rt.machine.state is State.BACKUP and rig.transport.sent == []
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    rig.inject(51, 0, "10.0.0.100")  # master leaving
    assert rt.timer is not None and abs(rt.timer.when() - (t0 + (256 - 100) / 256)) < 0.05
    await asyncio.sleep(0.75)
    assert rt.machine.state is State.MASTER
    ads = rig.sent(51)
    assert [a.priority for a in ads] == [100]
    assert ads[0].addresses == (IPv4Address("10.0.0.100"),)
    await asyncio.sleep(0.05)
    assert rig.addresses.has("10.0.0.100", "eth0")
    assert len(rig.garp.sent) == 5 and {t.vip for _, t in rig.garp.sent} == {"10.0.0.100"}
    assert rig.procs.calls and rig.procs.calls[0][0] == ("/bin/echo", "master")
    await rig.runner.stop()
    assert [a.priority for a in rig.sent(51)][-1] == 0
    assert not rig.addresses.has("10.0.0.100")
    assert ("/bin/echo", "stop") in [c[0] for c in rig.procs.calls]
    assert rig.transport.closed


async def test_routing_by_vrid_and_rejections_counted(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(conf(instance("VI_1", 51, 100, "10.0.0.100")
                           + instance("VI_2", 52, 100, "10.0.0.200")))
    await rig.runner.start()
    assert len(rig.pools[0].transports) == 1  # one socket for both instances
    vi1, vi2 = rig.runner.instances["VI_1"], rig.runner.instances["VI_2"]
    before = vi2.timer.when() if vi2.timer else None
    await asyncio.sleep(0.05)
    rig.inject(51, 200, "10.0.0.100")  # valid, for VI_1 only: resets VI_1's timer
    assert vi2.timer is not None and vi2.timer.when() == before
    rig.inject(52, 200, "10.0.0.200", pw="wrong")
    rig.inject(52, 200, "10.0.0.99")  # VIP list differs: 2.2.7 drops it
    rig.inject(77, 200, "10.0.0.1")
    assert vi2.machine.stats.rejected[RejectReason.PASSWORD] == 1
    assert vi2.machine.stats.rejected[RejectReason.VIP_LIST] == 1
    assert vi2.timer.when() == before  # rejected adverts never reset the timer
    assert vi1.machine.stats.adverts_received == 1
    assert rig.runner.unknown_vrid[(2, 77)] == 1
    await rig.runner.stop()


async def test_owner_starts_master_and_sync_group_follows(rig_factory) -> None:  # type: ignore[no-untyped-def]
    text = conf("vrrp_sync_group G {\n group {\n VI_1\n VI_2\n }\n}\n"
                + instance("VI_1", 51, 255, "10.0.0.100")
                + instance("VI_2", 52, 100, "10.0.0.200"))
    rig = rig_factory(text)
    await rig.runner.start()
    await asyncio.sleep(0.05)
    states = {n: rt.machine.state for n, rt in rig.runner.instances.items()}
    assert states == {"VI_1": State.MASTER, "VI_2": State.MASTER}
    assert rig.addresses.has("10.0.0.100") and rig.addresses.has("10.0.0.200")
    # the peer is better for VI_2: VI_2 goes BACKUP and takes VI_1 along
    rig.inject(52, 200, "10.0.0.200")
    await asyncio.sleep(0.05)
    states = {n: rt.machine.state for n, rt in rig.runner.instances.items()}
    assert states == {"VI_1": State.BACKUP, "VI_2": State.BACKUP}
    # keepalived's sync backup leaves MASTER without a priority-0 advert
    assert 0 not in [a.priority for a in rig.sent(51)]
    assert not rig.addresses.has("10.0.0.100") and not rig.addresses.has("10.0.0.200")
    await rig.runner.stop()


async def test_interface_down_is_fault_and_back(rig_factory) -> None:  # type: ignore[no-untyped-def]
    rig = rig_factory(conf(instance("VI_1", 51, 255, "10.0.0.100")))
    await rig.runner.start()
    await asyncio.sleep(0.02)
    rt = rig.runner.instances["VI_1"]
    assert rt.machine.state is State.MASTER
    rig.monitors[0].set_running("eth0", False)
    await asyncio.sleep(0.02)
    assert rt.machine.state is State.FAULT and not rig.addresses.has("10.0.0.100")
    assert [a.priority for a in rig.sent(51)][-1] == 0
    rig.monitors[0].set_running("eth0", True)
    await asyncio.sleep(0.02)
    assert rt.machine.state is State.MASTER  # owner: straight back
    await rig.runner.stop()


async def test_master_asserts_itself_and_runs_rx_lower_pri(rig_factory) -> None:  # type: ignore[no-untyped-def]
    extra = ' notify_master_rx_lower_pri "/bin/echo lower"\n'
    rig = rig_factory(conf(instance("VI_1", 51, 255, "10.0.0.100", extra)))
    await rig.runner.start()
    await asyncio.sleep(0.02)
    n = len(rig.sent(51))
    rig.inject(51, 50, "10.0.0.100")  # a lower-priority master on the wire
    await asyncio.sleep(0.05)
    assert len(rig.sent(51)) == n + 1  # an immediate advert
    assert ("/bin/echo", "lower") in [c[0] for c in rig.procs.calls]
    await rig.runner.stop()


async def test_stale_vip_from_a_crashed_run_is_removed_at_start(rig_factory) -> None:  # type: ignore[no-untyped-def]
    from vrrpd.vrrp.addresses import Vip

    rig = rig_factory(conf(instance("VI_1", 51, 100, "10.0.0.100")))
    await rig.addresses.add(Vip("10.0.0.100", 24, "eth0"))
    await rig.runner.start()
    await asyncio.sleep(0.02)
    assert rig.runner.instances["VI_1"].machine.state is State.BACKUP
    assert not rig.addresses.has("10.0.0.100")
    await rig.runner.stop()


async def test_interface_down_at_start_is_fault(rig_factory) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    rig = rig_factory(conf(instance("VI_1", 51, 255, "10.0.0.100")))
    rig.addresses.links["eth0"] = replace(rig.addresses.links["eth0"], running=False)
    await rig.runner.start()
    await asyncio.sleep(0.02)
    rt = rig.runner.instances["VI_1"]
    assert rt.machine.state is State.FAULT and rig.transport.sent == []
    assert not rig.addresses.has("10.0.0.100")
    rig.monitors[0].set_running("eth0", True)
    await asyncio.sleep(0.02)
    assert rt.machine.state is State.MASTER and rig.addresses.has("10.0.0.100")
    await rig.runner.stop()
