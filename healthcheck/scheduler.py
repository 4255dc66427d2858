"""Pure timing: when each check runs next.

``Timers`` is a deadline heap keyed by check (lazy deletion, O(log n) per operation), so 10,000
checks cost one heap and one ``loop.call_at`` for the earliest deadline, never a poll.
``first_run`` and ``next_delay`` hold keepalived's timing rules.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Hashable
from typing import Generic, TypeVar

from healthcheck.model import CheckSpec, FileCheckSpec, MiscCheckSpec

K = TypeVar("K", bound=Hashable)

__all__ = ["FILE_POLL_INTERVAL", "Timers", "first_run", "next_delay", "probe_timeout"]

# keepalived watches track files with inotify (no timers of its own), and so does the manager
# (``healthcheck.filewatch``); a file whose directory cannot be watched is re-read this often
FILE_POLL_INTERVAL = 1.0


class Timers(Generic[K]):
    """Deadlines by key; rescheduling a key replaces its previous deadline."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, tuple[float, int]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def schedule(self, key: K, at: float) -> None:
        self._seq += 1
        self._due[key] = (at, self._seq)
        heapq.heappush(self._heap, (at, self._seq, key))

    def cancel(self, key: K) -> None:
        self._due.pop(key, None)

    def due_at(self, key: K) -> float | None:
        entry = self._due.get(key)
        return None if entry is None else entry[0]

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            at, seq, key = heap[0]
            if self._due.get(key) == (at, seq):
                return at
            heapq.heappop(heap)  # stale: cancelled or rescheduled
        return None

    def pop_due(self, now: float, limit: int | None = None) -> list[K]:
        """Remove and return the keys whose deadline is <= ``now`` (at most ``limit``),
        earliest first."""
        out: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            at, seq, key = heapq.heappop(heap)
            if self._due.get(key) == (at, seq):
                del self._due[key]
                out.append(key)
        return out


def first_run(spec: CheckSpec, now: float, rng: random.Random) -> float:
    """keepalived's warmup: the first check runs at a random time within ``warmup`` seconds
    (default ``delay_loop``; 0 = at once), which spreads thousands of checks evenly.
    FILE_CHECK has no timers in keepalived: it is read at once."""
    if isinstance(spec, FileCheckSpec):
        return now
    warmup = spec.delay_loop if spec.warmup is None else spec.warmup
    if warmup <= 0:
        return now
    return now + rng.uniform(0.0, warmup)


def next_delay(spec: CheckSpec, *, retrying: bool) -> float:
    """Delay from the end of a probe to the next: ``delay_before_retry`` while retrying a
    failed check of an up server, else ``delay_loop`` (FILE_CHECK: ``FILE_POLL_INTERVAL``)."""
    if isinstance(spec, FileCheckSpec):
        return FILE_POLL_INTERVAL
    return spec.delay_before_retry if retrying else spec.delay_loop


def probe_timeout(spec: CheckSpec) -> float:
    """The longest a probe may take (MISC_CHECK: ``misc_timeout``, default ``delay_loop``)."""
    if isinstance(spec, MiscCheckSpec):
        return spec.delay_loop if spec.timeout is None else spec.timeout
    return spec.connect_timeout
