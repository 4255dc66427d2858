"""Benchmark: VRRPv2 advert encode + decode per second, vrrpd's codec against scapy's.

One round = build the IPv4 packet of a 2-VIP PASS-auth advert and decode/validate it back.
vrrpd: ``encode_ip`` + ``decode`` (full receive validation); scapy: ``bytes(IP()/VRRP())`` +
``IP(bytes)`` (dissection only, no validation).  Best of 5 runs each; prints both and the ratio.
keepalived's codec is C inside the daemon and cannot be timed alone: scapy is the baseline
(the ``BENCH`` line says so).  Run: ``.venv/bin/python tests/bench/vrrp_codec.py [ROUNDS]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from bench_line import emit

from vrrpd.vrrp.packet import (
    Advert,
    AuthType,
    Received,
    RxExpectations,
    auth_data_for,
    decode,
    encode_ip,
)

SRC = IPv4Address("10.77.0.1")
DST = IPv4Address("224.0.0.18")
VIPS = (IPv4Address("10.77.0.200"), IPv4Address("10.77.0.201"))
AUTH = auth_data_for(AuthType.PASS, "rigpass1")


def best_rate(fn: Callable[[int], None], rounds: int, runs: int = 5) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(rounds)
        best = min(best, time.perf_counter() - t0)
    return rounds / best


def ours(rounds: int) -> None:
    advert = Advert(vrid=52, priority=150, advert_int=1, auth_type=AuthType.PASS,
                    auth_data=AUTH, addresses=VIPS)
    expect = RxExpectations(vrid=52, advert_int=1, auth_type=AuthType.PASS, auth_data=AUTH,
                            addresses=VIPS)
    for i in range(rounds):
        got = decode(encode_ip(advert, src=SRC, dst=DST, ident=i), expect=expect)
        assert isinstance(got, Received)


def make_scapy() -> Callable[[int], None]:
    from scapy.layers.inet import IP
    from scapy.layers.vrrp import VRRP

    def run(rounds: int) -> None:
        for i in range(rounds):
            pkt = IP(tos=0xC0, id=i & 0xFFFF, ttl=255, src=str(SRC), dst=str(DST)) / VRRP(
                vrid=52, priority=150, authtype=1, adv=1, addrlist=[str(a) for a in VIPS],
                auth1=int.from_bytes(AUTH[:4], "big"), auth2=int.from_bytes(AUTH[4:], "big"))
            got = IP(bytes(pkt))
            assert got[VRRP].vrid == 52

    return run


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    t0 = time.perf_counter()
    scapy_run = make_scapy()
    scapy_import = time.perf_counter() - t0
    ours_rate = best_rate(ours, rounds)
    scapy_rate = best_rate(scapy_run, max(1, rounds // 10))
    print(f"vrrpd codec : {ours_rate:12,.0f} encode+decode/s  ({1e6 / ours_rate:.2f} us each)")
    print(f"scapy       : {scapy_rate:12,.0f} encode+decode/s  ({1e6 / scapy_rate:.2f} us each)"
          f"  (import {scapy_import:.2f} s)")
    print(f"ratio       : vrrpd is {ours_rate / scapy_rate:.1f}x scapy")
    emit("VRRP advert encode+decode (one round)", "us", 1e6 / ours_rate, 1e6 / scapy_rate,
         baseline="scapy", note="vrrpd validates, scapy only dissects")


if __name__ == "__main__":
    main()
