"""Run an external command safely from asyncio (vrrp_script, notify, MISC_CHECK, quorum_up/down).

Contract (``run``):
- no shell: ``argv`` is executed directly (``argv[0]`` is a path or a name looked up in ``PATH``);
- the child starts a new session (its own process group, no controlling terminal), stdin is
  /dev/null, stdout and stderr are merged and only the last ``tail_bytes`` are kept;
- on ``timeout`` the whole process group gets SIGTERM, then SIGKILL after ``kill_grace`` seconds;
- the child loses every ambient and inheritable capability (a daemon running as a service user
  with ``AmbientCapabilities=`` must not hand CAP_NET_ADMIN to scripts); with ``user``/``group``
  it runs under that uid/gid (supplementary groups from the user's group list);
- a failure to start (missing file, not executable, unknown user) is a result with ``error`` set,
  never an exception; cancelling the awaiting task kills the process group too;
- the event loop is never blocked: waiting and reading are asynchronous.

``ProcessLimiter(max_concurrent)`` bounds how many commands run at once; ``timeout`` counts from
the moment a command actually starts, not from when it began waiting for a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import grp
import os
import pwd
import signal as signal_mod
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_KILL_GRACE",
    "DEFAULT_TAIL_BYTES",
    "ProcessLimiter",
    "ProcessResult",
    "ProcessRunner",
    "run",
]

DEFAULT_TAIL_BYTES = 4096
DEFAULT_KILL_GRACE = 1.0
_READER_GRACE = 0.2  # how long to keep reading output after the command itself exited

# <linux/prctl.h>, <linux/capability.h>
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


@dataclass(frozen=True)
class ProcessResult:
    """What happened to one command.

    ``exit_code`` is None when the command was killed by a signal (then ``signal`` is set) or
    could not start (then ``error`` says why). ``output_tail`` is the end of stdout+stderr.
    """

    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration: float
    output_tail: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Exit status 0 within the timeout (keepalived's notion of success)."""
        return self.exit_code == 0 and not self.timed_out


