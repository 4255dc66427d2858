"""keepalived-compatible dump files (SIGUSR1 data, SIGUSR2 stats) from the status document.

keepalived 2.2.7, measured here: SIGUSR1 to the parent makes each process write its own file —
the VRRP child ``/tmp/keepalived.data`` (``------< VRRP Topology >------``), the checker child
``/tmp/keepalived_check.data`` (``------< LVS Topology >------``); SIGUSR2 makes the VRRP child
write ``/tmp/keepalived.stats``.  Files are mode 0600.  The line shapes (indentation,
``Key = value``) are keepalived's, so existing ``grep 'State = MASTER'`` tooling keeps working;
only the lines we have values for are written (no fd numbers, no password).

Pure formatters (:func:`format_data`, :func:`format_check_data`, :func:`format_stats`) plus
:class:`DumpWriter`, whose signal handlers build the document on the loop and write the files
in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from vrrpd.status import InstanceStatus, StatusDocument, VirtualServerStatus

__all__ = ["DEFAULT_CHECK_DATA", "DEFAULT_DATA", "DEFAULT_STATS", "CheckDumpWriter", "DumpPaths",
           "DumpWriter",
           "format_check_data", "format_data", "format_stats", "write_file"]

log = structlog.get_logger("vrrpd.dumps")

DEFAULT_DATA = "/tmp/keepalived.data"
DEFAULT_CHECK_DATA = "/tmp/keepalived_check.data"
DEFAULT_STATS = "/tmp/keepalived.stats"

_AUTH = {"none": "none", "pass": "SIMPLE_PASSWORD", "ah": "IPSEC_AH"}


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _when(t: float) -> str:
    """keepalived's ``1795458891.192642 (Mon Nov 23 18:34:51.192642 2026)`` (local time)."""
    lt = time.localtime(t)
    usec = round((t - int(t)) * 1e6) % 1000000
    return (f"{int(t)}.{usec:06d} ({time.strftime('%a %b %d %H:%M:%S', lt)}.{usec:06d} "
            f"{time.strftime('%Y', lt)})")


def _global(doc: StatusDocument) -> list[str]:
    lines = ["------< Global definitions >------"]
    if doc["daemon"].get("router_id"):
        lines.append(f" Router ID = {doc['daemon']['router_id']}")
    return lines


def _instance(i: InstanceStatus) -> list[str]:
    out = [f" VRRP Instance = {i['name']}", f"   VRRP Version = {i['version']}"]
    if i["sync_group"]:
        out.append(f"   Sync group = {i['sync_group']}")
    out.append(f"   State = {i['state']}")
    master = i["master"]
    if i["state"] == "BACKUP" and master is not None:
        out += [f"   Master router = {master['address']}",
                f"   Master priority = {master['priority']}"]
    if i["unicast_peers"]:
        out += ["   Flags:", "     Using unicast"]
    else:
        out.append("   Flags: none")
    out.append(f"   Wantstate = {'MASTER' if i['wants_master'] else i['state']}")
    if i["last_transition"] is not None:
        out.append(f"   Last transition = {_when(i['last_transition'])}")
    out += [f"   Interface = {i['interface']}", f"   Using src_ip = {i['source']}"]
    if not i["unicast_peers"]:
        out.append("   Multicast address 224.0.0.18")
    g = i["garp"]
    out += [f"   Gratuitous ARP delay = {_num(g['master_delay'])}",
            f"   Gratuitous ARP repeat = {_num(g['master_repeat'])}",
            f"   Gratuitous ARP refresh = {_num(g['master_refresh'])}",
            f"   Gratuitous ARP refresh repeat = {_num(g['master_refresh_repeat'])}",
            f"   Gratuitous ARP lower priority delay = {_num(g['lower_prio_delay'])}",
            f"   Gratuitous ARP lower priority repeat = {_num(g['lower_prio_repeat'])}",
            f"   Virtual Router ID = {i['vrid']}",
            f"   Priority = {i['base_priority']}",
            f"   Effective priority = {i['effective_priority']}",
            f"   Total priority = {i['effective_priority']}",
            f"   Advert interval = {_num(i['advert_int'])} sec",
            f"   Preempt = {'enabled' if i['preempt'] else 'disabled'}"]
    if i["preempt"] and i["preempt_delay"]:
        out.append(f"   Preempt delay = {_num(i['preempt_delay'])} secs")
    out.append(f"   Authentication type = {_AUTH.get(i['auth_type'], i['auth_type'])}")
    set_ = " set" if i["state"] == "MASTER" else ""
    for excluded in (False, True):
        vips = [v for v in i["vips"] if v["excluded"] is excluded]
        if vips:
            out.append("   Virtual IP Excluded :" if excluded else f"   Virtual IP ({len(vips)}):")
            for v in vips:
                addr = v["address"]
                if addr.endswith(("/32", "/128")):
                    addr = addr.rsplit("/", 1)[0]
                out.append(f"     {addr} dev {v['dev']} scope {v['scope']}{set_}")
    if i["unicast_peers"]:
        out += ["   Unicast Peer :"]
        out += [f"     {p} min_ttl 0 max_ttl 255" for p in i["unicast_peers"]]
    return out


