"""pytest plugin: run every ``@pytest.mark.kernel`` item inside one QEMU guest per session.

On the host, the first kernel item to run boots the guest once and runs, inside it, one pytest
over exactly the session's kernel node ids (the same checkout and venv, seen over 9p; it collects
their modules and keeps exactly those ids, so one module failing to import there only fails its
own tests).  The guest session writes its serialized reports to the writable share; each host
kernel item then replays
its guest reports (pass, fail with the guest's traceback, skip with reason) instead of running.
No host fixture of a kernel item is ever set up.  A guest that fails to boot, or a test the guest
never reported, fails with the console log and the guest's output: never a silent skip.

Inside the guest (``VRRPD_IN_GUEST=1``, set by the guest command) the plugin only records reports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from . import qemu

IN_GUEST = os.environ.get("VRRPD_IN_GUEST") == "1"
_REPORTS = "reports.jsonl"
_TAIL = 60  # console/output lines quoted in a failure
_PROGRESS = re.compile(r"::\S+ (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)")


@dataclass
class _GuestRun:
    result: qemu.GuestResult | None = None
    error: str = ""  # the guest could not even be launched
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    collect_errors: dict[str, str] = field(default_factory=dict)  # node id -> error text
    guest_pytest_seconds: float | None = None  # guest session start -> finish
    guest_tests_seconds: float | None = None  # guest collection finished -> finish
    count: int = 0
    wall_seconds: float = 0.0
    log_dir: Path | None = None


_run: _GuestRun | None = None


def _is_kernel(item: pytest.Item) -> bool:
    return item.get_closest_marker("kernel") is not None


# ---------------------------------------------------------------- inside the guest


def _report_path() -> Path | None:
    path = os.environ.get("VRRPD_GUEST_REPORT")
    return Path(path) if IN_GUEST and path else None


def _append(record: dict[str, Any]) -> None:
    path = _report_path()
    if path is None:
        return
    with path.open("a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")


def pytest_sessionstart(session: pytest.Session) -> None:
    _append({"event": "start", "time": time.time()})


def pytest_collection_finish(session: pytest.Session) -> None:
    _append({"event": "collected", "time": time.time(), "count": len(session.items)})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _report_path() is None or _config is None:
        return
    data = _config.hook.pytest_report_to_serializable(config=_config, report=report)
    _append({"event": "report", "data": data})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if _report_path() is None or not report.failed:
        return
    _append({"event": "collect-error", "nodeid": report.nodeid,
                      "text": str(report.longrepr)})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _append({"event": "finish", "time": time.time(), "exit": int(exitstatus)})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In the guest: keep exactly the node ids the host selected."""
    select = os.environ.get("VRRPD_GUEST_SELECT")
    if not IN_GUEST or not select:
        return
    wanted = set(Path(select).read_text().splitlines())
    keep = [i for i in items if i.nodeid in wanted]
    dropped = [i for i in items if i.nodeid not in wanted]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config


# ---------------------------------------------------------------- on the host


def _guest_timeout(count: int) -> float:
    env = os.environ.get("VRRPD_GUEST_TIMEOUT")
    return float(env) if env else 240.0 + 60.0 * count


def _boot_and_run(session: pytest.Session) -> _GuestRun:
    config = session.config
    items = [i for i in session.items if _is_kernel(i)]
    run = _GuestRun(count=len(items))
    started = time.monotonic()
    share = Path(tempfile.mkdtemp(prefix="vrrpd-guest-"))
    try:
        # The guest collects the modules and keeps exactly these node ids (a node id whose
        # module fails to import would make pytest refuse the whole command line).
        (share / "nodeids.txt").write_text("".join(i.nodeid + "\n" for i in items))
        files = sorted({i.nodeid.split("::", 1)[0] for i in items})
        (share / "files.txt").write_text("".join(f + "\n" for f in files))
        argv = [
            # hypothesis' plugin alone costs ~3 s of guest start-up; kernel tests do not use it
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
            # one module that fails to import must not stop the others
            "-v", "--durations=15", "--continue-on-collection-errors",
            f"--rootdir={config.rootpath}", f"@{qemu.GUEST_SHARE}/files.txt",
        ]
        tbstyle = config.getoption("tbstyle", "auto")
        if tbstyle and tbstyle != "auto":
            argv.append(f"--tb={tbstyle}")
        env = {
            "VRRPD_IN_GUEST": "1",
            "VRRPD_GUEST_REPORT": f"{qemu.GUEST_SHARE}/{_REPORTS}",
            "VRRPD_GUEST_SELECT": f"{qemu.GUEST_SHARE}/nodeids.txt",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        progress = None
        if reporter is not None and config.option.verbose > 0:
            def progress(line: str) -> None:  # guest results as they happen, with -v
                if _PROGRESS.search(line):
                    reporter.write_line(f"  [guest] {line.strip()}")
        try:
            run.result = qemu.run_in_guest(
                argv, share, cwd=str(config.rootpath), env=env,
                timeout=_guest_timeout(len(items)),
                smp=int(os.environ.get("VRRPD_GUEST_SMP", "1")),
                on_output=progress,
            )
        except Exception as exc:  # no qemu, no kernel, unreadable /boot, ...
            run.error = f"{type(exc).__name__}: {exc}"
        _read_reports(share / _REPORTS, run)
        run.log_dir = _keep_logs(run)
    finally:
        shutil.rmtree(share, ignore_errors=True)
    run.wall_seconds = time.monotonic() - started
    return run


def _read_reports(path: Path, run: _GuestRun) -> None:
    if not path.exists():
        return
    start = finish = collected = None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event = record.get("event")
        if event == "report":
            data = record["data"]
            run.reports.setdefault(data["nodeid"], []).append(data)
        elif event == "collect-error":
            run.collect_errors[record["nodeid"]] = record["text"]
        elif event == "start":
            start = record["time"]
        elif event == "collected":
            collected = record["time"]
        elif event == "finish":
            finish = record["time"]
    if start is not None and finish is not None:
        run.guest_pytest_seconds = finish - start
    if collected is not None and finish is not None:
        run.guest_tests_seconds = finish - collected


def _keep_logs(run: _GuestRun) -> Path | None:
    """Keep the last guest's console and output for debugging (best effort)."""
    if run.result is None:
        return None
    try:
        directory = qemu.cache_dir() / "last-run"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "console.log").write_text(run.result.console)
        (directory / "output.txt").write_text(run.result.output)
        return directory
    except OSError:
        return None


