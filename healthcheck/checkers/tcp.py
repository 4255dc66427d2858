"""TCP_CHECK: success is a completed TCP handshake within ``connect_timeout``.

The hot path of large configurations (10,000 checks every 6 s): ``TcpEngine`` (what the
manager uses) runs all connects on one private epoll with one deadline heap; ``TcpProbe`` /
``start`` / ``probe`` are the one-shot forms (loop callbacks, no task).
"""

from __future__ import annotations

import _socket
import asyncio
import errno
import heapq
import os
import select
import socket
import time
from collections.abc import Callable
from functools import lru_cache

from healthcheck.checkers.base import describe, fail, make_socket, ok
from healthcheck.model import CheckResult, IPAddress, TcpCheckSpec

__all__ = ["TcpEngine", "TcpProbe", "probe", "start"]

_PENDING = (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY)


@lru_cache(maxsize=65536)
def _text(ip: IPAddress) -> str:
    return str(ip)


def _open(spec: TcpCheckSpec) -> socket.socket:
    """A non-blocking stream socket for one probe (OSError when it cannot be had)."""
    if spec.bindto is None and not spec.bind_port and not spec.bind_if and not spec.fwmark:
        # the common case: the C socket type directly (socket.socket's Python-level
        # __init__ and close() cost more than the syscalls on this path)
        family = socket.AF_INET6 if spec.connect_ip.version == 6 else socket.AF_INET
        return _socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)  # type: ignore[return-value]
    return make_socket(spec.connect_ip, socket.SOCK_STREAM, bindto=spec.bindto,
                       bind_port=spec.bind_port, bind_if=spec.bind_if, fwmark=spec.fwmark)


class TcpProbe:
    """One connect attempt; ``callback(result)`` runs exactly once unless ``cancel()``ed first.

    Starts at construction.  Bound methods and slots instead of closures and a future: this
    runs ~1,700 times a second with 10,000 checks.
    """

    __slots__ = ("_callback", "_loop", "_sock", "_t0", "_timer", "done")

    def __init__(self, spec: TcpCheckSpec, callback: Callable[[CheckResult], None]) -> None:
        self._callback = callback
        self._t0 = t0 = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self.done = False
        ip = spec.connect_ip
        try:
            sock = _open(spec)
        except OSError as exc:
            self._sock = None
            self._finish(fail(f"cannot open socket: {describe(exc)}", t0))
            return
        self._sock = sock
        err = sock.connect_ex((_text(ip), spec.connect_port))
        if err not in _PENDING:
            self._finish(ok("connected", t0) if err == 0
                         else fail(f"connect failed: {os.strerror(err)}", t0))
            return
        self._loop = loop = asyncio.get_running_loop()
        self._timer = loop.call_later(spec.connect_timeout, self._timed_out,
                                      spec.connect_timeout)
        loop.add_writer(sock.fileno(), self._writable)

    def _writable(self) -> None:
        assert self._sock is not None
        e = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if e in _PENDING:
            return
        self._finish(ok("connected", self._t0) if e == 0
                     else fail(f"connect failed: {os.strerror(e)}", self._t0))

    def _timed_out(self, timeout: float) -> None:
        self._finish(CheckResult(False, f"connect timed out after {timeout:g}s", None, timeout))

    def _close(self) -> None:
        self.done = True
        sock = self._sock
        if sock is not None:
            if self._timer is not None:
                self._timer.cancel()
                self._loop.remove_writer(sock.fileno())
            sock.close()
            self._sock = None

    def _finish(self, result: CheckResult) -> None:
        if self.done:
            return
        self._close()
        self._callback(result)

    def cancel(self) -> None:
        if not self.done:
            self._close()


def start(spec: TcpCheckSpec) -> asyncio.Future[CheckResult]:
    """Begin a probe; the future resolves with its result (cancelling it closes the socket)."""
    fut: asyncio.Future[CheckResult] = asyncio.get_running_loop().create_future()

    def deliver(result: CheckResult) -> None:
        if not fut.done():
            fut.set_result(result)

    probe = TcpProbe(spec, deliver)
    fut.add_done_callback(lambda f: probe.cancel() if f.cancelled() else None)
    return fut


async def probe(spec: TcpCheckSpec) -> CheckResult:
    return await start(spec)


class _Conn:
    __slots__ = ("callback", "deadline", "seq", "sock", "t0", "timeout")

    def __init__(self, sock: _socket.socket, callback: Callable[[CheckResult], None],
                 t0: float, timeout: float, deadline: float, seq: int) -> None:
        self.sock = sock
        self.callback = callback
        self.t0 = t0
        self.timeout = timeout
        self.deadline = deadline
        self.seq = seq


class TcpEngine:
    """Many TCP_CHECK connects on one private epoll that the loop watches as a single reader.

    Per probe: socket, connect, one ``epoll.register`` (closing the socket unregisters it), no
    asyncio handle, timer or future; timeouts come from one deadline heap and one ``call_at``.
    Results are delivered through each probe's callback, in the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._ep = select.epoll()
        self._pending: dict[int, _Conn] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        loop.add_reader(self._ep.fileno(), self._ready)

    def __len__(self) -> int:
        return len(self._pending)

    def connect(self, spec: TcpCheckSpec, callback: Callable[[CheckResult], None]) -> None:
        """Start a probe; ``callback(result)`` runs once (maybe before this returns)."""
        t0 = time.monotonic()
        ip = spec.connect_ip
        try:
            sock = _open(spec)
        except OSError as exc:
            callback(fail(f"cannot open socket: {describe(exc)}", t0))
            return
        err = sock.connect_ex((_text(ip), spec.connect_port))
        if err not in _PENDING:
            sock.close()
            callback(ok("connected", t0) if err == 0
                     else fail(f"connect failed: {os.strerror(err)}", t0))
            return
        fd = sock.fileno()
        self._ep.register(fd, select.EPOLLOUT)
        self._seq += 1
        deadline = self._loop.time() + spec.connect_timeout
        self._pending[fd] = _Conn(sock, callback, t0, spec.connect_timeout, deadline, self._seq)
        heapq.heappush(self._heap, (deadline, self._seq, fd))
        if deadline < self._timer_at:
            self._arm(deadline)

    def close(self) -> None:
        """Drop every pending probe without calling back; stop watching."""
        self._loop.remove_reader(self._ep.fileno())
        if self._timer is not None:
            self._timer.cancel()
        for conn in self._pending.values():
            conn.sock.close()
        self._pending.clear()
        self._heap.clear()
        self._ep.close()

    def _ready(self) -> None:
        pending = self._pending
        # take the connections out first: a callback may start probes that reuse an fd
        batch = [conn for fd, _ in self._ep.poll(0) if (conn := pending.pop(fd, None))]
        for conn in batch:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            conn.sock.close()
            conn.callback(ok("connected", conn.t0) if err == 0
                          else fail(f"connect failed: {os.strerror(err)}", conn.t0))

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(at, self._expire)

    def _expire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = self._loop.time()
        heap, pending = self._heap, self._pending
        expired = []
        while heap and heap[0][0] <= now:
            _, seq, fd = heapq.heappop(heap)
            conn = pending.get(fd)
            if conn is not None and conn.seq == seq:
                del pending[fd]
                expired.append(conn)
        while heap:  # drop entries of connections that already finished
            conn = pending.get(heap[0][2])
            if conn is not None and conn.seq == heap[0][1]:
                self._arm(heap[0][0])
                break
            heapq.heappop(heap)
        for conn in expired:
            conn.sock.close()
            conn.callback(CheckResult(False, f"connect timed out after {conn.timeout:g}s",
                                      None, conn.timeout))
