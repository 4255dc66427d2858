"""The status document: one plain, JSON-able dict describing what the daemon is doing.

Everything operators see is built from it: ``vrrpd status`` (``vrrpd.control``), the
Prometheus collector (``vrrpd.metrics``) and the keepalived-style SIGUSR1/SIGUSR2 dump files
(``vrrpd.dumps``).  It is built on demand (a status request, a scrape, a signal), never on the
hot path: the runners only keep the counters they already keep.

Seams:
- a :class:`StatusSource` gives the two lists (``status_instances()``,
  ``status_virtual_servers()``).  The runners may implement it themselves; until they do,
  :class:`DaemonStatus` adapts today's ``VrrpRunner`` / ``LvsRunner`` attributes through
  ``vrrpd.status_adapters``;
- :func:`build_status` turns a source into the document; ``DaemonStatus.document`` is the
  zero-argument callable every consumer takes.

The schema is versioned (``SCHEMA_VERSION``); fields are only ever added.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, Protocol, TypedDict

__all__ = [
    "SCHEMA_VERSION",
    "CheckerStatus",
    "DaemonInfo",
    "DaemonStatus",
    "InstanceCounters",
    "InstanceStatus",
    "IpvsStats",
    "LvsStatus",
    "MailStatus",
    "MasterInfo",
    "ProcessStatus",
    "RealServerStatus",
    "ReloadStats",
    "ReloadStatus",
    "StatusDocument",
    "StatusSource",
    "VipStatus",
    "VirtualServerStatus",
    "build_status",
]

SCHEMA_VERSION = 1


# ---- the document -------------------------------------------------------------------------


class MasterInfo(TypedDict):
    address: str
    priority: int


class InstanceCounters(TypedDict):
    adverts_sent: int
    adverts_received: int
    transitions: int
    became_master: int
    released_master: int
    priority_zero_sent: int
    priority_zero_received: int
    garps_sent: int | None  # None: not counted by this runner
    drops: dict[str, int]  # every RejectReason value (0 included) -> packets dropped


class VipStatus(TypedDict):
    address: str  # "10.0.0.100/24"
    dev: str
    scope: str
    excluded: bool  # virtual_ipaddress_excluded (not carried in adverts)


class InstanceStatus(TypedDict):
    name: str
    interface: str
    vrid: int
    version: int
    state: str  # INIT | BACKUP | MASTER | FAULT | STOP
    wants_master: bool  # sync-group member waiting for its group
    base_priority: int  # configured (254 after an address-owner clash)
    effective_priority: int  # what the adverts carry (trackers applied)
    priority_delta: int  # sum of the tracker weights applying now
    fault: bool  # a weight-0 tracker is down
    source: str  # our advert source address
    master: MasterInfo | None  # ourselves when MASTER, the master we follow when BACKUP
    last_transition: float | None  # unix time; None: not recorded
    sync_group: str | None
    advert_int: float
    preempt: bool
    preempt_delay: float
    auth_type: str  # none | pass | ah
    unicast_peers: list[str]
    vips: list[VipStatus]
    garp: dict[str, float]  # master_delay, master_repeat, master_refresh, ... (config)
    timer_late_max: float  # worst lateness of this instance's timer so far, seconds
    counters: InstanceCounters


class IpvsStats(TypedDict):
    active_conns: int
    inactive_conns: int
    conns: int  # connections scheduled since the entry was created (kernel counter)
    inpkts: int
    outpkts: int
    inbytes: int
    outbytes: int


class CheckerStatus(TypedDict):
    kind: str  # TCP_CHECK, HTTP_GET, ...
    target: str  # "[1.2.3.4]:80"
    up: bool
    runs: int
    retry_it: int  # failed retries counted so far (an up checker on its way down)
    last_ok: bool | None  # None: not run yet
    last_result: str  # the last probe's detail ("not run yet" before the first)
    latency: float | None  # seconds, last probe
    next_in: float | None  # seconds until the next probe (None while running)


class RealServerStatus(TypedDict):
    address: str
    port: int
    sorry: bool  # the virtual server's sorry_server
    configured_weight: int
    alive: bool | None  # all checkers up (None: no checker state known)
    weight: int  # configured + dynamic checker weights
    ipvs_weight: int | None  # desired weight in IPVS (0 = inhibited), None = not in IPVS
    checkers: list[CheckerStatus]
    stats: IpvsStats | None  # from the last IPVS dump (summed over the VS's services)


class VirtualServerStatus(TypedDict):
    key: str  # keepalived's text: "[10.0.0.1]:tcp:80", "FWM 1", "GROUP name"
    protocol: str
    scheduler: str
    lvs_method: str
    services: list[str]  # the kernel services it stands for ("TCP 10.0.0.1:80")
    quorum: int
    hysteresis: int
    quorum_up: bool | None
    alive_weight: int | None
    sorry_active: bool
    real_servers: list[RealServerStatus]
    stats: IpvsStats | None


class LvsStatus(TypedDict):
    syncs: int
    dumps: int
    ops: int
    failures: int
    last_error: str | None
    services_owned: int
    fast_start: str | None  # the start-up IPVS replay (vrrpd.fast_start), e.g. "replayed ..."


class ReloadStatus(TypedDict):
    succeeded: int
    failed: int
    last_result: str | None  # "ok" | "failed" | None (never reloaded)
    last_at: float | None  # unix time
    errors: list[str]  # diagnostics of the last rejected config (kept until a good reload)


class DaemonInfo(TypedDict):
    pid: int
    router_id: str | None
    config: str | None
    started_at: float | None
    parts: list[str]  # "vrrp", "lvs": what this process runs


class ProcessStatus(TypedDict, total=False):
    role: str  # parent | vrrp | check
    pid: int | None  # None: not running now
    alive: bool
    ready: bool
    restarts: int
    uptime: float | None
    started_at: float | None
    last_exit: str | None  # "exit 1", "killed by SIGKILL"
    given_up: bool  # exited 4 (config cannot run): not respawned
    respawn_pending: bool
    status: str | None  # the child's last sd_notify STATUS
    control_socket: str
    error: str  # the child did not answer the status request


class MailStatus(TypedDict):
    """smtp_alert mails of this process (``vrrpd.mail.MailAlerter`` counters)."""

    sent: int
    failed: int  # refused, timed out, SMTP error (logged smtp_alert_failed)
    dropped: int  # queue full, or still queued when the daemon stopped
    last_error: str | None


class StatusDocument(TypedDict):
    version: int
    generated_at: float
    daemon: DaemonInfo
    instances: list[InstanceStatus]
    virtual_servers: list[VirtualServerStatus]
    lvs: LvsStatus | None
    reloads: ReloadStatus
    mail: NotRequired[MailStatus]  # only when smtp_alert mail is configured
    processes: NotRequired[list[ProcessStatus]]  # supervised daemon (vrrpd.supervisor) only


# ---- the seam -----------------------------------------------------------------------------


class StatusSource(Protocol):
    """What a status consumer needs; the runners may implement these directly."""

    def status_instances(self) -> Sequence[InstanceStatus]: ...

    def status_virtual_servers(self) -> Sequence[VirtualServerStatus]: ...


@dataclass
class ReloadStats:
    """Reload outcomes, recorded by the daemon's SIGHUP handler (``record``)."""

    succeeded: int = 0
    failed: int = 0
    last_result: str | None = None
    last_at: float | None = None
    errors: list[str] = field(default_factory=list)

    def record(self, ok: bool, errors: Sequence[str] = (), *, at: float | None = None) -> None:
        """One reload: ``ok`` False when the new config was rejected (``errors`` = why)."""
        self.last_at = time.time() if at is None else at
        if ok:
            self.succeeded += 1
            self.last_result = "ok"
            self.errors = []
        else:
            self.failed += 1
            self.last_result = "failed"
            self.errors = [str(e) for e in errors]

    def status(self) -> ReloadStatus:
        return ReloadStatus(succeeded=self.succeeded, failed=self.failed,
                            last_result=self.last_result, last_at=self.last_at,
                            errors=list(self.errors))


