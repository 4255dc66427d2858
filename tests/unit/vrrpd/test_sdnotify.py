"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vrrpd.sdnotify import Notifier, run_watchdog


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    try:
        yield path, sock
    finally:
        sock.close()


def recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_status_stopping_over_path_socket(manager: tuple[str, socket.socket]) -> None:
    path, sock = manager
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready("2 instances up")
    assert recv(sock) == ["READY=1", "STATUS=2 instances up"]
    assert n.status("VI_1 MASTER\nVI_2 BACKUP")
    assert recv(sock) == ["STATUS=VI_1 MASTER VI_2 BACKUP"]
    assert n.stopping()
    assert recv(sock) == ["STOPPING=1"]
    assert n.sent == 3 and n.failed == 0
    n.close()


def test_reloading_carries_monotonic_usec(manager: tuple[str, socket.socket]) -> None:
    path, sock = manager
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert n.reloading("reloading config")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    fields = recv(sock)
    assert fields[0] == "RELOADING=1"
    key, _, value = fields[1].partition("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after
    assert fields[2] == "STATUS=reloading config"
    n.close()


def test_abstract_socket_address() -> None:
    name = f"vrrpd-test-sm-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert recv(sock) == ["READY=1"]
        n.close()
    finally:
        sock.close()


def test_no_notify_socket_is_a_noop() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert not n.ready() and not n.status("x") and not n.reloading() and not n.stopping()
    assert not n.watchdog() and n.watchdog_interval() is None
    assert n.sent == 0 and n.failed == 0


def test_vanished_manager_counts_a_failure_without_raising(tmp_path: Path) -> None:
    n = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not n.ready()
    assert n.failed == 1 and n.sent == 0


def test_watchdog_honours_usec_and_pid(manager: tuple[str, socket.socket]) -> None:
    path, sock = manager
    mine = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000",
                              "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval() == pytest.approx(2.0)
    assert mine.watchdog()
    assert recv(sock) == ["WATCHDOG=1"]
    no_pid = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})
    assert no_pid.watchdog_interval() == pytest.approx(0.5)
    other = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000",
                               "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval() is None and not other.watchdog()
    bad = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"})
    assert bad.watchdog_interval() is None
    for n in (mine, no_pid, other):
        n.close()


def test_from_env_unset_hides_variables_from_children(
        manager: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = manager
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    n = Notifier.from_env(unset=True)
    assert n.enabled and n.watchdog_interval() == pytest.approx(1.0)
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ


async def test_run_watchdog_pings_only_while_healthy(
        manager: tuple[str, socket.socket]) -> None:
    path, sock = manager
    sock.setblocking(False)
    n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # ping every 50 ms
    healthy = True
    task = asyncio.create_task(run_watchdog(n, lambda: healthy))
    try:
        await asyncio.sleep(0.5)
        healthy = False
        await asyncio.sleep(0.1)  # a ping in flight when the flag flipped may still land
        pings = []
        while True:
            try:
                pings.append(sock.recv(64))
            except BlockingIOError:
                break
        assert pings and set(pings) == {b"WATCHDOG=1"}
        assert 3 <= len(pings) <= 13  # ~10 expected in 0.5 s; generous for a loaded machine
        await asyncio.sleep(0.3)
        with pytest.raises(BlockingIOError):
            sock.recv(64)  # unhealthy: no ping at all
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        n.close()


async def test_run_watchdog_returns_without_watchdog() -> None:
    await asyncio.wait_for(run_watchdog(Notifier.from_env({}), lambda: True), timeout=1.0)
