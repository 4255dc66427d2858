"""Exceptions of the IPVS client: one class per thing a caller can act on.

Every error carries ``operation`` (e.g. ``"new_dest"``) and ``errno`` (0 when raised by our own
validation before anything was sent).  ``InvalidArgument.field`` names the offending attribute
(``"netmask"``, ``"addr"``, ``"tun_port"``, ...).
"""

from __future__ import annotations

import errno as errno_mod


class IPVSError(Exception):
    def __init__(self, message: str, *, operation: str = "", errno: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.errno = errno

    def __str__(self) -> str:
        where = f"{self.operation}: " if self.operation else ""
        code = f" [{errno_mod.errorcode.get(self.errno, self.errno)}]" if self.errno else ""
        return f"{where}{self.message}{code}"


class IPVSUnavailable(IPVSError):
    """The kernel has no IPVS (the "IPVS" generic-netlink family is missing)."""


class IPVSPermissionError(IPVSError, PermissionError):  # type: ignore[misc]
    """CAP_NET_ADMIN is required for every IPVS operation, dumps included."""


class InvalidArgument(IPVSError, ValueError):
    def __init__(self, message: str, *, field: str, operation: str = "", errno: int = 0) -> None:
        super().__init__(message, operation=operation, errno=errno)
        self.field = field

    def __str__(self) -> str:
        return f"{super().__str__()} (field: {self.field})"


class Exists(IPVSError):
    """The service, destination or sync daemon already exists."""


class NotFound(IPVSError, LookupError):
    """The service, destination or sync daemon does not exist."""
