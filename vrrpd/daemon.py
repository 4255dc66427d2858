"""``vrrpd -f CONF``: load the config, set up logging and signals, run VRRP (and LVS) until told
to stop.  Exit codes: 0 after a graceful stop, 4 when the config cannot run, 1 on a start failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import structlog

from vrrpd.config.errors import Diagnostic, Severity
from vrrpd.config.model import Config

EXIT_OK = 0
EXIT_START_FAILED = 1
EXIT_CANNOT_RUN = 4

log = structlog.get_logger("vrrpd.daemon")


class Runner(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def setup_logging(level: str = "info", fmt: str = "auto") -> None:
    """structlog via ``vrrpd.logs``: JSON lines unless on a TTY (console renderer there)."""
    from vrrpd.logs import configure_logging

    configure_logging(level, fmt)


def report_diagnostics(diagnostics: Iterable[Diagnostic]) -> bool:
    """Print every diagnostic to stderr; True when one of them is FATAL."""
    fatal = False
    for d in diagnostics:
        print(str(d), file=sys.stderr)
        fatal = fatal or d.severity >= Severity.FATAL
    return fatal


def write_pid_files(paths: Iterable[str | None]) -> list[Path]:
    """One process runs everything here, so every pid file given holds our pid."""
    written = []
    for p in paths:
        if p:
            path = Path(p)
            path.write_text(f"{os.getpid()}\n")
            written.append(path)
    return written


def build_runners(config: Config, args: argparse.Namespace) -> list[tuple[str, Runner]]:
    """LVS first (VRRP state changes are forwarded to it for lvs_sync_daemon), then VRRP."""
    runners: list[tuple[str, Runner]] = []
    lvs_runner: Any = None
    if not getattr(args, "vrrp", False) and config.virtual_servers:
        try:
            lvs = importlib.import_module("vrrpd.lvs")
        except ModuleNotFoundError as exc:
            if exc.name != "vrrpd.lvs":
                raise
            log.warning("lvs_unavailable", reason="vrrpd.lvs is not installed",
                        virtual_servers=len(config.virtual_servers))
        else:
            lvs_runner = lvs.LvsRunner(
                config, keep_on_stop=bool(getattr(args, "dont_release_ipvs", False)))
            runners.append(("lvs", lvs_runner))
    if not getattr(args, "check", False) and config.vrrp_instances:
        from vrrpd.vrrp.runner import VrrpRunner

        on_state = getattr(lvs_runner, "vrrp_state_changed", None)
        runners.append(("vrrp", VrrpRunner(config, on_state=on_state)))
    return runners


def apply_process_priority(config: Config, parts: list[str]) -> None:
    """keepalived's ``vrrp_priority`` / ``checker_priority`` (nice values) for our one process:
    the VRRP one when VRRP runs here (its timing matters most), else the checkers' one."""
    gd = config.global_defs
    value = gd.vrrp_priority if "vrrp" in parts else gd.checker_priority
    if value is None:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, value)
    except OSError as exc:
        log.warning("process priority not set", nice=value, error=str(exc))
    else:
        log.info("process priority", nice=value)


async def serve(runners: list[tuple[str, Runner]]) -> int:
    """Start every runner, wait for SIGTERM/SIGINT, stop them in reverse order."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def on_stop(signame: str) -> None:
        log.info("signal", signal=signame, action="stop")
        stopping.set()

    def on_hup() -> None:
        log.warning("signal", signal="SIGHUP", action="ignored", reason="reload not implemented")

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig.name)
    if _early_signals:  # arrived between the pid file and the loop: honour it now
        on_stop(_early_signals[0])
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    from vrrpd.sdnotify import Notifier as SdNotifier

    sd = SdNotifier.from_env(unset=True)
    started: list[tuple[str, Runner]] = []
    code = EXIT_OK
    try:
        for name, runner in runners:
            try:
                await runner.start()
            except Exception:
                log.exception("start_failed", part=name)
                code = EXIT_START_FAILED
                return code
            started.append((name, runner))
            log.info("started", part=name)
        if not runners:
            log.warning("nothing_to_run", reason="no vrrp_instance or virtual_server to run")
        gc.freeze()  # long-lived start-up objects out of the collector's way (shorter pauses)
        sd.ready(f"running: {', '.join(n for n, _ in started) or 'nothing'}")
        await stopping.wait()
    finally:
        sd.stopping()
        for name, runner in reversed(started):
            try:
                await runner.stop()
                log.info("stopped", part=name)
            except Exception:
                log.exception("stop_failed", part=name)
                code = code or EXIT_START_FAILED
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        sd.close()
    return code


_early_signals: list[str] = []


def _early_handler(signum: int, _frame: object) -> None:
    _early_signals.append(signal.Signals(signum).name)


def run_daemon(args: argparse.Namespace, config_id: str) -> int:
    from vrrpd.config.loader import load

    config, diagnostics = load(args.config, config_id=config_id)
    if report_diagnostics(diagnostics):
        print(f"{args.config}: cannot run this configuration", file=sys.stderr)
        return EXIT_CANNOT_RUN
    setup_logging(getattr(args, "log_level", "info"), getattr(args, "log_format", "auto"))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _early_handler)
    pid_files = write_pid_files([getattr(args, "pid", None), getattr(args, "vrrp_pid", None),
                                 getattr(args, "checkers_pid", None)])
    log.info("starting", config=args.config, pid=os.getpid(),
             instances=len(config.vrrp_instances), virtual_servers=len(config.virtual_servers))
    try:
        runners = build_runners(config, args)
        apply_process_priority(config, [name for name, _ in runners])
        return asyncio.run(serve(runners))
    finally:
        for path in pid_files:
            with contextlib.suppress(OSError):
                path.unlink()
