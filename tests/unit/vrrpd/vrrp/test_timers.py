"""timerfd-backed timers: order, cancellation, re-arming, and no millisecond rounding."""

from __future__ import annotations

import asyncio
import statistics

from vrrpd.vrrp.timers import PreciseTimers


async def test_fires_in_deadline_order_and_skips_cancelled() -> None:
    loop = asyncio.get_running_loop()
    timers = PreciseTimers(loop)
    assert timers.precise
    fired: list[str] = []
    done = loop.create_future()
    t0 = loop.time()
    timers.call_at(t0 + 0.06, fired.append, "c")
    timers.call_at(t0 + 0.02, fired.append, "a")
    gone = timers.call_at(t0 + 0.01, fired.append, "x")
    timers.call_at(t0 + 0.04, fired.append, "b")
    timers.call_at(t0 + 0.08, done.set_result, None)
    gone.cancel()
    assert gone.when() == t0 + 0.01
    await asyncio.wait_for(done, 2)
    assert fired == ["a", "b", "c"]
    timers.close()


async def test_a_deadline_in_the_past_fires_at_once() -> None:
    loop = asyncio.get_running_loop()
    timers = PreciseTimers(loop)
    done = loop.create_future()
    timers.call_at(loop.time() - 1.0, done.set_result, "late")
    assert await asyncio.wait_for(done, 1) == "late"
    timers.close()


async def test_later_less_than_asyncio_call_at() -> None:
    """call_at rounds the selector timeout up to whole milliseconds; timerfd does not.
    Interleaved, so machine load hits both alike."""
    loop = asyncio.get_running_loop()
    timers = PreciseTimers(loop)
    late: dict[str, list[float]] = {"timerfd": [], "call_at": []}
    for i in range(21):
        for kind, call_at in (("timerfd", timers.call_at), ("call_at", loop.call_at)):
            fut: asyncio.Future[float] = loop.create_future()
            when = loop.time() + 0.01 + (i % 7) * 0.0013
            call_at(when, lambda w=when, f=fut: f.set_result(loop.time() - w))
            late[kind].append(await asyncio.wait_for(fut, 2))
    assert min(late["timerfd"]) >= 0
    assert statistics.median(late["timerfd"]) < statistics.median(late["call_at"]), late
    timers.close()
