"""Gratuitous ARP: the frame, an AF_PACKET sender, and keepalived's sending schedule.

Frame (42 bytes, what keepalived 2.2.7 sends): ARP request, Ethernet destination and target
hardware address broadcast, sender IP = target IP = VIP, sender MAC = interface MAC.

Schedule on becoming MASTER (``GarpScheduler.start``), with ``GarpSettings`` from the config:
``master_repeat`` GARPs per VIP at once, the same again ``master_delay`` s later (0: no second
burst), then, if ``master_refresh`` > 0, ``master_refresh_repeat`` per VIP every
``master_refresh`` s while MASTER. Within a burst each round sends one GARP per VIP, rounds
repeated ``repeat`` times; consecutive frames are ``interval`` s apart (``garp_interval``, 0 =
back to back). ``cancel()`` when leaving MASTER; ``start`` again restarts the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import structlog

if TYPE_CHECKING:
    from vrrpd.config.model_vrrp import VrrpInstance

__all__ = [
    "GarpScheduler",
    "GarpSender",
    "GarpSettings",
    "GarpTarget",
    "PacketGarpSender",
    "garp_frame",
]

log = structlog.get_logger(__name__)

_ETH_P_ARP = 0x0806
_BROADCAST = b"\xff" * 6


def garp_frame(mac: bytes, vip: str) -> bytes:
    """The 42-byte gratuitous ARP request announcing ``vip`` at ``mac``."""
    if len(mac) != 6:
        raise ValueError(f"MAC must be 6 bytes, got {len(mac)}")
    ip = socket.inet_aton(vip)
    return (
        _BROADCAST
        + mac
        + struct.pack("!HHHBBH", _ETH_P_ARP, 1, 0x0800, 6, 4, 1)
        + mac
        + ip
        + _BROADCAST
        + ip
    )


@dataclass(frozen=True)
class GarpTarget:
    """One VIP to announce, on the interface that carries it."""

    ifname: str
    mac: bytes
    vip: str


@dataclass(frozen=True)
class GarpSettings:
    """keepalived's ``garp_*`` knobs (defaults: 5 at takeover, 5 more 5 s later, no refresh)."""

    master_repeat: int = 5
    master_delay: float = 5.0
    master_refresh: float = 0.0
    master_refresh_repeat: int = 1
    interval: float = 0.0

    @classmethod
    def from_instance(cls, inst: VrrpInstance) -> GarpSettings:
        return cls(
            master_repeat=inst.garp_master_repeat,
            master_delay=inst.garp_master_delay,
            master_refresh=inst.garp_master_refresh,
            master_refresh_repeat=inst.garp_master_refresh_repeat,
            interval=inst.garp_interval,
        )


class GarpSender(Protocol):
    def send(self, target: GarpTarget) -> bool:
        """Send one gratuitous ARP; False (logged) when the kernel refused it."""
        ...

    def close(self) -> None: ...


class PacketGarpSender:
    """Sends GARP frames on AF_PACKET sockets, one per interface, opened on first use.

    The sockets use protocol 0, so they receive nothing.
    """

    def __init__(self) -> None:
        self._sockets: dict[str, socket.socket] = {}
        self.sent = 0
        self.errors = 0

    def _socket(self, ifname: str) -> socket.socket:
        sock = self._sockets.get(ifname)
        if sock is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                sock.setblocking(False)
                sock.bind((ifname, 0))
            except BaseException:
                sock.close()
                raise
            self._sockets[ifname] = sock
        return sock

    def send(self, target: GarpTarget) -> bool:
        try:
            self._socket(target.ifname).send(garp_frame(target.mac, target.vip))
        except OSError as exc:
            self.errors += 1
            log.warning("garp send failed", ifname=target.ifname, vip=target.vip, error=str(exc))
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


Sleep = Callable[[float], Awaitable[None]]


class GarpScheduler:
    """keepalived's GARP schedule for one instance (see the module docstring)."""

    def __init__(self, sender: GarpSender, settings: GarpSettings, *, sleep: Sleep = asyncio.sleep):
        self._sender = sender
        self.settings = settings
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, targets: Sequence[GarpTarget]) -> None:
        """Begin the takeover schedule (restarting it if one is running)."""
        self.cancel()
        self._task = asyncio.ensure_future(self._run(tuple(targets)))

    def cancel(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()

    async def wait_cancelled(self) -> None:
        """Cancel and wait until the task has really finished (for orderly shutdown)."""
        task = self._task
        self.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def burst(self, targets: Sequence[GarpTarget], repeat: int) -> int:
        """Send ``repeat`` rounds of one GARP per target now; returns how many were sent."""
        sent = 0
        first = True
        for _ in range(repeat):
            for target in targets:
                if not first and self.settings.interval > 0:
                    await self._sleep(self.settings.interval)
                first = False
                if self._sender.send(target):
                    sent += 1
        return sent

    async def _run(self, targets: tuple[GarpTarget, ...]) -> None:
        s = self.settings
        try:
            await self.burst(targets, s.master_repeat)
            if s.master_delay > 0:
                await self._sleep(s.master_delay)
                await self.burst(targets, s.master_repeat)
            if s.master_refresh > 0:
                while True:
                    await self._sleep(s.master_refresh)
                    await self.burst(targets, s.master_refresh_repeat)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("garp schedule failed")


def _conformance() -> None:  # pragma: no cover - checked by mypy only
    _g: GarpSender = PacketGarpSender()
