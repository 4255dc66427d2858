"""Namespace lab: a bridge in its own namespace, hosts on it, daemons run inside the hosts.

Everything is created inside namespaces named ``<prefix><random>-<name>``; nothing touches the
host's own interfaces.  ``Lab.close()`` kills every process the lab started (by process group)
and deletes every namespace; the ``lab`` fixture in conftest.py calls it even on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns.capture import Capture, describe
from vrrpd.demo.topology import purge_namespace

REPO = Path(__file__).resolve().parents[2]
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 20.0) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def wait_until(pred: Callable[[], object], timeout: float, interval: float = 0.05,
               what: str = "condition") -> None:
    """Poll ``pred`` until truthy; raise AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Proc:
    """A process started in a host namespace.  ``ip netns exec`` execs the command, so
    ``popen.pid`` is the program itself; it leads its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    pid_files: tuple[Path, ...] = ()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def crash(self) -> None:
        """SIGKILL the whole process group at once (keepalived's children included), so
        nothing gets the chance to send priority 0."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(5)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        self.signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Host:
    lab: Lab
    name: str
    ns: str
    ip: str
    prefixlen: int
    mac: str
    port: str  # the veth end on the bridge, in the bridge namespace
    ifname: str = "eth0"

    def exec(self, *argv: str, check: bool = True, timeout: float = 20.0) -> str:
        return run(["ip", "netns", "exec", self.ns, *argv], check=check, timeout=timeout)

    def ip_cmd(self, *argv: str, check: bool = True) -> str:
        return run(["ip", "-n", self.ns, *argv], check=check)

    def addrs(self, ifname: str | None = None) -> list[str]:
        """IPv4 addresses on the interface as ``a.b.c.d/len``, in kernel order."""
        out = self.ip_cmd("-j", "-4", "addr", "show", "dev", ifname or self.ifname)
        return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out or "[]")
                for a in link.get("addr_info", [])]

    def has_ip(self, ip: str) -> bool:
        return any(a.split("/")[0] == ip for a in self.addrs())

    def carrier(self, up: bool) -> None:
        """Take the bridge-side veth end down/up: eth0 here loses carrier but stays admin up."""
        run(["ip", "-n", self.lab.bridge_ns, "link", "set", self.port, "up" if up else "down"])

    def admin(self, up: bool) -> None:
        self.ip_cmd("link", "set", self.ifname, "up" if up else "down")

    def block_multicast(self) -> None:
        """Drop VRRP multicast (to 224.0.0.18) in and out of this host with nftables."""
        rules = ("table ip vrlab {\n"
                 " chain in { type filter hook input priority 0; ip daddr 224.0.0.18 drop; }\n"
                 " chain out { type filter hook output priority 0; ip daddr 224.0.0.18 drop; }\n"
                 "}\n")
        path = self.lab.write(f"{self.name}-nft-block.conf", rules)
        self.exec("nft", "-f", str(path))

    def unblock_multicast(self) -> None:
        self.exec("nft", "delete", "table", "ip", "vrlab")


