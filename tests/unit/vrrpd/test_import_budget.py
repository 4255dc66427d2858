"""Start-up import budget (issue 4): a vrrpd process imports only what its config and flags use.

Each case runs the real ``vrrpd`` command line (``vrrpd.cli.main``) in a fresh interpreter:
config loaded, logging set up, runners built, the operator side (control socket, dump signal
handlers, ``--metrics``) started and stopped -- only the runners are not started (no IPVS or
VRRP sockets here).  ``serve`` is replaced by a probe that prints ``sys.modules`` at that
point.  No timing is asserted: the modules present are.

``ssl``, ``concurrent.futures`` and ``threading`` cannot be budgeted: asyncio itself imports
them.  ``structlog.dev`` neither: ``structlog/__init__`` imports it whatever the log format.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vrrpd.cli import build_parser

REPO = Path(__file__).resolve().parents[3]
MARK = "IMPORT-BUDGET "

# the daemon's real start-up up to serve(); serve() replaced by the module probe
PROBE = f"""
import json, sys
import vrrpd.daemon

async def probe_serve(runners, ops=None, **kw):
    if ops is not None:
        await ops.start()
        await ops.stop()
    print({MARK!r} + json.dumps({{"runners": [n for n, _ in runners],
                                  "modules": sorted(sys.modules)}}), flush=True)
    return 0

vrrpd.daemon.serve = probe_serve
from vrrpd.cli import main
sys.exit(main(sys.argv[1:]))
"""

# imported by no process whose config and flags do not ask for them
NEVER = ("scapy", "pyroute2")
HEAVY_UNLESS_USED = (
    "prometheus_client", "http.server", "http.client", "vrrpd.metrics",  # --metrics
    "healthcheck.checkers", "healthcheck.checkers.http", "healthcheck.manager",  # checkers
    "healthcheck.state", "healthcheck.events",
    "vrrpd.alerts", "vrrpd.mail", "email.utils",  # smtp_alert
    "vrrpd.vrrp", "vrrpd.vrrp.runner", "vrrpd.vrrp.notify",  # VRRP
    "vrrpd.supervisor", "shutil", "bz2", "lzma",  # the supervisor; argparse's shutil
)

LVS_ONLY = """
global_defs {
  router_id budget
}
""" + "".join(f"""
virtual_server 10.0.0.{i} 80 {{
  lb_algo wrr
  lb_kind DR
  protocol TCP
  real_server 10.1.0.{i} 80 {{
    weight 1
  }}
  real_server 10.2.0.{i} 80 {{
    weight 2
  }}
}}
""" for i in range(1, 4))

MAIL = """
global_defs {
  router_id budget
  notification_email {
    ops@example.com
  }
  smtp_server 127.0.0.1 2525
  smtp_alert
}
virtual_server 10.0.0.1 80 {
  protocol TCP
  real_server 10.1.0.1 80 {
    weight 1
  }
}
"""

VRRP_ONLY = """
vrrp_instance VI_1 {
  interface lo
  state BACKUP
  virtual_router_id 51
  priority 100
  virtual_ipaddress {
    192.0.2.10
  }
}
"""


def started(tmp_path: Path, conf: str, *flags: str) -> tuple[list[str], set[str]]:
    """(runner names, modules imported) of ``vrrpd FLAGS -n -f CONF`` up to its runners'
    start."""
    path = tmp_path / "keepalived.conf"
    path.write_text(conf)
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "PYTHONPATH")
           and not k.startswith("VRRPD_")}
    argv = [sys.executable, "-c", PROBE, *flags, "-n", "-f", str(path), "-i", "budget",
            "--log-format", "json", "-p", str(tmp_path / "vrrpd.pid"),
            "--control-socket", str(tmp_path / "vrrpd.ctl"),
            "--data-file", str(tmp_path / "data"), "--check-data-file", str(tmp_path / "cdata"),
            "--stats-file", str(tmp_path / "stats")]
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    assert len(lines) == 1, proc.stdout + proc.stderr
    found = json.loads(lines[0][len(MARK):])
    return found["runners"], set(found["modules"])


def imported(modules: set[str], *names: str) -> list[str]:
    return [n for n in names if n in modules]


def test_checker_process_without_checkers_imports_no_heavy_module(tmp_path: Path) -> None:
    """The benchmark's case: ``-C``, virtual servers whose real servers have no checker."""
    runners, modules = started(tmp_path, LVS_ONLY, "-C")
    assert runners == ["lvs"]
    assert "vrrpd.lvs" in modules and "ipvs.batch" in modules  # the runner is really built
    assert "vrrpd.control" in modules and "vrrpd.dumps" in modules  # and the operator side
    assert imported(modules, *NEVER, *HEAVY_UNLESS_USED) == []
    assert "ipvs.client" not in modules  # the IPVS path is ipvs.batch (no pyroute2)


