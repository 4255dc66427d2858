"""Recording fakes of the VRRP adapters, for unit tests of the runner and other pure cores.

Each fake implements the same Protocol as the real adapter and records what it was asked to do:
- ``FakeSocketPool`` / ``FakeTransport`` (``sockets.VrrpSocketPool`` / ``PacketTransport``):
  ``sent`` holds ``(packet, dst)``; ``pool.inject(ifindex, data)`` delivers a received packet.
- ``FakeGarpSender`` (``garp.GarpSender``): ``sent`` holds ``(loop_time, GarpTarget)``.
- ``FakeAddressManager`` (``addresses.AddressManager``): in-memory addresses per interface,
  ``calls`` log, ``fail`` set of addresses whose changes fail.
- ``FakeLinkMonitor`` (``links.LinkMonitor``): ``set_running(name, running)`` fires the callback.
- ``FakeProcessRunner`` (``healthcheck.process.ProcessRunner``): ``calls`` holds argv/user/group;
  results come from ``results`` (a list consumed in order, then ``default``), optional ``delay``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from healthcheck.process import ProcessResult
from vrrpd.vrrp.addresses import AddressResult, LinkInfo, Vip
from vrrpd.vrrp.garp import GarpTarget
from vrrpd.vrrp.links import LinkCallback
from vrrpd.vrrp.sockets import PacketCallback

__all__ = [
    "FakeAddressManager",
    "FakeGarpSender",
    "FakeLinkMonitor",
    "FakeProcessRunner",
    "FakeSocketPool",
    "FakeTransport",
    "ok_result",
]


def ok_result(exit_code: int = 0, *, timed_out: bool = False, output: str = "") -> ProcessResult:
    return ProcessResult(exit_code if not timed_out else None, 9 if timed_out else None,
                         timed_out, 0.0, output)


class FakeTransport:
    def __init__(self, ifname: str, ifindex: int, join_multicast: bool = True) -> None:
        self._ifname = ifname
        self._ifindex = ifindex
        self.join_multicast = join_multicast
        self.sent: list[tuple[bytes, str]] = []
        self.closed = False
        self.fail_sends = False

    @property
    def ifname(self) -> str:
        return self._ifname

    @property
    def ifindex(self) -> int:
        return self._ifindex

    def send(self, packet: bytes, dst: str) -> bool:
        if self.closed or self.fail_sends:
            return False
        self.sent.append((packet, dst))
        return True

    def close(self) -> None:
        self.closed = True


class FakeSocketPool:
    def __init__(self, on_packet: PacketCallback) -> None:
        self._on_packet = on_packet
        self.transports: dict[int, FakeTransport] = {}
        self.opened: list[str] = []

    def get(self, ifname: str, ifindex: int, *, join_multicast: bool = True) -> FakeTransport:
        transport = self.transports.get(ifindex)
        if transport is None:
            transport = FakeTransport(ifname, ifindex, join_multicast)
            self.transports[ifindex] = transport
            self.opened.append(ifname)
        elif join_multicast:
            transport.join_multicast = True
        return transport

    def inject(self, ifindex: int, data: bytes) -> None:
        self._on_packet(data, ifindex)

    def close(self) -> None:
        for transport in self.transports.values():
            transport.close()


class FakeGarpSender:
    def __init__(self) -> None:
        self.sent: list[tuple[float, GarpTarget]] = []
        self.closed = False

    def send(self, target: GarpTarget) -> bool:
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:
            now = 0.0
        self.sent.append((now, target))
        return True

    def close(self) -> None:
        self.closed = True


def _link(index: int, name: str) -> LinkInfo:
    return LinkInfo(index, name, bytes([2, 0, 0, 0, 0, index & 0xFF]), True, True, "UP")


@dataclass
class FakeAddressManager:
    """In-memory interfaces (name -> LinkInfo) and their IPv4 addresses."""

    links: dict[str, LinkInfo] = field(default_factory=dict)
    primary: dict[str, str] = field(default_factory=dict)
    configured: dict[str, list[Vip]] = field(default_factory=dict)
    calls: list[tuple[str, Vip]] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)  # VIP addresses whose add/remove fails

    @classmethod
    def with_links(cls, *names: str, primary: Mapping[str, str] | None = None
                   ) -> FakeAddressManager:
        mgr = cls(links={n: _link(i + 2, n) for i, n in enumerate(names)})
        mgr.primary.update(primary or {})
        return mgr

    def has(self, address: str, dev: str | None = None) -> bool:
        devs = [dev] if dev else list(self.configured)
        return any(v.address == address for d in devs for v in self.configured.get(d, []))

    async def add(self, vip: Vip) -> AddressResult:
        self.calls.append(("add", vip))
        if vip.address in self.fail:
            return AddressResult(vip, "failed", 3, "injected failure")
        current = self.configured.setdefault(vip.dev, [])
        if any(v.address == vip.address and v.prefixlen == vip.prefixlen for v in current):
            return AddressResult(vip, "exists", 1)
        current.append(vip)
        return AddressResult(vip, "added", 1)

    async def remove(self, vip: Vip) -> AddressResult:
        self.calls.append(("remove", vip))
        if vip.address in self.fail:
            return AddressResult(vip, "failed", 3, "injected failure")
        current = self.configured.get(vip.dev, [])
        for v in current:
            if v.address == vip.address and v.prefixlen == vip.prefixlen:
                current.remove(v)
                return AddressResult(vip, "removed", 1)
        return AddressResult(vip, "absent", 1)

    async def link(self, name: str) -> LinkInfo:
        try:
            return self.links[name]
        except KeyError:
            raise LookupError(f"no interface {name!r}") from None

    async def primary_ipv4(self, name: str) -> str | None:
        await self.link(name)
        return self.primary.get(name)

    async def addresses(self, name: str) -> list[tuple[str, int]]:
        await self.link(name)
        out = [(self.primary[name], 24)] if name in self.primary else []
        return out + [(v.address, v.prefixlen) for v in self.configured.get(name, [])]

    async def close(self) -> None:
        pass


class FakeLinkMonitor:
    def __init__(self, on_change: LinkCallback, links: Sequence[LinkInfo] = ()) -> None:
        self._on_change = on_change
        self._links = {link.name: link for link in links}
        self.started = False

    async def start(self) -> dict[str, LinkInfo]:
        self.started = True
        return dict(self._links)

    def state(self, name: str) -> LinkInfo | None:
        return self._links.get(name)

    def set_running(self, name: str, running: bool) -> None:
        link = self._links.get(name) or _link(len(self._links) + 2, name)
        link = replace(link, running=running, operstate="UP" if running else "LOWERLAYERDOWN")
        changed = self._links.get(name) is None or self._links[name].running != running
        self._links[name] = link
        if changed:
            self._on_change(link)

    async def stop(self) -> None:
        self.started = False


@dataclass
class FakeProcessRunner:
    """Call it like ``healthcheck.process.run``; records and answers from ``results``."""

    results: list[ProcessResult] = field(default_factory=list)
    default: ProcessResult = field(default_factory=ok_result)
    delay: float = 0.0
    calls: list[tuple[tuple[str, ...], str | int | None, str | int | None]] = field(
        default_factory=list
    )
    running: int = 0
    max_running: int = 0

    async def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        user: str | int | None = None,
        group: str | int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ProcessResult:
        self.calls.append((tuple(argv), user, group))
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        return self.results.pop(0) if self.results else self.default


def _conformance() -> None:  # pragma: no cover - checked by mypy only
    from healthcheck.process import ProcessRunner
    from vrrpd.vrrp.addresses import AddressManager
    from vrrpd.vrrp.garp import GarpSender
    from vrrpd.vrrp.links import LinkMonitor
    from vrrpd.vrrp.sockets import PacketTransport, SocketPool

    _a: AddressManager = FakeAddressManager()
    _g: GarpSender = FakeGarpSender()
    _lm: LinkMonitor = FakeLinkMonitor(lambda info: None)
    _t: PacketTransport = FakeTransport("eth0", 2)
    _r: ProcessRunner = FakeProcessRunner()
    _p: SocketPool = FakeSocketPool(lambda data, ifindex: None)
