"""Gratuitous ARP frame bytes and keepalived's GARP schedule."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from vrrpd.vrrp.fakes import FakeGarpSender
from vrrpd.vrrp.garp import GarpScheduler, GarpSettings, GarpTarget, garp_frame

VECTORS = Path(__file__).parent / "vectors"
MAC = bytes.fromhex("020000770001")


def test_frame_is_byte_identical_to_keepalived() -> None:
    golden = bytes.fromhex((VECTORS / "garp_10.77.0.100.frame.hex").read_text().strip())
    frame = garp_frame(MAC, "10.77.0.100")
    assert len(frame) == 42
    assert frame == golden


def test_frame_fields() -> None:
    frame = garp_frame(bytes.fromhex("aabbccddeeff"), "192.0.2.7")
    assert frame[0:6] == b"\xff" * 6  # Ethernet broadcast
    assert frame[6:12] == bytes.fromhex("aabbccddeeff")
    assert frame[12:14] == b"\x08\x06"
    assert frame[20:22] == b"\x00\x01"  # request
    assert frame[28:32] == frame[38:42] == bytes([192, 0, 2, 7])  # sender IP = target IP
    assert frame[32:38] == b"\xff" * 6  # target HW broadcast


def test_frame_rejects_bad_mac() -> None:
    with pytest.raises(ValueError):
        garp_frame(b"\x00" * 5, "10.0.0.1")


class VirtualClock:
    """asyncio-compatible sleep on a virtual clock; blocks forever past ``limit``."""

    def __init__(self, limit: float) -> None:
        self.now = 0.0
        self.limit = limit

    async def sleep(self, delay: float) -> None:
        self.now += delay
        if self.now > self.limit:
            await asyncio.Future()
        await asyncio.sleep(0)


class ClockSender(FakeGarpSender):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def send(self, target: GarpTarget) -> bool:
        self.sent.append((self.clock.now, target))
        return True


async def _run_schedule(settings: GarpSettings, targets: list[GarpTarget], until: float
                        ) -> list[tuple[float, GarpTarget]]:
    clock = VirtualClock(until)
    sender = ClockSender(clock)
    sched = GarpScheduler(sender, settings, sleep=clock.sleep)
    sched.start(targets)
    for _ in range(200):
        await asyncio.sleep(0)
    await sched.wait_cancelled()
    assert not sched.active
    return sender.sent


async def test_default_schedule_five_now_five_after_delay() -> None:
    t = GarpTarget("eth0", MAC, "10.77.0.100")
    sent = await _run_schedule(GarpSettings(), [t], until=1000)
    times = [ts for ts, _ in sent]
    assert times == [0.0] * 5 + [5.0] * 5  # no refresh by default
    assert all(target == t for _, target in sent)


async def test_rounds_cover_every_vip_then_repeat() -> None:
    a = GarpTarget("eth0", MAC, "10.0.0.1")
    b = GarpTarget("eth1", MAC, "10.0.1.1")
    settings = GarpSettings(master_repeat=2, master_delay=0)
    sent = await _run_schedule(settings, [a, b], until=1000)
    assert [target.vip for _, target in sent] == ["10.0.0.1", "10.0.1.1"] * 2


async def test_refresh_and_interval_spacing() -> None:
    t = GarpTarget("eth0", MAC, "10.77.0.100")
    settings = GarpSettings(master_repeat=2, master_delay=3, master_refresh=10,
                            master_refresh_repeat=3, interval=0.5)
    sent = await _run_schedule(settings, [t], until=30)
    times = [ts for ts, _ in sent]
    # burst: 0, 0.5; +3 s: 3.5, 4.0; refresh every 10 s: 3 frames 0.5 apart
    assert times == [0.0, 0.5, 3.5, 4.0, 14.0, 14.5, 15.0, 25.0, 25.5, 26.0]


async def test_real_time_cancel_stops_second_burst() -> None:
    sender = FakeGarpSender()
    sched = GarpScheduler(sender, GarpSettings(master_repeat=3, master_delay=0.3))
    sched.start([GarpTarget("eth0", MAC, "10.77.0.100")])
    await asyncio.sleep(0.05)
    assert len(sender.sent) == 3
    sched.cancel()
    await asyncio.sleep(0.5)
    assert len(sender.sent) == 3


async def test_real_time_second_burst_after_delay_and_restart() -> None:
    sender = FakeGarpSender()
    sched = GarpScheduler(sender, GarpSettings(master_repeat=2, master_delay=0.2))
    target = GarpTarget("eth0", MAC, "10.77.0.100")
    sched.start([target])
    await asyncio.sleep(0.45)
    times = [ts for ts, _ in sender.sent]
    assert len(times) == 4
    assert 0.18 <= times[2] - times[0] < 0.4
    assert not sched.active  # no refresh configured: the schedule ended
    sched.start([target])  # a new takeover starts a new schedule
    await asyncio.sleep(0.05)
    assert len(sender.sent) == 6
    await sched.wait_cancelled()
