"""The LVS runner's cheap syncs against the real kernel (default batch client): a dump gives
back the very objects the runner programmed, so a sync with nothing to repair compares by
identity; entries it adopted become its own objects after one sync; drift is still repaired
with one request, and a one-change reload is one netlink request.  ipvsadm is the
independent writer and reader."""

from __future__ import annotations

import subprocess

import pytest
from guest.netns import GuestNetns

from ipvs.batch import BatchSender, messages
from ipvs.reconcile import EditDest
from ipvs.wire import GENL_ID_CTRL, Cmd
from vrrpd.config.loader import load_text
from vrrpd.lvs import LvsRunner

pytestmark = pytest.mark.kernel

SERVICES, DESTS = 12, 4
READS = {int(Cmd.GET_SERVICE), int(Cmd.GET_DEST)}


def config_text(changed: bool = False) -> str:
    out = []
    for i in range(SERVICES):
        out.append(f"virtual_server 10.0.0.{i + 1} 80 {{\n lb_algo wrr\n lb_kind DR\n"
                   " protocol TCP\n")
        for r in range(DESTS):
            weight = 5 if changed and i == SERVICES - 1 and r == DESTS - 1 else 1
            out.append(f" real_server 10.1.{i}.{r + 1} 80 {{\n  weight {weight}\n }}\n")
        out.append("}\n")
    return "".join(out)


class CountingSender(BatchSender):
    """The real batch sender, recording the generic-netlink command of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.commands: list[int] = []

    def _send(self, data: bytes) -> None:
        self.commands += [data[pos + 16] for pos, _len, kind, _seq in messages(data)
                          if kind != GENL_ID_CTRL]  # not the family lookup
        super()._send(data)

    def writes(self) -> list[int]:
        return [c for c in self.commands if c not in READS]


def runner_with(sender: CountingSender, text: str) -> LvsRunner:
    return LvsRunner(load_text(text).config, client_factory=lambda: sender, batch=True,
                     checker_manager=None, sync_interval=3600)


def weight_of(ns: GuestNetns, dest: str) -> str:
    (row,) = [line.split() for line in ns.ipvsadm("-L", "-n").splitlines()
              if line.split()[:2] == ["->", dest]]
    return row[3]


def ours(runner: LvsRunner) -> bool:
    """Every cached service and destination is the runner's desired object itself (the
    destinations in any order)."""
    want = runner.desired_state()
    assert set(want) == set(runner.observed)
    return all(runner.observed[k].service is w.service
               and {id(o.dest) for o in runner.observed[k].dests} == {id(d) for d in w.dests}
               for k, w in want.items())


async def test_a_dump_returns_the_objects_we_programmed(ipvs_ns: GuestNetns) -> None:
    sender = CountingSender()
    runner = runner_with(sender, config_text())
    await runner.start()
    try:
        assert len(ipvs_ns.ipvsadm("-S", "-n").splitlines()) == SERVICES * (DESTS + 1)
        result = await runner.sync()
        assert result.dumped and result.ops == [] and ours(runner)
        # someone changes a weight: exactly one edit repairs it, then ours again
        ipvs_ns.ipvsadm("-e", "-t", "10.0.0.3:80", "-r", "10.1.2.2:80", "-g", "-w", "9")
        result = await runner.sync()
        assert len(result.ops) == 1 and isinstance(result.ops[0], EditDest)
        assert result.ops[0].dest.weight == 1 and not result.failed
        result = await runner.sync()
        assert result.ops == [] and ours(runner)
        assert weight_of(ipvs_ns, "10.1.2.2:80") == "1"
    finally:
        await runner.stop()
    assert ipvs_ns.ipvsadm("-S", "-n").strip() == ""


async def test_adopted_entries_become_our_objects_after_one_sync(ipvs_ns: GuestNetns) -> None:
    rules = []
    for i in range(SERVICES):
        rules.append(f"-A -t 10.0.0.{i + 1}:80 -s wrr")
        rules += [f"-a -t 10.0.0.{i + 1}:80 -r 10.1.{i}.{r + 1}:80 -g -w 1"
                  for r in range(DESTS)]
    subprocess.run(["ip", "netns", "exec", ipvs_ns.name, "ipvsadm", "-R"],
                   input="\n".join(rules) + "\n", text=True, check=True, timeout=60)
    before = set(ipvs_ns.ipvsadm("-S", "-n").splitlines())
    sender = CountingSender()
    runner = runner_with(sender, config_text())
    await runner.start()
    try:
        assert sender.writes() == []  # adopted: no delete, no re-add
        assert not ours(runner)  # decoded from the dump: equal copies
        result = await runner.sync()
        assert result.ops == [] and ours(runner)
        assert sender.writes() == []
        assert set(ipvs_ns.ipvsadm("-S", "-n").splitlines()) == before
    finally:
        await runner.stop()


async def test_a_one_change_reload_is_one_request(ipvs_ns: GuestNetns) -> None:
    sender = CountingSender()
    runner = runner_with(sender, config_text())
    await runner.start()
    try:
        sender.commands.clear()
        result = await runner.apply_config(load_text(config_text(changed=True)).config)
        assert len(result.ops) == 1 and not result.failed
        assert sender.commands == [int(Cmd.SET_DEST)]  # not even a dump
        assert weight_of(ipvs_ns, f"10.1.{SERVICES - 1}.{DESTS}:80") == "5"
        result = await runner.sync()
        assert result.ops == [] and ours(runner)
    finally:
        await runner.stop()
