"""Pure health state: checker retry logic, real-server and virtual-server state, desired weights.

No I/O and no clock of its own: ``HealthCore`` is stepped with explicit times (``start(now)``,
``pop_due(now)``, ``on_result(spec, result, now)``, ``stop()``) and answers with actions for
the driver (``healthcheck.manager``) to carry out.  ``_recompute`` is the one place that changes
real-server / virtual-server state.

keepalived's semantics:
- a checker starts up, or down with ``alpha``; an up checker that fails is retried ``retry``
  more times ``delay_before_retry`` apart, and only the last failure takes it down; one success
  brings it up; otherwise checks run ``delay_loop`` after the previous one ended;
- identical specs are one checker: one probe, its result fanned out to every real server using it;
- FILE_CHECKs the driver watches (``set_on_demand``) are probed at start and on ``trigger``
  (inotify reported a change), not on a timer;
- a real server is alive while all of its checkers are up; its weight is its configured weight
  plus the deltas of dynamic checkers (misc_dynamic: ``exit - 2 - weight``; FILE_CHECK: ``w``);
- desired IPVS entries: an alive server at its weight, a dead one absent (0 with
  ``inhibit_on_failure``); quorum is gained when the alive weight sum >= quorum + hysteresis and
  lost when it is 0 or < quorum - hysteresis; while quorum is lost a configured sorry server
  replaces every real server (dead/inhibited ones at 0, others absent); while quorum holds the
  sorry server is absent (0 with ``sorry_server_inhibit``);
- notify_up/notify_down and real-server notify-FIFO lines on transitions only (not at start);
  quorum_up/quorum_down also at start, as keepalived: a virtual server starting with quorum met
  (alive weight >= quorum + hysteresis) runs quorum_up (``VS ... UP``), one starting without it
  runs quorum_down only when it has a sorry server to bring in; with ``omega``, ``stop()`` fires
  the down notifications of what is still up.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from healthcheck.model import (
    CheckResult,
    CheckSpec,
    CommandSpec,
    FileCheckSpec,
    MiscCheckSpec,
    RealServerSpec,
    ServerKey,
    VirtualServerSpec,
)
from healthcheck.scheduler import Timers, first_run, next_delay

__all__ = [
    "Action",
    "CheckSnapshot",
    "CheckTransition",
    "CheckerState",
    "FifoLine",
    "HealthCore",
    "RealServerSnapshot",
    "RunCommand",
    "Snapshot",
    "VirtualServerSnapshot",
    "WeightsChanged",
    "format_server",
]


# ------------------------------------------------------------------ actions


@dataclass(frozen=True, slots=True)
class WeightsChanged:
    """The complete desired destinations of one virtual server (absent key = not in IPVS)."""

    vs_key: str
    servers: Mapping[ServerKey, int]


@dataclass(frozen=True, slots=True)
class RunCommand:
    command: CommandSpec
    reason: str  # "notify_up" | "notify_down" | "quorum_up" | "quorum_down"
    target: str  # the server / virtual server it concerns


@dataclass(frozen=True, slots=True)
class FifoLine:
    line: str  # without newline: 'RS [1.2.3.4]:tcp:80 [10.0.0.1]:tcp:80 DOWN'


@dataclass(frozen=True, slots=True)
class CheckTransition:
    """A checker changed state (for logging); ``retries`` = failed retries before going down."""

    spec: CheckSpec
    up: bool
    detail: str
    retries: int = 0


Action = WeightsChanged | RunCommand | FifoLine | CheckTransition


# ------------------------------------------------------------------ checker


@dataclass(slots=True)
class CheckerState:
    """Retry state of one distinct check."""

    spec: CheckSpec
    up: bool
    index: int = 0  # position in HealthCore.states (timers and fan-out are keyed by it)
    retry_it: int = 0
    runs: int = 0
    running: bool = False
    dynamic_value: int | None = None
    # the last result's fields, not the CheckResult itself: 10,000 result objects living for a
    # delay_loop each would all reach the GC's oldest generation and lengthen full collections
    last_ok: bool | None = None
    last_detail: str = "not run yet"
    last_latency: float | None = None  # floats are not GC-tracked: cheap to keep

    def apply(self, result: CheckResult) -> tuple[bool, float]:
        """Fold one probe result in; returns (up/down changed, delay until the next probe)."""
        spec = self.spec
        self.runs += 1
        self.last_ok = result.ok
        self.last_detail = result.detail
        self.last_latency = result.latency
        if result.ok:
            if result.weight is not None:
                self.dynamic_value = result.weight
            self.retry_it = 0
            changed = not self.up
            self.up = True
            return changed, next_delay(spec, retrying=False)
        retry = 0 if isinstance(spec, FileCheckSpec) else spec.retry  # a file is not retried
        if self.up and self.retry_it < retry:
            self.retry_it += 1
            return False, next_delay(spec, retrying=True)
        changed = self.up
        self.up = False
        self.retry_it = 0
        return changed, next_delay(spec, retrying=False)

    def weight_delta(self, rs: RealServerSpec) -> int:
        spec = self.spec
        if self.dynamic_value is None:
            return 0
        if isinstance(spec, MiscCheckSpec) and spec.dynamic:
            return self.dynamic_value - rs.weight
        if isinstance(spec, FileCheckSpec) and spec.dynamic:
            return self.dynamic_value
        return 0


# ------------------------------------------------------------------ snapshots


@dataclass(frozen=True, slots=True)
class CheckSnapshot:
    kind: str
    target: str
    up: bool
    retry_it: int
    runs: int
    next_at: float | None
    detail: str


@dataclass(frozen=True, slots=True)
class RealServerSnapshot:
    key: ServerKey
    alive: bool
    weight: int
    checks: tuple[CheckSnapshot, ...]


@dataclass(frozen=True, slots=True)
class VirtualServerSnapshot:
    key: str
    quorum_up: bool
    alive_weight: int
    sorry_active: bool
    real_servers: tuple[RealServerSnapshot, ...]
    desired: Mapping[ServerKey, int]


@dataclass(frozen=True, slots=True)
class Snapshot:
    virtual_servers: tuple[VirtualServerSnapshot, ...]
    distinct_checks: int


# ------------------------------------------------------------------ core


def format_server(key: ServerKey, protocol: str) -> str:
    """keepalived's ``[addr]:proto:port``."""
    return f"[{key[0]}]:{protocol}:{key[1]}"


