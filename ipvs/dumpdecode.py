"""Decoding big IPVS dumps cheaply, for the periodic full sync.

A 1,000 x 10 table is 11,000 reply payloads per sync.  Decoding each through
:mod:`ipvs.replies` (a dict of attributes, one ``struct`` call per field, five objects) costs
~40 us on a host and ~15x that in the TCG test guest: seconds of event loop per sync.  Here:

- a payload whose bytes equal one of the previous dump's is answered with the previous
  object (an idle table: nothing changed, nothing is built);
- otherwise a destination is unpacked by ONE precompiled ``struct`` for its attribute layout
  (the kernel always emits the same attributes in the same order; the layout is learnt from
  the first payload and every header is checked on each use, any other layout falls back to
  :func:`ipvs.replies.dest`), and its ``Destination`` (the configured part) is shared with
  earlier dumps when unchanged, so only counters are rebuilt.

Results are equal (``==``) to :func:`ipvs.replies.service` / :func:`ipvs.replies.dest`.

:meth:`DumpDecoder.prime` goes one step further for what we programmed ourselves: a
destination the kernel reports with exactly the values of a ``Destination`` we sent is decoded
as that very object (services likewise, :meth:`DumpDecoder.prime_service`), so the reconciler
recognises it by identity, without comparing fields.
"""

from __future__ import annotations

import operator
import socket
import struct
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from . import replies
from .model import (
    Destination,
    DestKey,
    Forward,
    ObservedDestination,
    ObservedService,
    Service,
    ServiceKey,
    Stats,
    TunnelType,
)

_NLA = struct.Struct("=HH")
_NTOHS = socket.ntohs
_HTONS = socket.htons
FWD_MASK = 0x0007
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_PAD4 = bytes(12)  # an IPv4 nf_inet_addr: the address, then zeros
_FORWARDS = {int(f): f for f in Forward}  # Forward(x) without the enum machinery
_TUNNELS = {int(t): t for t in TunnelType}

# scalar IPVS_DEST_ATTR_* -> (name, struct code, attribute length)
_DEST_SCALARS: dict[int, tuple[str, str, int]] = {
    replies.DEST_ADDR: ("addr", "16s", 20),
    replies.DEST_PORT: ("port", "H", 6),
    replies.DEST_FWD_METHOD: ("fwd", "I", 8),
    replies.DEST_WEIGHT: ("weight", "I", 8),
    replies.DEST_U_THRESH: ("u", "I", 8),
    replies.DEST_L_THRESH: ("l", "I", 8),
    replies.DEST_ACTIVE_CONNS: ("active", "I", 8),
    replies.DEST_INACT_CONNS: ("inact", "I", 8),
    replies.DEST_PERSIST_CONNS: ("persist", "I", 8),
    replies.DEST_ADDR_FAMILY: ("af", "H", 6),
    replies.DEST_TUN_TYPE: ("tun_type", "B", 5),
    replies.DEST_TUN_PORT: ("tun_port", "H", 6),
    replies.DEST_TUN_FLAGS: ("tun_flags", "H", 6),
}
_CONFIG = ("addr", "port", "fwd", "weight", "u", "l", "af", "tun_type", "tun_port", "tun_flags")
_CONNS = ("active", "inact", "persist")
_STATS_KINDS = range(1, 11)


