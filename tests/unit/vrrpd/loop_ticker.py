"""``LoopTicker``: proves the event loop kept running while a test awaited something slow.

A task sleeps ``interval`` s in a loop and records each gap between wake-ups; a blocked loop
records none (or one huge gap)."""

from __future__ import annotations

import asyncio
import time
from types import TracebackType


class LoopTicker:
    """``async with LoopTicker(0.1) as t: ...`` then judge ``t.ticks`` / ``t.gaps``."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.gaps: list[float] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def ticks(self) -> int:
        return len(self.gaps)

    async def _run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.gaps.append(now - last)
            last = now

    async def __aenter__(self) -> LoopTicker:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
