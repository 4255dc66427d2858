"""The seed 000 LVS-DR cluster for the end-to-end kernel tests (tests/kernel/test_e2e_lvs.py).

Built on the demo (``vrrpd.demo.topology``: client/router, dir1, dir2, rs1, rs2 in namespaces,
VIP on the real servers' lo with arp_ignore/arp_announce; ``vrrpd.demo.client``: ``NetnsWorker``,
``Load``; ``vrrpd.demo.script``: ``wait_for``, ``serving``).  Added here:

- ``director_config``: a seed 000 variant (the demo's ``derive_config``, then optionally
  ``lvs_sync_daemon eth0 VI_1`` in global_defs, other TCP_CHECK timings, another priority);
- ``start_director``: vrrpd (the demo's command) or keepalived 2.2.7 (per-namespace pid files);
- ``start_real_server``: ``e2e_server.py`` (short HTTP requests + long-lived line sessions,
  each connection and its own stop logged with CLOCK_MONOTONIC times);
- ``Sessions``: long-lived TCP connections from the client through the VIP (+ quiet ones);
- ``NsView``: VIP held?, IPVS destinations, connection table, ``net.ipv4.vs`` sysctls of a
  namespace, read from a thread living there (no process spawned);
- ``Cluster``: one topology kept across cases, directors (re)started only when needed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vrrpd.demo.client import NetnsWorker
from vrrpd.demo.report import DemoFailed
from vrrpd.demo.script import serving, wait_for
from vrrpd.demo.topology import (
    PORT,
    SEED_DIR,
    VIP,
    Node,
    Proc,
    Topology,
    derive_config,
    run,
)

SERVER = Path(__file__).with_name("e2e_server.py")
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
SYNC_ID = 51  # lvs_sync_daemon without `id`: the instance's virtual_router_id (both daemons)


@dataclass(frozen=True)
class CheckTimings:
    """TCP_CHECK timings written into every real server of the variant."""

    connect_timeout: int = 2
    retry: int = 1  # written as `retry` in place of the seed's `nb_get_retry`
    delay_before_retry: int = 3
    delay_loop: int = 1

    def detection_bound(self) -> float:
        """Longest stop -> removal: the next probe comes at most delay_loop after the last
        one, then `retry` more failures delay_before_retry apart, each at most connect_timeout."""
        return self.connect_timeout + self.retry * self.delay_before_retry + self.delay_loop


def director_config(seed: str, *, sync_daemon: bool, checks: CheckTimings | None,
                    priority: int | None = None, persistence: bool = False) -> str:
    """etc/``seed`` for a namespace director (eth0; persistence off unless asked: then every
    new connection is scheduled round-robin, so only a synced connection entry can keep an
    established connection on its real server after a takeover)."""
    text = derive_config((SEED_DIR / seed).read_text(), persistence=persistence)
    # seed keyword -> the line written instead (`retry`, not the seed's 1.x `nb_get_retry`:
    # keepalived 2.2.7 rejects that as an unknown keyword and would keep its default retry 1)
    lines: dict[str, str] = {} if checks is None else {
        "connect_timeout": f"connect_timeout {checks.connect_timeout}",
        "nb_get_retry": f"retry {checks.retry}",
        "delay_before_retry": f"delay_before_retry {checks.delay_before_retry}",
        "delay_loop": f"delay_loop {checks.delay_loop}"}
    if priority is not None:
        lines["priority"] = f"priority {priority}"
    out = []
    for line in text.splitlines():
        words = line.split()
        if words[:1] and words[0] in lines:
            line = f"{lines[words[0]]}   ! e2e test variant of: {line.strip()}"
        out.append(line)
        if sync_daemon and words[:2] == ["global_defs", "{"]:
            out.append("lvs_sync_daemon eth0 VI_1   ! e2e test: connection sync on the LAN")
    return "\n".join(out) + "\n"


def start_director(topo: Topology, node: Node, kind: str, config: Path) -> Proc:
    """``kind`` "vrrpd" (the demo's command) or "keepalived" (2.2.7, foreground, console log,
    its three pid files in the topology's work directory)."""
    if kind == "vrrpd":
        return topo.start_vrrpd(node, config, vrrp_only=False)
    if kind != "keepalived":
        raise ValueError(kind)
    pids = [str(topo.workdir / f"{node.name}-keepalived{s}.pid") for s in ("", "-vrrp", "-chk")]
    return topo.spawn(node, [KEEPALIVED, "-n", "-l", "-D", "-f", str(config), "-p", pids[0],
                             "-r", pids[1], "-c", pids[2]], "keepalived")


def start_real_server(topo: Topology, node: Node) -> Proc:
    return topo.spawn(node, [topo.python, str(SERVER), node.spec.service, "--port", str(PORT)],
                      "service")


def stopped_at(proc: Proc) -> float | None:
    """When the real server logged its stop (its listener closed)."""
    for line in proc.log.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) == 3 and words[2] == "stopped":
            return float(words[0])
    return None


