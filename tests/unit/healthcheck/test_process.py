"""healthcheck.process: real subprocesses, no shell, group kill, capabilities, concurrency."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from healthcheck.process import ProcessLimiter, run

ROOT = Path(__file__).resolve().parents[3]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _wait_dead(pid: int, limit: float = 3.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_exit_codes_and_output() -> None:
    ok = await run(["sh", "-c", "echo out; echo err >&2; exit 0"], timeout=5)
    assert ok.ok and ok.exit_code == 0 and ok.signal is None and not ok.timed_out
    assert ok.output_tail == "out\nerr\n"
    bad = await run(["sh", "-c", "exit 3"], timeout=5)
    assert not bad.ok and bad.exit_code == 3 and bad.error is None


async def test_output_tail_is_bounded() -> None:
    res = await run(["sh", "-c", "seq 1 20000"], timeout=5, tail_bytes=20)
    assert len(res.output_tail.encode()) == 20
    assert res.output_tail.endswith("19999\n20000\n")


async def test_no_shell_arguments_are_literal(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    res = await run(["echo", f"$HOME; touch {marker}", "`id`"], timeout=5)
    assert res.output_tail == f"$HOME; touch {marker} `id`\n"
    assert not marker.exists()


async def test_env_is_passed() -> None:
    env = {"VA_X": "42", "PATH": "/bin:/usr/bin"}
    res = await run(["sh", "-c", 'echo "$VA_X"'], timeout=5, env=env)
    assert res.output_tail == "42\n"


async def test_cannot_start_is_a_result_not_an_exception(tmp_path: Path) -> None:
    missing = await run([str(tmp_path / "nope")], timeout=5)
    assert missing.exit_code is None and missing.error and "nope" in missing.error
    assert not missing.ok
    script = tmp_path / "notexec"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o644)
    noexec = await run([str(script)], timeout=5)
    assert noexec.error and not noexec.ok
    unknown = await run(["true"], timeout=5, user="va-no-such-user-xyz")
    assert unknown.error == "unknown user 'va-no-such-user-xyz'"
    assert (await run([], timeout=1)).error == "empty command"


async def test_runs_in_new_session() -> None:
    res = await run(["sh", "-c", "ps -o sid= -o pgid= -p $$"], timeout=5)
    sid, pgid = res.output_tail.split()
    assert sid == pgid
    assert int(sid) != os.getsid(0)


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    # The background child survives its parent unless the whole group is killed.
    script = f"sleep 60 & echo $! > {pidfile}; sleep 60"
    start = time.monotonic()
    res = await run(["sh", "-c", script], timeout=0.5, kill_grace=0.5)
    elapsed = time.monotonic() - start
    assert res.timed_out and not res.ok
    assert res.exit_code is None and res.signal is not None
    assert 0.45 <= elapsed < 3.0
    bg = int(pidfile.read_text())
    assert await _wait_dead(bg), "background child of a timed-out command still alive"


async def test_sigterm_ignored_gets_sigkill(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    script = f"trap '' TERM; (trap '' TERM; sleep 60) & echo $! > {pidfile}; sleep 60"
    res = await run(["sh", "-c", script], timeout=0.3, kill_grace=0.3)
    assert res.timed_out
    assert res.signal == 9
    assert await _wait_dead(int(pidfile.read_text()))


async def test_cancel_kills_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "p.pid"
    task = asyncio.ensure_future(run(["sh", "-c", f"echo $$ > {pidfile}; sleep 60"], timeout=60))
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _wait_dead(int(pidfile.read_text()))


async def test_grandchild_holding_pipe_does_not_hang(tmp_path: Path) -> None:
    pidfile = tmp_path / "gc.pid"
    # The grandchild inherits stdout and outlives the command: run() must still return promptly.
    res = await run(["sh", "-c", f"sleep 3 & echo $! > {pidfile}; echo done"], timeout=10)
    assert res.ok and res.duration < 2.0 and "done" in res.output_tail
    os.kill(int(pidfile.read_text()), 9)


async def test_loop_not_blocked_while_running() -> None:
    """A blocking wait would stall the loop for the whole 1 s; load only adds scheduling noise."""
    loop = asyncio.get_running_loop()
    stamps: list[float] = []

    async def ticker() -> None:
        while True:
            stamps.append(loop.time())
            await asyncio.sleep(0.02)

    t = asyncio.ensure_future(ticker())
    try:
        await run(["sleep", "1"], timeout=5)
    finally:
        t.cancel()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) >= 3
    assert max(gaps) < 0.5, f"event loop stalled {max(gaps):.3f} s while the command ran"


async def test_limiter_bounds_concurrency(tmp_path: Path) -> None:
    limiter = ProcessLimiter(2)
    log = tmp_path / "log"
    stamp = 'echo "{} $(date +%s.%N)" >> ' + str(log)
    cmd = ["sh", "-c", f"{stamp.format('S')}; sleep 0.3; {stamp.format('E')}"]
    peak = 0

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, limiter.running)
            await asyncio.sleep(0.005)

    s = asyncio.ensure_future(sample())
    start = time.monotonic()
    results = await asyncio.gather(*(limiter.run(cmd, timeout=5) for _ in range(5)))
    s.cancel()
    elapsed = time.monotonic() - start
    assert all(r.ok for r in results)
    assert peak == 2
    events = sorted(
        (float(ts), kind) for kind, ts in (line.split() for line in log.read_text().splitlines())
    )
    running = maxrun = 0
    for _, kind in events:
        running += 1 if kind == "S" else -1
        maxrun = max(maxrun, running)
    assert maxrun <= 2
    assert elapsed >= 0.85  # 5 jobs of 0.3 s, 2 at a time: at least 3 rounds
    assert limiter.running == 0 and limiter.waiting == 0


async def test_limiter_timeout_counts_from_start_not_from_queue() -> None:
    limiter = ProcessLimiter(1)
    first, second = await asyncio.gather(
        limiter.run(["sleep", "2"], timeout=5),
        # queued ~2 s behind the first: a timeout counted from the queue would fire
        limiter.run(["sleep", "0.1"], timeout=1.5),
    )
    assert first.ok and second.ok


def test_limiter_rejects_zero() -> None:
    with pytest.raises(ValueError):
        ProcessLimiter(0)


@needs_root
async def test_user_switch() -> None:
    res = await run(["id", "-u"], timeout=5, user="nobody")
    assert res.output_tail.strip() == "65534"
    res = await run(["id", "-g"], timeout=5, user="nobody", group="root")
    assert res.output_tail.strip() == "0"


@needs_root
def test_ambient_capabilities_are_dropped() -> None:
    """A parent with CAP_NET_ADMIN in its ambient set: our child has none, a plain child has it."""
    helper = textwrap.dedent(
        """
        import asyncio, ctypes, subprocess, sys
        from healthcheck.process import run, _CapHeader, _CapData
        libc = ctypes.CDLL(None, use_errno=True)
        CAP_NET_ADMIN = 12
        hdr = _CapHeader(0x20080522, 0)
        data = (_CapData * 2)()
        assert libc.capget(ctypes.byref(hdr), data) == 0
        data[0].inheritable |= 1 << CAP_NET_ADMIN
        assert libc.capset(ctypes.byref(hdr), data) == 0
        assert libc.prctl(47, 2, CAP_NET_ADMIN, 0, 0) == 0, ctypes.get_errno()  # AMBIENT_RAISE
        cmd = ["grep", "-E", "^Cap(Inh|Amb)", "/proc/self/status"]
        plain = subprocess.run(cmd, capture_output=True, text=True).stdout
        ours = asyncio.run(run(cmd, timeout=5)).output_tail
        print(plain.replace("\\n", " ") + "|" + ours.replace("\\n", " "))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", helper], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    plain, ours = out.stdout.strip().split("|")
    assert "CapAmb:\t0000000000001000" in plain  # control: the capability really was ambient
    assert "CapAmb:\t0000000000000000" in ours
    assert "CapInh:\t0000000000000000" in ours
