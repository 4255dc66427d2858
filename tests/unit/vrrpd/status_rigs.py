"""Shared rigs for the operations tests (status, metrics, dumps): the REAL VrrpRunner on the
recording I/O fakes, and config text for an LvsRunner whose real checkers probe 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from ipaddress import IPv4Address
from typing import Any

from vrrpd.config.loader import load_text
from vrrpd.status_adapters import GarpCounter, TransitionRecorder
from vrrpd.vrrp.fakes import (
    FakeAddressManager,
    FakeGarpSender,
    FakeLinkMonitor,
    FakeProcessRunner,
    FakeSocketPool,
)
from vrrpd.vrrp.links import LinkCallback
from vrrpd.vrrp.packet import Advert, auth_data_for, encode_ip
from vrrpd.vrrp.runner import VrrpRunner

PEER = IPv4Address("10.0.0.9")
GROUP = IPv4Address("224.0.0.18")


def _instance(name: str, vrid: int, prio: int, vip: str) -> str:
    return (f"vrrp_instance {name} {{\n interface eth0\n virtual_router_id {vrid}\n"
            f" priority {prio}\n advert_int 1\n authentication {{\n auth_type PASS\n"
            f" auth_pass pw\n }}\n virtual_ipaddress {{\n {vip}/24\n }}\n}}\n")


VRRP_CONF = ("global_defs {\n router_id dir1\n}\n" + _instance("VI_1", 51, 100, "10.0.0.100")
             + _instance("VI_2", 52, 100, "10.0.0.200"))


class VrrpRig:
    def __init__(self) -> None:
        result = load_text(VRRP_CONF)
        assert not [d for d in result.diagnostics if d.severity.name != "WARNING"]
        self.pools: list[FakeSocketPool] = []
        self.recorder = TransitionRecorder()
        self.garps = GarpCounter(FakeGarpSender())
        addresses = FakeAddressManager.with_links("eth0", primary={"eth0": "10.0.0.1"})

        def pool(cb: Any) -> FakeSocketPool:
            self.pools.append(FakeSocketPool(cb))
            return self.pools[-1]

        def monitor(cb: LinkCallback) -> FakeLinkMonitor:
            return FakeLinkMonitor(cb, list(addresses.links.values()))

        self.runner = VrrpRunner(result.config, addresses=addresses, socket_pool=pool,
                                 garp_sender=self.garps, link_monitor=monitor,
                                 process_runner=FakeProcessRunner(),
                                 on_state=self.recorder.chain(None))

    def inject(self, vrid: int, prio: int, vip: str, pw: str = "pw") -> None:
        adv = Advert(vrid, prio, 1, 1, auth_data_for(1, pw), (IPv4Address(vip),))
        self.pools[0].inject(2, encode_ip(adv, src=PEER, dst=GROUP, ident=1))



@contextlib.contextmanager
def open_tcp_ports() -> Iterator[tuple[int, int]]:
    """(a listening port, a closed port) on 127.0.0.1."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    try:
        yield listener.getsockname()[1], dead_port
    finally:
        listener.close()


def lvs_conf(up: int, down: int) -> str:
    check = "TCP_CHECK {\n connect_timeout 1\n retry 0\n warmup 0\n }"
    return f"""
virtual_server 10.0.0.1 80 {{
  delay_loop 1
  lb_algo rr
  lb_kind NAT
  protocol TCP
  sorry_server 127.0.0.2 80
  real_server 127.0.0.1 {up} {{
    weight 3
    {check}
  }}
  real_server 127.0.0.1 {down} {{
    weight 1
    inhibit_on_failure
    {check}
  }}
}}
"""


