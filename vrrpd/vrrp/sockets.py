"""Raw IP protocol 112 sockets on asyncio: one per interface, shared by every instance on it.

Each ``VrrpSocket`` is one raw socket (``AF_INET, SOCK_RAW, 112``), not bound to an address:
- ``SO_BINDTODEVICE`` to the interface, so it only sees that interface's traffic (multicast to
  224.0.0.18 after ``IP_ADD_MEMBERSHIP(224.0.0.18, ifindex)``, and unicast adverts addressed to
  this host, for ``unicast_peer``); ``IP_MULTICAST_ALL`` 0 so other sockets' groups stay out;
  ``IP_MULTICAST_LOOP`` 0 so our own multicast adverts do not come back to us.
- ``IP_HDRINCL``: ``send(packet, dst)`` takes the whole IPv4 packet from the codec
  (``packet.encode_ip(advert, src=, dst=, ident=)``: TOS 0xC0, TTL 255, no DF, ID from an
  ``IpIdent`` counter per instance); the kernel only fills in the header checksum.
- Received packets (the IPv4 header included: TTL and source are in the bytes) are handed to
  ``on_packet(data, ifindex)`` from a ``loop.add_reader`` callback; the loop never blocks.

Create sockets inside the running loop. ``VrrpSocketPool(on_packet)`` (a ``SocketPool``) opens
one ``VrrpSocket`` per interface on demand; the runner demultiplexes by ``ifindex`` and VRID.
``destinations(unicast_peers)`` says where one advert goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog

__all__ = [
    "VRRP_GROUP",
    "VRRP_PROTO",
    "IpIdent",
    "PacketCallback",
    "PacketTransport",
    "SocketPool",
    "VrrpSocket",
    "VrrpSocketPool",
    "destinations",
]

log = structlog.get_logger(__name__)

VRRP_PROTO = 112
VRRP_GROUP = "224.0.0.18"
_IP_MULTICAST_ALL = 49  # not exported by Python's socket module
_RCVBUF = 1 << 18
_MAX_PACKET = 65535

PacketCallback = Callable[[bytes, int], None]


def destinations(unicast_peers: Sequence[str] = ()) -> tuple[str, ...]:
    """Where one advertisement goes: each unicast peer in turn, else the VRRP multicast group."""
    return tuple(unicast_peers) if unicast_peers else (VRRP_GROUP,)


class IpIdent:
    """IPv4 identification counter, one per instance (keepalived's first advert carries ID 1)."""

    def __init__(self, start: int = 0) -> None:
        self._value = start & 0xFFFF

    def next(self) -> int:
        self._value = (self._value + 1) & 0xFFFF
        return self._value


class PacketTransport(Protocol):
    """What the runner needs from a per-interface VRRP socket."""

    @property
    def ifname(self) -> str: ...

    @property
    def ifindex(self) -> int: ...

    def send(self, packet: bytes, dst: str) -> bool:
        """Send one whole IPv4 packet to ``dst``; False (logged, counted) if the kernel refused."""
        ...

    def close(self) -> None: ...


class SocketPool(Protocol):
    """What the runner needs to get per-interface transports (``VrrpSocketPool``, fake)."""

    def get(self, ifname: str, ifindex: int, *, join_multicast: bool = True) -> PacketTransport:
        ...

    def close(self) -> None: ...


class VrrpSocket:
    """The raw protocol-112 socket of one interface (see the module docstring)."""

    def __init__(
        self,
        ifname: str,
        ifindex: int,
        on_packet: PacketCallback,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        join_multicast: bool = True,
    ) -> None:
        self._ifname = ifname
        self._ifindex = ifindex
        self._on_packet = on_packet
        self._loop = loop or asyncio.get_running_loop()
        self.received = 0
        self.sent = 0
        self.send_errors = 0
        self._joined = False
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, VRRP_PROTO)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode() + b"\0")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xC0)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self._mreqn("0.0.0.0"))
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock
        if join_multicast:
            self.join_multicast()
        self._loop.add_reader(sock.fileno(), self._readable)

    def join_multicast(self) -> None:
        """Join 224.0.0.18 on this interface (once; unicast-only interfaces need not)."""
        if self._joined or self._sock is None:
            return
        self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                              self._mreqn(VRRP_GROUP))
        self._joined = True

    @property
    def ifname(self) -> str:
        return self._ifname

    @property
    def ifindex(self) -> int:
        return self._ifindex

    def _mreqn(self, group: str) -> bytes:
        # struct ip_mreqn { in_addr imr_multiaddr; in_addr imr_address; int imr_ifindex; }
        return struct.pack("=4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"),
                           self._ifindex)

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(64):  # bounded batch, then let other callbacks run
            try:
                data, _anc, _flags, _addr = sock.recvmsg(_MAX_PACKET)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("vrrp recv failed", ifname=self._ifname, error=str(exc))
                return
            self.received += 1
            try:
                self._on_packet(data, self._ifindex)
            except Exception:
                log.exception("vrrp packet handler failed", ifname=self._ifname)

    def send(self, packet: bytes, dst: str) -> bool:
        sock = self._sock
        if sock is None:
            self.send_errors += 1
            return False
        try:
            sock.sendto(packet, (dst, 0))
        except OSError as exc:
            self.send_errors += 1
            log.warning("vrrp send failed", ifname=self._ifname, dst=dst, error=str(exc))
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(Exception):
            self._loop.remove_reader(sock.fileno())
        if self._joined:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP,
                                self._mreqn(VRRP_GROUP))
        sock.close()


class VrrpSocketPool:
    """One ``VrrpSocket`` per interface, opened on first ``get``; all deliver to ``on_packet``."""

    def __init__(self, on_packet: PacketCallback) -> None:
        self._on_packet = on_packet
        self._sockets: dict[int, VrrpSocket] = {}

    def get(self, ifname: str, ifindex: int, *, join_multicast: bool = True) -> VrrpSocket:
        sock = self._sockets.get(ifindex)
        if sock is None:
            sock = VrrpSocket(ifname, ifindex, self._on_packet, join_multicast=join_multicast)
            self._sockets[ifindex] = sock
        elif join_multicast:
            sock.join_multicast()
        return sock

    def sockets(self) -> tuple[VrrpSocket, ...]:
        return tuple(self._sockets.values())

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()


def _conformance() -> None:  # pragma: no cover - checked by mypy only
    _t: PacketTransport = VrrpSocket("lo", 1, lambda data, ifindex: None)
    _p: SocketPool = VrrpSocketPool(lambda data, ifindex: None)