@dataclass(slots=True)
class _RsState:
    alive: bool
    weight: int


@dataclass(slots=True)
class _VsState:
    spec: VirtualServerSpec
    rs: list[_RsState]
    quorum_up: bool = True
    desired: dict[ServerKey, int] = field(default_factory=dict)


class HealthCore:
    """All checkers, real servers and virtual servers of one configuration."""

    def __init__(
        self, virtual_servers: Sequence[VirtualServerSpec], *, rng: random.Random | None = None
    ) -> None:
        keys = [vs.key for vs in virtual_servers]
        if len(set(keys)) != len(keys):
            raise ValueError("virtual server keys must be unique")
        self._rng = rng or random.Random()
        # one state per distinct spec; specs are hashed only here (their hash is not cached)
        self.checks: dict[CheckSpec, CheckerState] = {}
        self.states: list[CheckerState] = []
        # check index -> indexes of the virtual servers using it, for fan-out
        self._users: list[set[int]] = []
        self._rs_checks: list[list[list[CheckerState]]] = []
        self._vs: list[_VsState] = []
        self.timers: Timers[int] = Timers()
        # checks probed on demand (``trigger``), not on a timer: FILE_CHECKs whose file the
        # driver watches with inotify; ``_retrigger``: triggered while their probe ran
        self._on_demand: set[int] = set()
        self._retrigger: set[int] = set()
        for vi, vs in enumerate(virtual_servers):
            per_rs = []
            for rs in vs.real_servers:
                states = []
                for spec in rs.checkers:
                    st = self.checks.get(spec)
                    if st is None:
                        st = CheckerState(spec, up=not spec.alpha, index=len(self.states))
                        self.checks[spec] = st
                        self.states.append(st)
                        self._users.append(set())
                    self._users[st.index].add(vi)
                    states.append(st)
                per_rs.append(states)
            self._rs_checks.append(per_rs)
            self._vs.append(_VsState(vs, [_RsState(False, 0) for _ in vs.real_servers]))
        self._started = False

    # ---- driving

    def start(self, now: float, previous: HealthCore | None = None) -> list[Action]:
        """Initial state (alpha servers down, others up), first runs spread over warmup;
        returns the initial desired weights of every virtual server and the initial quorum
        notifications (see the module docstring).

        With ``previous`` (a reload), checks whose spec is unchanged keep their state and
        schedule (a probe still running in ``previous`` stays running here: hand its result
        to ``on_result``), and virtual servers that keep their key keep their quorum state;
        only new checks start afresh.  A quorum change against ``previous`` is notified.
        """
        self._started = True
        for st in self.states:
            old = previous.checks.get(st.spec) if previous is not None else None
            if old is None:
                self.timers.schedule(st.index, first_run(st.spec, now, self._rng))
                continue
            st.up, st.retry_it, st.runs = old.up, old.retry_it, old.runs
            st.dynamic_value, st.running = old.dynamic_value, old.running
            st.last_ok, st.last_detail = old.last_ok, old.last_detail
            st.last_latency = old.last_latency
            due = previous.timers.due_at(old.index) if previous is not None else None
            if not old.running:
                self.timers.schedule(st.index, now if due is None else due)
        old_vs = {vs.spec.key: vs for vs in previous._vs} if previous is not None else {}
        actions: list[Action] = []
        for vi, vs in enumerate(self._vs):
            for ri, rs in enumerate(vs.spec.real_servers):
                vs.rs[ri] = self._rs_state(rs, self._rs_checks[vi][ri])
            before = old_vs.get(vs.spec.key)
            if before is None:
                actions.extend(self._initial_quorum(vs))
            else:
                vs.quorum_up = before.quorum_up
                actions.extend(self._update_quorum(vs))
            vs.desired = self._desired(vs)
            actions.append(WeightsChanged(vs.spec.key, dict(vs.desired)))
        return actions

    def owns(self, state: CheckerState) -> bool:
        """Whether ``state`` belongs to this core (not to one replaced by a reload)."""
        return state.index < len(self.states) and self.states[state.index] is state

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def due_at(self, spec: CheckSpec) -> float | None:
        """When ``spec`` is probed next (None while it runs or after ``stop``)."""
        return self.timers.due_at(self.checks[spec].index)

    def pop_due(self, now: float) -> list[CheckSpec]:
        """Checks to probe now; they stay unscheduled until their ``on_result``."""
        return [st.spec for st in self.pop_due_states(now)]

    def pop_due_states(self, now: float, limit: int | None = None) -> list[CheckerState]:
        """``pop_due`` without hashing specs, at most ``limit`` (the rest stay due)."""
        due = self.timers.pop_due(now, limit)
        states = self.states
        out = [states[i] for i in due]
        for st in out:
            st.running = True
        return out

    def on_result(self, spec: CheckSpec, result: CheckResult, now: float) -> list[Action]:
        """Fold a probe result in, schedule the next probe, return what must happen."""
        return self.on_result_state(self.checks[spec], result, now)

    def on_result_state(
        self, state: CheckerState, result: CheckResult, now: float
    ) -> list[Action]:
        spec = state.spec
        state.running = False
        retries = state.retry_it
        old_delta = state.dynamic_value
        changed, delay = state.apply(result)
        if self._started:
            index = state.index
            if index not in self._on_demand:
                self.timers.schedule(index, now + delay)
            elif index in self._retrigger:
                self._retrigger.discard(index)
                self.timers.schedule(index, now)
        actions: list[Action] = []
        if changed:
            actions.append(CheckTransition(spec, state.up, result.detail, retries))
        if changed or state.dynamic_value != old_delta:
            actions.extend(self._recompute(self._users[state.index]))
        return actions

    def set_on_demand(self, state: CheckerState) -> None:
        """Probe ``state`` only when ``trigger``ed (after the probe already due, if any)."""
        self._on_demand.add(state.index)

    def trigger(self, state: CheckerState, now: float) -> None:
        """Probe ``state`` now (an on-demand check whose input changed); while its probe runs,
        once more right after it."""
        if not self._started:
            return
        if state.running:
            self._retrigger.add(state.index)
        else:
            self.timers.schedule(state.index, now)

    def stop(self) -> list[Action]:
        """Stop scheduling; with ``omega``, the down notifications of what is still up."""
        self._started = False
        for st in self.states:
            self.timers.cancel(st.index)
        actions: list[Action] = []
        for vs in self._vs:
            if not vs.spec.omega:
                continue
            for ri, rs in enumerate(vs.spec.real_servers):
                if vs.rs[ri].alive:
                    actions.extend(self._rs_notify(vs.spec, rs, up=False))
            if vs.quorum_up:
                actions.extend(self._quorum_notify(vs.spec, up=False))
        return actions

    # ---- reading

    def desired(self) -> dict[str, dict[ServerKey, int]]:
        return {vs.spec.key: dict(vs.desired) for vs in self._vs}

    def snapshot(self) -> Snapshot:
        out = []
        for vi, vs in enumerate(self._vs):
            rss = []
            for ri, rs in enumerate(vs.spec.real_servers):
                checks = tuple(self._check_snapshot(st) for st in self._rs_checks[vi][ri])
                rss.append(RealServerSnapshot(rs.key, vs.rs[ri].alive, vs.rs[ri].weight, checks))
            out.append(VirtualServerSnapshot(
                key=vs.spec.key, quorum_up=vs.quorum_up, alive_weight=self._alive_weight(vs),
                sorry_active=vs.spec.sorry_server is not None and not vs.quorum_up,
                real_servers=tuple(rss), desired=dict(vs.desired)))
        return Snapshot(tuple(out), len(self.checks))

    def _check_snapshot(self, st: CheckerState) -> CheckSnapshot:
        spec = st.spec
        return CheckSnapshot(
            kind=spec.kind, target=f"[{spec.connect_ip}]:{spec.connect_port}", up=st.up,
            retry_it=st.retry_it, runs=st.runs, next_at=self.timers.due_at(st.index),
            detail=st.last_detail)

    # ---- the one place that changes server state

    def _recompute(self, vs_indexes: Iterable[int]) -> list[Action]:
        actions: list[Action] = []
        for vi in sorted(vs_indexes):
            vs = self._vs[vi]
            for ri, rs in enumerate(vs.spec.real_servers):
                new = self._rs_state(rs, self._rs_checks[vi][ri])
                if new.alive != vs.rs[ri].alive:
                    actions.extend(self._rs_notify(vs.spec, rs, up=new.alive))
                vs.rs[ri] = new
            actions.extend(self._update_quorum(vs))
            desired = self._desired(vs)
            if desired != vs.desired:
                vs.desired = desired
                actions.append(WeightsChanged(vs.spec.key, dict(desired)))
        return actions

    def _initial_quorum(self, vs: _VsState) -> list[Action]:
        """keepalived at start (quorum considered down until now): quorum met (alive weight >=
        quorum + hysteresis) -> quorum_up and ``VS ... UP``; not met and a sorry server to
        bring in -> quorum_down and ``VS ... DOWN``; else nothing."""
        total = self._alive_weight(vs)
        vs.quorum_up = total > 0 and total >= vs.spec.quorum + vs.spec.hysteresis
        if vs.quorum_up:
            return self._quorum_notify(vs.spec, up=True)
        if vs.spec.sorry_server is not None:
            return self._quorum_notify(vs.spec, up=False)
        return []

    def _update_quorum(self, vs: _VsState) -> list[Action]:
        total = self._alive_weight(vs)
        q, h = vs.spec.quorum, vs.spec.hysteresis
        if not vs.quorum_up and total > 0 and total >= q + h:
            vs.quorum_up = True
            return self._quorum_notify(vs.spec, up=True)
        if vs.quorum_up and (total == 0 or total < q - h):
            vs.quorum_up = False
            return self._quorum_notify(vs.spec, up=False)
        return []

    @staticmethod
    def _rs_state(rs: RealServerSpec, states: list[CheckerState]) -> _RsState:
        alive = all(st.up for st in states)
        weight = rs.weight + sum(st.weight_delta(rs) for st in states)
        return _RsState(alive, max(0, weight))

    @staticmethod
    def _alive_weight(vs: _VsState) -> int:
        return sum(st.weight for st in vs.rs if st.alive)

    @staticmethod
    def _desired(vs: _VsState) -> dict[ServerKey, int]:
        spec = vs.spec
        sorry = spec.sorry_server
        sorry_active = sorry is not None and not vs.quorum_up
        out: dict[ServerKey, int] = {}
        for rs, st in zip(spec.real_servers, vs.rs, strict=True):
            if st.alive and not sorry_active:
                out[rs.key] = st.weight
            elif rs.inhibit_on_failure:
                out[rs.key] = 0
        if sorry is not None:
            if sorry_active:
                out[sorry.key] = sorry.weight
            elif sorry.inhibit:
                out.setdefault(sorry.key, 0)
        return out

    @staticmethod
    def _rs_notify(vs: VirtualServerSpec, rs: RealServerSpec, *, up: bool) -> list[Action]:
        word = "UP" if up else "DOWN"
        target = format_server(rs.key, vs.protocol)
        actions: list[Action] = [FifoLine(f"RS {target} {vs.key} {word}")]
        command = rs.notify_up if up else rs.notify_down
        if command is not None:
            actions.append(RunCommand(command, "notify_up" if up else "notify_down",
                                      f"{target} {vs.key}"))
        return actions

    @staticmethod
    def _quorum_notify(vs: VirtualServerSpec, *, up: bool) -> list[Action]:
        actions: list[Action] = [FifoLine(f"VS {vs.key} {'UP' if up else 'DOWN'}")]
        command = vs.quorum_up if up else vs.quorum_down
        if command is not None:
            actions.append(RunCommand(command, "quorum_up" if up else "quorum_down", vs.key))
        return actions