def build_status(
    source: StatusSource,
    *,
    daemon: DaemonInfo | None = None,
    lvs: LvsStatus | None = None,
    reloads: ReloadStats | None = None,
    now: float | None = None,
) -> StatusDocument:
    """The whole document from a source (plus what only the daemon knows)."""
    return StatusDocument(
        version=SCHEMA_VERSION,
        generated_at=time.time() if now is None else now,
        daemon=daemon or DaemonInfo(pid=os.getpid(), router_id=None, config=None,
                                    started_at=None, parts=[]),
        instances=list(source.status_instances()),
        virtual_servers=list(source.status_virtual_servers()),
        lvs=lvs,
        reloads=(reloads or ReloadStats()).status(),
    )


class DaemonStatus:
    """The daemon's :class:`StatusSource`: today's runner objects, adapted.

    ``vrrp``/``lvs`` are the running ``VrrpRunner``/``LvsRunner`` (or None).  A runner that
    has its own ``status_instances()`` / ``status_virtual_servers()`` is asked directly;
    otherwise its attributes are read by ``vrrpd.status_adapters``.  Runners can be swapped
    after a reload (``set_runners``).  Call from the event loop thread only.
    """

    def __init__(self, vrrp: Any = None, lvs: Any = None, *, config_path: str | None = None,
                 router_id: str | None = None, reloads: ReloadStats | None = None,
                 recorder: Any = None, garps: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.vrrp = vrrp
        self.lvs = lvs
        self.config_path = config_path
        self.router_id = router_id
        self.reloads = reloads if reloads is not None else ReloadStats()
        self.recorder = recorder  # status_adapters.TransitionRecorder | None
        self.garps = garps  # status_adapters.GarpCounter | None
        self.mail: Any = None  # vrrpd.alerts.MailPart (stats()) | None: no mail configured
        self.started_at = time.time()
        self._clock = clock

    def set_runners(self, vrrp: Any = None, lvs: Any = None) -> None:
        self.vrrp, self.lvs = vrrp, lvs

    def status_instances(self) -> list[InstanceStatus]:
        if self.vrrp is None:
            return []
        own = getattr(self.vrrp, "status_instances", None)
        if callable(own):
            return list(own())
        from vrrpd.status_adapters import vrrp_instances

        return vrrp_instances(self.vrrp, recorder=self.recorder, garps=self.garps)

    def status_virtual_servers(self) -> list[VirtualServerStatus]:
        if self.lvs is None:
            return []
        own = getattr(self.lvs, "status_virtual_servers", None)
        if callable(own):
            return list(own())
        from vrrpd.status_adapters import lvs_virtual_servers

        return lvs_virtual_servers(self.lvs, now=self._clock())

    def status_lvs(self) -> LvsStatus | None:
        if self.lvs is None:
            return None
        from vrrpd.status_adapters import lvs_stats

        return lvs_stats(self.lvs)

    def daemon_info(self) -> DaemonInfo:
        router_id = self.router_id
        if router_id is None:
            for runner in (self.vrrp, self.lvs):
                gd = getattr(getattr(runner, "config", None), "global_defs", None)
                if gd is not None and getattr(gd, "router_id", None):
                    router_id = gd.router_id
                    break
        parts = [name for name, r in (("vrrp", self.vrrp), ("lvs", self.lvs)) if r is not None]
        return DaemonInfo(pid=os.getpid(), router_id=router_id, config=self.config_path,
                          started_at=self.started_at, parts=parts)

    def document(self) -> StatusDocument:
        doc = build_status(self, daemon=self.daemon_info(), lvs=self.status_lvs(),
                           reloads=self.reloads)
        if self.mail is not None:
            s = self.mail.stats()
            doc["mail"] = MailStatus(sent=s["sent"], failed=s["failed"], dropped=s["dropped"],
                                     last_error=s["last_error"])
        return doc
