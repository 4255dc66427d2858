"""Two routers and an observer on one lab bridge: the shape of most VRRP evidence tests.

Hosts: ``a`` = 10.77.0.1 (MAC 02:00:00:77:00:01, the address of ../shared/vectors), ``b`` =
10.77.0.2, observer ``obs`` = 10.77.0.50 capturing ``vrrp or arp``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.netns import confs
from tests.netns.capture import Advert, Capture
from tests.netns.lab import Host, Lab, Proc, wait_until

VIP = "10.77.0.100"
VRID = 51
KINDS = ("vrrpd", "keepalived")
# (first router, second router): every role for each daemon, keepalived pair as the reference
PAIRS = [("vrrpd", "vrrpd"), ("vrrpd", "keepalived"), ("keepalived", "vrrpd"),
         ("keepalived", "keepalived")]
PAIR_IDS = ["vd-vd", "vd-ka", "ka-vd", "ka-ka"]


@dataclass
class Pair:
    lab: Lab
    a: Host
    b: Host
    obs: Host
    cap: Capture

    @classmethod
    def build(cls, lab: Lab) -> Pair:
        a, b, obs = lab.add_host("a", 1), lab.add_host("b", 2), lab.add_host("obs", 50)
        return cls(lab, a, b, obs, lab.capture(obs))

    def start(self, kind: str, host: Host, priority: int, *, vrid: int = VRID,
              vips: Sequence[str] = (f"{VIP}/24",), scripts: str = "", **kw: object) -> Proc:
        conf = confs.config(f"r-{host.name}", scripts,
                            confs.instance("VI_1", vrid=vrid, priority=priority, vips=vips,
                                           **kw))  # type: ignore[arg-type]
        return self.lab.daemon(kind, host, conf)

    def master_is(self, host: Host, vip: str = VIP) -> bool:
        other = self.b if host is self.a else self.a
        return host.has_ip(vip) and not other.has_ip(vip)

    def wait_master(self, host: Host, timeout: float, vip: str = VIP) -> None:
        wait_until(lambda: self.master_is(host, vip), timeout,
                   what=f"{host.name} alone holding {vip}")

    def adverts(self, host: Host | None = None, vrid: int = VRID) -> list[Advert]:
        return [p for p in self.cap.adverts(vrid) if host is None or p.src == host.ip]

    def hold_master(self, host: Host, seconds: float, vip: str = VIP) -> None:
        """Assert ``host`` stays the only holder of the VIP and the only advert sender."""
        t0 = time.time()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            assert self.master_is(host, vip), f"{host.name} lost mastership"
            time.sleep(0.1)
        senders = {p.src for p in self.cap.adverts() if p.time >= t0 and p.priority > 0}
        assert senders == {host.ip}, f"advert senders while {host.name} should be master: {senders}"
