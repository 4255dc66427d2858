"""The supervisor's pure parts (``vrrpd.supervisor_parts``): backoff, child command lines,
isolation decision, notify parsing; the status merge (``control.merge_documents``); the
supervisor's respawn/stop behaviour with a tiny stand-in child program."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.vrrpd.conf_texts import VRRP, VS
from vrrpd.cli import build_parser
from vrrpd.config.loader import load_text
from vrrpd.control import merge_documents
from vrrpd.supervisor_parts import (
    ENV_PARENT,
    ENV_ROLE,
    ROLES,
    BackoffPolicy,
    child_options,
    child_setup,
    control_socket_for,
    describe_exit,
    parse_notify,
    wants_isolation,
)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


# ---- backoff ---------------------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_and_resets_after_a_long_run() -> None:
    p = BackoffPolicy(initial=1.0, maximum=30.0, reset_after=60.0)
    delays, prev = [], None
    for _ in range(8):
        prev = p.next_delay(prev, uptime=0.5)
        delays.append(prev)
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert p.next_delay(30.0, uptime=59.9) == 30.0
    assert p.next_delay(30.0, uptime=60.0) == 1.0


# ---- command lines ---------------------------------------------------------------------------


def test_child_options_keep_the_parents_options_and_add_role_socket_and_id() -> None:
    parser = build_parser()
    args = parse("-f", "/etc/k.conf", "-l", "-D", "-I", "-p", "/run/p.pid", "-r", "/run/r.pid",
                 "-c", "/run/c.pid", "--control-soc=/run/x.ctl", "--metrics", ":9650",
                 "--data-file", "/run/d", "--check-data-file", "/run/cd",
                 "--stats-file", "/run/s", "--log-level", "debug", "--log-format", "json")
    vrrp, check = ROLES
    out = child_options(parser, args, vrrp, config_id="dir1",
                        control_socket=control_socket_for("/run/x.ctl", "vrrp"))
    assert out == ["--use-file", "/etc/k.conf", "--log-console", "--log-detail",
                   "--dont-release-ipvs", "--data-file", "/run/d", "--check-data-file",
                   "/run/cd", "--stats-file", "/run/s", "--log-level", "debug",
                   "--log-format", "json", "-n", "-P", "--config-id", "dir1",
                   "--control-socket", "/run/x.ctl.vrrp"]
    # what stays with the parent: pid files, metrics, its control socket
    for opt in ("-p", "--pid", "-r", "-c", "--metrics", "/run/x.ctl", "/run/p.pid"):
        assert opt not in out
    out_c = child_options(parser, args, check, config_id="dir1",
                          control_socket="/run/x.ctl.check")
    assert out_c[-6:] == ["-n", "-C", "--config-id", "dir1", "--control-socket",
                          "/run/x.ctl.check"]
    # the child's command line parses back to the same settings plus its role
    back = parser.parse_args(out)
    assert (back.config, back.dont_release_ipvs, back.log_level, back.vrrp, back.check,
            back.pid, back.metrics) == ("/etc/k.conf", True, "debug", True, False, None, None)


def test_isolation_needs_both_parts_and_no_role_flag() -> None:
    both = load_text(VRRP + VS).config
    only_vrrp = load_text(VRRP).config
    only_vs = load_text(VS).config
    assert wants_isolation(both, parse())
    assert not wants_isolation(both, parse("-P"))
    assert not wants_isolation(both, parse("-C"))
    assert not wants_isolation(both, parse("--single-process"))
    assert not wants_isolation(only_vrrp, parse())
    assert not wants_isolation(only_vs, parse())


def test_child_setup_reads_and_removes_the_variables() -> None:
    env = {ENV_ROLE: "vrrp", ENV_PARENT: str(os.getppid()), "X": "1"}
    asked: list[int] = []
    assert child_setup(env, pdeathsig=lambda sig: asked.append(sig) is None) == "vrrp"
    assert env == {"X": "1"} and asked == [signal.SIGKILL]
    assert child_setup({}, pdeathsig=lambda sig: asked.append(sig) is None) is None
    assert asked == [signal.SIGKILL]


def test_notify_and_exit_descriptions() -> None:
    assert parse_notify(b"READY=1\nSTATUS=running: vrrp\nbad") == {
        "READY": "1", "STATUS": "running: vrrp"}
    assert describe_exit(1) == "exit 1"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(None) == "running"


# ---- status merge ----------------------------------------------------------------------------


def test_merge_takes_instances_from_vrrp_and_servers_from_check() -> None:
    vrrp = {"version": 1, "daemon": {"parts": ["vrrp"]}, "instances": [{"name": "VI_1"}],
            "virtual_servers": [], "lvs": None,
            "reloads": {"succeeded": 1, "failed": 0, "last_result": "ok", "last_at": 10.0,
                        "errors": []}}
    check = {"version": 1, "daemon": {"parts": ["lvs"]}, "instances": [],
             "virtual_servers": [{"key": "vs"}], "lvs": {"syncs": 3},
             "reloads": {"succeeded": 0, "failed": 1, "last_result": "failed",
                         "last_at": 20.0, "errors": ["bad"]}}
    procs = [{"role": "parent", "pid": 1}, {"role": "vrrp", "pid": 2},
             {"role": "check", "pid": None, "error": "down"}]
    doc = merge_documents({"pid": 1, "router_id": "r", "config": "/c", "started_at": 5.0},
                          {"vrrp": vrrp, "check": check}, procs, now=30.0)
    assert doc["instances"] == [{"name": "VI_1"}]
    assert doc["virtual_servers"] == [{"key": "vs"}]
    assert doc["lvs"] == {"syncs": 3}
    assert doc["daemon"] == {"pid": 1, "router_id": "r", "config": "/c", "started_at": 5.0,
                             "parts": ["vrrp", "lvs"]}
    assert doc["reloads"] == {"succeeded": 1, "failed": 1, "last_result": "failed",
                              "last_at": 20.0, "errors": ["bad"]}
    assert [p["role"] for p in doc["processes"]] == ["parent", "vrrp", "check"]
    assert "mail" not in doc
    vrrp["mail"] = {"sent": 2, "failed": 1, "dropped": 0, "last_error": "refused"}
    check["mail"] = {"sent": 3, "failed": 0, "dropped": 1, "last_error": None}
    mailed = merge_documents({"pid": 1}, {"vrrp": vrrp, "check": check}, procs, now=30.0)
    assert mailed["mail"] == {"sent": 5, "failed": 1, "dropped": 1, "last_error": "refused"}
    # a child that did not answer contributes nothing
    alone = merge_documents({"pid": 1}, {"vrrp": vrrp}, procs, now=30.0)
    assert alone["virtual_servers"] == [] and alone["lvs"] is None
    assert alone["daemon"]["parts"] == ["vrrp"]


# ---- the supervisor with stand-in children ---------------------------------------------------

CHILD = """
import os, signal, socket, sys, time
role = os.environ["VRRPD_CHILD_ROLE"]
mode = os.environ.get("ISO_MODE_" + role.upper(), "ok")
sys.path.insert(0, os.environ["ISO_REPO"])
from vrrpd.supervisor_parts import child_setup
child_setup()
with open(os.environ["ISO_LOG"], "a") as f:
    f.write(f"{role} {os.getpid()}\\n")
