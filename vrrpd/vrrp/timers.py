"""Precise one-shot timers for the VRRP runner, on a Linux timerfd (CLOCK_MONOTONIC).

asyncio's ``loop.call_at`` wakes the selector with a timeout rounded up to whole milliseconds
(measured here: median 0.75 ms late), which lands directly on top of every takeover.  A timerfd
armed with the absolute deadline wakes the loop through ``add_reader`` at the kernel timer's
precision instead.  Same clock as ``loop.time()`` (``time.monotonic``).  Nothing blocks and
nothing polls: one fd, armed for the earliest pending deadline.  Falls back to ``call_at`` where
timerfd is unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import heapq
import itertools
import os
from collections.abc import Callable
from typing import Any

__all__ = ["PreciseTimers", "TimerHandle"]

_CLOCK_MONOTONIC = 1
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class TimerHandle:
    __slots__ = ("_args", "_callback", "_owner", "_when", "cancelled")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...],
                 owner: PreciseTimers) -> None:
        self._when = when
        self._callback = callback
        self._args = args
        self._owner = owner
        self.cancelled = False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self.cancelled = True

    def _run(self) -> None:
        self._callback(*self._args)


class PreciseTimers:
    """``call_at(when, callback, *args) -> handle`` (``handle.cancel()``, ``handle.when()``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._armed: float | None = None
        self._fd = -1
        self._libc: Any = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.timerfd_create(_CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            fd = -1
        if fd >= 0:
            self._libc = libc
            self._fd = fd
            loop.add_reader(fd, self._fire)

    @property
    def precise(self) -> bool:
        return self._fd >= 0

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Any:
        if self._fd < 0:
            return self._loop.call_at(when, callback, *args)
        handle = TimerHandle(when, callback, args, self)
        heapq.heappush(self._heap, (when, next(self._seq), handle))
        if self._armed is None or when < self._armed:
            self._arm(when)
        return handle

    def _arm(self, when: float | None) -> None:
        spec = _Itimerspec()
        if when is not None:
            when = max(when, 1e-9)  # an all-zero it_value would disarm
            sec = int(when)
            spec.it_value.tv_sec = sec
            spec.it_value.tv_nsec = max(1, int((when - sec) * 1e9)) if sec == 0 else \
                int((when - sec) * 1e9)
        if self._libc.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec),
                                      None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        self._armed = when

    def _fire(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            os.read(self._fd, 8)
        self._armed = None
        now = self._loop.time()
        due: list[TimerHandle] = []
        while self._heap and (self._heap[0][2].cancelled or self._heap[0][0] <= now):
            _, _, handle = heapq.heappop(self._heap)
            if not handle.cancelled:
                due.append(handle)
        for handle in due:
            if not handle.cancelled:
                try:
                    handle._run()
                except Exception:  # a failing callback must not stop the others
                    self._loop.call_exception_handler(
                        {"message": "timer callback failed", "handle": handle})
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if self._heap and self._armed is None:
            self._arm(self._heap[0][0])

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._heap.clear()