class _Layout:
    """One compiled attribute layout of a GET_DEST reply payload."""

    def __init__(self, payload: bytes) -> None:
        fmt = ["="]
        index = 0
        headers: list[int] = []
        expected: list[int] = []
        fields: dict[str, int] = {}
        stats: dict[int, dict[int, int]] = {}

        def header(length: int, kind: int) -> None:
            nonlocal index
            fmt.append("HH")
            headers.extend((index, index + 1))
            expected.extend((length, kind))
            index += 2

        pos, end = 0, len(payload)
        while pos < end:
            if pos + 4 > end:
                raise ValueError("truncated attribute")
            length, kind = _NLA.unpack_from(payload, pos)
            if length < 4 or pos + length > end:
                raise ValueError("bad attribute length")
            padded = min((length + 3) & ~3, end - pos)
            header(length, kind)
            base = kind & 0x3FFF
            if base in (replies.DEST_STATS, replies.DEST_STATS64):
                sub = stats[base] = {}
                spos, send = pos + 4, pos + length
                while spos < send:
                    slen, skind = _NLA.unpack_from(payload, spos)
                    if slen < 4 or spos + slen > send:
                        raise ValueError("bad stats attribute")
                    header(slen, skind)
                    if skind in _STATS_KINDS and slen in (8, 12):
                        fmt.append("I" if slen == 8 else "Q")
                        sub[skind] = index
                        index += 1
                        fmt.append(f"{((slen + 3) & ~3) - slen}x")
                    else:
                        fmt.append(f"{((slen + 3) & ~3) - 4}x")
                    spos += (slen + 3) & ~3
                fmt.append(f"{padded - 4 - (spos - pos - 4)}x")
            elif base in _DEST_SCALARS and _DEST_SCALARS[base][2] == length:
                name, code, _ = _DEST_SCALARS[base]
                fmt.append(code)
                fields[name] = index
                index += 1
                fmt.append(f"{padded - length}x")
            else:
                fmt.append(f"{padded - 4}x")
            pos += padded
        self.struct = struct.Struct("".join(f for f in fmt if f not in ("0x",)))
        if self.struct.size != len(payload):
            raise ValueError("layout size mismatch")
        if "addr" not in fields:
            raise ValueError("no address")
        self.headers: Callable[[Any], Any] = operator.itemgetter(*headers)
        self.expected = tuple(expected)
        missing = index  # a trailing 0 is appended to every unpacked tuple
        self.config = operator.itemgetter(*(fields.get(n, missing) for n in _CONFIG))
        self.conns = operator.itemgetter(*(fields.get(n, missing) for n in _CONNS))
        chosen = stats.get(replies.DEST_STATS64) or stats.get(replies.DEST_STATS) or {}
        self.stats = operator.itemgetter(*(chosen.get(k, missing) for k in _STATS_KINDS))


