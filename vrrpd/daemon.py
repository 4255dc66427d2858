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
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from vrrpd.config.errors import Diagnostic, Severity

if TYPE_CHECKING:
    from vrrpd.config.model import Config, GlobalDefs

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


def write_pid_files(paths: Iterable[str | None]) -> list[str]:
    """One process runs everything here, so every pid file given holds our pid.  (os, not
    pathlib: pathlib and its imports are not needed before the IPVS table is up.)"""
    written = []
    for p in paths:
        if p:
            with open(p, "w") as f:
                f.write(f"{os.getpid()}\n")
            written.append(p)
    return written


def mail_configured(g: GlobalDefs) -> bool:
    """Whether smtp_alert mail can be sent at all (``vrrpd.mail.MailSettings.enabled``:
    ``notification_email`` and an ``smtp_server``), decided without importing the mail code."""
    return bool(g.notification_email) and bool(g.smtp_server_name or g.smtp_server)


def build_runners(config: Config, args: argparse.Namespace, ops: Any = None
                  ) -> list[tuple[str, Runner]]:
    """LVS first, then (with lvs_sync_daemon and VRRP here) the sync-daemon driver VRRP state
    changes go to, then VRRP: stopped in reverse, VRRP's STOP reaches the driver still open.

    ``ops`` (a :class:`vrrpd.status.DaemonStatus`) is told the runners and records transitions
    and GARPs for ``vrrpd status``, the metrics and the SIGUSR dumps."""
    runners: list[tuple[str, Runner]] = []
    lvs_runner: Any = None
    mail: Any = None  # smtp_alert: one alerter per process, from global_defs
    if mail_configured(config.global_defs):
        from vrrpd.alerts import MailPart

        mail = MailPart(config)
    mail_enabled = mail is not None and mail.enabled
    if not getattr(args, "vrrp", False) and config.virtual_servers:
        try:
            lvs = importlib.import_module("vrrpd.lvs")
        except ModuleNotFoundError as exc:
            if exc.name != "vrrpd.lvs":
                raise
            log.warning("lvs_unavailable", reason="vrrpd.lvs is not installed",
                        virtual_servers=len(config.virtual_servers))
        else:
            extra: dict[str, Any] = {}
            factory_kw: dict[str, Any] = {}
            if mail_enabled:  # checker transitions -> smtp_alert mails
                checks = mail.checkers(lambda: lvs_runner.config)
                factory_kw["on_event"] = checks.on_event
            from vrrpd.lvs_checks import lvs_notify_fifo

            fifo = lvs_notify_fifo(config.global_defs)  # RS/VS lines -> (lvs_)notify_fifo
            if fifo is not None:
                factory_kw["on_fifo"] = fifo
            if factory_kw:
                from functools import partial

                extra["checker_manager"] = partial(lvs.default_checkers, **factory_kw)
            lvs_runner = lvs.LvsRunner(
                config, keep_on_stop=bool(getattr(args, "dont_release_ipvs", False)),
                drain_timeout=float(getattr(args, "drain_timeout", 0.0) or 0.0), **extra)
            runners.append(("lvs", lvs_runner))
    if not getattr(args, "check", False) and config.vrrp_instances:
        from vrrpd.vrrp.runner import VrrpRunner

        on_state: Callable[[str, str], None] | None = None
        if config.global_defs.lvs_sync_daemon is not None:
            from vrrpd.lvs_syncd import SyncDaemonDriver  # VRRP drives it, as in keepalived

            syncd = SyncDaemonDriver(config)
            runners.append(("lvs_sync_daemon", syncd))
            on_state = syncd.vrrp_state_changed
        vrrp_runner: Any = None
        on_group_state = None
        if mail_enabled:  # VRRP instance / sync group transitions -> smtp_alert mails
            mailer = mail.vrrp(lambda: vrrp_runner.config)
            on_state, on_group_state = mailer.chain(on_state), mailer.on_group_state
        if ops is not None:
            from vrrpd.status_adapters import GarpCounter, TransitionRecorder
            from vrrpd.vrrp.garp import PacketGarpSender

            ops.recorder, ops.garps = TransitionRecorder(), GarpCounter(PacketGarpSender())
            vrrp_runner = VrrpRunner(config, on_state=ops.recorder.chain(on_state),
                                     garp_sender=ops.garps, on_group_state=on_group_state)
        else:
            vrrp_runner = VrrpRunner(config, on_state=on_state, on_group_state=on_group_state)
        runners.append(("vrrp", vrrp_runner))
    if mail_enabled and runners:
        runners.insert(0, ("mail", mail))  # stopped last: the runners' STOP mails go out first
        if ops is not None:
            ops.mail = mail
    if ops is not None:
        ops.set_runners(vrrp=dict(runners).get("vrrp"), lvs=lvs_runner)
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


