"""vrrp_script tracker: rise/fall rules, schedule, no double start, real subprocesses."""

from __future__ import annotations

import asyncio
from pathlib import Path

from healthcheck.process import ProcessResult
from vrrpd.config.model_common import Command
from vrrpd.config.model_vrrp import VrrpScript
from vrrpd.vrrp.fakes import FakeProcessRunner, ok_result
from vrrpd.vrrp.scripts import RiseFall, ScriptSpec, ScriptTracker

FAIL = ok_result(1)
OK = ok_result(0)


def test_rise_fall_initial_failure_counts_at_once() -> None:
    rf = RiseFall(rise=2, fall=3)
    assert rf.ok
    assert rf.observe(False) is True and not rf.ok  # first result: no fall wait


def test_rise_fall_needs_consecutive_results() -> None:
    rf = RiseFall(rise=2, fall=3)
    assert rf.observe(True) is False and rf.ok
    assert [rf.observe(False), rf.observe(False)] == [False, False] and rf.ok
    assert rf.observe(True) is False  # streak broken
    assert [rf.observe(False), rf.observe(False), rf.observe(False)] == [False, False, True]
    assert not rf.ok
    assert rf.observe(True) is False
    assert rf.observe(False) is False
    assert [rf.observe(True), rf.observe(True)] == [False, True] and rf.ok


def test_init_fail_starts_failed_and_rises() -> None:
    rf = RiseFall(rise=2, fall=1, init_fail=True)
    assert not rf.ok
    assert rf.observe(False) is False
    assert [rf.observe(True), rf.observe(True)] == [False, True] and rf.ok


def test_spec_from_config_uses_default_user_and_timeout() -> None:
    cfg = VrrpScript(name="chk", script=Command(argv=("/bin/chk", "-q")), interval=2.0,
                     timeout=1.5, rise=3, fall=2, init_fail=True)
    spec = ScriptSpec.from_config(cfg, user="nobody")
    assert spec.argv == ("/bin/chk", "-q") and spec.user == "nobody"
    assert spec.effective_timeout == 1.5 and spec.rise == 3 and spec.init_fail
    assert ScriptSpec("x", ("true",), interval=3).effective_timeout == 3


async def test_tracker_reports_changes_only() -> None:
    runner = FakeProcessRunner(results=[OK, FAIL, FAIL, OK, OK, OK])
    changes: list[tuple[str, bool]] = []
    spec = ScriptSpec("chk", ("/bin/chk",), interval=0.03, fall=2, rise=1)
    tracker = ScriptTracker(spec, lambda n, ok: changes.append((n, ok)), runner=runner)
    tracker.start()
    await asyncio.sleep(0.25)
    await tracker.stop()
    assert runner.calls[0] == (("/bin/chk",), None, None)
    assert changes == [("chk", False), ("chk", True)]
    assert tracker.ok


async def test_slow_script_not_started_twice() -> None:
    runner = FakeProcessRunner(delay=0.25)
    spec = ScriptSpec("slow", ("/bin/slow",), interval=0.05)
    tracker = ScriptTracker(spec, lambda n, ok: None, runner=runner)
    tracker.start()
    await asyncio.sleep(0.6)
    await tracker.stop()
    assert runner.max_running == 1
    assert tracker.skipped >= 4
    assert 2 <= len(runner.calls) <= 3


async def test_timeout_and_failure_with_real_processes(tmp_path: Path) -> None:
    flag = tmp_path / "ok"
    changes: list[bool] = []
    spec = ScriptSpec("file", ("test", "-e", str(flag)), interval=0.1, timeout=1.0)
    tracker = ScriptTracker(spec, lambda n, ok: changes.append(ok))
    tracker.start()
    await asyncio.sleep(0.35)
    assert changes == [False]
    flag.touch()
    await asyncio.sleep(0.35)
    assert changes == [False, True]
    await tracker.stop()
    hang = ScriptTracker(ScriptSpec("hang", ("sleep", "5"), interval=0.1, timeout=0.2),
                         lambda n, ok: changes.append(ok))
    hang.start()
    await asyncio.sleep(0.9)
    await hang.stop()
    assert changes[-1] is False
    assert isinstance(hang.last_result, ProcessResult) and hang.last_result.timed_out
