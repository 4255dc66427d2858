"""Control socket: line-delimited JSON over a unix stream socket, root (or our uid) only.

Server (in the daemon's loop)::

    server = ControlServer(path, status=daemon_status.document)
    await server.start() ... await server.stop()

Protocol: one JSON object per line in, one per line out, several per connection.
``{"cmd": "status"}`` -> ``{"ok": true, "status": <StatusDocument>}``; ``{"cmd": "ping"}`` ->
``{"ok": true, "pid": N}``; anything else -> ``{"ok": false, "error": "..."}`` (bad JSON, a
non-object, an unknown command, a line over ``MAX_REQUEST`` bytes: the connection is then
closed).  Extra commands can be registered (``commands={"reload": fn}``).

Access: the socket file is created mode 0600 (umask 0177 around ``bind``, then ``chmod``) and
every connection's SO_PEERCRED uid must be 0 or the daemon's own uid; others get
``permission denied`` and are disconnected.  A stale socket is replaced; a live one (another
daemon answering) is an error, as is a non-socket file at the path.

Client: :func:`request` (blocking, for the CLI) and :func:`status_main` for
``vrrpd status [--json] [--socket PATH]`` live in :mod:`vrrpd.control_client` (no asyncio or
structlog import for a CLI call) and are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import stat
import struct
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from vrrpd.control_client import (
    DEFAULT_SOCKET,
    SOCKET_ENV,
    ControlError,
    Reply,
    request,
    status_main,
)
from vrrpd.status import StatusDocument

__all__ = ["DEFAULT_SOCKET", "MAX_REQUEST", "SOCKET_ENV", "ControlError", "ControlServer", "Reply",
           "merge_documents", "request", "status_main"]

log = structlog.get_logger("vrrpd.control")

MAX_REQUEST = 64 * 1024
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid

Handler = Callable[[dict[str, Any]], Any]  # request -> reply (or an awaitable of one)


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return pid, uid, gid


def _bind_private(path: Path) -> socket.socket:
    if path.exists() or path.is_symlink():
        st = path.lstat()
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody listens
        else:
            raise RuntimeError(f"another daemon is listening on {path}")
        finally:
            probe.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.setblocking(False)
    return sock


class ControlServer:
    def __init__(self, path: str | os.PathLike[str] = DEFAULT_SOCKET, *,
                 status: Callable[[], StatusDocument] | None = None,
                 commands: Mapping[str, Handler] | None = None,
                 idle_timeout: float = 60.0) -> None:
        self.path = Path(path)
        self.idle_timeout = idle_timeout
        self._commands: dict[str, Handler] = {"ping": lambda _req: {"ok": True,
                                                                     "pid": os.getpid()}}
        if status is not None:
            self._commands["status"] = lambda _req: {"ok": True, "status": status()}
        self._commands.update(commands or {})
        self._allowed = {0, os.geteuid()}
        self._server: asyncio.base_events.Server | None = None
        self._inode: int | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self.requests = 0
        self.denied = 0
        self.errors = 0

    async def start(self) -> None:
        sock = _bind_private(self.path)
        self._inode = self.path.stat().st_ino
        self._server = await asyncio.start_unix_server(self._client, sock=sock,
                                                       limit=MAX_REQUEST)
        log.info("control_socket", path=str(self.path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._clients):
                task.cancel()
            if self._clients:
                await asyncio.gather(*self._clients, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(OSError):
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        self._inode = None

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        pid, uid, _gid = peer_credentials(sock)
        if uid not in self._allowed:
            self.denied += 1
            log.warning("control_denied", peer_pid=pid, peer_uid=uid)
            await self._send(writer, {"ok": False, "error": "permission denied"})
            return
        while True:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), self.idle_timeout)
            except asyncio.IncompleteReadError as exc:
                if not exc.partial.strip():
                    return
                line = exc.partial  # last request without a newline
            except asyncio.LimitOverrunError:
                self.errors += 1
                await self._send(writer, {"ok": False,
                                          "error": f"request longer than {MAX_REQUEST} bytes"})
                return
            if not line.strip():
                continue
            await self._send(writer, await self._answer(line))
            if reader.at_eof():
                return

    async def _answer(self, line: bytes) -> Reply:
        self.requests += 1
        try:
            req = json.loads(line)
        except ValueError as exc:
            self.errors += 1
            return {"ok": False, "error": f"invalid JSON: {exc}"}
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            self.errors += 1
            return {"ok": False, "error": 'a request is a JSON object {"cmd": "..."}'}
        handler = self._commands.get(req["cmd"])
        if handler is None:
            self.errors += 1
            return {"ok": False, "error": f"unknown command {req['cmd']!r}",
                    "commands": sorted(self._commands)}
        try:
            reply = handler(req)
            if inspect.isawaitable(reply):
                reply = await reply
        except Exception as exc:
            self.errors += 1
            log.exception("control_command_failed", cmd=req["cmd"])
            return {"ok": False, "error": f"{req['cmd']} failed: {type(exc).__name__}: {exc}"}
        return dict(reply)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: Reply) -> None:
        # the reply is a fresh object nobody else holds: serialise it off the loop
        data = await asyncio.to_thread(_encode, reply)
        writer.write(data)
        await writer.drain()


def _encode(reply: Reply) -> bytes:
    return json.dumps(reply, separators=(",", ":"), default=str).encode() + b"\n"


# ---- several processes -----------------------------------------------------------------------


def merge_documents(daemon: Mapping[str, Any], docs: Mapping[str, Mapping[str, Any]],
                    processes: Sequence[Mapping[str, Any]], *,
                    now: float | None = None) -> dict[str, Any]:
    """One document for a supervised daemon (``vrrpd.supervisor``): instances from the VRRP
    child (``docs["vrrp"]``), virtual servers and IPVS counters from the checker child
    (``docs["check"]``), reload outcomes summed, ``daemon`` describing the parent (``parts``
    = what the children that answered run) and a ``processes`` list (parent first: role, pid,
    alive, ready, restarts, uptime, last_exit, ...).  A child that did not answer simply
    contributes nothing; its ``processes`` entry says why."""
    import time

    vrrp, check = docs.get("vrrp") or {}, docs.get("check") or {}
    parts: list[str] = []
    for d in (vrrp, check):
        for part in (d.get("daemon") or {}).get("parts", []):
            if part not in parts:
                parts.append(part)
    reloads: dict[str, Any] = {"succeeded": 0, "failed": 0, "last_result": None,
                               "last_at": None, "errors": []}
    for d in (vrrp, check):
        r = d.get("reloads")
        if not r:
            continue
        reloads["succeeded"] += r.get("succeeded", 0)
        reloads["failed"] += r.get("failed", 0)
        reloads["errors"] += list(r.get("errors", []))
        if r.get("last_at") is not None and (reloads["last_at"] is None
                                             or r["last_at"] >= reloads["last_at"]):
            reloads["last_at"], reloads["last_result"] = r["last_at"], r.get("last_result")
    mails = [d["mail"] for d in (vrrp, check) if d.get("mail")]
    info = {"pid": daemon.get("pid", os.getpid()), "router_id": daemon.get("router_id"),
            "config": daemon.get("config"), "started_at": daemon.get("started_at"),
            "parts": parts}
    merged: dict[str, Any] = {
        "version": vrrp.get("version") or check.get("version") or 1,
        "generated_at": time.time() if now is None else now,
        "daemon": info,
        "instances": list(vrrp.get("instances", [])),
        "virtual_servers": list(check.get("virtual_servers", [])),
        "lvs": check.get("lvs"),
        "reloads": reloads,
        "processes": [dict(p) for p in processes],
    }
    if mails:  # each child mails for its own part: counters summed
        merged["mail"] = {k: sum(m.get(k, 0) for m in mails) for k in ("sent", "failed", "dropped")}
        merged["mail"]["last_error"] = next((m["last_error"] for m in mails
                                             if m.get("last_error")), None)
    return merged
