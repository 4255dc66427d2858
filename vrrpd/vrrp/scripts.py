"""vrrp_script trackers: run a check command every ``interval`` and report OK/failed changes.

``ScriptTracker(spec, on_change)`` runs ``spec.argv`` (no shell, via ``healthcheck.process.run``
or an injected ``ProcessRunner``) every ``interval`` seconds; exit status 0 within ``timeout`` is a
success, anything else (non-zero, signal, timeout, cannot start) a failure. A check still running
when its next interval comes is not started twice: that tick is skipped (``skipped`` counts them).

Rise/fall (``RiseFall``, pure): an OK script turns failed after ``fall`` consecutive failures, a
failed one OK after ``rise`` consecutive successes. Before the first result the script is OK,
or failed with ``init_fail``; while in that initial state the first failure counts at once
(no ``fall`` wait), as keepalived does. ``on_change(name, ok)`` is called on every change.
Weights are not applied here: the instance adds ``weight`` (track_script's own or the script's).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from healthcheck.process import ProcessResult, ProcessRunner, run

if TYPE_CHECKING:
    from vrrpd.config.model_vrrp import VrrpScript

__all__ = ["RiseFall", "ScriptCallback", "ScriptSpec", "ScriptTracker"]

log = structlog.get_logger(__name__)

ScriptCallback = Callable[[str, bool], None]


@dataclass(frozen=True)
class ScriptSpec:
    """One ``vrrp_script`` block (weight stays with the instance's ``track_script`` entry)."""

    name: str
    argv: tuple[str, ...]
    interval: float = 1.0
    timeout: float | None = None  # None: the interval (a check never outlives its period)
    rise: int = 1
    fall: int = 1
    user: str | int | None = None
    group: str | int | None = None
    init_fail: bool = False

    @classmethod
    def from_config(
        cls, script: VrrpScript, *, user: str | None = None, group: str | None = None
    ) -> ScriptSpec:
        """A config ``vrrp_script``; ``user``/``group`` are the defaults (global script_user)."""
        return cls(
            name=script.name,
            argv=tuple(script.script.argv),
            interval=script.interval,
            timeout=script.timeout,
            rise=script.rise,
            fall=script.fall,
            user=script.script.user if script.script.user is not None else user,
            group=script.script.group if script.script.group is not None else group,
            init_fail=script.init_fail,
        )

    @property
    def effective_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.interval


class RiseFall:
    """Pure rise/fall counter (see the module docstring)."""

    def __init__(self, rise: int = 1, fall: int = 1, *, init_fail: bool = False) -> None:
        self.rise = max(1, rise)
        self.fall = max(1, fall)
        self.ok = not init_fail
        self.initial = True
        self._streak = 0  # consecutive results against the current state

    def observe(self, success: bool) -> bool:
        """Record one result; True when ``ok`` changed."""
        initial, self.initial = self.initial, False
        if success == self.ok:
            self._streak = 0
            return False
        if initial and not success:
            self.ok = False
            self._streak = 0
            return True
        self._streak += 1
        if self._streak >= (self.rise if success else self.fall):
            self.ok = success
            self._streak = 0
            return True
        return False


class ScriptTracker:
    """Runs one vrrp_script periodically; see the module docstring."""

    def __init__(
        self,
        spec: ScriptSpec,
        on_change: ScriptCallback,
        *,
        runner: ProcessRunner = run,
    ) -> None:
        self.spec = spec
        self._on_change = on_change
        self._runner = runner
        self._state = RiseFall(spec.rise, spec.fall, init_fail=spec.init_fail)
        self._ticker: asyncio.Task[None] | None = None
        self._check: asyncio.Task[None] | None = None
        self.runs = 0
        self.skipped = 0
        self.last_result: ProcessResult | None = None

    @property
    def ok(self) -> bool:
        return self._state.ok

    def start(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.ensure_future(self._tick())

    async def stop(self) -> None:
        """Stop the schedule and wait for (cancel, killing its group) a check in flight."""
        for task in (self._ticker, self._check):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._check = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        interval = max(self.spec.interval, 0.01)
        while True:
            if self._check is not None and not self._check.done():
                self.skipped += 1
                log.warning("vrrp_script still running, not started again", script=self.spec.name)
            else:
                self._check = asyncio.ensure_future(self._run_once())
            next_at += interval
            now = loop.time()
            if next_at < now:  # the loop was late: keep the phase, do not burst
                next_at += ((now - next_at) // interval + 1) * interval
            await asyncio.sleep(next_at - now)

    async def _run_once(self) -> None:
        spec = self.spec
        try:
            result = await self._runner(
                list(spec.argv), timeout=spec.effective_timeout, user=spec.user, group=spec.group
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken runner counts as a failed check
            log.exception("vrrp_script runner failed", script=spec.name)
            result = ProcessResult(None, None, False, 0.0, "", str(exc))
        self.runs += 1
        self.last_result = result
        if result.timed_out:
            log.warning("vrrp_script timed out", script=spec.name)
        if self._state.observe(result.ok):
            log.info("vrrp_script", script=spec.name, status="succeeded" if self.ok else "failed")
            try:
                self._on_change(spec.name, self.ok)
            except Exception:
                log.exception("vrrp_script callback failed", script=spec.name)
