"""Notify commands (order, keepalived's extra arguments) and the notify FIFO."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from vrrpd.config.model_common import Command
from vrrpd.config.model_vrrp import VrrpInstance
from vrrpd.vrrp.fakes import FakeProcessRunner
from vrrpd.vrrp.notify import Notifier, NotifyCommands, NotifyFifo, fifo_line

CMDS = NotifyCommands(
    master=Command(argv=("/etc/k/master.sh", "VI_1")),
    backup=Command(argv=("/etc/k/backup.sh",), user="nobody"),
    fault=None,
    stop=Command(argv=("/etc/k/stop.sh",)),
    generic=Command(argv=("/etc/k/notify.sh", "x y")),
)


def test_fifo_line_format() -> None:
    assert fifo_line("INSTANCE", "VI_1", "MASTER", 100) == 'INSTANCE "VI_1" MASTER 100\n'


def test_commands_from_config() -> None:
    inst = VrrpInstance(name="VI_1", interface="eth0", virtual_router_id=51,
                        notify_master=Command(argv=("m",)), notify=Command(argv=("n",)))
    cmds = NotifyCommands.from_config(inst)
    assert cmds.master == Command(argv=("m",)) and cmds.generic == Command(argv=("n",))
    assert cmds.backup is None and cmds.for_state("MASTER") == cmds.master


async def test_specific_then_generic_with_four_arguments() -> None:
    runner = FakeProcessRunner()
    notifier = Notifier(runner=runner, default_user="root")
    notifier.notify("INSTANCE", "VI_1", "MASTER", 100, CMDS)
    notifier.notify("INSTANCE", "VI_1", "fault", 0, CMDS)  # no notify_fault: generic only
    notifier.notify("INSTANCE", "VI_1", "BACKUP", 90, CMDS)
    await asyncio.wait_for(notifier.drain(), 5)
    assert runner.calls == [
        (("/etc/k/master.sh", "VI_1"), "root", None),
        (("/etc/k/notify.sh", "x y", "INSTANCE", "VI_1", "MASTER", "100"), "root", None),
        (("/etc/k/notify.sh", "x y", "INSTANCE", "VI_1", "FAULT", "0"), "root", None),
        (("/etc/k/backup.sh",), "nobody", None),
        (("/etc/k/notify.sh", "x y", "INSTANCE", "VI_1", "BACKUP", "90"), "root", None),
    ]
    await notifier.close()


async def test_notify_returns_at_once_and_keeps_order_per_instance() -> None:
    runner = FakeProcessRunner(delay=0.1)
    notifier = Notifier(runner=runner)
    start = time.monotonic()
    for state in ("MASTER", "BACKUP", "MASTER"):
        notifier.notify("INSTANCE", "VI_1", state, 100, CMDS)
    notifier.notify("GROUP", "VG_1", "MASTER", 0, NotifyCommands(generic=Command(argv=("g",))))
    assert time.monotonic() - start < 0.05  # never waits for the scripts
    await asyncio.wait_for(notifier.drain(), 5)
    vi = [c[0][-2] if c[0][0] == "/etc/k/notify.sh" else c[0][0] for c in runner.calls
          if c[0][0] != "g"]
    assert vi == ["/etc/k/master.sh", "MASTER", "/etc/k/backup.sh", "BACKUP",
                  "/etc/k/master.sh", "MASTER"]
    assert (("g", "GROUP", "VG_1", "MASTER", "0"), None, None) in runner.calls
    assert runner.max_running == 2  # VI_1 and VG_1 in parallel, VI_1 serialised
    await notifier.close()


async def test_real_scripts_receive_arguments(tmp_path: Path) -> None:
    out = tmp_path / "args"
    script = tmp_path / "notify.sh"
    script.write_text(f'#!/bin/sh\necho "$#:$*" >> {out}\n')
    script.chmod(0o755)
    notifier = Notifier()
    notifier.notify("INSTANCE", "VI_1", "MASTER", 150,
                    NotifyCommands(master=Command(argv=(str(script), "only")),
                                   generic=Command(argv=(str(script),))))
    await asyncio.wait_for(notifier.drain(), 5)
    assert out.read_text().splitlines() == ["1:only", "4:INSTANCE VI_1 MASTER 150"]
    await notifier.close()


async def test_fifo_lines_are_delivered(tmp_path: Path) -> None:
    path = tmp_path / "fifo"
    fifo = NotifyFifo(str(path))
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        notifier = Notifier(fifo=fifo, runner=FakeProcessRunner())
        notifier.notify("INSTANCE", "VI_1", "MASTER", 100, NotifyCommands())
        notifier.notify("GROUP", "VG_1", "BACKUP", 0, NotifyCommands())
        data = os.read(reader, 4096)
        assert data == b'INSTANCE "VI_1" MASTER 100\nGROUP "VG_1" BACKUP 0\n'
        await notifier.close()
    finally:
        os.close(reader)


def test_fifo_without_reader_never_blocks(tmp_path: Path) -> None:
    fifo = NotifyFifo(str(tmp_path / "fifo"))
    start = time.monotonic()
    for _ in range(5000):  # ~140 KB: more than a pipe holds
        fifo.write_line(fifo_line("INSTANCE", "VI_1", "MASTER", 100))
    assert time.monotonic() - start < 2.0
    assert fifo.dropped > 0 and fifo.written > 0
    assert fifo.written + fifo.dropped == 5000
    fifo.close()


def test_fifo_path_must_be_a_fifo(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("")
    with pytest.raises(ValueError):
        NotifyFifo(str(regular))


async def test_master_rx_lower_pri_runs_its_command_and_fifo_only(tmp_path: Path) -> None:
    runner = FakeProcessRunner()
    fifo = NotifyFifo(str(tmp_path / "fifo"))
    reader = os.open(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        notifier = Notifier(runner=runner, fifo=fifo)
        cmds = NotifyCommands(generic=Command(argv=("n",)),
                              master_rx_lower_pri=Command(argv=("rx",)))
        notifier.notify("INSTANCE", "VI_1", "MASTER_RX_LOWER_PRI", 100, cmds)
        await asyncio.wait_for(notifier.drain(), 5)
        assert runner.calls == [(("rx",), None, None)]
        assert os.read(reader, 4096) == b'INSTANCE "VI_1" MASTER_RX_LOWER_PRI 100\n'
        await notifier.close()
    finally:
        os.close(reader)