class Operations:
    """The operator-facing side: control socket (``vrrpd status``), SIGUSR1/SIGUSR2 dumps,
    optional Prometheus endpoint.  None of them may stop the daemon from running: a control
    socket another daemon holds, or a metrics port in use, is logged and skipped."""

    def __init__(self, args: argparse.Namespace, config: Config) -> None:
        from vrrpd.status import DaemonStatus

        self.args = args
        self.status = DaemonStatus(config_path=getattr(args, "config", None),
                                   router_id=config.global_defs.router_id)
        self._ctl: Any = None
        self._dumps: Any = None
        self._metrics: Any = None

    async def start(self) -> None:
        from vrrpd.control import DEFAULT_SOCKET, ControlServer
        from vrrpd.dumps import CheckDumpWriter, DumpPaths, DumpWriter

        args = self.args
        path = getattr(args, "control_socket", None) or DEFAULT_SOCKET
        ctl = ControlServer(path, status=self.status.document)
        try:
            await ctl.start()
            self._ctl = ctl
        except (OSError, RuntimeError) as exc:
            log.warning("control socket not available", path=path, error=str(exc))
        defaults = DumpPaths()
        # -C (the checker child): keepalived_check.data only; VRRP writes the other files
        writer = CheckDumpWriter if getattr(args, "check", False) else DumpWriter
        self._dumps = writer(self.status.document, DumpPaths(
            getattr(args, "data_file", None) or defaults.data,
            getattr(args, "check_data_file", None) or defaults.check_data,
            getattr(args, "stats_file", None) or defaults.stats))
        self._dumps.install()
        listen = getattr(args, "metrics", None)
        if listen:
            from vrrpd.metrics import MetricsServer

            try:
                self._metrics = MetricsServer(self.status.document, listen,
                                              loop=asyncio.get_running_loop())
                host, port = self._metrics.start()
                log.info("metrics", listen=f"{host}:{port}")
            except (OSError, ValueError) as exc:
                log.warning("metrics endpoint not available", listen=listen, error=str(exc))
                self._metrics = None

    async def stop(self) -> None:
        if self._metrics is not None:
            self._metrics.stop()
        if self._dumps is not None:
            self._dumps.uninstall()
        if self._ctl is not None:
            await self._ctl.stop()


async def reload_config(runners: list[tuple[str, Runner]], path: str, config_id: str, *,
                        ops: Operations | None = None, sd: Any = None) -> bool:
    """SIGHUP: parse ``path`` in a worker thread (adverts stay on time), then hand the new
    config to every running part that has ``apply_config`` (VRRP, LVS: only the parts this
    process runs, e.g. just VRRP under ``-P``).  A config that cannot be read or has an ERROR
    or FATAL diagnostic is rejected: the old one keeps running, every diagnostic is logged and
    the failure recorded for ``vrrpd status`` / metrics.  (keepalived applies a config with
    errors, dropping the bad items; with a good config already running, a typo must not
    remove an instance.)  sd_notify RELOADING=1 ... READY=1.  The parse is incremental
    (``vrrpd.config.incremental``: only the changed blocks, same result as a full load)."""
    from vrrpd.config.incremental import reloader

    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    if sd is not None:
        sd.reloading("reloading configuration")
    errors: list[str] = []
    applied: list[str] = []
    try:
        config, diagnostics = await loop.run_in_executor(None, reloader(path, config_id).load)
    except Exception as exc:  # the loader reports unreadable files itself; belt and braces
        config, diagnostics = None, ()
        errors.append(f"{path}: cannot load: {exc}")
    for d in diagnostics:
        error = d.severity >= Severity.ERROR
        (log.error if error else log.warning)(
            "reload_diagnostic", diagnostic=str(d), fatal=d.severity >= Severity.FATAL)
        if error:
            errors.append(str(d))
    if config is not None and not errors:
        for name, runner in runners:
            apply = getattr(runner, "apply_config", None)
            if apply is None:
                continue
            try:
                await apply(config)
                applied.append(name)
            except Exception as exc:
                log.exception("reload_failed", part=name)
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        running = {name for name, _ in runners}
        if config.vrrp_instances and "vrrp" not in running and "lvs" in running \
                and not getattr(getattr(ops, "args", None), "check", False):
            log.warning("reload_needs_restart", part="vrrp",
                        reason="vrrp_instances added to a config that ran none")
        if config.virtual_servers and "lvs" not in running and "vrrp" in running \
                and not getattr(getattr(ops, "args", None), "vrrp", False):
            log.warning("reload_needs_restart", part="lvs",
                        reason="virtual_servers added to a config that ran none")
    ok = not errors
    elapsed = round(time.monotonic() - t0, 4)
    if ok:
        log.info("reloaded", config=path, parts=applied, seconds=elapsed)
    else:
        log.error("reload_rejected" if not applied else "reload_failed", config=path,
                  errors=errors, seconds=elapsed,
                  action="still running the previous configuration" if not applied else
                  "partly applied")
    if ops is not None:
        ops.status.reloads.record(ok, errors)
    if sd is not None:
        sd.ready("reloaded" if ok else f"reload failed ({len(errors)} errors), "
                 "running the previous configuration")
    return ok


