"""FileWatcher (inotify) and FILE_CHECK driven by it in the CheckerManager: real files."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from ipaddress import ip_address
from pathlib import Path

from healthcheck.checkers import ProbeContext, run_probe
from healthcheck.filewatch import FileWatcher
from healthcheck.manager import CheckerManager
from healthcheck.model import (
    CheckResult,
    CheckSpec,
    FileCheckSpec,
    RealServerSpec,
    ServerKey,
    VirtualServerSpec,
)
from healthcheck.scheduler import FILE_POLL_INTERVAL

RS = ip_address("127.0.0.9")


async def _changes(watcher_paths: list[Path], act: object) -> list[str]:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    w = FileWatcher(loop, seen.append)
    try:
        for p in watcher_paths:
            assert w.watch(str(p))
        assert callable(act)
        act()
        await asyncio.sleep(0.2)
    finally:
        w.close()
    return seen


async def test_writes_renames_and_deletes_are_reported(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1\n")
    # a write (close after write) of a, nothing for an unwatched file in the same directory
    assert await _changes([a], lambda: (a.write_text("2\n"),
                                        (tmp_path / "other").write_text("x"))) == [str(a)]
    # created later by rename over it, then deleted: both seen; b itself not yet existing
    tmp = tmp_path / "b.tmp"
    tmp.write_text("5\n")
    assert await _changes([b], lambda: os.rename(tmp, b)) == [str(b)]
    assert await _changes([b], b.unlink) == [str(b)]


def test_unwatchable_directory(tmp_path: Path) -> None:
    async def run() -> bool:
        w = FileWatcher(asyncio.get_running_loop(), lambda p: None)
        try:
            return w.watch(str(tmp_path / "missing-dir" / "f"))
        finally:
            w.close()

    assert asyncio.run(run()) is False


class _Rec:
    def __init__(self) -> None:
        self.changes: list[dict[ServerKey, int]] = []
        self.reads: list[float] = []
        self.changed = asyncio.Event()

    def on_change(self, vs_key: str, servers: Mapping[ServerKey, int]) -> None:
        self.changes.append(dict(servers))
        self.changed.set()

    async def probe(self, spec: CheckSpec, ctx: ProbeContext) -> CheckResult:
        self.reads.append(time.monotonic())
        return await run_probe(spec, ctx)

    async def wait_for(self, servers: dict[ServerKey, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while servers not in self.changes:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


async def test_file_check_reads_the_file_when_it_changes_not_on_a_timer(tmp_path: Path) -> None:
    path = tmp_path / "weight"
    path.write_text("0\n")
    spec = FileCheckSpec(connect_ip=RS, path=str(path), weight=0)
    vs = VirtualServerSpec(key="[10.0.0.1]:tcp:80", real_servers=(
        RealServerSpec(address=RS, port=80, checkers=(spec,)),))
    rec = _Rec()
    mgr = CheckerManager([vs], on_change=rec.on_change, probe=rec.probe)
    try:
        await mgr.start()
        await asyncio.sleep(0.3)
        assert len(rec.reads) == 1  # read once at start
        # no change: no read, where polling would have read it again
        await asyncio.sleep(FILE_POLL_INTERVAL + 0.5)
        assert len(rec.reads) == 1
        t0 = time.monotonic()
        path.write_text("1\n")  # weight 0: any non-zero value is down
        await rec.wait_for({}, timeout=2.0)
        assert time.monotonic() - t0 < 0.5  # at once, not at the next poll
        assert len(rec.reads) == 2
        rec.changes.clear()
        tmp = tmp_path / "weight.new"
        tmp.write_text("0\n")
        os.rename(tmp, path)  # replaced by rename: seen as well
        await rec.wait_for({(RS, 80): 1}, timeout=2.0)
        assert len(rec.reads) == 3
    finally:
        await mgr.stop()
