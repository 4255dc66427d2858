"""The demo's client: HTTP requests to the VIP from inside the client namespace.

A ``NetnsWorker`` is one thread that has entered a network namespace (``setns`` switches only
the calling thread), so every socket it opens lives there; the demo process itself stays in the
host namespace.  ``Load`` keeps issuing requests on such a thread and records each outcome with
its time, to count answers per server and measure the gap a failover leaves.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic() when the request began
    finished: float
    server: str | None  # the name the service answered with; None on failure
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.server is not None


def enter_netns(name: str) -> None:
    """Move the calling thread into ``/run/netns/NAME``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def request(address: str, port: int, *, timeout: float = 1.0) -> Answer:
    """One HTTP GET on a fresh TCP connection; the body names the server that answered."""
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.0 200") or not body.strip():
            return Answer(started, time.monotonic(), None, f"bad reply {data[:40]!r}")
        return Answer(started, time.monotonic(), body.decode(errors="replace").strip())
    except OSError as exc:
        reason = type(exc).__name__ if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        return Answer(started, time.monotonic(), None, reason)


class NetnsWorker:
    """A single thread living in one namespace; ``call(fn, ...)`` runs ``fn`` there."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix=f"netns-{netns}", initializer=enter_netns,
            initargs=(netns,),
        )

    def call(self, fn: Callable[..., T], *args: object, timeout: float = 60.0) -> T:
        return self._pool.submit(fn, *args).result(timeout=timeout)

    def submit(self, fn: Callable[..., T], *args: object) -> concurrent.futures.Future[T]:
        return self._pool.submit(fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def burst(address: str, port: int, count: int, timeout: float = 1.0) -> list[Answer]:
    return [request(address, port, timeout=timeout) for _ in range(count)]


def tally(answers: list[Answer]) -> Counter[str]:
    """Answers per server name; failures counted under ``"(failed)"``."""
    return Counter(a.server if a.server is not None else "(failed)" for a in answers)


class Load:
    """Continuous requests (one every ``interval`` s) on a NetnsWorker until ``stop()``."""

    def __init__(self, worker: NetnsWorker, address: str, port: int, *,
                 interval: float = 0.05, timeout: float = 0.5) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._args = (address, port, interval, timeout)
        self._future = worker.submit(self._run)

    def _run(self) -> None:
        address, port, interval, timeout = self._args
        while not self._stop.is_set():
            answer = request(address, port, timeout=timeout)
            self.answers.append(answer)
            self._stop.wait(max(0.0, interval - (answer.finished - answer.started)))

    def stop(self) -> list[Answer]:
        self._stop.set()
        self._future.result(timeout=30)
        return list(self.answers)


@dataclass(frozen=True)
class Gap:
    last_before: Answer | None  # last answer served before ``at``
    first_after: Answer | None  # first answer served after ``at``
    failed: int  # failed attempts in between

    @property
    def seconds(self) -> float | None:
        """From the last answer before the event to the first answer after it."""
        if self.last_before is None or self.first_after is None:
            return None
        return self.first_after.finished - self.last_before.finished


def gap_around(answers: list[Answer], at: float) -> Gap:
    """The service gap around time ``at`` (e.g. the moment the master was killed)."""
    before = [a for a in answers if a.ok and a.finished <= at]
    after = [a for a in answers if a.ok and a.started >= at]
    last = before[-1] if before else None
    first = after[0] if after else None
    lo = last.finished if last else at
    hi = first.started if first else float("inf")
    failed = sum(1 for a in answers if not a.ok and lo <= a.started <= hi)
    return Gap(last, first, failed)