async def serve(runners: list[tuple[str, Runner]], ops: Operations | None = None, *,
                config_path: str | None = None, config_id: str | None = None) -> int:
    """Start every runner, wait for SIGTERM/SIGINT, stop them in reverse order.  SIGHUP
    reloads (``reload_config``; the path and id default to ``ops.args``'s)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    if config_path is None and ops is not None:
        config_path = getattr(ops.args, "config", None)
    if config_id is None and ops is not None:
        config_id = getattr(ops.args, "config_id", None)
    if config_id is None:
        from vrrpd.cli import short_hostname

        config_id = short_hostname()
    hup = asyncio.Event()  # a SIGHUP waiting to be handled (several coalesce into one)
    busy = asyncio.Event()  # a reload is being applied

    def on_stop(signame: str) -> None:
        log.info("signal", signal=signame, action="stop")
        stopping.set()

    def on_hup() -> None:
        log.info("signal", signal="SIGHUP", action="reload")
        hup.set()

    async def reloader(started: list[tuple[str, Runner]]) -> None:
        assert config_id is not None
        while True:
            await hup.wait()
            hup.clear()
            if config_path is None:
                log.warning("signal", signal="SIGHUP", action="ignored",
                            reason="no configuration path to reload")
                continue
            busy.set()
            try:
                await reload_config(started, config_path, config_id, ops=ops, sd=sd)
            finally:
                busy.clear()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig.name)
    if _early_signals:  # arrived between the pid file and the loop: honour it now
        on_stop(_early_signals[0])
    loop.add_signal_handler(signal.SIGHUP, on_hup)
    from vrrpd.sdnotify import Notifier as SdNotifier
    from vrrpd.sdnotify import run_watchdog

    sd = SdNotifier.from_env(unset=True)
    started: list[tuple[str, Runner]] = []
    code = EXIT_OK
    watchdog: asyncio.Task[None] | None = None
    reload_task: asyncio.Task[None] | None = None
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
        if ops is not None:
            await ops.start()
        gc.freeze()  # long-lived start-up objects out of the collector's way (shorter pauses)
        sd.ready(f"running: {', '.join(n for n, _ in started) or 'nothing'}")
        # pings only while this loop runs: a stalled loop lets systemd restart the service
        watchdog = asyncio.ensure_future(run_watchdog(sd, lambda: True))
        reload_task = asyncio.ensure_future(reloader(started))  # SIGHUPs from now on
        await stopping.wait()
    finally:
        sd.stopping()
        if watchdog is not None:
            watchdog.cancel()
        if reload_task is not None:  # a reload in progress finishes first (at most 30 s)
            deadline = loop.time() + 30.0
            while busy.is_set() and loop.time() < deadline:
                await asyncio.sleep(0.05)
            reload_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reload_task
        if ops is not None:
            await ops.stop()
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
    from vrrpd.config.incremental import reloader
    from vrrpd.supervisor_parts import child_setup, wants_isolation

    role = child_setup()  # a supervised child: die with the parent
    # What this load keeps lets a SIGHUP re-parse only the changed blocks (reload_config).
    config, diagnostics = reloader(args.config, config_id).load()
    if role is not None:  # the parent printed them already
        diagnostics = tuple(d for d in diagnostics if d.severity >= Severity.FATAL)
    if report_diagnostics(diagnostics):
        print(f"{args.config}: cannot run this configuration", file=sys.stderr)
        return EXIT_CANNOT_RUN
    setup_logging(getattr(args, "log_level", "info"), getattr(args, "log_format", "auto"))
    if role is not None:
        structlog.contextvars.bind_contextvars(process=role)
    elif wants_isolation(config, args):  # VRRP and checkers in two children (vrrpd.supervisor)
        from vrrpd.supervisor import run_supervisor

        return run_supervisor(args, config, config_id=config_id)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _early_handler)
    pid_files = write_pid_files([getattr(args, "pid", None), getattr(args, "vrrp_pid", None),
                                 getattr(args, "checkers_pid", None)])
    log.info("starting", config=args.config, pid=os.getpid(),
             instances=len(config.vrrp_instances), virtual_servers=len(config.virtual_servers))
    try:
        ops = Operations(args, config)
        runners = build_runners(config, args, ops.status)
        apply_process_priority(config, [name for name, _ in runners])
        return asyncio.run(serve(runners, ops))
    finally:
        for path in pid_files:
            with contextlib.suppress(OSError):
                os.unlink(path)
