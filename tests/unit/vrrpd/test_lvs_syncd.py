"""The lvs_sync_daemon driver of the VRRP process (``vrrpd.lvs_syncd``), against the recording
fake kernel, and which process runs it."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from ipvs.model import SyncState
from tests.unit.vrrpd.conf_texts import VRRP, VS
from tests.unit.vrrpd.ipvs_fake_kernel import FakeKernel
from vrrpd.config.loader import load_text
from vrrpd.daemon import build_runners
from vrrpd.lvs_syncd import SyncDaemonDriver, sync_daemon_for

SYNCD = "global_defs {\n    lvs_sync_daemon eth0 VI_1\n}\n"


async def test_sync_daemon_driver_follows_its_instance() -> None:
    config = load_text(SYNCD + VRRP).config
    kernel = FakeKernel()
    driver = SyncDaemonDriver(config, client_factory=lambda: kernel)
    await driver.start()
    assert set(kernel.daemons) == {SyncState.BACKUP}
    assert kernel.daemons[SyncState.BACKUP].sync_id == 51  # the instance's VRID
    driver.vrrp_state_changed("OTHER", "MASTER")
    driver.vrrp_state_changed("VI_1", "MASTER")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert set(kernel.daemons) == {SyncState.MASTER}
    driver.vrrp_state_changed("VI_1", "BACKUP")
    await driver.stop()
    assert kernel.daemons == {}
    assert kernel.closed == 1 and driver.failures == 0


async def test_sync_daemon_driver_survives_a_kernel_without_ipvs() -> None:
    class NoIpvs(FakeKernel):
        async def open(self) -> None:
            raise OSError("no IPVS")

    driver = SyncDaemonDriver(load_text(SYNCD + VRRP).config, client_factory=NoIpvs)
    await driver.start()
    driver.vrrp_state_changed("VI_1", "MASTER")
    await driver.stop()
    assert driver.failures == 1 and driver.state is None
    assert sync_daemon_for(load_text(VRRP).config, SyncState.MASTER) is None


@pytest.mark.parametrize(("flags", "parts"), [
    ({}, ["lvs", "lvs_sync_daemon", "vrrp"]),                   # one process
    ({"vrrp": True}, ["lvs_sync_daemon", "vrrp"]),              # the -P child
    ({"check": True}, ["lvs"]),                                 # the -C child: never
])
def test_the_process_running_vrrp_drives_the_sync_daemon(flags: dict[str, bool],
                                                         parts: list[str]) -> None:
    """As keepalived: the VRRP process runs the sync daemon; the LVS runner never does.
    The driver sits between LVS and VRRP, so it is stopped after VRRP's STOP reached it."""
    config = load_text(SYNCD + VRRP + VS).config
    runners = build_runners(config, argparse.Namespace(**flags))
    assert [name for name, _ in runners] == parts
