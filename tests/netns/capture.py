"""Observer capture: tcpdump writes a pcap in a namespace; scapy (tests only) decodes it.

scapy is deliberately an independent decoder of what the daemons put on the wire: the test
never uses vrrpd's own codec to judge vrrpd's packets.
"""

from __future__ import annotations

import contextlib
import signal
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Advert:
    time: float           # kernel capture timestamp (pcap), seconds since the epoch
    src_mac: str
    dst_mac: str
    src: str
    dst: str
    ttl: int
    tos: int
    ip_id: int
    df: bool
    version: int
    type: int
    vrid: int
    priority: int
    authtype: int
    adv_int: int
    checksum_ok: bool
    vips: tuple[str, ...]
    auth: bytes
    ip_bytes: bytes


@dataclass(frozen=True)
class Garp:
    time: float
    src_mac: str
    dst_mac: str
    op: int
    hwsrc: str
    psrc: str
    hwdst: str
    pdst: str
    frame: bytes

    @property
    def gratuitous(self) -> bool:
        return self.psrc == self.pdst


def describe(p: Advert | Garp) -> str:
    if isinstance(p, Advert):
        return (f"VRRP {p.src} > {p.dst} vrid {p.vrid} prio {p.priority} int {p.adv_int} "
                f"auth {p.authtype} vips {','.join(p.vips)}")
    return f"ARP op {p.op} {p.hwsrc} says {p.psrc} (to {p.pdst})"


def inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def decode(path: Path) -> list[Advert | Garp]:
    """Decode a pcap into adverts and ARP packets, in capture order."""
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP, Ether
    from scapy.layers.vrrp import VRRP
    from scapy.utils import PcapReader

    out: list[Advert | Garp] = []
    try:
        reader = PcapReader(str(path))
    except Exception:  # empty or header not yet written
        return out
    with reader:
        while True:
            try:
                pkt = reader.read_packet()
            except EOFError:
                break
            except Exception:  # a truncated tail while tcpdump is still writing
                break
            if pkt is None:
                break
            t = float(pkt.time)
            if not pkt.haslayer(Ether):
                continue
            eth = pkt[Ether]
            if pkt.haslayer(ARP):
                a = pkt[ARP]
                out.append(Garp(t, eth.src, eth.dst, int(a.op), a.hwsrc, a.psrc, a.hwdst,
                                a.pdst, bytes(pkt)))
            elif pkt.haslayer(IP) and pkt[IP].proto == 112:
                ip = pkt[IP]
                raw_ip = bytes(ip)[: ip.len]
                vrrp_bytes = raw_ip[ip.ihl * 4:]
                v = VRRP(vrrp_bytes)
                auth = vrrp_bytes[8 + 4 * int(v.ipcount):][:8]
                out.append(Advert(
                    t, eth.src, eth.dst, ip.src, ip.dst, int(ip.ttl), int(ip.tos), int(ip.id),
                    bool(int(ip.flags) & 0x2), int(v.version), int(v.type), int(v.vrid),
                    int(v.priority), int(v.authtype), int(v.adv),
                    inet_checksum(vrrp_bytes) == 0, tuple(str(x) for x in v.addrlist), auth,
                    raw_ip))
    return out


class Capture:
    """``tcpdump -U -w`` in a namespace; ``packets()`` may be read while it runs."""

    def __init__(self, pcap: Path, log: Path) -> None:
        self.pcap = pcap
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, ns: str, ifname: str, bpf: str, timeout: float = 10.0) -> None:
        with open(self.log, "wb") as err:
            self.popen = subprocess.Popen(
                ["ip", "netns", "exec", ns, "tcpdump", "-i", ifname, "-n", "-U", "-s", "0",
                 "--immediate-mode", "-w", str(self.pcap), bpf],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while b"listening on" not in self.log.read_bytes():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tcpdump did not start: {self.log.read_text()}")
            time.sleep(0.02)

    def packets(self) -> list[Advert | Garp]:
        return decode(self.pcap)

    def adverts(self, vrid: int | None = None) -> list[Advert]:
        return [p for p in self.packets()
                if isinstance(p, Advert) and (vrid is None or p.vrid == vrid)]

    def garps(self, ip: str | None = None) -> list[Garp]:
        return [p for p in self.packets()
                if isinstance(p, Garp) and p.gratuitous and (ip is None or p.psrc == ip)]

    def close(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            time.sleep(0.05)  # let the last packets be written
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
