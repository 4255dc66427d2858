"""sd_notify(3) without libsystemd: datagrams to ``$NOTIFY_SOCKET`` (a path, or ``@name`` abstract).

Every method is a no-op returning False when the service was not started by systemd (no
``NOTIFY_SOCKET``), so the daemon calls them unconditionally.  Sending never blocks: the socket is
non-blocking and a full queue or a vanished manager is reported as False, never raised.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping


class Notifier:
    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec  # None: no watchdog requested for this process
        self.sent = 0
        self.failed = 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, pid: int | None = None,
                 unset: bool = False) -> Notifier:
        """Read NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID (the watchdog is ours only when
        WATCHDOG_PID is unset or names ``pid``, default this process).  ``unset=True`` removes
        them from ``os.environ`` so children (notify scripts, MISC_CHECK) do not inherit them."""
        src = os.environ if env is None else env
        address = src.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        try:
            usec = int(src.get("WATCHDOG_USEC", "")) or None
        except ValueError:
            usec = None
        wd_pid = src.get("WATCHDOG_PID")
        if usec is not None and wd_pid and wd_pid.strip() != str(pid or os.getpid()):
            usec = None
        if unset and env is None:
            for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(key, None)
        return cls(address, watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send one datagram of newline-separated ``KEY=VALUE`` fields."""
        if self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(fields).encode(), target)
        except OSError:
            self.failed += 1
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text.replace(chr(10), ' ')}")

    def reloading(self, status: str | None = None) -> bool:
        """RELOADING=1 with MONOTONIC_USEC (required by Type=notify-reload); send ready() after."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        extra = [f"STATUS={status}"] if status else []
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", *extra)

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """WATCHDOG=1, only when systemd asked this process for it (WatchdogSec=)."""
        if self.watchdog_usec is None:
            return False
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of WATCHDOG_USEC (as sd_watchdog_enabled(3) advises)."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def run_watchdog(notifier: Notifier, healthy: Callable[[], bool]) -> None:
    """Ping the watchdog every ``watchdog_interval()`` s while ``healthy()`` says the loops make
    progress; a stuck loop (this task never runs) or ``healthy() == False`` lets systemd kill
    and restart the service.  Returns at once without a watchdog; cancel it to stop."""
    interval = notifier.watchdog_interval()
    if interval is None:
        return
    while True:
        if healthy():
            notifier.watchdog()
        await asyncio.sleep(interval)
