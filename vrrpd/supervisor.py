"""Process isolation: a small parent runs the VRRP child (``-P``) and the checker/IPVS child
(``-C``), as keepalived does, so a storm of checks or a hung script never delays an advert.

    code = asyncio.run(Supervisor(args, config, config_id=...).run())

The parent:
- spawns ``python -m vrrpd <same options> -n -P|-C --config-id ID --control-socket <ctl>.<role>``;
  each child sets PR_SET_PDEATHSIG=SIGKILL first thing (``supervisor_parts.child_setup``), so a
  SIGKILLed parent leaves no orphan;
- gives each child its own ``NOTIFY_SOCKET`` (an abstract datagram socket of the parent's,
  sender checked with SCM_CREDENTIALS): the child's ordinary sd_notify READY/RELOADING/STATUS
  reach the parent, which alone talks to systemd: READY=1 once every child is ready;
  watchdog pings while the VRRP child is alive and the checker child is alive or waiting for
  its respawn (a crash-looping checker must not make systemd restart VRRP);
- forwards SIGHUP/SIGUSR1/SIGUSR2; SIGTERM/SIGINT -> SIGTERM to the children, waits at most
  ``stop_timeout``, SIGKILLs stragglers, exits 0;
- respawns a child that died (``BackoffPolicy``: 1 s doubling to 30 s, reset after 60 s up),
  logged and counted; a child exiting 4 (config cannot run) is not respawned, and when no
  child is left the parent exits 4;
- pid files: ``-p`` its own, ``-r``/``-c`` the current VRRP/checker child pid;
- serves the control socket with the children's documents merged plus a ``processes``
  section (``vrrpd.control.merge_documents``), and ``--metrics`` from the same document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from vrrpd.supervisor_parts import (
    ENV_PARENT,
    ENV_ROLE,
    ROLES,
    BackoffPolicy,
    Role,
    child_options,
    control_socket_for,
    describe_exit,
    parse_notify,
)

__all__ = ["EXIT_CANNOT_RUN", "Child", "Supervisor"]

log = structlog.get_logger("vrrpd.supervisor")

EXIT_CANNOT_RUN = 4
_UCRED = struct.Struct("3i")
_NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass
class Child:
    """One supervised role and its current process (mutable state, owned by the loop)."""

    role: Role
    control_socket: str
    pid_file: Path | None
    notify_address: str = ""
    proc: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    started_at: float = 0.0  # time.monotonic() of the last spawn
    started_wall: float | None = None
    restarts: int = 0
    delay: float | None = None  # the last backoff delay used
    last_exit: str | None = None
    ready: bool = False
    reloading: bool = False
    status_text: str | None = None
    given_up: bool = False  # exited 4: not respawned
    respawn: asyncio.TimerHandle | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive and self.proc is not None else None

    def info(self, now: float) -> dict[str, Any]:
        return {"role": self.role.name, "pid": self.pid, "alive": self.alive,
                "ready": self.ready, "restarts": self.restarts,
                "uptime": round(now - self.started_at, 3) if self.alive else None,
                "started_at": self.started_wall if self.alive else None,
                "last_exit": self.last_exit, "given_up": self.given_up,
                "respawn_pending": self.respawn is not None,
                "status": self.status_text, "control_socket": self.control_socket}


class Supervisor:
    def __init__(self, args: argparse.Namespace, config: Any, *, config_id: str,
                 policy: BackoffPolicy | None = None, stop_timeout: float = 30.0,
                 python: str = sys.executable) -> None:
        from vrrpd.cli import build_parser
        from vrrpd.control import DEFAULT_SOCKET

        self.args = args
        self.config = config
        self.config_id = config_id
        self.policy = policy or BackoffPolicy()
        self.stop_timeout = stop_timeout
        self.python = python
        self.control_socket = getattr(args, "control_socket", None) or DEFAULT_SOCKET
        self._parser = build_parser()
        self.children = [
            Child(role, control_socket_for(self.control_socket, role.name),
                  Path(p) if (p := getattr(args, role.pid_attr, None)) else None)
            for role in ROLES]
        self.started_at = time.time()
        self._stopping = asyncio.Event()
        self._stop_requested = False
        self._exit_code = 0
        self._all_ready_sent = False
        self._notify_socks: dict[str, socket.socket] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sd: Any = None

    # ---------------------------------------------------------------- run

    async def run(self) -> int:
        from vrrpd.sdnotify import Notifier, run_watchdog

        loop = self._loop = asyncio.get_running_loop()
        structlog.contextvars.bind_contextvars(process="parent")
        self._sd = Notifier.from_env(unset=True)  # the children must not inherit it
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            loop.add_signal_handler(sig, self.forward, sig)
        for early in _early_signals:
            self.request_stop(early)
        ctl = metrics = None
        watchdog: asyncio.Task[None] | None = None
        try:
            for child in self.children:
                self._open_notify(child)
            ctl = await self._start_control()
            metrics = self._start_metrics()
            for child in self.children:
                if not self._stop_requested:
                    self._spawn(child)
            watchdog = asyncio.ensure_future(run_watchdog(self._sd, self.healthy))
            await self._stopping.wait()
        finally:
            self._sd.stopping()
            if watchdog is not None:
                watchdog.cancel()
            await self._stop_children()
            if metrics is not None:
                metrics.stop()
            if ctl is not None:
                await ctl.stop()
            for sock in self._notify_socks.values():
                with contextlib.suppress(Exception):
                    loop.remove_reader(sock.fileno())
                sock.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1,
                        signal.SIGUSR2):
                loop.remove_signal_handler(sig)
            self._sd.close()
        log.info("supervisor_stopped", code=self._exit_code)
        return self._exit_code

    def request_stop(self, signame: str = "") -> None:
        if not self._stop_requested:
            log.info("signal", signal=signame or "stop", action="stop children")
        self._stop_requested = True
        self._stopping.set()

    def forward(self, sig: int) -> None:
        name = signal.Signals(sig).name
        pids = []
        for child in self.children:
            if child.alive and child.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(sig)
                    pids.append(child.proc.pid)
        log.info("signal", signal=name, action="forwarded", pids=pids)

    def healthy(self) -> bool:
        for child in self.children:
            if child.role.name == "vrrp" and not child.alive and not child.given_up:
                return False
            if not child.alive and child.respawn is None and not child.given_up:
                return False
        return True

    # ---------------------------------------------------------------- children

    def _child_env(self, child: Child) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _NOTIFY_ENV}
        env[ENV_PARENT] = str(os.getpid())
        env[ENV_ROLE] = child.role.name
        env["NOTIFY_SOCKET"] = child.notify_address
        if child.role.name == "check":  # our start-up IPVS replay, for its log (fast_start)
            from vrrpd.fast_start import child_env

            env.update(child_env())
        return env

    def argv(self, child: Child) -> list[str]:
        return [self.python, "-m", "vrrpd", *child_options(
            self._parser, self.args, child.role, config_id=self.config_id,
            control_socket=child.control_socket)]

    def _spawn(self, child: Child) -> None:
        child.respawn = None
        if self._stop_requested:
            return
        assert self._loop is not None
        argv = self.argv(child)
        try:
            proc = subprocess.Popen(argv, env=self._child_env(child), stdin=subprocess.DEVNULL,
                                    close_fds=True)
        except OSError as exc:
            log.error("child_spawn_failed", role=child.role.name, error=str(exc))
            child.last_exit = f"spawn failed: {exc}"
            self._schedule_respawn(child, uptime=0.0)
            return
        child.proc = proc
        child.exited = asyncio.Event()
        child.ready = child.reloading = False
        child.status_text = None
        child.started_at, child.started_wall = time.monotonic(), time.time()
        child.pidfd = os.pidfd_open(proc.pid)
        self._loop.add_reader(child.pidfd, self._on_exit, child)
        if child.pid_file is not None:
            with contextlib.suppress(OSError):
                child.pid_file.write_text(f"{proc.pid}\n")
        log.info("child_started", role=child.role.name, pid=proc.pid, restarts=child.restarts)

    def _on_exit(self, child: Child) -> None:
        assert self._loop is not None and child.proc is not None
        if child.pidfd is not None:
            self._loop.remove_reader(child.pidfd)
            os.close(child.pidfd)
            child.pidfd = None
        code = child.proc.wait()
        uptime = time.monotonic() - child.started_at
        child.last_exit = describe_exit(code)
        child.ready = child.reloading = False
        child.exited.set()
        if self._stop_requested:
            log.info("child_stopped", role=child.role.name, pid=child.proc.pid,
                     exit=child.last_exit)
            return
        if code == EXIT_CANNOT_RUN:
            child.given_up = True
            log.error("child_cannot_run", role=child.role.name, pid=child.proc.pid,
                      exit=child.last_exit, action="not respawned")
            if all(c.given_up or (not c.alive and c.respawn is None) for c in self.children):
                self._exit_code = EXIT_CANNOT_RUN
                self.request_stop("children cannot run")
            return
        child.restarts += 1
        self._schedule_respawn(child, uptime)
        log.warning("child_died", role=child.role.name, pid=child.proc.pid,
                    exit=child.last_exit, uptime=round(uptime, 3), restarts=child.restarts,
                    respawn_in=child.delay)
        self._sd.status(self._status_line())

    def _schedule_respawn(self, child: Child, uptime: float) -> None:
        assert self._loop is not None
        child.delay = self.policy.next_delay(child.delay, uptime)
        child.respawn = self._loop.call_later(child.delay, self._spawn, child)

    async def _stop_children(self) -> None:
        loop = asyncio.get_running_loop()
        for child in self.children:
            if child.respawn is not None:
                child.respawn.cancel()
                child.respawn = None
        running = [c for c in self.children if c.alive]
        for child in running:
            assert child.proc is not None
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(signal.SIGTERM)
        started = loop.time()
        pending = [asyncio.ensure_future(c.exited.wait()) for c in running]
        if pending:
            await asyncio.wait(pending, timeout=self.stop_timeout)
        for child in running:
            if child.alive and child.proc is not None:
                log.error("child_stop_timeout", role=child.role.name, pid=child.proc.pid,
                          timeout=self.stop_timeout, action="SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    child.proc.kill()
        if any(not p.done() for p in pending):
            await asyncio.wait(pending, timeout=5.0)
        for p in pending:
            p.cancel()
        for child in self.children:  # reap anything the pidfd callback did not
            if child.pidfd is not None:
                loop.remove_reader(child.pidfd)
                os.close(child.pidfd)
                child.pidfd = None
            if child.proc is not None and child.proc.returncode is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(1.0)
            if child.pid_file is not None:
                with contextlib.suppress(OSError):
                    child.pid_file.unlink()
        if running:
            log.info("children_stopped", seconds=round(loop.time() - started, 3))

    # ---------------------------------------------------------------- sd_notify from children

    def _open_notify(self, child: Child) -> None:
        assert self._loop is not None
        name = f"vrrpd-{os.getpid()}-{child.role.name}-{secrets.token_hex(4)}"
        sock = socket.socket(socket.AF_UNIX,
                             socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        sock.bind("\0" + name)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        child.notify_address = "@" + name
        self._notify_socks[child.role.name] = sock
        self._loop.add_reader(sock.fileno(), self._on_notify, child, sock)

    def _on_notify(self, child: Child, sock: socket.socket) -> None:
        while True:
            try:
                data, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(_UCRED.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            sender = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    sender = _UCRED.unpack(payload[:_UCRED.size])[0]
            if sender is None or sender != child.pid:
                continue  # a previous instance of the child, or someone else
            self._child_notified(child, parse_notify(data))

    def _child_notified(self, child: Child, fields: dict[str, str]) -> None:
        if "STATUS" in fields:
            child.status_text = fields["STATUS"]
        if fields.get("RELOADING") == "1":
            child.reloading = True
            if self._all_ready_sent:
                self._sd.reloading(f"{child.role.name} reloading")
        if fields.get("READY") == "1":
            child.ready, child.reloading = True, False
            log.info("child_ready", role=child.role.name, pid=child.pid,
                     status=child.status_text)
        if fields.get("STOPPING") == "1":
            child.ready = False
        self._update_ready()

    def _update_ready(self) -> None:
        active = [c for c in self.children if not c.given_up]
        if active and all(c.ready and not c.reloading for c in active):
            self._sd.ready(self._status_line())
            if not self._all_ready_sent:
                log.info("ready", children={c.role.name: c.pid for c in active})
            self._all_ready_sent = True
        else:
            self._sd.status(self._status_line())

    def _status_line(self) -> str:
        return "; ".join(
            f"{c.role.name}: {c.status_text or ('ready' if c.ready else 'starting')}"
            if c.alive else f"{c.role.name}: down ({c.last_exit}, restarts {c.restarts})"
            for c in self.children)

    # ---------------------------------------------------------------- status

    def processes(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        parent = {"role": "parent", "pid": os.getpid(), "alive": True,
                  "ready": self._all_ready_sent, "restarts": 0,
                  "uptime": round(time.time() - self.started_at, 3),
                  "started_at": self.started_at, "last_exit": None, "given_up": False,
                  "respawn_pending": False, "status": None,
                  "control_socket": self.control_socket}
        return [parent, *(c.info(now) for c in self.children)]

    def document_blocking(self, processes: list[dict[str, Any]] | None = None,
                          timeout: float = 5.0) -> dict[str, Any]:
        """The merged document; asks each live child over its control socket (blocking:
        call it from a thread)."""
        from vrrpd.control import ControlError, merge_documents, request

        processes = processes if processes is not None else self.processes()
        docs: dict[str, Any] = {}
        for proc in processes[1:]:
            if not proc["alive"]:
                continue
            try:
                reply = request(proc["control_socket"], {"cmd": "status"}, timeout=timeout)
            except ControlError as exc:
                proc["error"] = str(exc)
                continue
            if reply.get("ok") and isinstance(reply.get("status"), dict):
                docs[proc["role"]] = reply["status"]
            else:
                proc["error"] = str(reply.get("error", "bad reply"))
        gd = getattr(self.config, "global_defs", None)
        daemon = {"pid": os.getpid(), "router_id": getattr(gd, "router_id", None),
                  "config": getattr(self.args, "config", None), "started_at": self.started_at}
        return merge_documents(daemon, docs, processes)

    async def _status(self, _req: dict[str, Any]) -> dict[str, Any]:
        doc = await asyncio.to_thread(self.document_blocking, self.processes())
        return {"ok": True, "status": doc}

    async def _start_control(self) -> Any:
        from vrrpd.control import ControlServer

        ctl = ControlServer(self.control_socket, commands={
            "status": self._status,
            "processes": lambda _req: {"ok": True, "processes": self.processes()}})
        try:
            await ctl.start()
        except (OSError, RuntimeError) as exc:
            log.warning("control socket not available", path=self.control_socket,
                        error=str(exc))
            return None
        return ctl

    def _start_metrics(self) -> Any:
        listen = getattr(self.args, "metrics", None)
        if not listen:
            return None
        from vrrpd.metrics import MetricsServer

        document: Callable[[], Any] = self.document_blocking  # runs in the HTTP thread
        try:
            server = MetricsServer(document, listen, loop=None)
            host, port = server.start()
        except (OSError, ValueError) as exc:
            log.warning("metrics endpoint not available", listen=listen, error=str(exc))
            return None
        log.info("metrics", listen=f"{host}:{port}")
        return server


_early_signals: list[str] = []


def _early_handler(signum: int, _frame: object) -> None:
    _early_signals.append(signal.Signals(signum).name)


def run_supervisor(args: argparse.Namespace, config: Any, *, config_id: str) -> int:
    """From ``run_daemon``: pid file ``-p``, then the supervisor loop."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _early_handler)
    pid_file = Path(args.pid) if getattr(args, "pid", None) else None
    if pid_file is not None:
        pid_file.write_text(f"{os.getpid()}\n")
    log.info("starting", mode="isolated", config=args.config, pid=os.getpid(),
             instances=len(config.vrrp_instances), virtual_servers=len(config.virtual_servers))
    try:
        return asyncio.run(Supervisor(args, config, config_id=config_id).run())
    finally:
        if pid_file is not None:
            with contextlib.suppress(OSError):
                pid_file.unlink()