def test_single_process_lvs_config_without_vrrp_imports_no_vrrp(tmp_path: Path) -> None:
    runners, modules = started(tmp_path, LVS_ONLY)
    assert runners == ["lvs"]
    assert imported(modules, *NEVER, *HEAVY_UNLESS_USED) == []


def test_metrics_flag_imports_the_prometheus_endpoint(tmp_path: Path) -> None:
    runners, modules = started(tmp_path, LVS_ONLY, "-C", "--metrics", "127.0.0.1:0")
    assert runners == ["lvs"]
    assert imported(modules, "prometheus_client", "http.server", "vrrpd.metrics") == [
        "prometheus_client", "http.server", "vrrpd.metrics"]
    assert imported(modules, *NEVER, "healthcheck.checkers", "vrrpd.vrrp") == []


def test_smtp_alert_imports_the_mail_code(tmp_path: Path) -> None:
    runners, modules = started(tmp_path, MAIL, "-C")
    assert runners == ["mail", "lvs"]
    assert imported(modules, "vrrpd.alerts", "vrrpd.mail", "email.utils") == [
        "vrrpd.alerts", "vrrpd.mail", "email.utils"]
    assert imported(modules, *NEVER, "prometheus_client", "healthcheck.checkers") == []


def test_vrrp_process_imports_vrrp_and_no_ipvs(tmp_path: Path) -> None:
    runners, modules = started(tmp_path, VRRP_ONLY, "-P")
    assert runners == ["vrrp"]
    assert "vrrpd.vrrp.runner" in modules
    assert imported(modules, *NEVER, "vrrpd.lvs", "ipvs.batch", "healthcheck.checkers",
                    "healthcheck.manager", "prometheus_client", "http.server", "vrrpd.mail",
                    "shutil") == []


CHECKERS = """
import asyncio, json, socket, sys
from healthcheck.checkers import ProbeContext, run_probe
from healthcheck.model import HttpCheckSpec, TcpCheckSpec
before = sorted(sys.modules)
closed = socket.socket()  # a loopback port nobody listens on
closed.bind(("127.0.0.1", 0))
port = closed.getsockname()[1]
spec = {kind}(connect_ip=__import__("ipaddress").ip_address("127.0.0.1"), connect_port=port,
              connect_timeout=2.0)
async def no_command(*args, **kw):  # TCP_CHECK and HTTP_GET run no command
    raise AssertionError("no command expected")
result = asyncio.run(run_probe(spec, ProbeContext(run_command=no_command)))
print({MARK!r} + json.dumps({{"before": before, "after": sorted(sys.modules),
                             "ok": result.ok}}))
"""


@pytest.mark.parametrize(("kind", "module"), [
    ("TcpCheckSpec", "healthcheck.checkers.tcp"),
    ("HttpCheckSpec", "healthcheck.checkers.http"),
])
def test_a_checker_module_is_imported_by_its_first_probe(kind: str, module: str) -> None:
    """``healthcheck.checkers`` alone imports no checker; a probe imports its own (and only
    it), and still runs: a real probe of a closed loopback port fails."""
    code = CHECKERS.format(kind=kind, MARK=MARK)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(MARK))
    found = json.loads(line[len(MARK):])
    checkers = {f"healthcheck.checkers.{n}" for n in
                ("dns", "file", "http", "misc", "ping", "smtp", "tcp", "udp")}
    assert checkers.isdisjoint(found["before"])
    assert found["ok"] is False
    assert checkers & set(found["after"]) == {module}


STATUS = f"""
import json, sys
from vrrpd.cli import main
code = main(["status", "--socket", sys.argv[1]])
print({MARK!r} + json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def test_status_command_imports_no_asyncio_nor_structlog(tmp_path: Path) -> None:
    """``vrrpd status`` is a blocking client: no event loop, no logging set-up to import
    (the daemon is not running here: exit 3, LSB "not running")."""
    proc = subprocess.run([sys.executable, "-c", STATUS, str(tmp_path / "none.ctl")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith(MARK))
    found = json.loads(line[len(MARK):])
    assert found["code"] == 3
    assert "no such socket" in proc.stderr
    assert imported(set(found["modules"]), "asyncio", "structlog", "vrrpd.daemon",
                    "vrrpd.control", "shutil", *NEVER) == []


@pytest.mark.parametrize("columns", [None, "60", "132", "0", "junk"])
def test_help_is_wrapped_as_argparse_wraps_it(monkeypatch: pytest.MonkeyPatch,
                                              columns: str | None) -> None:
    """``cli.help_formatter`` (no shutil import) finds the width ``shutil`` would."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    ours = build_parser()
    stock = build_parser()
    stock.formatter_class = argparse.HelpFormatter
    assert ours.format_help() == stock.format_help()
    assert ours.format_usage() == stock.format_usage()
