"""MISC_CHECK through healthcheck.process with real scripts."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from ipaddress import ip_address
from pathlib import Path

import pytest

from healthcheck import process
from healthcheck.checkers import misc
from healthcheck.checkers.base import ProbeContext
from healthcheck.model import CommandSpec, MiscCheckSpec

CTX = ProbeContext(run_command=process.run)


def _script(tmp_path: Path, body: str, name: str = "check.sh") -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    tmp_path.chmod(0o755)
    return str(path)


def _spec(*argv: str, **kw: object) -> MiscCheckSpec:
    args: dict[str, object] = {"delay_loop": 5.0, **kw}
    return MiscCheckSpec(connect_ip=ip_address("127.0.0.1"), command=CommandSpec(tuple(argv)),
                         **args)  # type: ignore[arg-type]


async def test_exit_codes(tmp_path: Path) -> None:
    script = _script(tmp_path, 'exit "$1"')
    assert (await misc.probe(_spec(script, "0"), CTX)).ok
    res = await misc.probe(_spec(script, "1"), CTX)
    assert not res.ok and res.detail == "exit 1"
    res = await misc.probe(_spec(script, "7"), CTX)
    assert not res.ok and res.detail == "exit 7"  # not dynamic: any non-zero is down


async def test_misc_dynamic_weights(tmp_path: Path) -> None:
    script = _script(tmp_path, 'exit "$1"')
    res = await misc.probe(_spec(script, "0", dynamic=True), CTX)
    assert res.ok and res.weight is None
    res = await misc.probe(_spec(script, "1", dynamic=True), CTX)
    assert not res.ok
    res = await misc.probe(_spec(script, "12", dynamic=True), CTX)
    assert res.ok and res.weight == 10
    res = await misc.probe(_spec(script, "255", dynamic=True), CTX)
    assert res.ok and res.weight == 253


async def test_timeout_kills_and_fails(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = _script(tmp_path, f"sleep 30 & echo $! > {pidfile}\nwait")
    start = time.monotonic()
    res = await misc.probe(_spec(script, timeout=0.5), CTX)
    assert not res.ok and res.detail == "timed out after 0.5s"
    assert time.monotonic() - start < 3.0
    child = int(pidfile.read_text())
    for _ in range(50):  # the whole process group went with it
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("grandchild still alive")


async def test_missing_script_and_user(tmp_path: Path) -> None:
    res = await misc.probe(_spec(str(tmp_path / "absent")), CTX)
    assert not res.ok and res.detail.startswith("cannot run:")
    if os.geteuid() != 0:
        pytest.skip("switching user needs root")
    # pytest's tmp_path is inside a 0700 directory: nobody needs a world-readable one
    shared = Path(tempfile.mkdtemp(prefix="hc-misc-"))
    try:
        await _as_nobody(shared)
    finally:
        shutil.rmtree(shared)


async def _as_nobody(tmp_path: Path) -> None:
    script = _script(tmp_path, 'test "$(id -u)" = "$1"')
    nobody = CommandSpec((script, "65534"), user="nobody")
    spec = MiscCheckSpec(connect_ip=ip_address("127.0.0.1"), command=nobody)
    assert (await misc.probe(spec, CTX)).ok
    as_root = CommandSpec((script, "65534"))
    assert not (await misc.probe(MiscCheckSpec(connect_ip=ip_address("127.0.0.1"),
                                               command=as_root), CTX)).ok
