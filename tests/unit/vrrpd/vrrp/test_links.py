"""Link monitor event handling (the netlink subscription itself: tests/netns)."""

from __future__ import annotations

from vrrpd.vrrp.addresses import LinkInfo
from vrrpd.vrrp.fakes import FakeLinkMonitor
from vrrpd.vrrp.links import NetlinkLinkMonitor

UP_RUNNING = 0x11043
UP_NO_CARRIER = 0x1003


def _msg(kind: int, index: int, name: str, flags: int) -> dict[str, object]:
    return {"header": {"type": kind}, "index": index, "ifname": name, "flags": flags,
            "address": "02:00:00:00:00:01", "operstate": "UP" if flags & 0x40 else "DOWN"}


def test_reports_operational_changes_only() -> None:
    events: list[LinkInfo] = []
    mon = NetlinkLinkMonitor(events.append)
    mon._handle(_msg(16, 3, "eth0", UP_RUNNING))  # new link
    mon._handle(_msg(16, 3, "eth0", UP_RUNNING))  # e.g. an MTU change: no report
    mon._handle(_msg(16, 3, "eth0", UP_NO_CARRIER))  # carrier lost, admin still up
    mon._handle(_msg(16, 3, "eth0", UP_NO_CARRIER))
    mon._handle(_msg(16, 3, "eth0", UP_RUNNING))
    assert [(e.name, e.running, e.admin_up) for e in events] == [
        ("eth0", True, True), ("eth0", False, True), ("eth0", True, True)]
    state = mon.state("eth0")
    assert state is not None and state.running


def test_deleted_and_renamed_links_report_not_running() -> None:
    events: list[LinkInfo] = []
    mon = NetlinkLinkMonitor(events.append)
    mon._handle(_msg(16, 3, "eth0", UP_RUNNING))
    mon._handle(_msg(16, 3, "eth9", UP_RUNNING))  # renamed
    assert [(e.name, e.running) for e in events][-2:] == [("eth0", False), ("eth9", True)]
    mon._handle(_msg(17, 3, "eth9", UP_RUNNING))  # deleted
    assert (events[-1].name, events[-1].running) == ("eth9", False)
    assert mon.state("eth9") is None and mon.state("eth0") is None
    mon._handle({"header": {"type": 20}})  # not a link message: ignored
    assert len(events) == 4


def test_fake_monitor_fires_on_change() -> None:
    events: list[LinkInfo] = []
    fake = FakeLinkMonitor(events.append)
    fake.set_running("eth0", True)
    fake.set_running("eth0", True)
    fake.set_running("eth0", False)
    assert [e.running for e in events] == [True, False]


async def test_resync_reports_differences_after_lost_events() -> None:
    events: list[LinkInfo] = []
    mon = NetlinkLinkMonitor(events.append)
    mon._handle(_msg(16, 3, "eth0", UP_RUNNING))
    mon._handle(_msg(16, 4, "eth1", UP_RUNNING))
    events.clear()
    from vrrpd.vrrp.addresses import link_info_from_msg

    async def dump() -> list[LinkInfo]:  # eth0 lost carrier, eth1 vanished, eth2 appeared
        return [link_info_from_msg(_msg(16, 3, "eth0", UP_NO_CARRIER)),
                link_info_from_msg(_msg(16, 5, "eth2", UP_RUNNING))]

    mon._dump = dump  # type: ignore[method-assign]
    await mon._resync()
    assert sorted((e.name, e.running) for e in events) == [
        ("eth0", False), ("eth1", False), ("eth2", True)]
    assert mon.state("eth1") is None
