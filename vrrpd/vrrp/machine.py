"""VRRPv2 state machine (RFC 3768 with keepalived 2.2.7's semantics). Pure, one step function.

``Machine(config).step(event, now) -> list[Action]``: the driver feeds events with the current
monotonic time and carries out the returned actions in order; after every step it (re)arms one
timer for ``machine.next_deadline`` and, when it fires, calls ``step(Tick(), now)``.  Nothing here
sleeps, reads a clock or touches a socket.  ``_change_state`` is the only place the state changes:
it logs ``old -> new`` with the reason, counts the transition and emits the entry actions.

Sync groups are built on top: a machine with ``MachineConfig(coordinated=True)`` never becomes
MASTER by itself; when it would (master-down timer ran out, or address owner at start) it emits
``WantMaster`` and waits in BACKUP (``machine.wants_master``) until the coordinator sends
``GroupMaster``.  ``ForceBackup``, ``ForceFault`` and ``ClearFault`` let the coordinator move a
member with the group.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import structlog

from vrrpd.vrrp.machine_types import (
    Action,
    AddVips,
    AdvertReceived,
    AdvertRejected,
    ClearFault,
    Event,
    ForceBackup,
    ForceFault,
    GroupMaster,
    Logger,
    MachineConfig,
    MachineStats,
    MasterRxLowerPri,
    Notify,
    Reconfigure,
    RemoveVips,
    SendAdvert,
    SendGarps,
    Start,
    State,
    Stop,
    Tick,
    TrackersChanged,
    Transition,
    WantMaster,
)
from vrrpd.vrrp.packet import Advert

__all__ = [
    "PRIO_OWNER",
    "PRIO_STOP",
    "TICK_SLACK",
    "Action",
    "AddVips",
    "AdvertReceived",
    "AdvertRejected",
    "ClearFault",
    "Event",
    "ForceBackup",
    "ForceFault",
    "GroupMaster",
    "Logger",
    "Machine",
    "MachineConfig",
    "MachineStats",
    "MasterRxLowerPri",
    "Notify",
    "Reconfigure",
    "RemoveVips",
    "SendAdvert",
    "SendGarps",
    "Start",
    "State",
    "Stop",
    "Tick",
    "TrackersChanged",
    "Transition",
    "WantMaster",
    "effective_priority",
    "master_down_interval",
    "skew_time",
]

PRIO_OWNER = 255
PRIO_STOP = 0
# A Tick this close before a deadline counts as on time (asyncio may fire call_at timers up to
# its clock resolution early; re-arming for a nanosecond would only spin the loop).
TICK_SLACK = 1e-6


# ---- pure helpers -------------------------------------------------------------------------


def skew_time(priority: int) -> float:
    """(256 - priority) / 256 s (VRRPv2: not scaled by the advert interval)."""
    return (256 - priority) / 256


def master_down_interval(advert_int: float, priority: int) -> float:
    return 3 * advert_int + skew_time(priority)


def effective_priority(base: int, delta: int) -> int:
    """base + tracker weights clamped to 1..254; the address owner (255) never changes
    (keepalived ignores tracker weights for it)."""
    if base == PRIO_OWNER:
        return PRIO_OWNER
    return max(1, min(254, base + delta))


class Machine:
    """One VRRP instance's state machine; see the module docstring."""

    def __init__(self, config: MachineConfig, *, log: Logger | None = None) -> None:
        self.config = config
        self.stats = MachineStats()
        self._log: Logger = log if log is not None else structlog.get_logger(__name__).bind(
            instance=config.name, vrid=config.vrid)
        self._state = State.INIT
        self._base = config.priority
        self._delta = 0
        self._priority = effective_priority(config.priority, 0)
        self._tracker_fault = False
        self._forced_fault = False
        self._wants_master = False
        self._master: tuple[IPv4Address, int] | None = None
        self._preempt_until: float | None = None
        # deadlines (None = not armed)
        self._down_at: float | None = None  # BACKUP: master-down timer
        self._advert_at: float | None = None  # MASTER: next advert
        self._garp_at: float | None = None  # MASTER: delayed takeover GARP burst
        self._lower_garp_at: float | None = None  # MASTER: delayed burst after a lower advert
        self._refresh_at: float | None = None  # MASTER: periodic GARP refresh

    # ---- read-only views ----------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def priority(self) -> int:
        """Effective priority (what the next advert carries)."""
        return self._priority

    @property
    def wants_master(self) -> bool:
        """Coordinated machine waiting in BACKUP for ``GroupMaster``."""
        return self._wants_master

    @property
    def master(self) -> tuple[IPv4Address, int] | None:
        """(source, priority) of the master whose adverts this BACKUP last accepted."""
        return self._master

    @property
    def nopreempt(self) -> bool:
        """nopreempt only counts with ``state BACKUP`` (keepalived ignores it otherwise)."""
        return self.config.nopreempt and not self.config.start_as_master

    @property
    def master_down_interval(self) -> float:
        return master_down_interval(self.config.advert_int, self._priority)

    @property
    def next_deadline(self) -> float | None:
        armed = [t for t in (self._down_at, self._advert_at, self._garp_at, self._lower_garp_at,
                             self._refresh_at) if t is not None]
        return min(armed) if armed else None

    # ---- the step function --------------------------------------------------------------

    def step(self, event: Event, now: float) -> list[Action]:
        match event:
            case Tick():
                return self._on_tick(now)
            case AdvertReceived(src=src, advert=advert):
                return self._on_advert(src, advert, now)
            case AdvertRejected(rejection=rejection):
                self.stats.rejected[rejection.reason] += 1
                self._log.debug("advert rejected", reason=rejection.reason.value,
                                detail=rejection.detail, src=str(rejection.src))
                return []
            case TrackersChanged():
                return self._on_trackers(event, now)
            case Start():
                return self._on_start(now)
            case Stop(reason=reason):
                if self._state is State.STOPPED:
                    return []
                return self._change_state(State.STOPPED, reason, now, release=True)
            case GroupMaster(reason=reason):
                if self._state is not State.BACKUP:
                    return []
                return self._change_state(State.MASTER, reason, now)
            case ForceBackup(reason=reason):
                if self._state is State.MASTER:
                    # keepalived's vrrp_sync_backup leaves MASTER without a priority-0 advert
                    return self._change_state(State.BACKUP, reason, now)
                if self._state is State.BACKUP and self._down_at is None:
                    self._wants_master = False
                    self._down_at = now + self.master_down_interval
                return []
            case ForceFault():
                self._forced_fault = True
                return self._check_fault(event.reason, now)
            case ClearFault():
                self._forced_fault = False
                return self._check_fault(event.reason, now)
            case Reconfigure(config=config, reason=reason):
                return self._on_reconfigure(config, reason, now)
        raise TypeError(f"not a machine event: {event!r}")

    # ---- event handlers ------------------------------------------------------------------

    def _on_start(self, now: float) -> list[Action]:
        if self._state not in (State.INIT, State.STOPPED):
            return []
        if self._tracker_fault or self._forced_fault:
            return self._change_state(State.FAULT, "tracker down at start", now)
        if self._priority == PRIO_OWNER:
            return self._go_master("address owner (priority 255)", now)
        reason = "start (state MASTER)" if self.config.start_as_master else "start"
        actions = self._change_state(State.BACKUP, reason, now)
        if self.config.preempt_delay > 0:
            self._preempt_until = now + self.config.preempt_delay
        return actions

    def _on_tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        due = now + TICK_SLACK
        cfg = self.config
        if self._state is State.BACKUP:
            if self._down_at is not None and self._down_at <= due:
                self._down_at = None
                return self._go_master("master down timer expired", now)
            return actions
        if self._state is not State.MASTER:
            return actions
        if self._advert_at is not None and self._advert_at <= due:
            actions.append(self._advert(self._priority))
            nxt = self._advert_at + cfg.advert_int
            self._advert_at = nxt if nxt > due else now + cfg.advert_int
        if self._garp_at is not None and self._garp_at <= due:
            self._garp_at = None
            actions.append(SendGarps(cfg.garp_master_repeat, cfg.garp_interval,
                                     "garp_master_delay"))
        if self._lower_garp_at is not None and self._lower_garp_at <= due:
            self._lower_garp_at = None
            actions.append(SendGarps(cfg.garp_lower_prio_repeat, cfg.garp_interval,
                                     "garp_lower_prio_delay"))
        if self._refresh_at is not None and self._refresh_at <= due:
            nxt = self._refresh_at + cfg.garp_master_refresh
            self._refresh_at = nxt if nxt > due else now + cfg.garp_master_refresh
            actions.append(SendGarps(cfg.garp_master_refresh_repeat, cfg.garp_interval,
                                     "garp_master_refresh"))
        return actions

    def _on_advert(self, src: IPv4Address, advert: Advert, now: float) -> list[Action]:
        self.stats.adverts_received += 1
        if advert.priority == PRIO_STOP:
            self.stats.priority_zero_received += 1
        if src == self.config.own_ip:
            self._log.debug("own advert ignored", src=str(src))
            return []
        if self._state is State.BACKUP:
            return self._backup_rx(src, advert.priority, now)
        if self._state is State.MASTER:
            return self._master_rx(src, advert.priority, now)
        return []

    def _backup_rx(self, src: IPv4Address, prio: int, now: float) -> list[Action]:
        ours = self._priority
        delay = self.config.preempt_delay
        if prio == PRIO_STOP:
            # The master is leaving: take over after the skew only.
            self._master = None
            self._wants_master = False
            self._down_at = now + skew_time(ours)
            self._log.info("master released (priority 0)", src=str(src),
                           takeover_in=round(skew_time(ours), 6))
            return []
        delaying = delay > 0 and (self._preempt_until is None or self._preempt_until > now)
        if self.nopreempt or prio >= ours or delaying:
            self._master = (src, prio)
            self._wants_master = False
            self._down_at = now + self.master_down_interval
            if delay > 0:
                if prio >= ours:
                    self._preempt_until = None
                elif self._preempt_until is None:
                    self._preempt_until = now + delay
            return []
        # Lower priority and we may preempt: ignore it, so the master-down timer runs out.
        self._log.debug("lower priority advert ignored (will preempt)", src=str(src),
                        priority=prio, ours=ours)
        return []

    def _master_rx(self, src: IPv4Address, prio: int, now: float) -> list[Action]:
        cfg = self.config
        ours = self._priority
        if prio == PRIO_STOP:
            # Another router released mastership: answer at once (RFC 3768 6.4.3).
            self._advert_at = now + cfg.advert_int
            return [self._advert(ours)]
        if prio == ours == PRIO_OWNER:
            # Two address owners: a configuration error; keepalived lowers its own priority.
            self._log.info("both routers claim priority 255, lowering ours to 254",
                           src=str(src))
            self._base = PRIO_OWNER - 1
            self._priority = ours = effective_priority(self._base, self._delta)
        if prio > ours or (prio == ours and int(src) > int(cfg.own_ip)):
            self._master = (src, prio)
            why = "higher priority" if prio > ours else "equal priority from a higher address"
            return self._change_state(
                State.BACKUP, f"advert with {why} from {src} ({prio} vs our {ours})", now)
        # Lower priority (or equal from a lower address): assert ourselves.
        self._log.info("lower priority advert, asserting mastership", src=str(src),
                       priority=prio, ours=ours)
        actions: list[Action] = [self._advert(ours)]
        if cfg.garp_lower_prio_repeat > 0:
            actions.append(SendGarps(cfg.garp_lower_prio_repeat, cfg.garp_interval,
                                     "lower priority advert"))
            if cfg.garp_lower_prio_delay > 0:
                self._lower_garp_at = now + cfg.garp_lower_prio_delay
        actions.append(MasterRxLowerPri(src, prio))
        return actions

    def _on_trackers(self, event: TrackersChanged, now: float) -> list[Action]:
        self._delta = event.priority_delta
        new_prio = effective_priority(self._base, self._delta)
        if new_prio != self._priority:
            self._log.info("effective priority changed", old=self._priority, new=new_prio,
                           reason=event.reason)
            if self._state is State.BACKUP and self._down_at is not None:
                # keepalived moves a running master-down timer by the change of the skew
                self._down_at += skew_time(new_prio) - skew_time(self._priority)
            self._priority = new_prio
        self._tracker_fault = event.fault
        return self._check_fault(event.reason or "tracker", now)

    def _on_reconfigure(self, new: MachineConfig, reason: str, now: float) -> list[Action]:
        old = self.config
        if new == old:
            return []
        if new.vrid != old.vrid:
            raise ValueError(f"reconfigure cannot change the VRID ({old.vrid} -> {new.vrid})")
        old_mdi = self.master_down_interval
        old_prio = self._priority
        self.config = new
        self._base = new.priority
        self._priority = effective_priority(new.priority, self._delta)
        changed = [f for f in MachineConfig.__dataclass_fields__
                   if getattr(old, f) != getattr(new, f)]
        self._log.info("reconfigured", reason=reason, changed=changed, state=self._state.value,
                       old_priority=old_prio, priority=self._priority)
        if self._state is State.BACKUP and self._down_at is not None:
            self._down_at += self.master_down_interval - old_mdi
        if self._state is State.MASTER:
            if self._advert_at is not None and new.advert_int != old.advert_int:
                self._advert_at = min(self._advert_at, now + new.advert_int)
            if new.garp_master_refresh != old.garp_master_refresh:
                self._refresh_at = (now + new.garp_master_refresh
                                    if new.garp_master_refresh > 0 else None)
        if not new.preempt_delay:
            self._preempt_until = None
        if self._wants_master and not new.coordinated:
            self._wants_master = False
            return self._go_master(f"{reason}: left its sync group while waiting for it", now)
        return []

    def bind_log(self, log: Logger) -> None:
        """Use ``log`` from now on (the instance was renamed by a reload)."""
        self._log = log

    def _check_fault(self, reason: str, now: float) -> list[Action]:
        faulted = self._tracker_fault or self._forced_fault
        if self._state in (State.INIT, State.STOPPED):
            return []
        if faulted and self._state is not State.FAULT:
            return self._change_state(State.FAULT, reason, now, release=True)
        if not faulted and self._state is State.FAULT:
            if self._priority == PRIO_OWNER:
                return self._go_master(f"{reason}: fault cleared, address owner", now)
            return self._change_state(State.BACKUP, f"{reason}: fault cleared", now)
        return []

    # ---- transitions ---------------------------------------------------------------------

    def _go_master(self, reason: str, now: float) -> list[Action]:
        """Become MASTER, or (coordinated) ask the sync group from BACKUP."""
        if not self.config.coordinated:
            return self._change_state(State.MASTER, reason, now)
        actions: list[Action] = []
        if self._state is not State.BACKUP:
            actions = self._change_state(State.BACKUP, reason, now)
        self._down_at = None
        self._wants_master = True
        actions.append(WantMaster(reason))
        return actions

    def _advert(self, priority: int) -> SendAdvert:
        self.stats.adverts_sent += 1
        if priority == PRIO_STOP:
            self.stats.priority_zero_sent += 1
        return SendAdvert(priority)

    def _change_state(self, new: State, reason: str, now: float, *,
                      release: bool = False) -> list[Action]:
        """The only place the state changes.

        ``release``: when leaving MASTER, send one priority-0 advert first (stop, fault), so that
        the backup takes over after its skew time.
        """
        old = self._state
        cfg = self.config
        self._state = new
        self.stats.transitions += 1
        self._log.info(f"{old.value} -> {new.value}", old=old.value, new=new.value,
                       reason=reason, priority=self._priority)
        actions: list[Action] = [Transition(old, new, reason)]
        if old is State.MASTER:
            self.stats.released_master += 1
            if release:
                actions.append(self._advert(PRIO_STOP))
            actions.append(RemoveVips())
        self._down_at = self._advert_at = self._garp_at = None
        self._lower_garp_at = self._refresh_at = None
        self._wants_master = False
        if new is State.MASTER:
            self.stats.became_master += 1
            self._master = None
            self._preempt_until = None
            actions.append(self._advert(self._priority))
            actions.append(AddVips())
            if cfg.garp_master_repeat > 0:
                actions.append(SendGarps(cfg.garp_master_repeat, cfg.garp_interval, "takeover"))
                if cfg.garp_master_delay > 0:
                    self._garp_at = now + cfg.garp_master_delay
            if cfg.garp_master_refresh > 0:
                self._refresh_at = now + cfg.garp_master_refresh
            self._advert_at = now + cfg.advert_int
        elif new is State.BACKUP:
            self._down_at = now + self.master_down_interval
            self._preempt_until = None
        else:
            self._master = None
        actions.append(Notify(new, self._priority))
        return actions
