"""Values of the VRRP state machine: its config, states, events, actions and counters.

Re-exported by ``vrrpd.vrrp.machine`` (import them from there); see that module for the rules.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any, Protocol

from vrrpd.vrrp.packet import Advert, Rejection, RejectReason


class State(enum.Enum):
    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"
    STOPPED = "STOP"  # value = keepalived's notify word


@dataclass(frozen=True, slots=True, kw_only=True)
class MachineConfig:
    """What the state machine needs from a ``vrrp_instance`` (times in seconds)."""

    name: str
    vrid: int
    priority: int  # configured base priority 1..255
    advert_int: float = 1.0  # whole seconds in VRRPv2
    own_ip: IPv4Address  # our advert source address: the equal-priority tie-break
    start_as_master: bool = False  # `state MASTER`
    nopreempt: bool = False  # effective only with `state BACKUP`, as keepalived
    preempt_delay: float = 0.0
    garp_master_delay: float = 5.0  # second GARP burst this long after takeover (0 = none)
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0  # periodic GARP refresh while MASTER (0 = off)
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_delay: float = 5.0
    garp_lower_prio_repeat: int = 5
    garp_interval: float = 0.0  # gap between the GARPs of one burst
    coordinated: bool = False  # member of a sync group: see the module docstring


# ---- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Start:
    """Leave INIT (or STOPPED): FAULT, MASTER (owner) or BACKUP."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Shutdown or reload-deletion: priority 0 if MASTER, VIPs removed, notify STOP."""

    reason: str = "shutdown"


@dataclass(frozen=True, slots=True)
class Tick:
    """Sent by the driver at (or after) ``machine.next_deadline``."""


@dataclass(frozen=True, slots=True)
class AdvertReceived:
    """A valid advert for this VRID (``packet.decode`` returned ``Received``)."""

    src: IPv4Address
    advert: Advert


@dataclass(frozen=True, slots=True)
class AdvertRejected:
    """``packet.decode`` rejected a packet for this VRID: counted, never resets a timer."""

    rejection: Rejection


@dataclass(frozen=True, slots=True)
class TrackersChanged:
    """The whole tracker picture, not a delta of a delta.

    ``priority_delta``: sum of the weights currently applying (positive weights of trackers that
    are up, negative weights of trackers that are down).  ``fault``: some weight-0 tracker is down.
    """

    priority_delta: int = 0
    fault: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GroupMaster:
    """Sync-group coordinator: become MASTER now (only acted on in BACKUP)."""

    reason: str = "sync group"


@dataclass(frozen=True, slots=True)
class ForceBackup:
    """Sync-group coordinator: MASTER -> BACKUP (VIPs removed, no priority 0, as keepalived's
    sync group); in BACKUP it withdraws a pending ``WantMaster`` (the timer starts again)."""

    reason: str = "sync group"


@dataclass(frozen=True, slots=True)
class ForceFault:
    """Sync-group coordinator: go FAULT and stay there until ``ClearFault``."""

    reason: str = "sync group"


@dataclass(frozen=True, slots=True)
class ClearFault:
    """Sync-group coordinator: the group fault is over (own trackers still apply)."""

    reason: str = "sync group"


@dataclass(frozen=True, slots=True)
class Reconfigure:
    """A reload changed this instance's settings (same VRID and interface): ``config``
    replaces the machine's.  No transition by itself: the new priority goes into the next
    advert and the normal election rules (a running master-down timer moves by the change of
    Master_Down_Interval, as for tracker weights); leaving a sync group while waiting for
    ``GroupMaster`` becomes MASTER at once (the timer had already run out)."""

    config: MachineConfig
    reason: str = "reload"


Event = (Start | Stop | Tick | AdvertReceived | AdvertRejected | TrackersChanged | GroupMaster
         | ForceBackup | ForceFault | ClearFault | Reconfigure)


# ---- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transition:
    """Informational (metrics, status); already logged by the machine."""

    old: State
    new: State
    reason: str


@dataclass(frozen=True, slots=True)
class SendAdvert:
    priority: int


@dataclass(frozen=True, slots=True)
class AddVips:
    pass


@dataclass(frozen=True, slots=True)
class RemoveVips:
    pass


@dataclass(frozen=True, slots=True)
class SendGarps:
    """One burst: ``count`` gratuitous ARPs (per VIP) ``interval`` seconds apart.

    Later bursts (``garp_master_delay``, refresh) come as their own ``SendGarps`` from a ``Tick``.
    """

    count: int
    interval: float
    reason: str


@dataclass(frozen=True, slots=True)
class Notify:
    """Run notify_<state> / generic notify / FIFO line (``state.value`` is keepalived's word)."""

    state: State
    priority: int


@dataclass(frozen=True, slots=True)
class MasterRxLowerPri:
    """MASTER saw a lower-priority advert (for ``notify_master_rx_lower_pri``)."""

    src: IPv4Address
    priority: int


@dataclass(frozen=True, slots=True)
class WantMaster:
    """Coordinated machine would become MASTER: the coordinator answers with ``GroupMaster``."""

    reason: str


Action = (Transition | SendAdvert | AddVips | RemoveVips | SendGarps | Notify | MasterRxLowerPri
          | WantMaster)


@dataclass(slots=True)
class MachineStats:
    """Counters for metrics (mutable, owned by the machine)."""

    transitions: int = 0
    became_master: int = 0
    released_master: int = 0
    adverts_sent: int = 0
    adverts_received: int = 0
    priority_zero_sent: int = 0
    priority_zero_received: int = 0
    rejected: Counter[RejectReason] = field(default_factory=Counter)


class Logger(Protocol):
    def info(self, event: str, **kw: Any) -> Any: ...

    def debug(self, event: str, **kw: Any) -> Any: ...
