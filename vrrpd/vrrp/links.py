"""Interface tracking from rtnetlink link events (RTMGRP_LINK).

``NetlinkLinkMonitor(on_change)``: ``await start()`` subscribes to link events, then dumps the
current links (so no event between the two is lost) and returns the initial ``LinkInfo`` per
interface name; afterwards ``on_change(info)`` is called whenever an interface's *operational*
state (``LinkInfo.running``, i.e. IFF_RUNNING: up and carrier) changes, or it appears or
disappears (a deleted interface is reported with ``running=False``). The admin "up" flag alone
does not count: an interface that is up without carrier is not running.
``state(name)`` answers from the cache without netlink. ``await stop()`` ends the monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import structlog

from vrrpd.vrrp.addresses import LinkInfo, link_info_from_msg

__all__ = ["LinkCallback", "LinkMonitor", "NetlinkLinkMonitor"]

log = structlog.get_logger(__name__)

_RTMGRP_LINK = 0x1
_RTM_NEWLINK = 16
_RTM_DELLINK = 17

LinkCallback = Callable[[LinkInfo], None]


class LinkMonitor(Protocol):
    async def start(self) -> dict[str, LinkInfo]: ...

    def state(self, name: str) -> LinkInfo | None: ...

    async def stop(self) -> None: ...


class NetlinkLinkMonitor:
    """``LinkMonitor`` over a dedicated rtnetlink socket bound to RTMGRP_LINK."""

    def __init__(self, on_change: LinkCallback) -> None:
        self._on_change = on_change
        self._links: dict[str, LinkInfo] = {}
        self._names: dict[int, str] = {}
        self._mon: Any = None
        self._task: asyncio.Task[None] | None = None

    def state(self, name: str) -> LinkInfo | None:
        return self._links.get(name)

    def links(self) -> dict[str, LinkInfo]:
        return dict(self._links)

    async def start(self) -> dict[str, LinkInfo]:
        from pyroute2 import AsyncIPRoute

        mon = AsyncIPRoute()
        await mon.bind(groups=_RTMGRP_LINK)
        self._mon = mon
        for info in await self._dump():
            self._links[info.name] = info
            self._names[info.index] = info.name
        self._task = asyncio.ensure_future(self._events())
        return dict(self._links)

    async def _dump(self) -> list[LinkInfo]:
        from pyroute2 import AsyncIPRoute

        # The dump goes over its own socket: the monitor socket carries only events.
        async with AsyncIPRoute() as ipr:
            return [link_info_from_msg(m) async for m in await ipr.get_links()]

    async def _resync(self) -> None:
        """After lost events (e.g. ENOBUFS): dump again and report every difference."""
        current = {info.name: info for info in await self._dump()}
        for name, old in list(self._links.items()):
            if name not in current:
                self._links.pop(name)
                self._names.pop(old.index, None)
                self._emit(replace(old, running=False, admin_up=False, operstate="DOWN"))
        for name, info in current.items():
            previous = self._links.get(name)
            self._links[name] = info
            self._names[info.index] = name
            if previous is None or previous.running != info.running:
                self._emit(info)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._mon is not None:
            self._mon.close()
            self._mon = None

    async def _events(self) -> None:
        while True:
            try:
                async for msg in self._mon.get():
                    self._handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("link monitor: netlink error, resynchronising")
                await asyncio.sleep(0.1)
                try:
                    await self._resync()
                except Exception:
                    log.exception("link monitor: resync failed")

    def _handle(self, msg: Any) -> None:
        kind = msg["header"]["type"]
        if kind not in (_RTM_NEWLINK, _RTM_DELLINK):
            return
        info = link_info_from_msg(msg)
        old_name = self._names.get(info.index)
        if kind == _RTM_DELLINK:
            self._names.pop(info.index, None)
            gone = self._links.pop(info.name, None) or self._links.pop(old_name or "", None)
            if gone is not None:
                self._emit(replace(gone, running=False, admin_up=False, operstate="DOWN"))
            return
        if old_name is not None and old_name != info.name:  # renamed
            renamed = self._links.pop(old_name, None)
            if renamed is not None and renamed.running:
                self._emit(replace(renamed, running=False))
        previous = self._links.get(info.name)
        self._links[info.name] = info
        self._names[info.index] = info.name
        if previous is None or previous.running != info.running:
            self._emit(info)

    def _emit(self, info: LinkInfo) -> None:
        try:
            self._on_change(info)
        except Exception:
            log.exception("link monitor callback failed", ifname=info.name)


def _conformance() -> None:  # pragma: no cover - checked by mypy only
    _m: LinkMonitor = NetlinkLinkMonitor(lambda info: None)