def format_data(doc: StatusDocument) -> str:
    """``/tmp/keepalived.data``: global definitions, VRRP topology, sync groups."""
    lines = _global(doc)
    lines.append("------< VRRP Topology >------")
    for inst in doc["instances"]:
        lines += _instance(inst)
    groups: dict[str, list[InstanceStatus]] = {}
    for inst in doc["instances"]:
        if inst["sync_group"]:
            groups.setdefault(inst["sync_group"], []).append(inst)
    if groups:
        lines.append("------< VRRP Sync groups >------")
        for name, members in groups.items():
            states = {m["state"] for m in members}
            state = states.pop() if len(states) == 1 else "FAULT" if "FAULT" in states else \
                "BACKUP"
            lines += [f" VRRP Sync Group = {name}, {state}", "   VRRP member instances :"]
            lines += [f"     {m['name']}" for m in members]
    return "\n".join(lines) + "\n"


def _vs_title(vs: VirtualServerStatus) -> str:
    key = vs["key"]
    if key.startswith("FWM "):
        return f" VS FWMARK = {key[4:]}"
    if key.startswith("GROUP "):
        return f" VS GROUP = {key[6:]}"
    addr, _proto, port = key.rsplit(":", 2)
    return f" VS VIP = {addr.strip('[]')}, VPORT = {port}"


def format_check_data(doc: StatusDocument) -> str:
    """``/tmp/keepalived_check.data``: global definitions, LVS topology, health checkers."""
    lines = _global(doc)
    lines.append("------< LVS Topology >------")
    lines.append(" System is compiled with LVS v1.2.1")
    for vs in doc["virtual_servers"]:
        lines += [" ------< Virtual server >------", _vs_title(vs),
                  f"   lvs_sched = {vs['scheduler']}",
                  f"   protocol = {vs['protocol'].upper()}",
                  f"   quorum = {vs['quorum']}, hysteresis = {vs['hysteresis']}",
                  f"   default forwarding method = {vs['lvs_method']}"]
        # keepalived's "alive" = the service is in IPVS; quorum is "quorum_state_up"
        lines.append(f"   alive = {int(vs['stats'] is not None)}")
        if vs["quorum_up"] is not None:
            lines.append(f"   quorum_state_up = {int(vs['quorum_up'])}")
        for rs in vs["real_servers"]:
            title = "Sorry server" if rs["sorry"] else "Real server"
            lines += [f"   ------< {title} >------",
                      f"   RIP = {rs['address']}, RPORT = {rs['port']}, "
                      f"WEIGHT = {rs['configured_weight']} EFF WEIGHT = {rs['weight']}",
                      f"   initial weight = {rs['configured_weight']}",
                      f"   effective weight = {rs['weight']}"]
            if rs["alive"] is not None:
                lines.append(f"   alive = {int(rs['alive'])}")
            lines.append(f"   num failed checkers = {sum(not c['up'] for c in rs['checkers'])}")
            lines.append(f"   RS set = {int(rs['ipvs_weight'] is not None)}")
    lines.append("------< Health checkers >------")
    for vs in doc["virtual_servers"]:
        for rs in vs["real_servers"]:
            for c in rs["checkers"]:
                server = f"[{rs['address']}]:{vs['protocol']}:{rs['port']}"
                lines += [f" {vs['key']} -> {server}",
                          "   Enabled = yes",
                          f"   Has run = {'yes' if c['runs'] else 'no'}",
                          "   Connection", f"     Dest = {c['target']}",
                          f"   Keepalive method = {c['kind']}"]
    return "\n".join(lines) + "\n"


