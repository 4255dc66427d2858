"""Notify scripts and the notify FIFO for VRRP state changes; never blocks the event loop.

``Notifier.notify(kind, name, state, priority, commands)`` on a transition of an instance
(``kind="INSTANCE"``) or sync group (``"GROUP"``) to ``state`` (MASTER, BACKUP, FAULT, STOP):
1. writes the FIFO line ``INSTANCE "VI_1" MASTER 100`` (``NotifyFifo``) if a FIFO is configured;
2. runs ``notify_<state>`` (command only, no extra arguments), then the generic ``notify`` with
   keepalived's four extra arguments ``INSTANCE|GROUP name STATE priority``.
   ``state="MASTER_RX_LOWER_PRI"`` (a master heard a lower priority): FIFO line and
   ``notify_master_rx_lower_pri`` only.
Commands run without a shell through ``healthcheck.process.run`` (timeout, group kill, no
capabilities). Events of one instance/group run in order (a FIFO queue per name, so a fast
MASTER->BACKUP flap cannot run the scripts out of order); different names run concurrently.
``notify`` returns at once; ``await drain()`` waits until every queued command has finished.

``NotifyFifo(path)`` creates the FIFO if missing and opens it read-write and non-blocking
(as keepalived: no reader needed, never blocks); a line that does not fit (reader too slow)
is dropped and counted in ``dropped``. It is also usable for the checkers' ``RS``/``VS`` lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import structlog

from healthcheck.process import ProcessResult, ProcessRunner, run

if TYPE_CHECKING:
    from vrrpd.config.model_vrrp import SyncGroup, VrrpInstance

__all__ = ["CommandLike", "Notifier", "NotifyCommands", "NotifyFifo", "fifo_line"]

log = structlog.get_logger(__name__)

Kind = Literal["INSTANCE", "GROUP"]
_Job = tuple[tuple[str, ...], "CommandLike"]
DEFAULT_NOTIFY_TIMEOUT = 60.0


class CommandLike(Protocol):
    """``vrrpd.config.model_common.Command`` or anything with argv/user/group."""

    @property
    def argv(self) -> tuple[str, ...]: ...

    @property
    def user(self) -> str | None: ...

    @property
    def group(self) -> str | None: ...


@dataclass(frozen=True)
class NotifyCommands:
    """The notify_* commands of one instance or sync group (None: not configured)."""

    master: CommandLike | None = None
    backup: CommandLike | None = None
    fault: CommandLike | None = None
    stop: CommandLike | None = None
    generic: CommandLike | None = None  # ``notify``: gets the four extra arguments
    master_rx_lower_pri: CommandLike | None = None  # FIFO + this command only, no generic

    @classmethod
    def from_config(cls, block: VrrpInstance | SyncGroup) -> NotifyCommands:
        return cls(
            master=block.notify_master,
            backup=block.notify_backup,
            fault=block.notify_fault,
            stop=block.notify_stop,
            generic=block.notify,
            master_rx_lower_pri=getattr(block, "notify_master_rx_lower_pri", None),
        )

    def for_state(self, state: str) -> CommandLike | None:
        return {
            "MASTER": self.master,
            "BACKUP": self.backup,
            "FAULT": self.fault,
            "STOP": self.stop,
            "MASTER_RX_LOWER_PRI": self.master_rx_lower_pri,
        }.get(state)


def fifo_line(kind: str, name: str, state: str, priority: int) -> str:
    return f'{kind} "{name}" {state} {priority}\n'


class NotifyFifo:
    """Writes whole lines to a FIFO without ever blocking (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = 0
        self.dropped = 0
        try:
            st = os.stat(path)
        except FileNotFoundError:
            os.mkfifo(path, 0o600)
        else:
            if not stat.S_ISFIFO(st.st_mode):
                raise ValueError(f"{path} exists and is not a FIFO")
        # O_RDWR: opening does not wait for a reader and writing never gets EPIPE.
        self._fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)

    def write_line(self, line: str) -> bool:
        data = line.encode() if line.endswith("\n") else (line + "\n").encode()
        if self._fd < 0:
            self.dropped += 1
            return False
        try:
            # Lines are far below PIPE_BUF, so each write is atomic: all or nothing.
            os.write(self._fd, data)
        except (BlockingIOError, OSError) as exc:
            self.dropped += 1
            log.warning("notify fifo line dropped", path=self.path, error=str(exc))
            return False
        self.written += 1
        return True

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Notifier:
    """Runs notify commands and writes FIFO lines in the background (module docstring)."""

    def __init__(
        self,
        *,
        fifo: NotifyFifo | None = None,
        runner: ProcessRunner = run,
        timeout: float = DEFAULT_NOTIFY_TIMEOUT,
        default_user: str | None = None,
        default_group: str | None = None,
    ) -> None:
        self._fifo = fifo
        self._runner = runner
        self._timeout = timeout
        self._default_user = default_user
        self._default_group = default_group
        self._queues: dict[tuple[str, str], asyncio.Queue[list[_Job]]] = {}
        self._workers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.results: list[tuple[tuple[str, ...], ProcessResult]] = []  # last few, for debugging

    def notify(
        self, kind: Kind, name: str, state: str, priority: int, commands: NotifyCommands
    ) -> None:
        state = state.upper()
        if self._fifo is not None:
            self._fifo.write_line(fifo_line(kind, name, state, priority))
        jobs: list[_Job] = []
        specific = commands.for_state(state)
        if specific is not None:
            jobs.append((tuple(specific.argv), specific))
        if commands.generic is not None and state != "MASTER_RX_LOWER_PRI":
            extra = (kind, name, state, str(priority))
            jobs.append((tuple(commands.generic.argv) + extra, commands.generic))
        if not jobs:
            return
        key = (kind, name)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = asyncio.Queue()
            self._workers[key] = asyncio.ensure_future(self._worker(queue))
        self._pending += 1
        self._idle.clear()
        queue.put_nowait(jobs)

    async def _worker(self, queue: asyncio.Queue[list[_Job]]) -> None:
        while True:
            jobs = await queue.get()
            try:
                for argv, command in jobs:
                    await self._run(argv, command)
            finally:
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()

    async def _run(self, argv: Sequence[str], command: CommandLike) -> None:
        user = command.user if command.user is not None else self._default_user
        group = command.group if command.group is not None else self._default_group
        try:
            result = await self._runner(list(argv), timeout=self._timeout, user=user, group=group)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("notify command failed to run", argv=list(argv))
            return
        self.results = [*self.results[-31:], (tuple(argv), result)]
        if not result.ok:
            log.warning("notify command failed", argv=list(argv), exit_code=result.exit_code,
                        signal=result.signal, timed_out=result.timed_out, error=result.error)

    async def drain(self) -> None:
        """Wait until every queued notify command has run (e.g. notify_stop at shutdown)."""
        await self._idle.wait()

    async def close(self) -> None:
        for task in self._workers.values():
            task.cancel()
        for task in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        self._queues.clear()
        if self._fifo is not None:
            self._fifo.close()
