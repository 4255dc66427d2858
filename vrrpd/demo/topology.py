"""The seed 000 topology (LVS-DR MyCAT) in network namespaces ``<prefix><hex>-<name>``.

    client (192.168.244.1 on br0, the LAN bridge lives here: client and router in one)
      ├── dir1  192.168.244.146  vrrpd, etc/seed000-mycat-master.conf (VI_1 MASTER, priority 100)
      ├── dir2  192.168.244.147  vrrpd, etc/seed000-mycat-backup.conf (VI_1 BACKUP, priority 99)
      ├── rs1   192.168.244.148  "mycat01" on :8066, VIP 192.168.244.10/32 on lo
      └── rs2   192.168.244.149  "mycat02" on :8066, VIP on lo

The seed's own addresses are used unchanged (they exist only inside our namespaces); the configs
get ``eth0`` for the seed's ``eno16777736``.  ``close()`` kills every process started here (by
process group, then whatever is left in our namespaces, by pid) and deletes the namespaces.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEED_DIR = REPO / "etc"
SEED_MASTER = "seed000-mycat-master.conf"
SEED_BACKUP = "seed000-mycat-backup.conf"
SEED_INTERFACE = "eno16777736"

SUBNET = "192.168.244"
VIP = f"{SUBNET}.10"
PORT = 8066
CLIENT_IP = f"{SUBNET}.1"


@dataclass(frozen=True)
class NodeSpec:
    name: str  # namespace suffix
    ip: str
    role: str  # "director" | "real_server"
    service: str  # the name the node's TCP/HTTP service answers with
    seed: str | None = None  # seed config of a director


NODES = (
    NodeSpec("dir1", f"{SUBNET}.146", "director", "dir1", SEED_MASTER),
    NodeSpec("dir2", f"{SUBNET}.147", "director", "dir2", SEED_BACKUP),
    NodeSpec("rs1", f"{SUBNET}.148", "real_server", "mycat01"),
    NodeSpec("rs2", f"{SUBNET}.149", "real_server", "mycat02"),
)


def derive_config(seed_text: str, *, interface: str = "eth0", persistence: bool = False) -> str:
    """The seed config adapted to a namespace: the interface renamed; unless ``persistence``,
    ``persistence_timeout`` commented out (the seed's own step 6 sets it to 0 so that one client's
    requests are spread round-robin instead of sticking to one real server for 50 s)."""
    out = ["! vrrpd demo: derived from the seed config (interface and persistence adapted)"]
    for line in seed_text.splitlines():
        words = line.split()
        if words[:2] == ["interface", SEED_INTERFACE]:
            line = line.replace(SEED_INTERFACE, interface, 1)
        elif words[:1] == ["persistence_timeout"] and not persistence:
            line = f"! {line.strip()}   ! demo: off, as the seed's step 6 does"
        out.append(line)
    return "\n".join(out) + "\n"


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 60.0,
        stdin: str | None = None) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def purge_namespace(ns: str) -> None:
    """Delete a namespace we created, first killing (by pid) whatever still runs in it: all of
    it was started by us, scripts spawned by daemons in their own process groups included."""
    for pid in run(["ip", "netns", "pids", ns], check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    run(["ip", "netns", "del", ns], check=False)


@dataclass
class Proc:
    """A process started in a namespace (``ip netns exec`` execs it: pid = the program, which
    leads its own process group)."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it does not go."""
        self.kill(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            return self.popen.wait(5)

    def tail(self, lines: int = 15) -> list[str]:
        try:
            return self.log.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return []


@dataclass
class Node:
    spec: NodeSpec
    ns: str
    port: str  # the veth end on the bridge (in the client namespace)
    procs: list[Proc] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ip(self) -> str:
        return self.spec.ip


class Topology:
    """Build with ``build()``; always ``close()`` (idempotent; also fine after a failed build)."""

    def __init__(self, prefix: str = "dm", python: str = sys.executable) -> None:
        self.id = f"{prefix}{secrets.token_hex(3)}"
        self.python = python
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.id}-"))
        self.client_ns = f"{self.id}-client"
        self.nodes: dict[str, Node] = {}
        self.namespaces: list[str] = []
        self.procs: list[Proc] = []

    # --- building -------------------------------------------------------------------------
    def _add_ns(self, name: str) -> str:
        self.namespaces.append(name)  # first: close() deletes whatever exists
        run(["ip", "netns", "add", name])
        run(["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
             "net.ipv6.conf.default.disable_ipv6=1"], check=False)
        return name

    def ip_batch(self, ns: str, lines: Sequence[str]) -> None:
        run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(lines) + "\n")

    def build(self) -> None:
        self._add_ns(self.client_ns)
        self.ip_batch(self.client_ns, [
            "link set lo up",
            "link add br0 type bridge stp_state 0 mcast_snooping 0",
            f"addr add {CLIENT_IP}/24 dev br0",
            "link set br0 up",
        ])
        for spec in NODES:
            ns = self._add_ns(f"{self.id}-{spec.name}")
            port = f"p-{spec.name}"
            self.ip_batch(self.client_ns, [
                f"link add {port} type veth peer name eth0 netns {ns}",
                f"link set {port} master br0 up",
            ])
            lines = ["link set lo up", f"addr add {spec.ip}/24 dev eth0", "link set eth0 up"]
            if spec.role == "real_server":  # the seed's realserver.sh: VIP on lo
                lines.append(f"addr add {VIP}/32 dev lo")
            self.ip_batch(ns, lines)
            if spec.role == "real_server":
                run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                     "net.ipv4.conf.lo.arp_ignore=1", "net.ipv4.conf.lo.arp_announce=2",
                     "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2"])
            self.nodes[spec.name] = Node(spec, ns, port)

    def directors(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.spec.role == "director"]

    def real_servers(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.spec.role == "real_server"]

    # --- processes ------------------------------------------------------------------------
    def spawn(self, node: Node, argv: Sequence[str], what: str) -> Proc:
        log = self.workdir / f"{len(self.procs):02d}-{node.name}-{what}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        with open(log, "wb") as out:
            popen = subprocess.Popen(["ip", "netns", "exec", node.ns, *argv], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True, env=env)
        proc = Proc(f"{node.name}/{what}", popen, log)
        self.procs.append(proc)
        node.procs.append(proc)
        return proc

    def start_service(self, node: Node) -> Proc:
        return self.spawn(node, [self.python, "-m", "vrrpd.demo.server", node.spec.service,
                                 "--port", str(PORT)], "service")

    def write_config(self, node: Node) -> Path:
        assert node.spec.seed is not None
        seed = (SEED_DIR / node.spec.seed).read_text()
        path = self.workdir / f"{node.name}-{node.spec.seed}"
        path.write_text(derive_config(seed))
        return path

    def start_vrrpd(self, node: Node, config: Path, *, vrrp_only: bool) -> Proc:
        argv = [self.python, "-m", "vrrpd", "-f", str(config), "-n", "-l",
                "--log-format", "json"]
        if vrrp_only:
            argv.append("-P")
        return self.spawn(node, argv, "vrrpd")

    # --- observing and breaking -----------------------------------------------------------
    def addresses(self, node: Node, dev: str = "eth0") -> list[str]:
        out = run(["ip", "-n", node.ns, "-j", "-4", "addr", "show", "dev", dev])
        return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(out or "[]")
                for a in link.get("addr_info", [])]

    def vip_holders(self) -> list[str]:
        return [n.name for n in self.directors() if f"{VIP}/32" in self.addresses(n)]

    def show_addr(self, node: Node) -> str:
        return run(["ip", "-n", node.ns, "-4", "addr", "show", "dev", "eth0"])

    def ipvsadm(self, node: Node) -> str:
        return run(["ip", "netns", "exec", node.ns, "ipvsadm", "-L", "-n"])

    def cut_link(self, node: Node) -> None:
        """Pull the node's cable: its bridge port goes down (eth0 loses carrier)."""
        run(["ip", "-n", self.client_ns, "link", "set", node.port, "down"])

    # --- teardown -------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.procs:
            proc.kill(signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(5)
        for ns in reversed(self.namespaces):
            purge_namespace(ns)
        self.namespaces.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)
