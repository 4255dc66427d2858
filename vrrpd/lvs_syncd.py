"""The IPVS connection-sync daemon driven by VRRP (``global_defs { lvs_sync_daemon IF INST }``).

In keepalived the VRRP process runs the kernel sync daemon: BACKUP at start, MASTER while the
named instance is MASTER, BACKUP again when it leaves MASTER, removed at stop.  In a single
process ``LvsRunner.vrrp_state_changed`` does it; when VRRP runs in its own process (``-P``,
the supervised VRRP child) this driver does, and the ``-C`` child leaves the sync daemon alone
(``LvsRunner(drive_sync_daemon=False)``).

It never stops VRRP: a kernel without IPVS, or a refused request, is logged and counted.

    driver = SyncDaemonDriver(config)
    await driver.start()                       # opens IPVS, starts the BACKUP daemon
    VrrpRunner(config, on_state=driver.vrrp_state_changed)
    await driver.stop()                        # removes the daemon it started
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from ipvs.model import SyncDaemon, SyncState
from vrrpd.config.model import Config
from vrrpd.lvs_kernel import IpvsBackend

__all__ = ["SyncDaemonDriver", "sync_daemon_for"]

log = structlog.get_logger("lvs_sync_daemon")


def _default_client() -> IpvsBackend:
    from ipvs.client import IPVSClient

    return IPVSClient()


def sync_daemon_for(config: Config, state: SyncState) -> SyncDaemon | None:
    """The kernel daemon ``lvs_sync_daemon`` asks for in ``state`` (None: not configured).
    The sync id defaults to the instance's virtual_router_id, as keepalived does."""
    sd = config.global_defs.lvs_sync_daemon
    if sd is None:
        return None
    sync_id = sd.id
    if sync_id is None:
        try:
            sync_id = config.instance(sd.instance).virtual_router_id
        except KeyError:
            sync_id = 0
    return SyncDaemon(state=state, mcast_ifn=sd.interface, sync_id=sync_id,
                      sync_maxlen=sd.maxlen or 0, mcast_group=sd.group, mcast_port=sd.port,
                      mcast_ttl=sd.ttl or 0)


class SyncDaemonDriver:
    """A runner (``start``/``stop``) plus the VRRP ``on_state`` callback."""

    def __init__(self, config: Config, *,
                 client_factory: Callable[[], IpvsBackend] = _default_client) -> None:
        self.config = config
        self._client_factory = client_factory
        self._client: IpvsBackend | None = None
        self._state: SyncState | None = None  # what the kernel runs because of us
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.last_error: str | None = None

    @property
    def state(self) -> SyncState | None:
        return self._state

    async def start(self) -> None:
        if self.config.global_defs.lvs_sync_daemon is None:
            return
        client = self._client_factory()
        try:
            await client.open()
        except Exception as exc:
            self._fail("open", exc)
            with contextlib.suppress(Exception):
                client.close()
            return
        self._client = client
        await self._set(SyncState.BACKUP)

    def vrrp_state_changed(self, instance: str, state: str) -> None:
        """MASTER runs the master daemon, any other state the backup daemon."""
        sd = self.config.global_defs.lvs_sync_daemon
        if sd is None or sd.instance != instance or self._client is None:
            return
        want = SyncState.MASTER if str(state).upper().endswith("MASTER") else SyncState.BACKUP
        task = asyncio.create_task(self._set(want))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
        client, self._client = self._client, None
        if client is None:
            return
        async with self._lock:
            if self._state is not None:
                try:
                    await client.delete_daemon(self._state)
                    log.info("lvs_sync_daemon_stopped", state=self._state.name)
                except Exception as exc:
                    self._fail("delete_daemon", exc)
                self._state = None
        client.close()

    async def _set(self, want: SyncState) -> None:
        async with self._lock:
            client = self._client
            daemon = sync_daemon_for(self.config, want)
            if client is None or daemon is None or self._state == want:
                return
            if self._state is not None:
                try:
                    await client.delete_daemon(self._state)
                except Exception as exc:
                    self._fail("delete_daemon", exc)
                self._state = None
            try:
                await client.new_daemon(daemon)
            except Exception as exc:
                self._fail("new_daemon", exc)
                return
            self._state = want
            log.info("lvs_sync_daemon", state=want.name, interface=daemon.mcast_ifn,
                     id=daemon.sync_id)

    def _fail(self, what: str, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{what}: {type(exc).__name__}: {exc}"
        log.error("lvs_sync_daemon_failed", what=what, error=str(exc))