def served_times(proc: Proc, kind: str | None = None) -> list[float]:
    """CLOCK_MONOTONIC times of the connections a real server logged (of one kind)."""
    times = []
    for line in proc.log.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) == 3 and words[2] != "stopped" and (kind is None or words[2] == kind):
            with contextlib.suppress(ValueError):
                times.append(float(words[0]))
    return times


# ---------------------------------------------------------------- IPVS connection table


@dataclass(frozen=True)
class Conn:
    protocol: str
    state: str
    source: str  # ip:port
    virtual: str
    destination: str


def _endpoint(addr: str, port: str) -> str:
    return f"{ipaddress.IPv4Address(int(addr, 16))}:{int(port, 16)}"


def _read_proc(name: str) -> str:
    # /proc/thread-self/net: the calling thread's namespace (a NetnsWorker thread's)
    with open(f"/proc/thread-self/net/{name}") as fh:
        return fh.read()


def _can_bind(address: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


class NsView:
    """Cheap looks into one namespace from a thread living there (no process spawned: under
    TCG an `ip`/`ipvsadm` run costs ~0.1 s of the guest's one vCPU, which the daemons need)."""

    def __init__(self, ns: str) -> None:
        self.worker = NetnsWorker(ns)

    def holds(self, address: str) -> bool:
        """``address`` is configured here (bindable; ip_nonlocal_bind is off)."""
        return self.worker.call(_can_bind, address)

    def dests(self) -> set[str]:
        """Every IPVS destination ``ip:port`` (/proc/net/ip_vs)."""
        out = set()
        for line in self.worker.call(_read_proc, "ip_vs").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "->" and words[1] != "RemoteAddress:Port":
                out.add(_endpoint(*words[1].split(":")))
        return out

    def connections(self) -> list[Conn]:
        """The IPVS connection table (/proc/net/ip_vs_conn, what ``ipvsadm -L -n -c`` lists)."""
        conns = []
        for line in self.worker.call(_read_proc, "ip_vs_conn").splitlines()[1:]:
            w = line.split()
            if len(w) >= 8:
                conns.append(Conn(w[0], w[7], _endpoint(w[1], w[2]), _endpoint(w[3], w[4]),
                                  _endpoint(w[5], w[6])))
        return conns

    def sysctl(self, name: str) -> str:
        """``net.ipv4.vs.NAME`` here (/proc/sys/net is the reading thread's namespace)."""
        return self.worker.call(_read_sysctl, name)

    def close(self) -> None:
        self.worker.close()


def _read_sysctl(name: str) -> str:
    with open(f"/proc/sys/net/ipv4/vs/{name}") as fh:
        return " ".join(fh.read().split())


def daemons(topo: Topology, node: Node) -> str:
    """``ipvsadm -L --daemon`` on ``node`` (the kernel's sync daemons)."""
    return run(["ip", "netns", "exec", node.ns, "ipvsadm", "-L", "--daemon"])


# ---------------------------------------------------------------- long-lived sessions


@dataclass
class Session:
    sock: socket.socket
    source: str  # the client's ip:port, as IPVS lists it
    server: str  # the real server that answered the first line


class Sessions:
    """``count`` TCP connections from the client namespace to VIP:PORT, each in line mode
    (answered once already), plus ``quiet`` connections that are only connected.

    A quiet connection has sent the director two packets (SYN, ACK): the kernel syncs a TCP
    connection on its ``sync_threshold``-th packet (3 by default), so its entry stays on the
    director that scheduled it -- the control showing that only synced entries survive."""

    def __init__(self, worker: NetnsWorker, count: int, *, quiet: int = 0,
                 timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.items: list[Session] = [worker.call(self._open, i) for i in range(count)]
        self.quiet: list[Session] = [worker.call(self._connect) for _ in range(quiet)]

    def _connect(self) -> Session:
        sock = socket.create_connection((VIP, PORT), timeout=self.timeout)
        ip, port = sock.getsockname()[:2]
        return Session(sock, f"{ip}:{port}", "")

    def _open(self, index: int) -> Session:
        session = self._connect()
        server = self._ask(session.sock, f"hello {index}")
        if server is None:
            session.sock.close()
            raise RuntimeError(f"session {index}: no answer through {VIP}:{PORT}")
        session.server = server
        return session

    def _ask(self, sock: socket.socket, text: str) -> str | None:
        """Send one line, read one line ``NAME text``; the name, or None (reset/timeout/EOF)."""
        try:
            sock.sendall(text.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
        except OSError:
            return None
        name, _, echoed = data.decode(errors="replace").strip().partition(" ")
        return name if echoed == text else None

    def ask_all(self, text: str) -> list[str | None]:
        """One line on every session (from this thread: the sockets live in the client
        namespace already); the answering server per session, None where it broke."""
        return [self._ask(s.sock, f"{text} {i}") for i, s in enumerate(self.items)]

    def ask_quiet(self, text: str, timeout: float = 3.0) -> list[str | None]:
        """The first line on every quiet connection."""
        for s in self.quiet:
            s.sock.settimeout(timeout)
        return [self._ask(s.sock, f"{text} {i}") for i, s in enumerate(self.quiet)]

    def close(self) -> None:
        for s in self.items + self.quiet:
            with contextlib.suppress(OSError):
                s.sock.close()


# ---------------------------------------------------------------- the cluster, kept per module


@dataclass
class Director:
    kind: str  # "vrrpd" | "keepalived"
    seed: str
    priority: int | None
    proc: Proc


class Cluster:
    """One topology for several cases: real servers restarted when a case stopped one,
    directors (re)started only when a case asks for another daemon or priority, a director
    that was "killed" reset first as after a reboot (cable back, VIP, IPVS table and kernel
    sync daemons gone)."""

    def __init__(self, checks: CheckTimings, *, sync_daemon: bool = True,
                 start_timeout: float = 240.0) -> None:
        self.topo = Topology(prefix="e2")
        self.checks = checks
        self.sync_daemon = sync_daemon
        self.start_timeout = start_timeout
        self.worker: NetnsWorker | None = None
        self.servers: dict[str, Proc] = {}
        self.directors: dict[str, Director] = {}
        self.views: dict[str, NsView] = {}
        self.killed: set[str] = set()  # directors killed on purpose (not watched by wait())

    def build(self) -> None:
        self.topo.build()
        self.worker = NetnsWorker(self.topo.client_ns)
        self.views = {d.name: NsView(d.ns) for d in self.topo.directors()}

    def vip_holders(self) -> list[str]:
        return [name for name, view in self.views.items() if view.holds(VIP)]

    def logs(self, lines: int = 25) -> str:
        """The end of every director daemon's log (for failure messages)."""
        return "\n".join(f"--- {name}: {d.kind} (rc {d.proc.popen.poll()}):\n"
                         + "\n".join(d.proc.tail(lines)) for name, d in self.directors.items())

    def wait(self, pred: Callable[[], object], timeout: float, what: str, *,
             interval: float = 0.5) -> float:
        """``wait_for`` failing as an AssertionError with the directors' logs."""
        procs = [d.proc for n, d in self.directors.items() if n not in self.killed]
        try:
            return wait_for(pred, timeout, what, procs=procs, interval=interval)
        except DemoFailed as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def node(self, name: str) -> Node:
        return self.topo.nodes[name]

    def ensure_servers(self) -> None:
        """Every real server's service running and answering on its own address."""
        assert self.worker is not None
        started = [rs for rs in self.topo.real_servers()
                   if rs.name not in self.servers or not self.servers[rs.name].alive()]
        for rs in started:
            self.servers[rs.name] = start_real_server(self.topo, rs)
        for rs in started:
            wait_for(serving(self.worker, rs.ip, rs.spec.service), self.start_timeout / 2,
                     f"{rs.spec.service} on {rs.ip}", procs=[self.servers[rs.name]])

    def ensure_director(self, name: str, kind: str, seed: str,
                        priority: int | None = None) -> Proc:
        node = self.node(name)
        have = self.directors.get(name)
        if (have is not None and have.proc.alive() and have.kind == kind and have.seed == seed
                and have.priority == priority):
            return have.proc
        if have is not None:
            have.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                have.proc.popen.wait(10)
        self.reset(node)
        self.killed.discard(name)
        path = self.topo.workdir / f"{name}-{kind}-{priority or 'seed'}.conf"
        path.write_text(director_config(seed, sync_daemon=self.sync_daemon, checks=self.checks,
                                        priority=priority))
        proc = start_director(self.topo, node, kind, path)
        self.directors[name] = Director(kind, seed, priority, proc)
        return proc

    def reset(self, node: Node) -> None:
        """A crashed director rebooted: cable in, no VIP, empty IPVS table, no sync daemon."""
        run(["ip", "-n", self.topo.client_ns, "link", "set", node.port, "up"])
        run(["ip", "-n", node.ns, "addr", "del", f"{VIP}/32", "dev", "eth0"], check=False)
        for argv in (["-C"], ["--stop-daemon", "master"], ["--stop-daemon", "backup"]):
            run(["ip", "netns", "exec", node.ns, "ipvsadm", *argv], check=False)

    def kill(self, name: str) -> tuple[float, float]:
        """The director dies: its daemon SIGKILLed (whole process group), then its cable
        pulled (a crashed machine takes its VIP and IPVS table with it; the kernel of a
        killed daemon's director would go on forwarding).  Returns the time of the kill
        (adverts stop) and the time the cable was out for sure (forwarding stops)."""
        self.killed.add(name)
        killed = time.monotonic()
        self.directors[name].proc.kill()
        self.topo.cut_link(self.node(name))
        return killed, time.monotonic()

    def close(self) -> None:
        for view in self.views.values():
            view.close()
        if self.worker is not None:
            self.worker.close()
        self.topo.close()


def poll(pred: Callable[[], object], timeout: float, interval: float = 0.1) -> float | None:
    """Seconds until ``pred()`` is truthy, None on timeout."""
    start = time.monotonic()
    while not pred():
        if time.monotonic() - start > timeout:
            return None
        time.sleep(interval)
    return time.monotonic() - start

