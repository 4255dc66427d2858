"""VRRP adapters against the real kernel, in two namespaces joined by a veth pair.

Namespaces ``va<random>a`` / ``va<random>b`` (removed in teardown, also on failure); A has
10.77.0.1/24 and MAC 02:00:00:77:00:01 (the director of the golden vectors), B 10.77.0.2/24.
The adapters run in child processes started with ``ip netns exec`` (tests/netns/va_helper.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.netns

HERE = Path(__file__).resolve().parent
HELPER = HERE / "va_helper.py"
VECTORS = HERE.parent / "unit" / "vrrpd" / "vrrp" / "vectors"
MAC_A = "02:00:00:77:00:01"


def _vector(name: str) -> bytes:
    return bytes.fromhex((VECTORS / name).read_text().strip())


def _ip(*argv: str) -> str:
    out = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=20)
    if out.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout


class Child:
    """A helper process in a namespace; JSON lines read with a deadline."""

    def __init__(self, ns: str, argv: list[str]) -> None:
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        assert self.popen.stdout is not None
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.popen.stdout, selectors.EVENT_READ)
        self._buf = b""
        self.lines: list[dict[str, Any]] = []

    def read(self, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                raise AssertionError(f"no output from helper: {self.stderr()}")
            assert self.popen.stdout is not None
            chunk = os.read(self.popen.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"helper exited: {self.stderr()}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg = json.loads(line)
        self.lines.append(msg)
        return msg

    def read_until(self, key: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        out = []
        while True:
            msg = self.read(timeout)
            out.append(msg)
            if key in msg:
                return out

    def stderr(self) -> str:
        if self.popen.poll() is None:
            return "(still running)"
        assert self.popen.stderr is not None
        return self.popen.stderr.read().decode(errors="replace")[-2000:]

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._sel.close()


@dataclass
class Pair:
    a: str
    b: str
    if_a: str = "vaA"
    if_b: str = "vaB"
    children: list[Child] = field(default_factory=list)

    def run(self, ns: str, *args: str) -> Child:
        child = Child(ns, [sys.executable, str(HELPER), *args])
        self.children.append(child)
        return child

    def start(self, ns: str, *args: str) -> Child:
        child = self.run(ns, *args)
        assert child.read().get("ready"), child.lines
        return child


@pytest.fixture
def pair() -> Iterator[Pair]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tag = secrets.token_hex(3)
    p = Pair(a=f"va{tag}a", b=f"va{tag}b")
    created: list[str] = []
    try:
        for ns in (p.a, p.b):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("-n", p.a, "link", "add", p.if_a, "type", "veth", "peer", "name", p.if_b,
            "netns", p.b)
        _ip("-n", p.a, "link", "set", p.if_a, "address", MAC_A)
        _ip("-n", p.a, "addr", "add", "10.77.0.1/24", "dev", p.if_a)
        _ip("-n", p.b, "addr", "add", "10.77.0.2/24", "dev", p.if_b)
        for ns, ifname in ((p.a, p.if_a), (p.b, p.if_b)):
            _ip("-n", ns, "link", "set", ifname, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        # wait for carrier on both ends
        deadline = time.monotonic() + 5
        while "LOWER_UP" not in _ip("-n", p.a, "link", "show", p.if_a):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield p
    finally:
        for child in p.children:
            child.kill()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def _pcap_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    frames, off = [], 24
    while off + 16 <= len(data):
        _s, _us, incl, _orig = struct.unpack_from("<IIII", data, off)
        frames.append(data[off + 16 : off + 16 + incl])
        off += 16 + incl
    return frames


@contextlib.contextmanager
def tcpdump(ns: str, ifname: str, bpf: str, expect: int = 1) -> Iterator[list[bytes]]:
    """Frames tcpdump captured; the list is filled when the block ends (after waiting up to
    5 s for ``expect`` frames to reach the file)."""
    frames: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="va-") as tmp:
        out = Path(tmp) / "cap.pcap"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-Z", "root", "--immediate-mode", "-i", ifname,
             "-n", "-U",
             "-w", str(out), bpf],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        try:
            assert proc.stderr is not None
            sel = selectors.DefaultSelector()
            sel.register(proc.stderr, selectors.EVENT_READ)
            assert sel.select(10), "tcpdump did not start"
            sel.close()
            os.set_blocking(proc.stderr.fileno(), False)
            yield frames
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if out.exists() and len(_pcap_frames(out)) >= expect:
                    break
                time.sleep(0.05)
            time.sleep(0.2)  # anything unexpected after that would show up too
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
            if out.exists():
                frames.extend(_pcap_frames(out))


def test_multicast_advert_reaches_peer_socket_and_tcpdump(pair: Pair) -> None:
    advert = _vector("vrrpv2_vrid52_noauth.ip.hex")  # 10.77.0.1 -> 224.0.0.18, ID 1
    with tcpdump(pair.b, pair.if_b, "ip proto 112") as frames:
        receiver = pair.start(pair.b, "recv", pair.if_b, "1", "10")
        sender = pair.start(pair.a, "send", pair.if_a, "224.0.0.18", advert.hex(), "0.5")
        sent = sender.read_until("sent")[-1]
        got = receiver.read_until("done")
    assert sender.lines[0]["primary"] == "10.77.0.1"
    assert sent["sent"] is True
    assert sent["echoed"] == 0  # IP_MULTICAST_LOOP 0: our own advert does not come back
    packets = [bytes.fromhex(m["packet"]) for m in got if "packet" in m]
    assert packets == [advert]  # byte-identical: TOS 0xC0, TTL 255, no DF, ID 1, checksum
    assert len(frames) == 1
    assert frames[0][:6] == bytes.fromhex("01005e000012")  # multicast MAC of 224.0.0.18
    assert frames[0][6:12] == bytes.fromhex(MAC_A.replace(":", ""))
    assert frames[0][14:] == advert


def _unicast(packet: bytes, dst: str) -> bytes:
    header = bytearray(packet[:20])
    header[16:20] = bytes(int(x) for x in dst.split("."))
    header[10:12] = b"\0\0"
    total = sum(struct.unpack("!10H", bytes(header)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    header[10:12] = struct.pack("!H", ~total & 0xFFFF)
    return bytes(header) + packet[20:]


def test_unicast_advert_without_multicast_membership(pair: Pair) -> None:
    advert = _unicast(_vector("vrrpv2_vrid51_auth_pass.ip.hex"), "10.77.0.2")
    # join=0: the receiving socket never joined 224.0.0.18; unicast must still arrive.
    receiver = pair.start(pair.b, "recv", pair.if_b, "1", "10", "0")
    sender = pair.start(pair.a, "send", pair.if_a, "10.77.0.2", advert.hex(), "0")
    assert sender.read_until("sent")[-1]["sent"] is True
    got = receiver.read_until("done")
    assert [bytes.fromhex(m["packet"]) for m in got if "packet" in m] == [advert]


def test_socket_without_membership_ignores_multicast(pair: Pair) -> None:
    advert = _vector("vrrpv2_vrid52_noauth.ip.hex")
    receiver = pair.start(pair.b, "recv", pair.if_b, "1", "1.5", "0")
    sender = pair.start(pair.a, "send", pair.if_a, "224.0.0.18", advert.hex(), "0")
    assert sender.read_until("sent")[-1]["sent"] is True
    assert receiver.read_until("done")[-1]["done"] == 0


def test_garp_frames_on_the_wire(pair: Pair) -> None:
    golden = _vector("garp_10.77.0.100.frame.hex")
    capture = pair.start(pair.b, "arpcap", pair.if_b, "4", "10")
    garp = pair.start(pair.a, "garp", pair.if_a, "10.77.0.100", "2", "0.6", "0")
    got = capture.read_until("done", timeout=15)
    frames = [(bytes.fromhex(m["frame"]), m["t"]) for m in got if "frame" in m]
    assert [f for f, _ in frames] == [golden] * 4  # byte-identical to keepalived's
    gap = frames[2][1] - frames[1][1]
    assert 0.5 <= gap < 1.5  # second burst garp_master_delay later
    assert frames[1][1] - frames[0][1] < 0.2
    result = garp.read_until("sent")[-1]
    assert result == {"sent": 4, "errors": 0, "active": False}


def test_vip_add_remove_with_label_brd_scope(pair: Pair) -> None:
    # Another subnet: the kernel wants a secondary address to share its primary's scope.
    add = pair.run(pair.a, "vip", "add", "192.168.77.100", "24", pair.if_a, "192.168.77.255",
                   "link", f"{pair.if_a}:vip")
    outcomes = [m["outcome"] for m in add.read_until("outcome") + add.read_until("outcome")
                if "outcome" in m]
    assert outcomes == ["added", "exists"]
    shown = _ip("-n", pair.a, "-4", "addr", "show", "dev", pair.if_a)
    assert f"inet 192.168.77.100/24 brd 192.168.77.255 scope link {pair.if_a}:vip" in shown
    rm = pair.run(pair.a, "vip", "remove", "192.168.77.100", "24", pair.if_a, "-", "global", "-")
    outcomes = [m["outcome"] for m in rm.read_until("outcome") + rm.read_until("outcome")
                if "outcome" in m]
    assert outcomes == ["removed", "absent"]
    assert "192.168.77.100" not in _ip("-n", pair.a, "-4", "addr", "show", "dev", pair.if_a)
    secondary = pair.run(pair.a, "vip", "add", "10.77.0.100", "24", pair.if_a, "10.77.0.255",
                         "global", f"{pair.if_a}:1")
    assert secondary.read_until("outcome")[-1]["outcome"] == "added"
    shown = _ip("-n", pair.a, "-4", "addr", "show", "dev", pair.if_a)
    assert f"inet 10.77.0.100/24 brd 10.77.0.255 scope global secondary {pair.if_a}:1" in shown
    bad = pair.run(pair.a, "vip", "add", "10.77.0.101", "32", "va-missing", "-", "global", "-")
    res = bad.read_until("outcome")[-1]
    assert res["outcome"] == "failed" and res["attempts"] == 3 and "va-missing" in res["error"]


def test_link_lookup(pair: Pair) -> None:
    child = pair.start(pair.a, "link", pair.if_a)
    info = child.read()
    assert info["mac"] == MAC_A.replace(":", "")
    assert info["primary"] == "10.77.0.1"
    assert info["running"] and info["admin_up"]
    assert ["10.77.0.1", 24] in info["addresses"]
    assert "va-nonexistent" in child.read()["lookup_error"]


def test_link_monitor_reports_carrier_loss_not_admin_state(pair: Pair) -> None:
    mon = pair.run(pair.a, "linkmon", "20")
    ready = mon.read()
    assert ready["initial"][pair.if_a] is True
    _ip("-n", pair.b, "link", "set", pair.if_b, "down")  # A stays admin-up, loses carrier
    down = mon.read_until("event")[-1]
    assert (down["event"], down["running"], down["admin_up"]) == (pair.if_a, False, True)
    _ip("-n", pair.b, "link", "set", pair.if_b, "up")
    up = mon.read_until("event")[-1]
    assert (up["event"], up["running"]) == (pair.if_a, True)
    _ip("-n", pair.a, "link", "set", pair.if_a, "down")
    admin = mon.read_until("event")[-1]
    assert (admin["event"], admin["running"], admin["admin_up"]) == (pair.if_a, False, False)


KEEPALIVED_CONF = """
global_defs {{
    router_id {router_id}
}}
vrrp_instance VI_1 {{
    state {state}
    interface {ifname}
    virtual_router_id 51
    priority {priority}
    advert_int 1
    authentication {{
        auth_type PASS
        auth_pass rigpass1
    }}
    virtual_ipaddress {{
        10.77.0.100
    }}
}}
"""


@contextlib.contextmanager
def keepalived(ns: str, ifname: str, state: str, priority: int) -> Iterator[None]:
    binary = shutil.which("keepalived") or "/usr/sbin/keepalived"
    if not Path(binary).exists():
        pytest.skip("keepalived not installed")
    with tempfile.TemporaryDirectory(prefix="va-ka-") as tmp:
        conf = Path(tmp) / "keepalived.conf"
        conf.write_text(KEEPALIVED_CONF.format(router_id=ns, state=state, ifname=ifname,
                                               priority=priority))
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, binary, "-P", "-n", "-l", "-D", "-f", str(conf),
             "-p", f"{tmp}/ka.pid", "-r", f"{tmp}/vrrp.pid"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        try:
            yield
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_our_socket_receives_keepalived_adverts(pair: Pair) -> None:
    """Interop, receive side: keepalived 2.2.7 as MASTER in A, our socket in B."""
    receiver = pair.start(pair.b, "recv", pair.if_b, "2", "15")
    with keepalived(pair.a, pair.if_a, "MASTER", 150):
        got = receiver.read_until("done", timeout=20)
    packets = [bytes.fromhex(m["packet"]) for m in got if "packet" in m]
    assert len(packets) == 2
    # keepalived's first advert is byte-identical to the golden capture (ID 1, prio 150)
    assert packets[0] == _vector("vrrpv2_vrid51_auth_pass.ip.hex")
    assert packets[1][4:6] == b"\x00\x02"  # IPv4 ID increments


def test_keepalived_accepts_our_adverts(pair: Pair) -> None:
    """Interop, send side: our socket's adverts (prio 150) keep keepalived (prio 100) BACKUP."""
    advert = _vector("vrrpv2_vrid51_auth_pass.ip.hex")

    def vip_on_b() -> bool:
        return "10.77.0.100" in _ip("-n", pair.b, "-4", "addr", "show", "dev", pair.if_b)

    sender = pair.start(pair.a, "sendloop", pair.if_a, "224.0.0.18", advert.hex(), "7", "1")
    with keepalived(pair.b, pair.if_b, "BACKUP", 100):
        deadline = time.monotonic() + 6.0  # > Master_Down_Interval (3.61 s) plus start-up
        while time.monotonic() < deadline:
            assert not vip_on_b(), "keepalived took over while our adverts were arriving"
            time.sleep(0.1)
        assert sender.read_until("sent", timeout=10)[-1]["sent"] == 7
        # control: once our adverts stop, keepalived takes over within Master_Down_Interval
        deadline = time.monotonic() + 6.0
        while not vip_on_b():
            assert time.monotonic() < deadline, "keepalived never took over: test is blind"
            time.sleep(0.1)


def test_ipv6_vip_added_without_dad(pair: Pair) -> None:
    """virtual_ipaddress_excluded may hold IPv6 addresses: usable at once (no DAD)."""
    add = pair.run(pair.a, "vip", "add", "2001:db8:77::100", "64", pair.if_a, "-", "global", "-")
    assert add.read_until("outcome")[-1]["outcome"] == "added"
    shown = _ip("-n", pair.a, "-6", "addr", "show", "dev", pair.if_a)
    assert "inet6 2001:db8:77::100/64 scope global nodad" in shown
    assert "tentative" not in shown.split("2001:db8:77::100", 1)[1].splitlines()[0]
    rm = pair.run(pair.a, "vip", "remove", "2001:db8:77::100", "64", pair.if_a, "-", "global",
                  "-")
    assert rm.read_until("outcome")[-1]["outcome"] == "removed"
