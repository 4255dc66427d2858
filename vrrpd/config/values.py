"""Scalar value parsers for keyword arguments.

Each parser takes the token text and returns a typed value or raises
:class:`Invalid` carrying the expected form, which the loader turns into an
ERROR naming ``file:line:col``, the expected form and the value found.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
)
from typing import TypeVar

from vrrpd.config.model_common import IPAddress, IPInterface

T = TypeVar("T")
Parser = Callable[[str], T]


class Invalid(ValueError):
    """A value did not parse; ``expected`` describes the accepted form."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT_RE = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\Z")

TRUE_WORDS = frozenset({"true", "on", "yes"})
FALSE_WORDS = frozenset({"false", "off", "no"})


def int_range(lo: int, hi: int) -> Parser[int]:
    expected = f"an integer {lo}..{hi}"

    def parse(text: str) -> int:
        if not _INT_RE.match(text):
            raise Invalid(expected)
        value = int(text)
        if not lo <= value <= hi:
            raise Invalid(expected)
        return value

    return parse


def seconds(lo: float = 0.0, hi: float = 1e9, *, allow_zero: bool = True) -> Parser[float]:
    """A time in seconds, decimals allowed (keepalived's TIMER)."""
    low = f">= {lo:g}" if allow_zero else f"> {lo:g}"
    expected = f"seconds {low}" + (f" and <= {hi:g}" if hi < 1e9 else "")

    def parse(text: str) -> float:
        if not _FLOAT_RE.match(text):
            raise Invalid(expected)
        value = float(text)
        if value < lo or value > hi or (not allow_zero and value == 0):
            raise Invalid(expected)
        return value

    return parse


def boolean(text: str) -> bool:
    low = text.lower()
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    raise Invalid("true|false, on|off or yes|no")


def ip_addr(text: str) -> IPAddress:
    try:  # fast path: inet_pton is strict (no "10.1" short forms) and much faster
        return IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, ValueError):  # ValueError: an embedded NUL
        pass
    try:
        return ip_address(text)
    except ValueError:
        raise Invalid("an IPv4 or IPv6 address") from None


def ipv4_addr(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise Invalid("an IPv4 address") from None


def ipv6_addr(text: str) -> IPv6Address:
    try:
        return IPv6Address(text)
    except ValueError:
        raise Invalid("an IPv6 address") from None


def ip_iface(text: str) -> IPInterface:
    """``ADDR[/PREFIX]``; no prefix means a host address (/32 or /128)."""
    try:
        iface = ip_interface(text)
    except ValueError:
        raise Invalid("an IP address with optional /prefix, e.g. 192.168.1.10/24") from None
    if not isinstance(iface, IPv4Interface | IPv6Interface):  # pragma: no cover
        raise Invalid("an IP address")
    return iface


port = int_range(0, 65535)


def choice(words: dict[str, T], *, case_sensitive: bool = True) -> Parser[T]:
    expected = "one of " + "|".join(words)
    table = words if case_sensitive else {k.lower(): v for k, v in words.items()}

    def parse(text: str) -> T:
        key = text if case_sensitive else text.lower()
        try:
            return table[key]
        except KeyError:
            raise Invalid(expected) from None

    return parse


def word(text: str) -> str:
    return text


def hex_bytes(text: str, *, allow_x: bool = False) -> tuple[bytes, bytes]:
    """keepalived's free-form hex string: groups of up to 2 digits separated by spaces.

    Returns (data, mask); with ``allow_x`` an ``X``/``x`` digit is a wildcard
    (mask nibble 0).
    """
    data = bytearray()
    mask = bytearray()
    for group in text.split():
        while group:
            chunk, group = group[:2].rjust(2, "0"), group[2:]
            value = 0
            m = 0
            for ch in chunk:
                value <<= 4
                m <<= 4
                if ch in "xX" and allow_x:
                    continue
                try:
                    value |= int(ch, 16)
                except ValueError:
                    raise Invalid("hex digits, e.g. 'Ab12f 3 456'") from None
                m |= 0xF
            data.append(value)
            mask.append(m)
    if not data:
        raise Invalid("hex digits, e.g. 'Ab12f 3 456'")
    return bytes(data), bytes(mask)