class ProcessRunner(Protocol):
    """The signature of ``run``; inject it (or a fake) where commands are executed."""

    async def __call__(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        user: str | int | None = None,
        group: str | int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ProcessResult: ...


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_capget = _libc.capget
_capset = _libc.capset


def _drop_capabilities() -> None:
    """Runs in the child between fork and exec: clear ambient and inheritable capabilities.

    Only pre-resolved libc calls; no imports, no logging (other threads' locks may be held).
    """
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _capget(ctypes.byref(header), data) == 0:
        data[0].inheritable = 0
        data[1].inheritable = 0
        _capset(ctypes.byref(header), data)


@dataclass(frozen=True)
class _Identity:
    uid: int | None
    gid: int | None
    groups: tuple[int, ...] | None


def _resolve_identity(user: str | int | None, group: str | int | None) -> _Identity:
    """Names -> ids (local NSS lookup). Raises KeyError with a readable message."""
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None
    if user is not None:
        try:
            pw = pwd.getpwuid(user) if isinstance(user, int) else pwd.getpwnam(user)
        except KeyError:
            raise KeyError(f"unknown user {user!r}") from None
        uid = pw.pw_uid
        gid = pw.pw_gid
    if group is not None:
        try:
            gid = (grp.getgrgid(group) if isinstance(group, int) else grp.getgrnam(group)).gr_gid
        except KeyError:
            raise KeyError(f"unknown group {group!r}") from None
    if user is not None:
        assert gid is not None
        name = pw.pw_name
        groups = tuple(sorted(set(os.getgrouplist(name, gid))))
    return _Identity(uid, gid, groups)


class _Tail:
    """Keeps the last ``limit`` bytes written to it."""

    def __init__(self, limit: int) -> None:
        self._limit = max(0, limit)
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        if len(self._buf) > self._limit:
            del self._buf[: len(self._buf) - self._limit]

    def text(self) -> str:
        return self._buf.decode("utf-8", errors="replace")


class _PipeReader:
    """Reads the output pipe with ``loop.add_reader`` into a ``_Tail`` until EOF or ``close()``.

    Our own pipe, not asyncio's: asyncio's ``Process.wait()`` also waits for its pipes to close,
    which a grandchild holding stdout would delay indefinitely.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, tail: _Tail) -> None:
        self._loop = loop
        self._fd = fd
        self._tail = tail
        self.eof = loop.create_future()
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            chunk = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self._tail.feed(chunk)
        else:
            self.close()

    def close(self) -> None:
        if self._fd < 0:
            return
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
        if not self.eof.done():
            self.eof.set_result(None)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _kill_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group, give the leader ``grace`` seconds, then SIGKILL whatever is left."""
    pgid = proc.pid  # start_new_session: the child is its group's leader
    _killpg(pgid, signal_mod.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.wait(), grace)
    # Always SIGKILL: the leader may have exited on SIGTERM while its children ignore it.
    _killpg(pgid, signal_mod.SIGKILL)
    await proc.wait()


async def run(
    argv: Sequence[str],
    *,
    timeout: float,
    user: str | int | None = None,
    group: str | int | None = None,
    env: Mapping[str, str] | None = None,
    limiter: ProcessLimiter | None = None,
    tail_bytes: int = DEFAULT_TAIL_BYTES,
    kill_grace: float = DEFAULT_KILL_GRACE,
) -> ProcessResult:
    """Run ``argv`` without a shell and return how it ended (see the module docstring).

    ``env=None`` inherits the daemon's environment. ``limiter`` bounds concurrency.
    """
    if limiter is not None:
        async with limiter.slot():
            return await _run(argv, timeout, user, group, env, tail_bytes, kill_grace)
    return await _run(argv, timeout, user, group, env, tail_bytes, kill_grace)


def _failed(start: float, error: str) -> ProcessResult:
    return ProcessResult(None, None, False, time.monotonic() - start, "", error)


async def _run(
    argv: Sequence[str],
    timeout: float,
    user: str | int | None,
    group: str | int | None,
    env: Mapping[str, str] | None,
    tail_bytes: int,
    kill_grace: float,
) -> ProcessResult:
    start = time.monotonic()
    if not argv:
        return _failed(start, "empty command")
    try:
        ident = _resolve_identity(user, group)
    except KeyError as exc:
        return _failed(start, str(exc.args[0]))
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
            user=ident.uid,
            group=ident.gid,
            extra_groups=list(ident.groups) if ident.groups is not None else None,
            preexec_fn=_drop_capabilities,
        )
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        os.close(read_fd)
        return _failed(start, f"cannot run {argv[0]!r}: {exc}")
    finally:
        os.close(write_fd)

    tail = _Tail(tail_bytes)
    reader = _PipeReader(loop, read_fd, tail)
    timed_out = False
    try:
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            timed_out = True
            await _kill_group(proc, kill_grace)
        # A grandchild may keep the pipe open: read a little longer, then give up on it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(reader.eof), _READER_GRACE)
    except asyncio.CancelledError:
        if proc.returncode is None:
            await asyncio.shield(_kill_group(proc, 0.0))
        raise
    finally:
        reader.close()

    duration = time.monotonic() - start
    rc = proc.returncode
    assert rc is not None
    if rc < 0:
        return ProcessResult(None, -rc, timed_out, duration, tail.text())
    return ProcessResult(rc, None, timed_out, duration, tail.text())


class ProcessLimiter:
    """Bounds how many commands run at once (FIFO among waiters)."""

    def __init__(self, max_concurrent: int) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be >= 1")
        self.max_concurrent = max_concurrent
        self._sem = asyncio.Semaphore(max_concurrent)
        self._running = 0
        self._waiting = 0

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with limiter.slot():`` holds one of the ``max_concurrent`` slots."""
        self._waiting += 1
        try:
            await self._sem.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._sem.release()

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        user: str | int | None = None,
        group: str | int | None = None,
        env: Mapping[str, str] | None = None,
        tail_bytes: int = DEFAULT_TAIL_BYTES,
        kill_grace: float = DEFAULT_KILL_GRACE,
    ) -> ProcessResult:
        """``run(...)`` inside one of this limiter's slots (matches ``ProcessRunner``)."""
        return await run(
            argv,
            timeout=timeout,
            user=user,
            group=group,
            env=env,
            limiter=self,
            tail_bytes=tail_bytes,
            kill_grace=kill_grace,
        )


def _conformance() -> None:  # pragma: no cover - checked by mypy only
    _r: ProcessRunner = run
    _l: ProcessRunner = ProcessLimiter(1).run
