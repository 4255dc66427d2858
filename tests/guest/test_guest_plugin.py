"""The kernel tier's own contract, run on the host in a child pytest session:
guest outcomes (pass, fail with the guest traceback, skip with its reason) become host outcomes,
a module the guest cannot import fails its own tests with the error, and a guest that does not
boot fails every kernel test with its console log: never a skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import qemu

TESTS_DIR = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS_DIR)!r})
pytest_plugins = ("guest.plugin",)
"""
INI = """[pytest]
markers =
    kernel: in the guest
"""
CASES = """
import os
import pytest

@pytest.mark.kernel
def test_passes_in_guest():
    assert os.environ["VRRPD_IN_GUEST"] == "1"

@pytest.mark.kernel
def test_fails_in_guest():
    guest_only_value = 41
    assert guest_only_value == 42

@pytest.mark.kernel
def test_skips_in_guest():
    pytest.skip("no such hardware in the guest")

def test_host_side():
    assert "VRRPD_IN_GUEST" not in os.environ
"""
BROKEN = """
import os
import pytest

if os.environ.get("VRRPD_IN_GUEST") == "1":
    raise RuntimeError("this module cannot be imported in the guest")

@pytest.mark.kernel
def test_never_runs():
    pass
"""


@pytest.fixture
def project() -> Iterator[Path]:
    # Not under /tmp: the guest mounts a fresh tmpfs there but must see this directory.
    qemu.cache_dir().mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="selftest-", dir=qemu.cache_dir()))
    (path / "conftest.py").write_text(CONFTEST)
    (path / "pytest.ini").write_text(INI)
    (path / "test_cases.py").write_text(CASES)
    (path / "test_broken.py").write_text(BROKEN)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("VRRPD_GUEST")}
    child_env.pop("PYTEST_ADDOPTS", None)
    child_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "test_cases.py",
         "test_broken.py"],
        cwd=project, env=child_env, capture_output=True, text=True, timeout=600,
    )


def test_guest_outcomes_are_replayed_on_the_host(project: Path) -> None:
    proc = run(project)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "2 failed, 2 passed, 1 skipped" in out, out
    assert "PASSED test_cases.py::test_passes_in_guest" in out
    assert "PASSED test_cases.py::test_host_side" in out  # not kernel: ran on the host
    assert re.search(r"SKIPPED \[1\] test_cases.py:\d+: no such hardware in the guest", out), out
    assert "guest_only_value = 41" in out  # the guest's own traceback
    assert "assert 41 == 42" in out
    assert "kernel tier (QEMU guest)" in out and "guest boot" in out
    # a module that cannot be imported in the guest fails its own tests, and only those
    assert "guest collection error in test_broken.py" in out
    assert "this module cannot be imported in the guest" in out
    assert "FAILED test_broken.py::test_never_runs" in out


def test_guest_that_does_not_boot_fails_every_kernel_test(project: Path) -> None:
    proc = run(project, VRRPD_GUEST_TIMEOUT="1")
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "4 failed, 1 passed" in out, out
    assert "killed at its timeout while booting" in out
    assert "guest console (tail)" in out
    assert "guest boot FAILED" in out
