"""Virtual IP addresses and link lookup over rtnetlink (pyroute2 ``AsyncIPRoute``).

``AddressManager`` is the narrow interface the runner uses; ``NetlinkAddressManager`` is the real
one, ``vrrpd.vrrp.fakes.FakeAddressManager`` the recording fake.

- ``add``/``remove`` are idempotent: an address that is already there (EEXIST) or already gone
  (EADDRNOTAVAIL) is a success with ``outcome`` ``"exists"``/``"absent"``; any other netlink error
  is retried (``attempts`` times, ``retry_delay`` apart, doubling) and then reported as
  ``"failed"`` with the error text. They never raise for netlink errors.
- One request at a time per netlink socket (a lock): concurrent dumps on one socket fail (EBUSY).
- Works in whatever network namespace the process runs in (``ip netns exec NS vrrpd ...``).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

if TYPE_CHECKING:
    from vrrpd.config.model_vrrp import VirtualIpAddress

__all__ = [
    "SCOPES",
    "AddressManager",
    "AddressResult",
    "LinkInfo",
    "NetlinkAddressManager",
    "Vip",
    "parse_scope",
]

log = structlog.get_logger(__name__)

# rtnetlink scope numbers (iproute2's /etc/iproute2/rt_scopes)
SCOPES: dict[str, int] = {"global": 0, "site": 200, "link": 253, "host": 254, "nowhere": 255}
_IFF_UP = 0x1
_IFF_RUNNING = 0x40
_IFA_F_SECONDARY = 0x1
_IFA_F_NODAD = 0x2


def parse_scope(scope: str | int) -> int:
    """keepalived/iproute2 scope name or number -> rtnetlink scope number."""
    if isinstance(scope, int):
        return scope
    if scope.isdigit():
        return int(scope)
    return SCOPES[scope]


@dataclass(frozen=True)
class Vip:
    """One ``virtual_ipaddress`` line: ``ADDR[/PREFIX] [brd B] [dev D] [scope S] [label L]``.

    ``dev`` is already resolved (the instance's interface when the line names none);
    ``broadcast`` None means no broadcast attribute (as ``ip addr add`` without ``brd``).
    """

    address: str
    prefixlen: int = 32
    dev: str = ""
    broadcast: str | None = None
    scope: str | int = "global"
    label: str | None = None

    def __str__(self) -> str:
        return f"{self.address}/{self.prefixlen} dev {self.dev}"

    @classmethod
    def from_config(cls, vip: VirtualIpAddress, interface: str) -> Vip:
        """A config ``virtual_ipaddress`` line; ``interface`` is the instance's (default dev)."""
        return cls(
            address=str(vip.ip),
            prefixlen=vip.prefixlen,
            dev=vip.dev or interface,
            broadcast=str(vip.brd) if vip.brd is not None else None,
            scope=vip.scope or "global",
            label=vip.label,
        )


Outcome = Literal["added", "exists", "removed", "absent", "failed"]


@dataclass(frozen=True)
class AddressResult:
    vip: Vip
    outcome: Outcome
    attempts: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != "failed"


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    mac: bytes  # 6 bytes for Ethernet
    admin_up: bool  # IFF_UP: configured up
    running: bool  # IFF_RUNNING: operationally up (carrier); what VRRP interface tracking uses
    operstate: str  # "UP", "DOWN", "LOWERLAYERDOWN", "UNKNOWN", ...


class AddressManager(Protocol):
    async def add(self, vip: Vip) -> AddressResult: ...

    async def remove(self, vip: Vip) -> AddressResult: ...

    async def link(self, name: str) -> LinkInfo:
        """Raises LookupError when there is no such interface."""
        ...

    async def primary_ipv4(self, name: str) -> str | None:
        """The interface's first non-secondary IPv4 address (VRRP source), None if it has none."""
        ...

    async def addresses(self, name: str) -> list[tuple[str, int]]:
        """IPv4 (address, prefixlen) pairs configured on the interface."""
        ...

    async def close(self) -> None: ...


def link_info_from_msg(msg: Any) -> LinkInfo:
    """A pyroute2 ifinfmsg -> ``LinkInfo`` (shared with the link monitor)."""
    flags = int(msg["flags"])
    mac_text = msg.get("address") or "00:00:00:00:00:00"
    return LinkInfo(
        index=int(msg["index"]),
        name=str(msg.get("ifname")),
        mac=bytes.fromhex(mac_text.replace(":", "")),
        admin_up=bool(flags & _IFF_UP),
        running=bool(flags & _IFF_RUNNING),
        operstate=str(msg.get("operstate") or "UNKNOWN"),
    )


class NetlinkAddressManager:
    """``AddressManager`` over one ``AsyncIPRoute`` socket, opened on first use."""

    def __init__(self, *, attempts: int = 3, retry_delay: float = 0.1) -> None:
        self._attempts = max(1, attempts)
        self._retry_delay = retry_delay
        self._ipr: Any = None
        self._lock = asyncio.Lock()

    async def _socket(self) -> Any:
        if self._ipr is None:
            from pyroute2 import AsyncIPRoute

            ipr = AsyncIPRoute()
            await ipr.setup_endpoint()
            self._ipr = ipr
        return self._ipr

    async def close(self) -> None:
        async with self._lock:
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None

    async def _index(self, name: str) -> int:
        return (await self.link(name)).index

    async def link(self, name: str) -> LinkInfo:
        from pyroute2.netlink.exceptions import NetlinkError

        async with self._lock:
            ipr = await self._socket()
            try:
                msgs = await ipr.link("get", ifname=name)
            except NetlinkError as exc:
                if exc.code == errno.ENODEV:
                    raise LookupError(f"no interface {name!r}") from None
                raise
        msgs = [m async for m in msgs] if hasattr(msgs, "__aiter__") else list(msgs)
        if not msgs:
            raise LookupError(f"no interface {name!r}")
        return link_info_from_msg(msgs[0])

    async def _addr_dump(self, index: int) -> list[tuple[str, int, int]]:
        async with self._lock:
            ipr = await self._socket()
            dump = await ipr.addr("dump", family=2, index=index)
            return [
                (str(m.get("address")), int(m["prefixlen"]), int(m["flags"]))
                async for m in dump
                if int(m["index"]) == index
            ]

    async def addresses(self, name: str) -> list[tuple[str, int]]:
        return [(a, p) for a, p, _ in await self._addr_dump(await self._index(name))]

    async def primary_ipv4(self, name: str) -> str | None:
        for address, _prefix, flags in await self._addr_dump(await self._index(name)):
            if not flags & _IFA_F_SECONDARY:
                return address
        return None

    async def add(self, vip: Vip) -> AddressResult:
        return await self._change("add", vip)

    async def remove(self, vip: Vip) -> AddressResult:
        return await self._change("del", vip)

    async def _change(self, command: str, vip: Vip) -> AddressResult:
        from pyroute2.netlink.exceptions import NetlinkError

        tolerated = errno.EEXIST if command == "add" else errno.EADDRNOTAVAIL
        done: Outcome = "added" if command == "add" else "removed"
        already: Outcome = "exists" if command == "add" else "absent"
        error = ""
        delay = self._retry_delay
        for attempt in range(1, self._attempts + 1):
            try:
                index = await self._index(vip.dev)
                kwargs: dict[str, Any] = {
                    "index": index,
                    "address": str(ipaddress.ip_address(vip.address)),
                    "prefixlen": vip.prefixlen,
                }
                if command == "add":
                    kwargs["scope"] = parse_scope(vip.scope)
                    if ":" in vip.address:
                        kwargs["flags"] = _IFA_F_NODAD  # a VIP must be usable at once
                    if vip.broadcast is not None:
                        kwargs["broadcast"] = vip.broadcast
                    if vip.label is not None:
                        kwargs["label"] = vip.label
                async with self._lock:
                    ipr = await self._socket()
                    await ipr.addr(command, **kwargs)
                log.debug("vip", action=command, vip=str(vip), attempt=attempt)
                return AddressResult(vip, done, attempt)
            except NetlinkError as exc:
                if exc.code == tolerated:
                    return AddressResult(vip, already, attempt)
                error = f"{exc.code} {exc}"
            except (LookupError, ValueError, KeyError, OSError) as exc:
                error = str(exc)
            log.warning("vip change failed", action=command, vip=str(vip), attempt=attempt,
                        error=error)
            if attempt < self._attempts:
                await asyncio.sleep(delay)
                delay *= 2
        return AddressResult(vip, "failed", self._attempts, error)


def _conformance() -> None:  # pragma: no cover - checked by mypy only
    _a: AddressManager = NetlinkAddressManager()
