"""``vrrpd status``: the control socket's client side (blocking), apart from the server so the
command imports neither asyncio nor structlog (a CLI call starts in a fraction of the daemon's
time; the protocol is described in :mod:`vrrpd.control`)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

__all__ = ["DEFAULT_SOCKET", "SOCKET_ENV", "ControlError", "Reply", "request", "status_main"]

DEFAULT_SOCKET = "/run/vrrpd/vrrpd.ctl"
SOCKET_ENV = "VRRPD_CONTROL_SOCKET"

Reply = dict[str, Any]


class ControlError(Exception):
    """The client could not talk to the daemon."""


def request(path: str | os.PathLike[str], payload: Mapping[str, Any], *,
            timeout: float = 10.0) -> Reply:
    """Send one request, return the reply (blocking).  ``ControlError`` if unreachable."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(os.fspath(path))
        except FileNotFoundError:
            raise ControlError(f"{path}: no such socket (is vrrpd running?)") from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied (root only)") from None
        except OSError as exc:
            raise ControlError(f"{path}: {exc.strerror or exc}") from None
        try:
            s.sendall(json.dumps(dict(payload)).encode() + b"\n")
            buf = bytearray()
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                buf += chunk
        except OSError as exc:
            raise ControlError(f"{path}: {exc}") from None
    if not buf:
        raise ControlError(f"{path}: the daemon closed the connection without a reply")
    try:
        reply = json.loads(buf)
    except ValueError as exc:
        raise ControlError(f"{path}: unreadable reply: {exc}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"{path}: unexpected reply {reply!r}")
    return reply


EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING = 0, 1, 3


def status_main(argv: Sequence[str] | None = None, *, out: TextIO | None = None,
                err: TextIO | None = None) -> int:
    """``vrrpd status [--json] [--socket PATH] [--timeout S]``.

    Exit 0 with the status printed; 3 when the daemon cannot be reached (LSB "not
    running"); 1 when it answered with an error."""
    out = out or sys.stdout
    err = err or sys.stderr
    from vrrpd.cli import help_formatter  # argparse's own imports shutil for its width

    p = argparse.ArgumentParser(prog="vrrpd status",
                                description="show what the running vrrpd is doing",
                                formatter_class=help_formatter)
    p.add_argument("--json", action="store_true", help="the full status document as JSON")
    p.add_argument("--socket", default=os.environ.get(SOCKET_ENV, DEFAULT_SOCKET),
                   metavar="PATH", help=f"control socket (default {DEFAULT_SOCKET}, "
                                        f"or ${SOCKET_ENV})")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S")
    args = p.parse_args(list(argv) if argv is not None else None)
    try:
        reply = request(args.socket, {"cmd": "status"}, timeout=args.timeout)
    except ControlError as exc:
        print(f"vrrpd status: {exc}", file=err)
        return EXIT_NOT_RUNNING
    if not reply.get("ok") or not isinstance(reply.get("status"), dict):
        print(f"vrrpd status: {reply.get('error', 'bad reply')}", file=err)
        return EXIT_ERROR
    if args.json:
        json.dump(reply["status"], out, indent=2)
        out.write("\n")
    else:
        from vrrpd.status_text import format_status

        out.write(format_status(reply["status"]))
    return EXIT_OK
