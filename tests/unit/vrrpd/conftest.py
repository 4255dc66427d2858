"""Fixtures shared by the unit tests of ``vrrpd``."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port nothing listens on (bound then closed): connecting is refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    yield port