def format_stats(doc: StatusDocument) -> str:
    """``/tmp/keepalived.stats``: keepalived's per-instance counters, its lines only."""
    lines: list[str] = []
    for i in doc["instances"]:
        c = i["counters"]
        d = c["drops"]
        lines += [f"VRRP Instance: {i['name']}",
                  "  Advertisements:",
                  f"    Received: {c['adverts_received']}",
                  f"    Sent: {c['adverts_sent']}",
                  f"  Became master: {c['became_master']}",
                  f"  Released master: {c['released_master']}",
                  "  Packet Errors:",
                  f"    Length: {d.get('length', 0)}",
                  f"    TTL: {d.get('ttl', 0)}",
                  f"    Invalid Type: {d.get('type', 0)}",
                  f"    Advertisement Interval: {d.get('advert_interval', 0)}",
                  f"    Address List: {d.get('vip_list', 0)}",
                  "  Authentication Errors:",
                  "    Invalid Type: 0",  # an auth type we do not know: counted as mismatch
                  f"    Type Mismatch: {d.get('auth_type', 0)}",
                  f"    Failure: {d.get('password', 0)}",
                  "  Priority Zero:",
                  f"    Received: {c['priority_zero_received']}",
                  f"    Sent: {c['priority_zero_sent']}"]
    return "\n".join(lines) + ("\n" if lines else "")


def write_file(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600 (as keepalived's files)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@dataclass(frozen=True)
class DumpPaths:
    data: str = DEFAULT_DATA
    check_data: str = DEFAULT_CHECK_DATA
    stats: str = DEFAULT_STATS


class DumpWriter:
    """SIGUSR1 -> data files, SIGUSR2 -> stats file.  The document is built on the loop (a
    consistent view of the runners); formatting and writing run in the default executor."""

    def __init__(self, document: Callable[[], StatusDocument],
                 paths: DumpPaths | None = None) -> None:
        self._document = document
        self.paths = paths or DumpPaths()
        self._tasks: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGUSR1, self.dump_data)
        self._loop.add_signal_handler(signal.SIGUSR2, self.dump_stats)

    def uninstall(self) -> None:
        if self._loop is not None:
            for sig in (signal.SIGUSR1, signal.SIGUSR2):
                self._loop.remove_signal_handler(sig)
            self._loop = None

    def dump_data(self) -> asyncio.Future[None]:
        doc = self._document()
        files: list[tuple[str, Callable[[StatusDocument], str]]] = [
            (self.paths.data, format_data)]
        if doc["virtual_servers"]:
            files.append((self.paths.check_data, format_check_data))
        return self._spawn(doc, files)

    def dump_stats(self) -> asyncio.Future[None]:
        return self._spawn(self._document(), [(self.paths.stats, format_stats)])

    def _spawn(self, doc: StatusDocument,
               files: list[tuple[str, Callable[[StatusDocument], str]]]) -> asyncio.Future[None]:
        def work() -> None:
            for path, fmt in files:
                try:
                    write_file(path, fmt(doc))
                    log.info("dump_written", path=path)
                except OSError as exc:
                    log.error("dump_failed", path=path, error=str(exc))

        loop = self._loop or asyncio.get_running_loop()
        fut = loop.run_in_executor(None, work)
        self._tasks.add(fut)
        fut.add_done_callback(self._tasks.discard)
        return fut

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class CheckDumpWriter(DumpWriter):
    """The checker process's writer (``-C``, the supervised checker child): as keepalived's
    checker child, SIGUSR1 writes only the check data file and SIGUSR2 writes nothing (the
    VRRP process owns ``keepalived.data`` and ``keepalived.stats``)."""

    def dump_data(self) -> asyncio.Future[None]:
        return self._spawn(self._document(), [(self.paths.check_data, format_check_data)])

    def dump_stats(self) -> asyncio.Future[None]:
        loop = self._loop or asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        return done
