"""Value types shared by the VRRP and LVS halves of the config model."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from vrrpd.config.errors import Position
from vrrpd.config.valuemethods import value_methods

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface


@value_methods
@dataclass(frozen=True, slots=True, kw_only=True, repr=False, eq=False)
class Command:
    """A script keyword's command: argv (no shell) plus optional ``user [group]``.

    ``user``/``group`` None means the global ``script_user`` (or keepalived's
    default) applies; the runner resolves that.
    """

    argv: tuple[str, ...]
    user: str | None = None
    group: str | None = None
    pos: Position | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return " ".join(self.argv)
