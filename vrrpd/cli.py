"""Command line: keepalived's options where they apply, plus vrrpd's own subcommands.

    vrrpd -f CONF [-n] [-P|-C] ...   run the daemon (keepalived's options)
    vrrpd -t -f CONF                 config test, exit codes as keepalived -t
    vrrpd --dump-config -f CONF      normalised config as JSON
    vrrpd --list-ipvs                the kernel's IPVS table, as ipvsadm -L -n prints it
    vrrpd status [--json]            the running daemon's state over its control socket
    vrrpd demo                       the live LVS-DR demo cluster (as root)
"""

from __future__ import annotations

import os
import sys

from vrrpd.fast_start import short_hostname

TYPE_CHECKING = False  # the vrrpd script imports this module before the start-up replay
if TYPE_CHECKING:  # (vrrpd.fast_start): argparse and typing are imported after it
    import argparse
    from collections.abc import Sequence

DEFAULT_CONF = "/etc/keepalived/keepalived.conf"


def help_formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, its width found as ``shutil.get_terminal_size`` does: argparse
    imports ``shutil`` (and with it bz2 and lzma) for this on every start-up otherwise."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    import argparse

    return argparse.HelpFormatter(prog, width=(columns or 80) - 2)


def build_parser() -> argparse.ArgumentParser:
    import argparse

    p = argparse.ArgumentParser(
        prog="vrrpd",
        description="keepalived-compatible VRRPv2 + LVS daemon",
        formatter_class=help_formatter,
    )
    p.add_argument("-f", "--use-file", dest="config", default=DEFAULT_CONF, metavar="CONF",
                   help=f"config file (default {DEFAULT_CONF})")
    p.add_argument("-t", "--config-test", action="store_true",
                   help="check the config and exit: 0 ok, 4 cannot run, 5 errors but would run")
    p.add_argument("--dump-config", action="store_true",
                   help="print the normalised config, defaults resolved, as JSON")
    p.add_argument("-i", "--config-id", default=None, metavar="ID",
                   help="id for @ID conditional lines (default: short hostname)")
    p.add_argument("-n", "--dont-fork", action="store_true", help="stay in the foreground")
    p.add_argument("-l", "--log-console", action="store_true", help="log to the console")
    p.add_argument("-D", "--log-detail", action="store_true", help="detailed logging")
    p.add_argument("-P", "--vrrp", action="store_true", help="run VRRP only")
    p.add_argument("-C", "--check", action="store_true", help="run checkers and IPVS only")
    p.add_argument("-p", "--pid", default=None, metavar="FILE", help="main pid file")
    p.add_argument("-r", "--vrrp_pid", default=None, metavar="FILE", help="VRRP child pid file")
    p.add_argument("-c", "--checkers_pid", default=None, metavar="FILE",
                   help="checkers child pid file")
    p.add_argument("--single-process", action="store_true",
                   help="run VRRP and the checkers in one process (default: two child "
                        "processes under a supervisor when the config has both)")
    p.add_argument("-I", "--dont-release-ipvs", action="store_true",
                   help="don't remove IPVS topology on daemon stop")
    p.add_argument("--drain-timeout", type=float, default=None, metavar="SECONDS",
                   help="vrrpd only: a real server leaving IPVS stays at weight 0 until its "
                        "connections end, at most SECONDS (default 0: removed at once, "
                        "as keepalived)")
    p.add_argument("--list-ipvs", action="store_true",
                   help="print the IPVS table of this network namespace (ipvsadm -L -n format)")
    p.add_argument("--control-socket", default=None, metavar="PATH",
                   help="control socket for `vrrpd status` (default /run/vrrpd/vrrpd.ctl)")
    p.add_argument("--metrics", default=None, metavar="HOST:PORT",
                   help="serve Prometheus /metrics on this address (default: off)")
    p.add_argument("--data-file", default=None, metavar="FILE",
                   help="SIGUSR1 VRRP data dump (default /tmp/keepalived.data)")
    p.add_argument("--check-data-file", default=None, metavar="FILE",
                   help="SIGUSR1 checker data dump (default /tmp/keepalived_check.data)")
    p.add_argument("--stats-file", default=None, metavar="FILE",
                   help="SIGUSR2 VRRP stats dump (default /tmp/keepalived.stats)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="log level")
    p.add_argument("--log-format", default="auto", choices=["auto", "json", "console"],
                   help="log format (auto: console on a TTY, JSON otherwise)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="vrrpd only: IPVS start cache, replayed at a cold start before the "
                        "config is parsed (default /var/cache/vrrpd)")
    p.add_argument("--no-cache", action="store_true",
                   help="vrrpd only: neither replay nor write the IPVS start cache")
    p.add_argument("--no-fast-start", action="store_true",
                   help="vrrpd only: program IPVS only after the whole config is parsed (no "
                        "start cache replay, no early programming from a plain config)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from vrrpd import fast_start

    if argv is None:  # a real process start (the vrrpd script; python -m vrrpd did it already)
        fast_start.early(sys.argv[1:])
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["status"]:
        from vrrpd.control_client import status_main  # no asyncio for a CLI call

        return status_main(argv[1:])
    if argv[:1] == ["demo"]:
        from vrrpd.demo.script import main as demo_main

        return demo_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.list_ipvs:
        from vrrpd.lvs_cli import list_ipvs

        return list_ipvs(out=sys.stdout, err=sys.stderr)
    config_id = args.config_id or short_hostname()
    if args.config_test or args.dump_config:
        from vrrpd.config.check import run_check

        return run_check(args.config, config_id=config_id, dump=args.dump_config,
                         out=sys.stdout, err=sys.stderr)
    fast_start.settle(args.config, config_id, args.cache_dir, args.no_cache)
    from vrrpd.daemon import run_daemon

    return run_daemon(args, config_id=config_id)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
