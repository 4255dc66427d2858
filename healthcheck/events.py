"""Observer events of the checker manager (``CheckerManager(on_event=...)``): real-server and
quorum transitions, with the context an alert needs (e-mail, SNMP-style traps, ...).

Derived by the manager from the pure core's actions; the core's contract is unchanged.

keepalived mails once per *checker* transition of every real server using that checker (the
subject carries the real server's state after it, the body the checker's), so a
``RealServerEvent`` is emitted per (checker transition x real server using the checker), even
when another checker keeps the real server down (``changed`` False).  Quorum events also come
from ``start()`` / ``reload()`` (``starting``: the quorum state found, as the core notifies it).
``stopping`` events come from ``stop()`` with ``omega``: what is still up is reported down (no
checker involved).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from healthcheck.model import (
    CheckSpec,
    HttpCheckSpec,
    RealServerSpec,
    ServerKey,
    VirtualServerSpec,
)
from healthcheck.state import Action, CheckTransition, FifoLine, HealthCore, format_server

__all__ = ["CheckerEvent", "EventDeriver", "OnEvent", "QuorumEvent", "RealServerEvent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RealServerEvent:
    vs_key: str  # VirtualServerSpec.key: "[10.0.0.1]:tcp:80", "FWM 1", "GROUP name"
    rs: ServerKey
    rs_text: str  # keepalived's "[1.2.3.4]:tcp:80"
    alive: bool  # the real server's state after the transition
    changed: bool  # the real server's alive state changed with this transition
    check: str | None  # the checker kind that changed ("TCP_CHECK", "HTTP_GET"...); None: stop
    checker_up: bool  # the checker's new state (== alive when it is the only checker)
    ssl: bool = False  # an HttpCheckSpec with ssl (SSL_GET)
    detail: str = ""  # the probe result that caused it ("connection refused", "/: status 500")
    stopping: bool = False  # omega at stop: reported down while shutting down


@dataclass(frozen=True, slots=True, kw_only=True)
class QuorumEvent:
    vs_key: str
    up: bool  # quorum gained (True) or lost
    quorum: int
    hysteresis: int
    weight_sum: int  # alive weight after the change
    starting: bool = False  # the quorum state found by start() / reload() ("Starting with ...")
    stopping: bool = False  # omega at stop


CheckerEvent = RealServerEvent | QuorumEvent
OnEvent = Callable[[CheckerEvent], None]


class EventDeriver:
    """Turns one batch of core actions into events.  Needs the core (checker states after the
    batch) and the virtual-server specs (which real servers use a checker)."""

    def __init__(self, virtual_servers: Sequence[VirtualServerSpec]) -> None:
        self._vss = {vs.key: vs for vs in virtual_servers}
        self._users: dict[CheckSpec, list[tuple[VirtualServerSpec, RealServerSpec]]] | None = None

    def users(self, spec: CheckSpec) -> list[tuple[VirtualServerSpec, RealServerSpec]]:
        if self._users is None:  # built on the first transition, not at start (10k specs)
            users: dict[CheckSpec, list[tuple[VirtualServerSpec, RealServerSpec]]] = {}
            for vs in self._vss.values():
                for rs in vs.real_servers:
                    for s in dict.fromkeys(rs.checkers):
                        users.setdefault(s, []).append((vs, rs))
            self._users = users
        return self._users.get(spec, [])

    def derive(self, actions: Sequence[Action], core: HealthCore, *, starting: bool = False,
               stopping: bool = False) -> list[CheckerEvent]:
        lines = [a.line for a in actions if isinstance(a, FifoLine)]
        transitions = [a for a in actions if isinstance(a, CheckTransition)]
        if not lines and not transitions:
            return []
        line_set = set(lines)
        servers: list[CheckerEvent] = []
        for t in transitions:
            for vs, rs in self.users(t.spec):
                alive = all(core.checks[s].up for s in rs.checkers)
                text = format_server(rs.key, vs.protocol)
                servers.append(RealServerEvent(
                    vs_key=vs.key, rs=rs.key, rs_text=text, alive=alive,
                    changed=f"RS {text} {vs.key} {'UP' if alive else 'DOWN'}" in line_set,
                    check=t.spec.kind, checker_up=t.up,
                    ssl=isinstance(t.spec, HttpCheckSpec) and t.spec.ssl, detail=t.detail))
        if stopping:
            for vs in self._vss.values():
                for rs in vs.real_servers:
                    text = format_server(rs.key, vs.protocol)
                    if f"RS {text} {vs.key} DOWN" in line_set:
                        servers.append(RealServerEvent(
                            vs_key=vs.key, rs=rs.key, rs_text=text, alive=False, changed=True,
                            check=None, checker_up=False, stopping=True))
        quorums: list[CheckerEvent] = []
        weights: dict[str, int] | None = None
        for line in lines:
            if not line.startswith("VS "):
                continue
            key, _, word = line[3:].rpartition(" ")
            spec = self._vss.get(key)
            if spec is None:
                continue
            if weights is None:  # rare: one snapshot per batch that changes a quorum
                weights = {v.key: v.alive_weight for v in core.snapshot().virtual_servers}
            quorums.append(QuorumEvent(vs_key=key, up=word == "UP", quorum=spec.quorum,
                                       hysteresis=spec.hysteresis, weight_sum=weights.get(key, 0),
                                       starting=starting, stopping=stopping))
        # keepalived: a transition updates the quorum (VS mail) before the checker mails the
        # real server; at shutdown the real servers go first, then the virtual server
        return servers + quorums if stopping else quorums + servers
