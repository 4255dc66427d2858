"""A throw-away namespace for checker tests: ``hc-<random>``, probes run in a thread inside it."""

from __future__ import annotations

import asyncio
import ctypes
import os
import secrets
import subprocess
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from healthcheck.checkers import ping
from healthcheck.model import PingCheckSpec

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=10)


class Namespace:
    """A namespace ``hc-<random>`` with lo and a veth ``d0`` 10.77.0.1/24; probes run in a
    worker thread that entered it."""

    def __init__(self) -> None:
        self.name = f"hc-{secrets.token_hex(3)}"
        _ip("netns", "add", self.name)
        self._pool: ThreadPoolExecutor | None = None
        try:
            self.ip("link", "set", "lo", "up")
            # the host kernel has no dummy driver: a veth pair whose far end answers nothing
            self.ip("link", "add", "d0", "type", "veth", "peer", "name", "d1")
            self.ip("addr", "add", "10.77.0.1/24", "dev", "d0")
            self.ip("link", "set", "d0", "up")
            self.ip("link", "set", "d1", "up")
            self._pool = ThreadPoolExecutor(1, initializer=self._enter)
        except BaseException:
            self.close()
            raise

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")
        finally:
            os.close(fd)

    def ip(self, *argv: str) -> None:
        _ip("-n", self.name, *argv)

    def sysctl(self, key: str, value: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, "sysctl", "-qw", f"{key}={value}"],
                       check=True, capture_output=True, timeout=10)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on a fresh event loop in the thread that entered the namespace."""
        assert self._pool is not None
        return self._pool.submit(asyncio.run, coro).result(timeout=30)

    def call(self, fn: Callable[[], T]) -> T:
        assert self._pool is not None
        return self._pool.submit(fn).result(timeout=30)

    def uses_raw_socket(self, spec: PingCheckSpec) -> bool:
        def opened() -> bool:
            sock, raw = ping._open(spec)
            sock.close()
            return raw

        return self.call(opened)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
