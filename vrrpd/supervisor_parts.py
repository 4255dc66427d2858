"""The pure parts of process isolation (``vrrpd.supervisor``): which roles run, the children's
command lines and runtime paths, the respawn backoff, the child-side set-up.

keepalived's model: a small parent forks a VRRP child (``-P``) and a checker/IPVS child
(``-C``), forwards signals to them and respawns a child that dies.  Here the children are the
same program (``python -m vrrpd ... -P|-C``) started with the parent's options, a control
socket of their own (``<ctl>.vrrp`` / ``<ctl>.check``) and ``NOTIFY_SOCKET`` pointing at the
parent, which is how they report READY.
"""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ENV_PARENT",
    "ENV_ROLE",
    "ROLES",
    "BackoffPolicy",
    "Role",
    "child_options",
    "child_setup",
    "control_socket_for",
    "describe_exit",
    "parse_notify",
    "set_pdeathsig",
    "wants_isolation",
]

ENV_PARENT = "VRRPD_SUPERVISOR_PID"
ENV_ROLE = "VRRPD_CHILD_ROLE"
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Role:
    name: str  # "vrrp" | "check": the child's role, also its control socket suffix
    flag: str  # "-P" | "-C"
    pid_attr: str  # argparse dest of its pid file option (-r / -c)


ROLES = (Role("vrrp", "-P", "vrrp_pid"), Role("check", "-C", "checkers_pid"))

# options the parent resolves itself or hands to the children in its own way
_PARENT_ONLY = frozenset({
    "help", "vrrp", "check", "pid", "vrrp_pid", "checkers_pid", "control_socket", "metrics",
    "single_process", "config_id", "config_test", "dump_config", "list_ipvs", "dont_fork",
})


def wants_isolation(config: Any, args: argparse.Namespace) -> bool:
    """Two children when the config has both parts and the command line did not pick one
    (``-P``/``-C``) or ask for one process (``--single-process``)."""
    if getattr(args, "vrrp", False) or getattr(args, "check", False):
        return False
    if getattr(args, "single_process", False):
        return False
    return bool(config.vrrp_instances) and bool(config.virtual_servers)


def control_socket_for(parent_socket: str, role: str) -> str:
    """``/run/vrrpd/vrrpd.ctl`` -> ``/run/vrrpd/vrrpd.ctl.vrrp`` (one per child)."""
    return f"{parent_socket}.{role}"


def child_options(parser: argparse.ArgumentParser, args: argparse.Namespace, role: Role, *,
                  config_id: str, control_socket: str) -> list[str]:
    """The child's command line (after ``python -m vrrpd``): every option the parent was given
    that the child needs, rebuilt from the parsed namespace (so abbreviations and ``--x=y``
    forms need no parsing here), then ``-n``, the role flag, the resolved config id and the
    child's control socket.  Pid files, the metrics endpoint and the parent's own control
    socket stay with the parent."""
    out: list[str] = []
    for action in parser._actions:
        if action.dest in _PARENT_ONLY or not action.option_strings:
            continue
        value = getattr(args, action.dest, None)
        opt = next((o for o in action.option_strings if o.startswith("--")),
                   action.option_strings[0])
        if action.nargs == 0:  # store_true / store_false
            if value is not None and value != action.default:
                out.append(opt)
        elif value is not None:
            out += [opt, str(value)]
    return [*out, "-n", role.flag, "--config-id", config_id, "--control-socket", control_socket]


@dataclass(frozen=True)
class BackoffPolicy:
    """Respawn delays: ``initial`` doubling up to ``maximum``; a child that ran at least
    ``reset_after`` seconds starts again from ``initial``."""

    initial: float = 1.0
    maximum: float = 30.0
    reset_after: float = 60.0

    def next_delay(self, previous: float | None, uptime: float) -> float:
        if previous is None or uptime >= self.reset_after:
            return self.initial
        return min(max(previous, self.initial) * 2, self.maximum)


def set_pdeathsig(sig: int = signal.SIGKILL) -> bool:
    """prctl(PR_SET_PDEATHSIG): the kernel sends ``sig`` to this process when its parent dies."""
    import ctypes  # only in a supervised child

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def child_setup(environ: dict[str, str] | None = None, *,
                pdeathsig: Callable[[int], bool] = set_pdeathsig) -> str | None:
    """Run first thing in a supervised child: SIGKILL when the parent dies (a SIGKILLed
    parent leaves no orphan), and exit at once if the parent is already gone.  Returns the
    role (None when not supervised).  The two variables are removed so scripts do not see
    them."""
    env: Any = os.environ if environ is None else environ
    role = env.pop(ENV_ROLE, None)
    parent = env.pop(ENV_PARENT, None)
    if role is None:
        return None
    pdeathsig(signal.SIGKILL)
    if parent is not None and parent.isdigit() and os.getppid() != int(parent):
        os._exit(1)  # the parent died before prctl took effect
    return str(role)


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def parse_notify(data: bytes) -> dict[str, str]:
    """An sd_notify datagram: newline-separated ``KEY=VALUE``."""
    fields: dict[str, str] = {}
    for line in data.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value
    return fields
