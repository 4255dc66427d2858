"""The ``lab`` fixture: a fresh namespace lab per test, torn down even on failure.

A test module picks its own namespace prefix by overriding the ``lab_prefix`` fixture."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.netns.lab import Lab


@pytest.fixture
def lab_prefix() -> str:
    """Namespace prefix of the ``lab`` fixture; override it in a test module."""
    return Lab.prefix


@pytest.fixture
def lab(request: pytest.FixtureRequest, lab_prefix: str) -> Iterator[Lab]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("netns lab needs root and iproute2")
    the_lab = Lab(prefix=lab_prefix)
    try:
        yield the_lab
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(the_lab.logs())
        the_lab.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    rep = yield
    setattr(item, f"rep_{rep.when}", rep)
    return rep