class DumpDecoder:
    """Decodes the payloads of successive dumps; call :meth:`next_dump` before each dump."""

    def __init__(self) -> None:
        self._layouts: dict[int, _Layout | None] = {}  # by payload length
        self._services: tuple[dict[bytes, ObservedService], dict[bytes, ObservedService]] = (
            {}, {})
        self._dests: tuple[dict[tuple[int, bytes], ObservedDestination],
                           dict[tuple[int, bytes], ObservedDestination]] = ({}, {})
        # configured parts and counter sets seen lately (cleared when much bigger than a dump)
        self._configs: dict[tuple[Any, ...], Destination] = {}
        self._stats: dict[tuple[int, ...], Stats] = {}
        # id(service without dests) -> (it, it with its dests): objects of the last dump
        self._combined: dict[int, tuple[ObservedService, ObservedService]] = {}
        self._combined_next: dict[int, tuple[ObservedService, ObservedService]] = {}
        self.reused = self.fast = self.slow = 0  # counters of the last dump
        self.generation = 0  # +1 each time the primed destinations are forgotten
        # objects a prime replaced, by id (kept alive, so that no other object takes the id)
        self._replaced: dict[int, object] = {}
        self._our_services: dict[ServiceKey, Service] = {}  # primed services
        self._replaced_dumps = 0

    def next_dump(self) -> None:
        """Forget everything older than the previous dump (bounds the caches)."""
        self._services = (self._services[1], {})
        self._dests = (self._dests[1], {})
        self._combined, self._combined_next = self._combined_next, {}
        limit = 2 * max(4096, len(self._dests[0]))
        if len(self._configs) > limit or len(self._our_services) > limit:
            self._configs = {}
            self._our_services = {}
            self.generation += 1  # what was primed is forgotten too
        if len(self._stats) > limit:
            self._stats = {}
        if self._replaced:  # two dumps later no cached payload can decode to them any more
            self._replaced_dumps -= 1
            if self._replaced_dumps < 0:
                self._replaced = {}
        self.reused = self.fast = self.slow = 0

    def prime(self, service_af: int, dests: Iterable[Destination]) -> None:
        """Decode a destination reported with exactly the values of one of ``dests`` (of a
        service of family ``service_af``) as that object: what we programmed comes back
        identical.  A destination whose values would not decode back to an equal object
        (scoped IPv6, an ``af`` equal to the service's) is skipped; the kernel reporting
        other values simply misses."""
        configs = self._configs
        for dest in dests:
            key = dest.key
            addr = key.addr
            family = dest.af or service_af
            if family == _AF_INET and type(addr) is IPv4Address:
                raw = addr.packed + _PAD4
            elif (family == _AF_INET6 and type(addr) is IPv6Address
                  and addr.scope_id is None):
                raw = addr.packed
            else:
                continue
            if dest.af == service_af:
                continue  # decodes as 0 (the service's family)
            config = (raw, _HTONS(key.port), int(dest.forward), dest.weight, dest.u_threshold,
                      dest.l_threshold, family, int(dest.tun_type), _HTONS(dest.tun_port),
                      dest.tun_flags, service_af)
            before = configs.get(config)
            if before is not dest:
                configs[config] = dest
                if before is not None:  # payloads cached with the old object: decode again
                    self._replaced[id(before)] = before
                    self._replaced_dumps = 1

    def decode_again(self, objects: Iterable[object]) -> None:
        """Payloads cached as decoding to one of ``objects`` are decoded again (by the
        current primes) in the next two dumps."""
        for obj in objects:
            self._replaced[id(obj)] = obj
            self._replaced_dumps = 1

    def prime_service(self, service: Service) -> None:
        """Decode the service reported with exactly the values of ``service`` as that object
        (as :meth:`prime` for destinations)."""
        before = self._our_services.get(service.key)
        if before is not service:
            self._our_services[service.key] = service
            if before is not None:
                self._replaced[id(before)] = before
                self._replaced_dumps = 1

    def service(self, payload: bytes) -> ObservedService:
        old, new = self._services
        found = new.get(payload) or old.get(payload)
        if found is None or (self._replaced and id(found.service) in self._replaced):
            found = replies.service(payload)
            ours = self._our_services.get(found.service.key)
            if ours is not None and ours == found.service:
                found = ObservedService(ours, found.dests, found.stats)
        else:
            self.reused += 1
        new[payload] = found
        return found

    def with_dests(self, service: ObservedService,
                   dests: tuple[ObservedDestination, ...]) -> ObservedService:
        """``service`` with ``dests``: the previous dump's object when both are unchanged."""
        if not dests:
            return service
        old = self._combined.get(id(service))
        if old is not None and old[0] is service and len(old[1].dests) == len(dests) and all(
                map(operator.is_, old[1].dests, dests)):
            combined = old[1]
        else:
            combined = ObservedService(service.service, dests, service.stats)
        self._combined_next[id(service)] = (service, combined)
        return combined

    def dest(self, payload: bytes, service_af: int) -> ObservedDestination:
        old, new = self._dests
        key = (service_af, payload)
        found = new.get(key) or old.get(key)
        if found is None or (self._replaced and id(found.dest) in self._replaced):
            found = self._decode(payload, service_af)
        else:
            self.reused += 1
        new[key] = found
        return found

    def _decode(self, payload: bytes, service_af: int) -> ObservedDestination:
        size = len(payload)
        if size in self._layouts:
            layout = self._layouts[size]
        else:
            try:
                layout = _Layout(payload)
            except (ValueError, struct.error):
                layout = None
            self._layouts[size] = layout
        if layout is not None:
            values = (*layout.struct.unpack_from(payload), 0)
            if layout.headers(values) == layout.expected:
                self.fast += 1
                return self._build(layout, values, service_af)
        self.slow += 1
        return replies.dest(payload, service_af)

    def _build(self, layout: _Layout, values: tuple[Any, ...],
               service_af: int) -> ObservedDestination:
        config = (*layout.config(values), service_af)
        dest = self._configs.get(config)
        if dest is None:
            addr, port, fwd, weight, u, low, af, tun_type, tun_port, tun_flags, _ = config
            af = af or service_af
            forward = _FORWARDS.get(fwd & FWD_MASK)
            tunnel = _TUNNELS.get(tun_type)  # (None: the enum's own ValueError below)
            dest = Destination(
                DestKey(IPv6Address(addr) if af == _AF_INET6 else IPv4Address(addr[:4]),
                        _NTOHS(port)),
                weight, Forward(fwd & FWD_MASK) if forward is None else forward, u, low,
                0 if af == service_af else af,
                TunnelType(tun_type) if tunnel is None else tunnel, _NTOHS(tun_port),
                tun_flags)
            self._configs[config] = dest
        counters = layout.stats(values)
        stats = self._stats.get(counters)
        if stats is None:
            stats = self._stats[counters] = Stats(*counters)
        active, inact, persist = layout.conns(values)
        return ObservedDestination(dest, active, inact, persist, stats)
