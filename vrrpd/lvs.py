"""The LVS half of the daemon: config + checker results -> kernel IPVS, kept in sync.

    runner = LvsRunner(config)            # IPVSClient and the health checkers by default
    await runner.start()                  # lvs_flush, lvs_timeouts, adopt + program
    ...                                   # periodic sync repairs drift (ipvsadm -d / -C)
    await runner.apply_config(new)        # reload: only the differences reach the kernel
    await runner.stop()                   # own entries removed unless keep / -I

The connection-sync daemon (``lvs_sync_daemon``) is not ours: VRRP drives it
(:mod:`vrrpd.lvs_syncd`), in one process or in the ``-P`` child, as keepalived's VRRP process does.

Unlike keepalived, the kernel table is read back: every ``sync_interval`` seconds one dump is
compared with the desired state (:func:`ipvs.reconcile.plan`) and only the differences are
sent.  Checker changes and reloads are planned against the cached table (the last dump plus
what we applied since), so a change of one real server costs exactly one netlink request.
A failing request is logged and counted, never raised out of the loop: the next sync
(``retry_interval`` later, doubling up to ``sync_interval``) dumps and plans again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import structlog

from healthcheck.model import ServerKey, VirtualServerSpec
from ipvs.batch import BatchSender
from ipvs.drain import DestRef, leaving_services, with_drains
from ipvs.errors import Exists, NotFound
from ipvs.model import ObservedService, ServiceKey, Timeouts
from ipvs.reconcile import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    DesiredService,
    Op,
    apply,
    plan,
    same_objects,
    stop_plan,
)
from vrrpd.config.model import Config, FlushOnStop
from vrrpd.lvs_checks import SpecCache
from vrrpd.lvs_desired import CompileCache, CompiledVs, DesiredCache, compile_config, desired
from vrrpd.lvs_kernel import FailureLog, IpvsBackend, execute

if TYPE_CHECKING:
    from healthcheck.events import OnEvent  # its HealthCore import: only with checkers

__all__ = ["CheckerFactory", "CheckerLike", "LvsRunner", "SyncResult", "stop_mode"]

log = structlog.get_logger("lvs")

BATCH_MIN = 8  # fewer operations go one request at a time (clearer errors, same cost)
DRAIN_POLL = 1.0  # full-sync interval while destinations drain (--drain-timeout)

OnChange = Callable[[str, Mapping[ServerKey, int]], None]


class CheckerLike(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


CheckerFactory = Callable[[Sequence[VirtualServerSpec], OnChange], CheckerLike]


def default_checkers(specs: Sequence[VirtualServerSpec], on_change: OnChange, *,
                     on_event: OnEvent | None = None,
                     on_fifo: Callable[[str], None] | None = None) -> CheckerLike:
    """``on_event``: real-server / quorum transitions (``healthcheck.events``; smtp_alert
    mails, ``vrrpd.alerts``); ``on_fifo``: notify-FIFO lines (``lvs_checks.lvs_notify_fifo``)
    -- bind them with ``functools.partial`` for ``checker_manager``."""
    from healthcheck.manager import CheckerManager

    return CheckerManager(specs, on_change=on_change, on_event=on_event, on_fifo=on_fifo)


def default_client() -> IpvsBackend:
    """The struct-encoded netlink backend (pipelined writes, cheap dumps, no pyroute2)."""
    return BatchSender()


def stop_mode(config: Config, keep: bool) -> str:
    """keepalived's stop behaviour: ``-I`` keeps everything; ``lvs_flush_on_stop`` (ALL)
    flushes the table, ``lvs_flush_on_stop VS`` deletes each virtual server; by default each
    real server and then each virtual server is deleted."""
    if keep:
        return "keep"
    return {FlushOnStop.NONE: "dests", FlushOnStop.VS: "services",
            FlushOnStop.ALL: "flush"}[config.global_defs.lvs_flush_on_stop]


@dataclass
class SyncResult:
    """What one reconcile did (for tests, logs and metrics)."""

    dumped: bool = False
    ops: list[Op] = field(default_factory=list)  # attempted, in order
    failed: list[tuple[Op, str]] = field(default_factory=list)
    error: str | None = None  # the dump itself failed


@dataclass
class LvsStats:
    syncs: int = 0
    dumps: int = 0
    ops: int = 0
    failures: int = 0
    last_error: str | None = None
    last_sync_seconds: float = 0.0


class LvsRunner:
    def __init__(
        self,
        config: Config,
        *,
        client_factory: Callable[[], IpvsBackend] = default_client,
        checker_manager: CheckerFactory | None = default_checkers,
        sync_interval: float = 5.0,
        retry_interval: float = 1.0,
        drain_timeout: float = 0.0,
        keep_on_stop: bool = False,
        batch: bool | None = None,
        max_sync_share: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.sync_interval = sync_interval
        self.max_sync_share = max_sync_share
        self.retry_interval = retry_interval
        self.drain_timeout = drain_timeout
        self.keep_on_stop = keep_on_stop
        self.stats = LvsStats()
        self._client_factory = client_factory
        # pipelined bulk writes (ipvs.batch) need the real kernel: on by default with the
        # default client, off with an injected one unless asked for
        self._use_batch = batch if batch is not None else client_factory is default_client
        self._batch: BatchSender | None = None
        self._checker_factory = checker_manager
        self._clock = clock
        self._client: IpvsBackend | None = None
        self._checkers: CheckerLike | None = None
        self._specs: list[VirtualServerSpec] = []
        self._spec_cache = SpecCache()
        self._compile_cache: CompileCache = {}
        self._compiled: list[CompiledVs] = compile_config(config, self._compile_cache)
        self._desired_cache: DesiredCache = {}  # unchanged weights keep their objects
        self._primed_generation = -1  # of the batch sender's decoder (_expect_identical)
        self._expected: dict[ServiceKey, DesiredService] = {}  # last looked at
        self._weights: dict[str, Mapping[ServerKey, int]] = {}
        self._observed: dict[ServiceKey, ObservedService] = {}
        self._owned: set[ServiceKey] = set()
        self._drains: dict[DestRef, float] = {}
        self._need_dump = True
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._hold = False  # batch weight changes during start/reload
        self._failure_log = FailureLog()  # each failure once, then repeats counted

    # ---------------------------------------------------------------- public

    @property
    def owned(self) -> frozenset[ServiceKey]:
        return frozenset(self._owned)

    @property
    def observed(self) -> Mapping[ServiceKey, ObservedService]:
        """The cached kernel table: the last dump plus what we applied since."""
        return self._observed

    def desired_state(self) -> dict[ServiceKey, DesiredService]:
        return desired(self._compiled, self._weights, self._desired_cache)

    async def start(self) -> None:
        """Open IPVS (raises if the kernel has none), apply the global LVS settings, start the
        checkers, adopt and program the table, then keep it in sync in the background."""
        client = self._client = self._client_factory()
        try:
            await self._start(client)
        except BaseException:
            await self._stop_checkers()
            self._close()
            raise
        self._task = asyncio.create_task(self._run(), name="lvs-sync")

    async def _start(self, client: IpvsBackend) -> None:
        await client.open()
        if self._use_batch:
            self._batch = client if isinstance(client, BatchSender) else BatchSender()
            await self._batch.open()
        g = self.config.global_defs
        if g.lvs_flush:
            await client.flush()
            log.info("lvs_flush")
        t = g.lvs_timeouts
        if t.tcp or t.tcpfin or t.udp:
            await self._guard("set_timeouts", client.set_timeouts(
                Timeouts(tcp=t.tcp or 0, tcp_fin=t.tcpfin or 0, udp=t.udp or 0)))
        # the table first, from the config's initial weights (what the checkers report at
        # start: lvs_desired.initial_weights), so setting up thousands of checks does not
        # delay it; then the checkers, whose first report changes nothing unless it differs
        result = await self.sync()
        added = sum(isinstance(o, AddService) for o in result.ops)
        log.info("lvs_started", services=len(self._owned), adopted=len(self._owned) - added,
                 ops=len(result.ops), failed=len(result.failed))
        from vrrpd.lvs_cache import after_initial_sync  # the cold-start cache (fast_start)

        after_initial_sync(self, result)
        self._hold = True
        try:
            await self._start_checkers()
        finally:
            self._hold = False
        if self._weights:
            await self.reconcile_cached()

    def _close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._batch is not None:
            self._batch.close()
            self._batch = None

    async def stop(self, keep: bool | None = None) -> SyncResult:
        """Stop syncing and checking; remove our entries unless kept (``-I``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_checkers()
        keep = self.keep_on_stop if keep is None else keep
        mode = stop_mode(self.config, keep)
        result = SyncResult()
        client = self._client
        if client is None:
            return result
        try:
            async with self._lock:
                if mode != "keep":
                    if mode != "flush" and self._need_dump:  # else the cache is the table
                        await self._dump(result)
                    if result.error is None:
                        await self._execute(stop_plan(self._observed, self._owned, mode=mode),
                                            result)
        finally:
            self._close()
        log.info("lvs_stopped", mode=mode, ops=len(result.ops), failed=len(result.failed))
        return result

    def on_weights(self, vs_key: str, servers: Mapping[ServerKey, int]) -> None:
        """The checkers' callback: the complete desired destinations of one virtual server."""
        self._weights[vs_key] = dict(servers)
        if not self._hold:
            self._wake.set()

    async def apply_config(self, config: Config) -> SyncResult:
        """A reload: recompile, hand changed specs to the checkers (``reload``: unchanged
        checks keep their state; a manager without it is restarted), and send only the
        differences (planned against the cached table, no dump)."""
        async with self._lock:
            self.config = config
            self._compiled = compile_config(config, self._compile_cache)
            specs = (self._spec_cache.specs(config) if self._checker_factory is not None
                     else self._specs)
            if specs != self._specs:
                known = {c.vs_key for c in self._compiled}
                self._weights = {k: v for k, v in self._weights.items() if k in known}
                self._hold = True
                try:
                    reload = getattr(self._checkers, "reload", None)
                    if reload is not None:  # unchanged checks keep their state (keepalived)
                        self._specs = specs
                        await reload(specs)
                    else:
                        await self._stop_checkers()
                        await self._start_checkers(specs)
                finally:
                    self._hold = False
            result = await self._reconcile(dump=False)
        log.info("lvs_reloaded", ops=len(result.ops), failed=len(result.failed))
        return result

    async def sync(self) -> SyncResult:
        """One full sync now: dump the kernel table, plan, apply."""
        async with self._lock:
            return await self._reconcile(dump=True)

    async def reconcile_cached(self) -> SyncResult:
        """Apply pending checker changes against the cached table (no dump)."""
        async with self._lock:
            return await self._reconcile(dump=False)

    # ---------------------------------------------------------------- internals

    async def _start_checkers(self, specs: list[VirtualServerSpec] | None = None) -> None:
        if self._checker_factory is None:
            return
        self._specs = specs if specs is not None else self._spec_cache.specs(self.config)
        self._checkers = self._checker_factory(self._specs, self.on_weights)
        await self._checkers.start()

    async def _stop_checkers(self) -> None:
        if self._checkers is not None:
            checkers, self._checkers = self._checkers, None
            try:
                await checkers.stop()
            except Exception:
                log.exception("checkers_stop_failed")

    async def _run(self) -> None:
        """Full sync every ``sync_interval`` (longer when one dump takes more than
        ``max_sync_share`` of that); checker changes in between against the cache.
        After a failure the next full sync comes ``retry_interval`` later, doubling."""
        backoff = self.retry_interval
        delay = self.sync_interval
        while True:
            deadline = self._clock() + delay
            while (timeout := deadline - self._clock()) > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    break
                self._wake.clear()
                result = await self._safe(self.reconcile_cached)
                if result.failed or result.error:
                    deadline = min(deadline, self._clock() + backoff)
                if self._drains:
                    deadline = min(deadline, self._clock() + DRAIN_POLL)
            started = self._clock()
            result = await self._safe(self.sync)
            took = self.stats.last_sync_seconds = self._clock() - started
            if result.failed or result.error:
                delay, backoff = backoff, min(backoff * 2, self.sync_interval)
            else:
                # a huge table makes a dump expensive: spend at most max_sync_share of the time
                delay = max(self.sync_interval, took / self.max_sync_share)
                backoff = self.retry_interval
            if self._drains:  # draining destinations: look at their connections more often
                delay = min(delay, max(DRAIN_POLL, 4 * took))

    async def _safe(self, step: Callable[[], Awaitable[SyncResult]]) -> SyncResult:
        try:
            return await step()
        except Exception as exc:  # never let the loop die
            log.exception("lvs_sync_crashed")
            self._need_dump = True
            return SyncResult(error=f"{type(exc).__name__}: {exc}")

    async def _dump(self, result: SyncResult) -> None:
        assert self._client is not None
        self.stats.dumps += 1
        try:
            services = await (self._batch.dump() if self._batch is not None
                              else self._client.dump_services())
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            self._need_dump = True
            self.stats.failures += 1
            self.stats.last_error = result.error
            log.error("ipvs_dump_failed", error=result.error)
            return
        result.dumped = True
        self._observed = {s.service.key: s for s in services}
        self._need_dump = False

    async def _reconcile(self, *, dump: bool) -> SyncResult:
        result = SyncResult()
        if self._client is None:
            return result
        self.stats.syncs += 1
        if dump or self._need_dump:
            await self._dump(result)
            if result.error is not None:
                return result
        want = desired(self._compiled, self._weights, self._desired_cache)
        if not result.dumped and self.drain_timeout > 0:
            await self._refresh_leaving(want)
        drained = with_drains(want, self._observed, self._drains, now=self._clock(),
                              timeout=self.drain_timeout)
        self._drains = drained.deadlines
        self._owned = set(want) | {k for k in self._owned if k in self._observed}
        await self._execute(plan(drained.desired, self._observed, self._owned), result)
        self._owned = set(want) | {k for k in self._owned if k in self._observed}
        if self._batch is not None:
            self._expect_identical(drained.desired)
        return result

    def _expect_identical(self, want: Mapping[ServiceKey, DesiredService]) -> None:
        """Desired entries the table holds as other objects (adopted, recompiled by a reload,
        forgotten by the decoder): the next dumps return ours, plans compare by identity.
        Only services changed since the last look, all when the decoder forgot."""
        assert self._batch is not None
        generation = self._batch.primed_generation
        seen = self._expected if generation == self._primed_generation else {}
        self._primed_generation = generation
        for key, w in want.items():
            last = seen.get(key)
            if last is not None and last.service is w.service and last.dests is w.dests:
                continue
            have = self._observed.get(key)
            if have is None or (have.service is w.service and same_objects(w.dests, have.dests)):
                continue
            mine = set(map(id, w.dests))
            stale: list[object] = [o.dest for o in have.dests if id(o.dest) not in mine]
            service = None if have.service is w.service else w.service
            self._batch.expect(service, key, w.dests, stale + ([have.service] if service else []))
        self._expected = dict(want)

    async def _refresh_leaving(self, want: Mapping[ServiceKey, DesiredService]) -> None:
        """Draining decides on live connection counts: re-read the services whose
        destinations are about to leave (the cache holds the counters of the last dump)."""
        assert self._client is not None
        stale = leaving_services(want, self._observed, self._drains)
        if not stale:
            return
        dump_dests = getattr(self._client, "dump_dests", None)
        for key in stale:
            try:
                if dump_dests is None:
                    raise NotImplementedError
                dests = await dump_dests(key)
            except Exception:  # gone, or no per-service dump: read the whole table
                await self._dump(SyncResult())
                return
            self._observed[key] = dataclasses.replace(self._observed[key], dests=tuple(dests))

    async def _execute(self, ops: list[Op], result: SyncResult) -> None:
        """Run ``ops`` in order (pipelined when many), then update the cached table once."""
        assert self._client is not None
        done: list[Op] = []
        self._need_dump = True  # until the cache has been updated (cancellation, crash)
        if self._batch is not None and len(ops) >= BATCH_MIN:
            failed = await self._batch.failures(ops)
            result.ops.extend(ops)
            if failed:
                for i, op in enumerate(ops):
                    self._outcome(op, failed.get(i), result, done)
            done = done if failed else ops
        else:
            broken: set[ServiceKey] = set()
            for op in ops:
                if isinstance(op, AddDest) and op.service in broken:
                    continue  # its service could not be added
                result.ops.append(op)
                try:
                    await execute(self._client, op)
                except Exception as exc:
                    self._outcome(op, exc, result, done)
                    if isinstance(op, AddService) and not isinstance(exc, Exists):
                        broken.add(op.service.key)
                    continue
                done.append(op)
        self.stats.ops += len(result.ops)
        try:
            self._observed = apply(self._observed, done)
        except (KeyError, ValueError):  # the cache disagreed with the kernel somewhere
            for op in done:
                with contextlib.suppress(KeyError, ValueError):
                    self._observed = apply(self._observed, [op])
            return  # keep _need_dump: the next reconcile reads the kernel
        self._need_dump = bool(result.failed)
        self._failure_log.end_run(result.failed)

    def _outcome(self, op: Op, exc: Exception | None, result: SyncResult,
                 done: list[Op]) -> None:
        if exc is None:
            done.append(op)
        elif isinstance(exc, NotFound) and isinstance(op, (DelDest, DelService)):
            done.append(op)  # already gone: that is the goal
        else:
            self._failed(op, exc, result)

    def _failed(self, op: Op, exc: Exception, result: SyncResult) -> None:
        text = f"{type(exc).__name__}: {exc}"
        result.failed.append((op, text))
        self.stats.failures += 1
        self.stats.last_error = text
        self._failure_log.failed(op, text)

    async def _guard(self, what: str, coro: Awaitable[object]) -> bool:
        try:
            await coro
        except Exception as exc:
            self.stats.failures += 1
            self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"
            log.error("ipvs_failed", what=what, error=str(exc))
            return False
        return True
