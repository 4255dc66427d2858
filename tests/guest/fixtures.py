"""Fixtures for ``@pytest.mark.kernel`` tests (they only work inside the QEMU guest).

- ``ipvs_modules``: session; ip_vs, every scheduler module and ip_vs_pe_sip loaded; the tuple of
  scheduler names available.
- ``ipvs_ns``: a fresh network namespace per test (empty IPVS table, lo up, dummy0 with default
  v4/v6 routes so DR/TUN destinations are accepted), ENTERED by the test's thread for the whole
  test: an ``IPVSClient()`` opened in the test talks to that namespace's table.
  ``ipvs_ns.ipvsadm("-L", "-n")`` runs ipvsadm in it.
- ``netns_factory``: more namespaces (not entered); ``with ns.entered(): client = IPVSClient()``.
All namespaces are deleted at teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .netns import GuestNetns, load_ipvs_modules
from .plugin import IN_GUEST


def _require_guest() -> None:
    if not IN_GUEST:
        pytest.fail("kernel fixtures only work inside the QEMU guest: mark the test "
                    "@pytest.mark.kernel", pytrace=False)


@pytest.fixture(scope="session")
def ipvs_modules() -> tuple[str, ...]:
    _require_guest()
    return load_ipvs_modules()


@pytest.fixture
def netns_factory(ipvs_modules: tuple[str, ...]) -> Iterator[Callable[[], GuestNetns]]:
    created: list[GuestNetns] = []

    def make() -> GuestNetns:
        ns = GuestNetns.create()
        created.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in created:
            ns.delete()


@pytest.fixture
def ipvs_ns(netns_factory: Callable[[], GuestNetns]) -> Iterator[GuestNetns]:
    ns = netns_factory()
    with ns.entered():
        yield ns
