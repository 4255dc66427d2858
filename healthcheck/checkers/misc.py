"""MISC_CHECK: run ``misc_path`` (no shell, bounded, killed with its group on timeout).

Exit 0 is success.  With ``misc_dynamic``: 1 is failure, 2..255 success with weight exit - 2.
A timeout, a signal or a command that cannot start is a failure.
"""

from __future__ import annotations

import time

from healthcheck.checkers.base import ProbeContext, fail, ok
from healthcheck.model import CheckResult, MiscCheckSpec
from healthcheck.scheduler import probe_timeout

__all__ = ["probe"]


async def probe(spec: MiscCheckSpec, ctx: ProbeContext) -> CheckResult:
    start = time.monotonic()
    cmd = spec.command
    timeout = probe_timeout(spec)
    res = await ctx.run_command(cmd.argv, timeout=timeout, user=cmd.user, group=cmd.group)
    if res.error is not None:
        return fail(f"cannot run: {res.error}", start)
    if res.timed_out:
        return fail(f"timed out after {timeout:g}s", start)
    if res.exit_code is None:
        return fail(f"killed by signal {res.signal}", start)
    code = res.exit_code
    if code == 0:
        return ok("exit 0", start)
    if spec.dynamic and code >= 2:
        return ok(f"exit {code}", start, weight=code - 2)
    return fail(f"exit {code}", start)