if mode == "fail":
    sys.exit(1)
if mode == "cannot":
    sys.exit(4)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\\nSTATUS=stand-in", "\\0" + os.environ["NOTIFY_SOCKET"][1:])
while True:
    time.sleep(0.1)
"""


def _supervisor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **modes: str) -> Any:
    from vrrpd.supervisor import Supervisor

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    monkeypatch.setenv("ISO_REPO", str(Path(__file__).resolve().parents[3]))
    monkeypatch.setenv("ISO_LOG", str(tmp_path / "spawns"))
    for role, mode in modes.items():
        monkeypatch.setenv(f"ISO_MODE_{role.upper()}", mode)
    args = parse("-f", str(tmp_path / "k.conf"), "--control-socket", str(tmp_path / "ctl"),
                 "-r", str(tmp_path / "r.pid"), "-c", str(tmp_path / "c.pid"))
    sup = Supervisor(args, load_text(VRRP + VS).config, config_id="t",
                     policy=BackoffPolicy(initial=0.05, maximum=0.2, reset_after=60),
                     stop_timeout=5.0)
    sup.argv = lambda child: [sys.executable, str(script)]  # type: ignore[method-assign]
    return sup


async def _until(pred: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.02)


async def test_supervisor_respawns_a_failing_child_and_stops_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sup = _supervisor(tmp_path, monkeypatch, check="fail")
    run = asyncio.ensure_future(sup.run())
    vrrp, check = sup.children
    await _until(lambda: vrrp.ready and check.restarts >= 3)
    assert vrrp.alive and vrrp.restarts == 0 and not check.given_up
    assert Path(tmp_path / "r.pid").read_text().strip() == str(vrrp.pid)
    # backoff: 0.05, 0.1, 0.2, 0.2 ... -> a few restarts per second, not a tight loop
    assert check.delay is not None and check.delay <= 0.2
    pid = vrrp.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await _until(lambda: vrrp.restarts == 1 and vrrp.ready)
    assert vrrp.pid != pid and vrrp.last_exit == "killed by SIGKILL"
    sup.request_stop("test")
    assert await asyncio.wait_for(run, 10) == 0
    assert not vrrp.alive and not check.alive
    assert not (tmp_path / "r.pid").exists()


async def test_supervisor_gives_up_on_exit_4(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    sup = _supervisor(tmp_path, monkeypatch, vrrp="cannot", check="cannot")
    code = await asyncio.wait_for(sup.run(), 10)
    assert code == 4
    assert all(c.given_up and c.restarts == 0 for c in sup.children)
    spawns = (tmp_path / "spawns").read_text().split()
    assert spawns.count("vrrp") == 1 and spawns.count("check") == 1
