"""``vrrpd -t`` and ``vrrpd --dump-config``.

Exit codes as ``keepalived -t``: 0 ok (warnings allowed), 4 cannot run (any
FATAL), 5 errors but would run (any ERROR).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import os
import socket
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from vrrpd.config.errors import Diagnostic, Position, Severity

EXIT_OK = 0
EXIT_CANNOT_RUN = 4
EXIT_ERRORS = 5


def exit_code(diagnostics: Iterable[Diagnostic]) -> int:
    worst = max((d.severity for d in diagnostics), default=Severity.WARNING)
    if worst >= Severity.FATAL:
        return EXIT_CANNOT_RUN
    if worst >= Severity.ERROR:
        return EXIT_ERRORS
    return EXIT_OK


def format_diagnostic(d: Diagnostic) -> str:
    """``file:line:col: warning|error: message (hint)``; FATAL prints as error.

    A position reached through ``$NAME`` expansion names the definition too.
    """
    sev = "warning" if d.severity == Severity.WARNING else "error"
    text = f"{d.pos}: {sev}: {d.message}"
    hints = [d.hint] if d.hint else []
    if d.pos.via:
        hints.append("expanded from " + " <- ".join(str(p) for p in reversed(d.pos.via)))
    if hints:
        text += f" ({'; '.join(hints)})"
    return text


def to_jsonable(value: Any) -> Any:
    """Generic conversion of a model value to JSON types (no model knowledge)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) \
            else str(value)
    if isinstance(value, enum.Enum):
        return value.name if value.name is not None else str(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address |
                  ipaddress.IPv4Network | ipaddress.IPv6Network |
                  ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [to_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        items = [to_jsonable(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def load_for_check(path: str, *, config_id: str,
                   host_checks: bool = True) -> tuple[Any, list[Diagnostic]]:
    """Full load (syntax + typed model); syntax alone while no loader exists.

    ``host_checks`` adds what ``keepalived -t`` checks against the running host
    (the interfaces the config names exist).

    Returns ``(config, diagnostics)``; ``config`` is the model's ``Config`` or,
    without a loader, the tuple of syntax :class:`~vrrpd.config.nodes.Node`.
    """
    try:
        from vrrpd.config.loader import load
    except ImportError:
        from vrrpd.config.syntax import read_tree

        diagnostics: list[Diagnostic] = []
        nodes = read_tree(path, config_id=config_id, diagnostics=diagnostics)
        return nodes, diagnostics
    config, found = load(path, config_id=config_id)
    # A ~SEQ line reports its problem once per generated line, at the same place: once is enough.
    unique = list(dict.fromkeys(found))
    return config, [*unique, *(missing_interfaces(config) if host_checks else ())]


def missing_interfaces(config: Any) -> list[Diagnostic]:
    """keepalived -t checks the interfaces a config names against the host: so do we.

    An absent interface is an ERROR (keepalived 2.2.7 logs it and exits 5).
    """
    try:
        from vrrpd.config.references import referenced_interfaces
    except ImportError:
        return []
    out = []
    for name, pos in referenced_interfaces(config).items():
        if not _interface_exists(name):
            out.append(Diagnostic(
                Severity.ERROR, pos or Position("<config>", 0, 0),
                f"interface {name} does not exist on this host",
                "keepalived -t reports it too; the instance would stay in FAULT"))
    return out


def _interface_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True


def run_check(path: str, *, config_id: str, dump: bool, out: TextIO, err: TextIO,
              host_checks: bool = True) -> int:
    """``vrrpd -t`` (and ``--dump-config``): print every diagnostic, exit as keepalived -t."""
    config, diagnostics = load_for_check(path, config_id=config_id, host_checks=host_checks)
    for d in diagnostics:
        print(format_diagnostic(d), file=err)
    code = exit_code(diagnostics)
    if dump and config is not None:
        json.dump(to_jsonable(config), out, sort_keys=True, indent=2)
        out.write("\n")
    return code
