"""An ``ipvsadm -L -n`` style listing of observed IPVS state (pure).

Same layout as ipvsadm 1.31 so operators (and their scripts) read it the same
way, checked against the real ipvsadm in the kernel tier: the same column
widths (including the trailing blanks of destination lines), flags in the same
places, and the same order.  ipvsadm sorts services and destinations with a
comparator that subtracts addresses as wrapping 32-bit words (so 192.168.x.x
sorts before 10.x.x.x) and is not transitive for far-apart addresses; glibc's
qsort is a top-down merge sort, so :func:`ipvsadm_sorted` replays that merge
sort on the kernel's dump order to print the same order in every case.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv6Address
from typing import TypeVar

from ipvs.model import Address, Forward, ObservedDestination, ObservedService, Protocol, Service

FORWARD_NAMES = {
    Forward.NAT: "Masq",
    Forward.LOCAL: "Local",
    Forward.TUN: "Tunnel",
    Forward.DR: "Route",
    Forward.BYPASS: "Bypass",
}

# Scheduler flags 1..3 are printed under the scheduler's own names.
SCHED_FLAG_NAMES = {
    "sh": {"sched-flag-1": "sh-fallback", "sched-flag-2": "sh-port"},
    "mh": {"sched-flag-1": "mh-fallback", "sched-flag-2": "mh-port"},
}

HEADER_SERVICE = "Prot LocalAddress:Port Scheduler Flags"
HEADER_DEST = "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"


def version_string(version: int | str) -> str:
    """The kernel encodes IPVS version x.y.z as ``x << 16 | y << 8 | z``."""
    if isinstance(version, str):
        return version
    return f"{version >> 16}.{(version >> 8) & 0xFF}.{version & 0xFF}"


def addr_port(addr: Address, port: int) -> str:
    if isinstance(addr, IPv6Address):
        return f"[{addr}]:{port}"
    return f"{addr}:{port}"


def _netmask_text(s: Service) -> str | None:
    if s.key.af == socket.AF_INET6:
        return None if s.netmask == 128 else str(s.netmask)
    if s.netmask >= 32:
        return None
    bits = (0xFFFFFFFF << (32 - s.netmask)) & 0xFFFFFFFF
    return ".".join(str((bits >> sh) & 0xFF) for sh in (24, 16, 8, 0))


def sched_flags_text(s: Service) -> str:
    names = SCHED_FLAG_NAMES.get(s.scheduler, {})
    flags = [names.get(f"sched-flag-{i}", f"flag-{i}") for i in (1, 2, 3)
             if f"sched-flag-{i}" in s.flags]
    return f" ({','.join(flags)})" if flags else ""


def service_line(s: Service) -> str:
    k = s.key
    if k.fwmark:
        name = f"FWM  {k.fwmark}" + (" IPv6" if k.af == socket.AF_INET6 else "")
    else:
        assert k.addr is not None and k.protocol is not None
        name = f"{Protocol(k.protocol).name:<4} {addr_port(k.addr, k.port)}"  # "SCTP [..]"
    line = f"{name} {s.scheduler}{sched_flags_text(s)}"
    if "persistent" in s.flags:
        line += f" persistent {s.timeout}"
        mask = _netmask_text(s)
        if mask is not None:
            line += f" mask {mask}"
        if s.pe_name:
            line += f" pe {s.pe_name}"
    if "onepacket" in s.flags:
        line += " ops"
    return line


def dest_line(o: ObservedDestination) -> str:
    d = o.dest
    fwd = FORWARD_NAMES.get(d.forward, "Unknown")
    return (f"  -> {addr_port(d.key.addr, d.key.port):<28} {fwd:<7} {d.weight:<6} "
            f"{o.active_conns:<10} {o.inactive_conns:<10}")


T = TypeVar("T")


def _wrap32(diff: int) -> int:
    """The sign C gets from ``int r = a - b`` on two unsigned 32-bit words."""
    diff &= 0xFFFFFFFF
    return diff - (1 << 32) if diff & 0x80000000 else diff


def _cmp_addr(a: Address | None, b: Address | None) -> int:
    wa = a.packed if a is not None else b""
    wb = b.packed if b is not None else b""
    for i in range(0, min(len(wa), len(wb)), 4):
        r = _wrap32(int.from_bytes(wa[i:i + 4], "big") - int.from_bytes(wb[i:i + 4], "big"))
        if r:
            return r
    return 0


def cmp_services(a: ObservedService, b: ObservedService) -> int:
    ka, kb = a.service.key, b.service.key
    return (_wrap32(ka.fwmark - kb.fwmark) or ka.af - kb.af
            or int(ka.protocol or 0) - int(kb.protocol or 0)
            or _cmp_addr(ka.addr, kb.addr) or ka.port - kb.port)


def cmp_dests(a: ObservedDestination, b: ObservedDestination) -> int:
    da, db = a.dest.key, b.dest.key
    return (da.addr.version - db.addr.version or _cmp_addr(da.addr, db.addr)
            or da.port - db.port)


def ipvsadm_sorted(items: Sequence[T], cmp: Callable[[T, T], int]) -> list[T]:
    """glibc's qsort (top-down merge sort, left wins ties) with ipvsadm's comparator."""
    if len(items) <= 1:
        return list(items)
    half = len(items) // 2
    left = ipvsadm_sorted(items[:half], cmp)
    right = ipvsadm_sorted(items[half:], cmp)
    out: list[T] = []
    i = j = 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out.extend(left[i:])
    out.extend(right[j:])
    return out


def render(services: Iterable[ObservedService], *, version: int | str = "1.2.1",
           size: int = 4096) -> str:
    """The whole listing, newline-terminated, as ``ipvsadm -L -n`` prints it.

    Pass ``services`` in the kernel's dump order for an identical order in every case.
    """
    lines = [
        f"IP Virtual Server version {version_string(version)} (size={size})",
        HEADER_SERVICE,
        HEADER_DEST,
    ]
    for svc in ipvsadm_sorted(list(services), cmp_services):
        lines.append(service_line(svc.service))
        lines.extend(dest_line(o) for o in ipvsadm_sorted(svc.dests, cmp_dests))
    return "\n".join(lines) + "\n"