@dataclass
class Lab:
    prefix: str = "vr"
    subnet: str = "10.77.0"
    id: str = field(default="")
    hosts: dict[str, Host] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    tmp: Path = field(default=Path())
    _seq: int = 0

    def __post_init__(self) -> None:
        self.id = self.id or f"{self.prefix}{secrets.token_hex(3)}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.id}-"))
        try:
            self.bridge_ns = self._add_ns("br")
            run(["ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge",
                 "stp_state", "0", "mcast_snooping", "0"])
            run(["ip", "-n", self.bridge_ns, "link", "set", "br0", "up"])
        except BaseException:
            self.close()
            raise

    def _add_ns(self, name: str) -> str:
        ns = f"{self.id}-{name}"
        self.namespaces.append(ns)  # before creating it: close() deletes whatever exists
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    # --- topology -------------------------------------------------------------------------
    def add_host(self, name: str, index: int | None = None) -> Host:
        index = index if index is not None else len(self.hosts) + 1
        ns = self._add_ns(name)
        with contextlib.suppress(RuntimeError):  # no IPv6 noise on the wire
            run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        port = f"p{index}-{name}"[:15]
        run(["ip", "-n", self.bridge_ns, "link", "add", port, "type", "veth",
             "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0", "up"])
        mac = f"02:00:00:77:00:{index:02x}"
        host = Host(self, name, ns, f"{self.subnet}.{index}", 24, mac, port)
        host.ip_cmd("link", "set", "eth0", "address", mac)
        host.ip_cmd("addr", "add", f"{host.ip}/24", "dev", "eth0")
        host.ip_cmd("link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    # --- processes ------------------------------------------------------------------------
    def spawn(self, host: Host, argv: Sequence[str], name: str,
              pid_files: tuple[Path, ...] = (), env: dict[str, str] | None = None) -> Proc:
        self._seq += 1
        log = self.tmp / f"{self._seq:02d}-{host.name}-{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(["ip", "netns", "exec", host.ns, *argv], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=env)
        proc = Proc(f"{host.name}/{name}", popen, log, pid_files)
        self.procs.append(proc)
        return proc

    def write(self, name: str, text: str, mode: int = 0o644) -> Path:
        path = self.tmp / name
        path.write_text(text)
        path.chmod(mode)
        return path

    def keepalived(self, host: Host, conf: str) -> Proc:
        """keepalived 2.2.7, VRRP only, foreground, with its own pid files."""
        self._seq += 1
        tag = f"{host.name}-ka{self._seq}"
        cfg = self.write(f"{tag}.conf", conf)
        pid, vpid = self.tmp / f"{tag}.pid", self.tmp / f"{tag}.vrrp.pid"
        return self.spawn(host, [KEEPALIVED, "-P", "-n", "-l", "-D", "-f", str(cfg),
                                 "-p", str(pid), "-r", str(vpid)], "keepalived", (pid, vpid))

    def vrrpd(self, host: Host, conf: str, *extra: str) -> Proc:
        """vrrpd from this checkout, same options as keepalived."""
        self._seq += 1
        tag = f"{host.name}-vd{self._seq}"
        cfg = self.write(f"{tag}.conf", conf)
        pid = self.tmp / f"{tag}.pid"
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        return self.spawn(host, [sys.executable, "-m", "vrrpd", "-P", "-n", "-l", "-D",
                                 "-f", str(cfg), "-p", str(pid), "--log-format", "json",
                                 "--log-level", "debug", *extra], "vrrpd", (pid,), env)

    def daemon(self, kind: str, host: Host, conf: str) -> Proc:
        if kind == "keepalived":
            return self.keepalived(host, conf)
        if kind == "vrrpd":
            return self.vrrpd(host, conf)
        raise ValueError(kind)

    def capture(self, host: Host, bpf: str = "vrrp or arp") -> Capture:
        self._seq += 1
        cap = Capture(self.tmp / f"{self._seq:02d}-{host.name}.pcap",
                      self.tmp / f"{self._seq:02d}-{host.name}.tcpdump.log")
        cap.start(host.ns, host.ifname, bpf)
        self.captures.append(cap)
        return cap

    # --- teardown -------------------------------------------------------------------------
    def logs(self) -> str:
        parts = []
        for p in self.procs:
            text = p.output()
            parts.append(f"----- {p.name} (pid {p.pid}, rc {p.popen.returncode}) -----\n"
                         f"{text[-6000:]}")
        for cap in self.captures:
            parts.append(f"----- capture {cap.pcap.name} -----")
            try:
                pkts = cap.packets()
            except Exception as exc:  # diagnostics only
                parts.append(f"unreadable: {exc}")
                continue
            t0 = pkts[0].time if pkts else 0.0
            parts += [f"{p.time - t0:9.4f} {describe(p)}" for p in pkts[-80:]]
        return "\n".join(parts)

    def close(self) -> None:
        for cap in self.captures:
            cap.close()
        for p in self.procs:
            if p.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.popen.wait(5)
        for ns in reversed(self.namespaces):
            purge_namespace(ns)
        self.namespaces.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)
