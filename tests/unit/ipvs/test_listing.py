from __future__ import annotations

import ctypes
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from ipvs.listing import ipvsadm_sorted, render, service_line, version_string
from ipvs.model import (
    Destination,
    DestKey,
    Forward,
    ObservedDestination,
    ObservedService,
    Protocol,
    Service,
    ServiceKey,
)

VIP = IPv4Address("192.168.244.10")
SEED = ObservedService(
    Service(ServiceKey(socket.AF_INET, Protocol.TCP, VIP, 8066), "rr",
            frozenset({"persistent", "hashed"}), 50),
    (ObservedDestination(Destination(DestKey(IPv4Address("192.168.244.149"), 8066))),
     ObservedDestination(Destination(DestKey(IPv4Address("192.168.244.148"), 8066)))),
)

PAD = " " * 9  # ipvsadm pads the last column (InActConn) to 10 characters too
SEED_LISTING = f"""\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  192.168.244.10:8066 rr persistent 50
  -> 192.168.244.148:8066         Route   1      0          0{PAD}
  -> 192.168.244.149:8066         Route   1      0          0{PAD}
"""


def test_seed_listing_matches_ipvsadm_layout() -> None:
    assert render([SEED], version=0x010201, size=4096) == SEED_LISTING
    # the words an operator greps for, as in the seed's `ipvsadm -L`
    assert render([SEED]).split("\n")[3].split() == ["TCP", "192.168.244.10:8066", "rr",
                                                    "persistent", "50"]


def test_version_string() -> None:
    assert version_string(0x010201) == "1.2.1"
    assert version_string("1.2.1") == "1.2.1"


def test_service_flag_rendering() -> None:
    k = ServiceKey(socket.AF_INET, Protocol.UDP, VIP, 53)
    assert service_line(Service(k, "wlc")) == "UDP  192.168.244.10:53 wlc"
    assert (service_line(Service(k, "rr", frozenset({"persistent"}), 300, netmask=24))
            == "UDP  192.168.244.10:53 rr persistent 300 mask 255.255.255.0")
    assert (service_line(Service(k, "sh", frozenset({"onepacket", "sched-flag-1",
                                                     "sched-flag-2"})))
            == "UDP  192.168.244.10:53 sh (sh-fallback,sh-port) ops")
    assert (service_line(Service(k, "sh", frozenset({"onepacket", "sched-flag-1",
                                                     "persistent"}), 20))
            == "UDP  192.168.244.10:53 sh (sh-fallback) persistent 20 ops")
    assert service_line(Service(k, "mh", frozenset({"sched-flag-2"}))).endswith(" mh (mh-port)")
    assert service_line(Service(k, "wlc", frozenset({"sched-flag-3"}))).endswith(" wlc (flag-3)")
    fw6 = ServiceKey(socket.AF_INET6, fwmark=7)
    assert (service_line(Service(fw6, "rr", frozenset({"persistent"}), 50, netmask=64,
                                 pe_name="sip"))
            == "FWM  7 IPv6 rr persistent 50 mask 64 pe sip")
    v6 = ServiceKey(socket.AF_INET6, Protocol.SCTP, IPv6Address("2001:db8::1"), 80)
    # ipvsadm prints the protocol as "%-4s ": one blank after SCTP
    assert service_line(Service(v6, "wrr", netmask=128)) == "SCTP [2001:db8::1]:80 wrr"


def test_sorting_and_dest_columns() -> None:
    def svc(key: ServiceKey) -> ObservedService:
        return ObservedService(Service(key, "rr"))

    def tcp(addr: str, port: int = 1) -> ObservedService:
        return svc(ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address(addr), port))

    fw2 = svc(ServiceKey(socket.AF_INET, fwmark=2))
    fw1 = svc(ServiceKey(socket.AF_INET, fwmark=1))
    udp = svc(ServiceKey(socket.AF_INET, Protocol.UDP, IPv4Address("10.0.0.1"), 1))
    nat = ObservedService(tcp("10.0.0.10").service, (
        ObservedDestination(Destination(DestKey(IPv6Address("::1"), 80), weight=12,
                                        forward=Forward.NAT), 3, 1234567),))
    # as ipvsadm printed it in the guest: 192.168/16 sorts before 10/8 (wrapping subtraction)
    services = [fw2, udp, tcp("10.0.0.2"), fw1, nat, tcp("192.168.244.10", 8066),
                tcp("10.0.0.2", 0)]
    out = render(services).splitlines()[3:]
    assert [line.split()[1] for line in out if not line.startswith("  ->")] == [
        "192.168.244.10:8066", "10.0.0.2:0", "10.0.0.2:1", "10.0.0.10:1", "10.0.0.1:1", "1", "2"]
    assert "  -> [::1]:80                     Masq    12     3          1234567   " in out


def _glibc_qsort(values: list[int], cmp: Callable[[int, int], int]) -> list[int]:
    libc = ctypes.CDLL(None)
    proto = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                             ctypes.POINTER(ctypes.c_int))
    arr = (ctypes.c_int * len(values))(*values)
    c_cmp = proto(lambda a, b: cmp(a[0], b[0]))
    libc.qsort(arr, len(values), ctypes.sizeof(ctypes.c_int), c_cmp)
    return list(arr)


def _rock_paper_scissors(a: int, b: int) -> int:  # no total order exists
    return 0 if a % 3 == b % 3 else (-1 if (b - a) % 3 == 1 else 1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 20), max_size=40))
def test_merge_sort_replays_glibc_qsort_even_without_a_total_order(values: list[int]) -> None:
    # ipvsadm's order is whatever glibc's qsort makes of its comparator: replay it exactly
    assert ipvsadm_sorted(values, _rock_paper_scissors) == _glibc_qsort(values,
                                                                        _rock_paper_scissors)