def _tail(text: str, lines: int = _TAIL) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _missing_report_text(run: _GuestRun, nodeid: str) -> str:
    parts = [f"the QEMU guest reported no result for {nodeid}"]
    if run.error:
        parts.append(f"the guest could not be launched: {run.error}")
    # a collection error of this test's module (or a parent) explains it all by itself
    own = {n: t for n, t in run.collect_errors.items()
           if nodeid == n or nodeid.startswith(n + "::") or nodeid.startswith(n.rstrip("/") + "/")}
    for n, text in own.items():
        parts.append(f"guest collection error in {n}:\n{text}")
    result = run.result
    if result is not None and not own:
        if result.timed_out:
            stage = "while booting" if result.boot_seconds is None else "while testing"
            parts.append(f"the guest was killed at its timeout {stage} (VRRPD_GUEST_TIMEOUT)")
        elif result.boot_seconds is None:
            parts.append("the guest never reached its command (boot failure)")
        else:
            parts.append(f"guest pytest exit code: {result.returncode}")
        parts.extend(f"guest collection error in {n}" for n in run.collect_errors)
        parts.append("---- guest pytest output (tail) ----\n" + _tail(result.output))
        parts.append("---- guest console (tail) ----\n" + _tail(result.console))
    if run.log_dir is not None:
        parts.append(f"full logs: {run.log_dir}")
    return "\n".join(parts)


def _replay(item: pytest.Item, run: _GuestRun) -> None:
    config = item.config
    reports = run.reports.get(item.nodeid)
    if reports:
        for data in reports:
            report = config.hook.pytest_report_from_serializable(config=config, data=data)
            if isinstance(report.longrepr, list):  # a skip's (path, line, reason) after JSON
                report.longrepr = tuple(report.longrepr)
            item.ihook.pytest_runtest_logreport(report=report)
        return
    keywords: dict[str, Any] = {k: 1 for k in item.keywords}
    now = time.time()
    for when, outcome, longrepr in (
        ("setup", "passed", None),
        ("call", "failed", _missing_report_text(run, item.nodeid)),
        ("teardown", "passed", None),
    ):
        report = pytest.TestReport(
            item.nodeid, item.location, keywords, outcome, longrepr, when,  # type: ignore[arg-type]
            start=now, stop=now,
        )
        item.ihook.pytest_runtest_logreport(report=report)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
    global _run
    if IN_GUEST or not _is_kernel(item):
        return None
    if _run is None:
        reporter = item.config.pluginmanager.get_plugin("terminalreporter")
        count = sum(1 for i in item.session.items if _is_kernel(i))
        if reporter is not None:
            reporter.write_line(
                f"\n[kernel tier] booting the QEMU guest for {count} kernel test(s)...",
            )
        _run = _boot_and_run(item.session)
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    _replay(item, _run)
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if IN_GUEST or _run is None:
        return
    result = _run.result
    terminalreporter.write_sep("-", "kernel tier (QEMU guest)")
    if result is None or result.boot_seconds is None:
        boot = "FAILED" + (f" ({_run.error})" if _run.error else "")
        terminalreporter.write_line(f"{_run.count} kernel test(s); guest boot {boot}; "
                                    f"guest wall {_run.wall_seconds:.1f} s")
        return
    parts = [f"{_run.count} kernel test(s)", f"guest boot {result.boot_seconds:.1f} s"]
    if _run.guest_pytest_seconds is not None:
        startup = result.total_seconds - result.boot_seconds - _run.guest_pytest_seconds
        parts.append(f"pytest start-up ~{max(startup, 0.0):.1f} s")
    if _run.guest_tests_seconds is not None and _run.guest_pytest_seconds is not None:
        parts.append(f"collection {_run.guest_pytest_seconds - _run.guest_tests_seconds:.1f} s")
        parts.append(f"tests {_run.guest_tests_seconds:.1f} s")
    parts.append(f"wall {_run.wall_seconds:.1f} s (launch to power-off)")
    terminalreporter.write_line("; ".join(parts))
    if _run.log_dir is not None:
        terminalreporter.write_line(f"guest console and output: {_run.log_dir}")
