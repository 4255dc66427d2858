"""Network namespaces inside the QEMU guest (IPVS tables are per namespace).

A ``GuestNetns`` has a loopback and a ``dummy0`` carrying default IPv4/IPv6 routes, so every
unicast address is routable and IPVS accepts DR/TUN destinations anywhere.  ``entered()``
switches the calling thread into the namespace (netlink sockets opened there stay there);
``run()``/``ipvsadm()`` execute a command in it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
IPVS_SCHEDULERS = (
    "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh",
)

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def sh(*argv: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc


def load_ipvs_modules() -> tuple[str, ...]:
    """modprobe ip_vs, every scheduler and the SIP persistence engine; the schedulers loaded."""
    sh("modprobe", "ip_vs")
    loaded = []
    for name in IPVS_SCHEDULERS:
        if sh("modprobe", f"ip_vs_{name}", check=False).returncode == 0:
            loaded.append(name)
    sh("modprobe", "ip_vs_pe_sip", check=False)
    return tuple(loaded)


@dataclass
class GuestNetns:
    name: str

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    @classmethod
    def create(cls, prefix: str = "vk") -> GuestNetns:
        ns = cls(f"{prefix}{secrets.token_hex(3)}")
        sh("ip", "netns", "add", ns.name)
        try:  # one `ip -batch`: every process start costs ~0.1 s in the guest
            ns.ip_batch(
                "link set lo up",
                "link add dummy0 type dummy",
                "link set dummy0 up",
                "addr add 10.255.0.1/16 dev dummy0",
                "addr add fd00:ffff::1/64 dev dummy0 nodad",
                "route add 0.0.0.0/0 dev dummy0",
                "route add ::/0 dev dummy0",
            )
        except BaseException:
            ns.delete()
            raise
        return ns

    def run(self, *argv: str, check: bool = True,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *argv, check=check, timeout=timeout)

    def ip(self, *args: str) -> str:
        return sh("ip", "-n", self.name, *args).stdout

    def ip_batch(self, *commands: str) -> None:
        """Several ``ip`` commands in this namespace with one process."""
        proc = subprocess.run(["ip", "-n", self.name, "-batch", "-"], input="\n".join(commands),
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"ip -batch in {self.name} -> {proc.returncode}: {proc.stderr}")

    def ipvsadm(self, *args: str, check: bool = True) -> str:
        """``ipvsadm ARGS`` in this namespace; its stdout (raises on failure when check)."""
        proc = self.run("ipvsadm", *args, check=check)
        return proc.stdout if proc.returncode == 0 else proc.stdout + proc.stderr

    @contextlib.contextmanager
    def entered(self) -> Iterator[GuestNetns]:
        """Run the calling thread in this namespace for the block."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield self
            finally:
                _setns(home)
        finally:
            os.close(target)
            os.close(home)

    def kill_processes(self) -> None:
        """SIGKILL every process left in the namespace (a test's teardown)."""
        for pid in sh("ip", "netns", "pids", self.name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    def delete(self) -> None:
        sh("ip", "netns", "del", self.name, check=False)
