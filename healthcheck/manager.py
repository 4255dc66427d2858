"""asyncio driver of ``HealthCore``: one ``loop.call_at`` for the earliest deadline, TCP_CHECKs
through one ``TcpEngine`` (no task, future or handle per probe), other probes as tasks, commands
through a bounded ``ProcessLimiter``.

Nothing here blocks the loop: probes are asynchronous, scripts are child processes, the
callbacks (``on_change``, ``on_fifo``) are plain functions that must return quickly, and due
probes are started in slices of ``_SLICE`` so that other timers (VRRP adverts in the same loop)
run between slices even when thousands are due at once.  Start times are rounded up to a 50 ms
grid: one wake-up starts every probe due in that window (keepalived's timers are in seconds).
TCP connects that completed within ``connect()`` (a local network) are harvested in the same
callback, and FILE_CHECKs are read when inotify reports a change.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import structlog

from healthcheck import process
from healthcheck.checkers import ProbeContext, ProbeFn, start_probe
from healthcheck.checkers.tcp import Target, TcpEngine
from healthcheck.checkers.tcp import target as tcp_target
from healthcheck.events import EventDeriver, OnEvent
from healthcheck.model import (
    CheckResult,
    FileCheckSpec,
    ServerKey,
    TcpCheckSpec,
    VirtualServerSpec,
)
from healthcheck.process import ProcessLimiter, ProcessRunner
from healthcheck.scheduler import FILE_POLL_INTERVAL
from healthcheck.state import (
    Action,
    CheckerState,
    CheckTransition,
    FifoLine,
    HealthCore,
    RunCommand,
    Snapshot,
    WeightsChanged,
)

if TYPE_CHECKING:
    from healthcheck.filewatch import FileWatcher

__all__ = ["CheckerManager", "OnChange"]

log = structlog.get_logger("healthcheck")

# probes started per loop callback (with the results of those that connected at once: ~1-2 ms
# on the host, so a VRRP advert timer in the same loop is never held up longer)
_SLICE = 32
# probe start times are rounded up to this grid (seconds): every wake-up costs the same whatever
# it starts, so 1,000 checks at delay_loop 6 cost ~25% less CPU per probe than on a 20 ms grid
# (tests/bench/checks_10k.py); a probe starts at most 50 ms late (delay_loop is in seconds)
_TICK = 0.05

# on_change(vs_key, servers): the complete desired destinations {(addr, port): weight} of one VS.
OnChange = Callable[[str, Mapping[ServerKey, int]], None]


class CheckerManager:
    """Runs every check of ``virtual_servers`` and reports desired weights through ``on_change``.

    ``runner`` runs MISC_CHECK scripts and notify/quorum commands (default
    ``healthcheck.process.run``); at most ``max_scripts`` run at once.  ``on_fifo`` receives
    notify-FIFO lines (without newline).  ``on_event`` observes real-server and quorum
    transitions (``healthcheck.events``; e.g. smtp_alert mails): a plain function that must
    return quickly; its exceptions are logged.  ``probe`` replaces the real probes (tests).
    """

    def __init__(
        self,
        virtual_servers: Sequence[VirtualServerSpec],
        *,
        on_change: OnChange,
        runner: ProcessRunner | None = None,
        on_fifo: Callable[[str], None] | None = None,
        max_scripts: int = 32,
        command_timeout: float = 30.0,
        rng: random.Random | None = None,
        probe: ProbeFn | None = None,
        on_event: OnEvent | None = None,
    ) -> None:
        self._rng = rng
        self._core = HealthCore(virtual_servers, rng=rng)
        self._on_change = on_change
        self._on_fifo = on_fifo
        self._on_event = on_event
        self._events = EventDeriver(virtual_servers) if on_event is not None else None
        self._runner: ProcessRunner = runner or process.run
        self._limiter = ProcessLimiter(max_scripts)
        self._command_timeout = command_timeout
        self._ctx = ProbeContext(run_command=self._limited_run)
        self._probe: ProbeFn = probe or start_probe
        self._tcp_direct = probe is None  # TCP_CHECK through the TcpEngine (the hot path)
        self._tcp: TcpEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._inflight: set[asyncio.Future[CheckResult]] = set()
        self._commands: set[asyncio.Task[None]] = set()
        self._running = False
        self._files: FileWatcher | None = None
        self._file_states: dict[str, list[CheckerState]] = {}
        self._targets: list[Target | None] = []  # by check index (TcpCheckSpec only)

    @property
    def limiter(self) -> ProcessLimiter:
        return self._limiter

    @property
    def core(self) -> HealthCore:
        return self._core

    async def start(self) -> None:
        """Report the initial desired weights, then schedule the first probes (warmup)."""
        self._loop = asyncio.get_running_loop()
        self._running = True
        if self._tcp_direct:
            self._tcp = TcpEngine(self._loop, after_batch=self._arm)
        self._apply(self._core.start(self._loop.time()), starting=True)
        self._index_core()
        self._arm()

    async def reload(self, virtual_servers: Sequence[VirtualServerSpec]) -> None:
        """Switch to a new configuration without losing what is known: unchanged checks keep
        their state and schedule (running probes finish into the new state), virtual servers
        keep their quorum state, new checks start with warmup.  Reports every virtual server's
        desired destinations through ``on_change`` as ``start()`` does."""
        if self._events is not None:
            self._events = EventDeriver(virtual_servers)
        if self._loop is None or not self._running:
            self._core = HealthCore(virtual_servers, rng=self._rng)
            return
        old, self._core = self._core, HealthCore(virtual_servers, rng=self._rng)
        self._apply(self._core.start(self._loop.time(), previous=old), starting=True)
        self._index_core()
        self._timer_at = None
        self._arm()

    async def stop(self) -> None:
        """Cancel probes and timers; run omega notifications and wait for running commands."""
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tcp is not None:
            self._tcp.close()
            self._tcp = None
        if self._files is not None:
            self._files.close()
            self._files = None
        inflight = list(self._inflight)
        for fut in inflight:
            fut.cancel()
        if inflight:
            await asyncio.gather(*inflight, return_exceptions=True)
        self._apply(self._core.stop(), stopping=True)
        if self._commands:
            await asyncio.gather(*self._commands, return_exceptions=True)

    def snapshot(self) -> Snapshot:
        return self._core.snapshot()

    def desired(self) -> dict[str, dict[ServerKey, int]]:
        return self._core.desired()

    # ---- FILE_CHECK: read when the file changes (inotify), as keepalived

    def _index_core(self) -> None:
        """Per-core set-up: TCP targets resolved once per check, FILE_CHECK watches."""
        self._targets = [tcp_target(st.spec) if type(st.spec) is TcpCheckSpec else None
                         for st in self._core.states]
        self._watch_files()

    def _watch_files(self) -> None:
        if self._files is not None:
            self._files.close()
            self._files = None
        self._file_states = {}
        files = [st for st in self._core.states if isinstance(st.spec, FileCheckSpec)]
        if not files or self._loop is None:
            return
        from healthcheck.filewatch import FileWatcher  # inotify via ctypes: FILE_CHECK only

        try:
            watcher = FileWatcher(self._loop, self._file_changed)
        except OSError as exc:
            log.warning("file_check_inotify_unavailable", error=str(exc),
                        poll_interval=FILE_POLL_INTERVAL)
            return
        for st in files:
            assert isinstance(st.spec, FileCheckSpec)
            if watcher.watch(st.spec.path):
                self._core.set_on_demand(st)
                self._file_states.setdefault(st.spec.path, []).append(st)
            else:
                log.warning("file_check_polled", path=st.spec.path,
                            reason="its directory cannot be watched",
                            poll_interval=FILE_POLL_INTERVAL)
        self._files = watcher

    def _file_changed(self, path: str) -> None:
        if not self._running or self._loop is None:
            return
        now = self._loop.time()
        for st in self._file_states.get(path, ()):
            self._core.trigger(st, now)
        self._arm()

    # ---- timer

    def _arm(self) -> None:
        if not self._running or self._loop is None:
            return
        at = self._core.next_deadline()
        if at is not None:
            # coalesce wake-ups: fire on a _TICK grid (at most _TICK late), so 10,000 checks
            # spread over 6 s wake the loop ~20 times a second instead of ~1,700
            at = math.ceil(at / _TICK) * _TICK
        if at == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        loop = self._loop
        assert loop is not None
        tcp, targets = self._tcp, self._targets
        for state in self._core.pop_due_states(loop.time(), _SLICE):
            spec = state.spec
            if tcp is not None and type(spec) is TcpCheckSpec:
                tcp.start(spec, self._fold, state, targets[state.index])
                continue
            fut: asyncio.Future[CheckResult]
            try:
                fut = asyncio.ensure_future(self._probe(state.spec, self._ctx))
            except Exception as exc:  # a probe bug must not kill the checker
                fut = loop.create_future()
                fut.set_exception(exc)
            self._inflight.add(fut)
            fut.add_done_callback(partial(self._probe_done, state))
        if tcp is not None:
            tcp.harvest()  # local connects are mostly done already: no extra loop iteration
        self._arm()  # more still due: call_at in the past = after the callbacks already ready

    def _probe_done(self, state: CheckerState, fut: asyncio.Future[CheckResult]) -> None:
        self._inflight.discard(fut)
        if fut.cancelled():
            return
        exc = fut.exception()
        self._deliver(state, fut.result() if exc is None
                      else CheckResult(False, f"probe error: {exc!r}"))

    def _deliver(self, state: CheckerState, result: CheckResult) -> None:
        folded = self._fold(state, result)
        if folded is None:
            return
        due = self._core.timers.due_at(folded.index)
        if self._timer is None or due is None or self._timer_at is None or due < self._timer_at:
            self._arm()  # else the armed timer comes first anyway (the usual case)

    def _fold(self, state: CheckerState, result: CheckResult) -> CheckerState | None:
        """Hand one result to the core and carry out its actions (no timer re-arm: TCP results
        come in batches and the engine re-arms once per batch)."""
        if not self._running or self._loop is None:
            return None
        core = self._core
        if not core.owns(state):  # started before a reload
            current = core.checks.get(state.spec)
            if current is None or not current.running:
                return None
            state = current
        actions = core.on_result_state(state, result, self._loop.time())
        if actions:
            try:
                self._apply(actions)
            except Exception:  # a failing callback must not strand the other probes
                log.exception("checker_callback_failed")
        return state

    # ---- actions

    def _apply(self, actions: list[Action], *, starting: bool = False,
               stopping: bool = False) -> None:
        for action in actions:
            if isinstance(action, WeightsChanged):
                self._on_change(action.vs_key, action.servers)
            elif isinstance(action, FifoLine):
                log.info("checker_notify", line=action.line)
                if self._on_fifo is not None:
                    self._on_fifo(action.line)
            elif isinstance(action, RunCommand):
                self._spawn_command(action)
            elif isinstance(action, CheckTransition):
                spec = action.spec
                log.info("checker_state", kind=spec.kind, up=action.up,
                         target=f"[{spec.connect_ip}]:{spec.connect_port}",
                         detail=action.detail, retries=action.retries)
        if self._on_event is not None and self._events is not None:
            for event in self._events.derive(actions, self._core, starting=starting,
                                             stopping=stopping):
                try:
                    self._on_event(event)
                except Exception:  # an observer must not break the checkers
                    log.exception("checker_event_listener_failed", what=repr(event))

    def _spawn_command(self, action: RunCommand) -> None:
        if self._loop is None:
            return
        task = self._loop.create_task(self._run_command(action))
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)

    async def _run_command(self, action: RunCommand) -> None:
        cmd = action.command
        result = await self._limited_run(cmd.argv, timeout=self._command_timeout,
                                         user=cmd.user, group=cmd.group)
        if not result.ok:
            log.warning("checker_command_failed", reason=action.reason, target=action.target,
                        argv=list(cmd.argv), exit_code=result.exit_code, error=result.error,
                        timed_out=result.timed_out)

    async def _limited_run(
        self, argv: Sequence[str], *, timeout: float, user: str | None = None,
        group: str | None = None,
    ) -> process.ProcessResult:
        async with self._limiter.slot():
            return await self._runner(argv, timeout=timeout, user=user, group=group)
