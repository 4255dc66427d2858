"""IPVS over a plain netlink socket: pipelined writes and whole-table dumps, no pyroute2.

Programming 1,000 services x 10 destinations one awaited request at a time costs a netlink
round trip, an acknowledgement and a pyroute2 NLA encode per entry.  Here requests are
encoded with ``struct`` (:mod:`ipvs.wire`, byte-identical to ``ipvs.netlink`` + pyroute2) and
packed up to 256 per datagram.  The kernel runs every message of a datagram in order, inside
the ``sendmsg`` call, and answers only failures -- except the datagram's last message, which
asks for an acknowledgement and so marks the end of the answers: one reply per datagram
instead of one per request.  A failure of one message does not stop the others.

Replies are read with non-blocking ``recv_into`` in a loop (generic netlink answers within
``sendmsg``, so the data is already queued) and only wait on the event loop when it is not.
Dumps are decoded by :class:`ipvs.dumpdecode.DumpDecoder` (unchanged entries cost nothing;
destinations we programmed come back as the very objects we sent).

:class:`BatchSender` also implements ``vrrpd.lvs_kernel.IpvsBackend``: it is the LVS runner's
default kernel client (``ipvs.client.IPVSClient`` stays the complete, pyroute2-based client).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import socket
from collections.abc import Iterable, Sequence
from ipaddress import IPv6Address

from . import replies
from .dumpdecode import DumpDecoder
from .errors import Exists, IPVSError, IPVSPermissionError, IPVSUnavailable, NotFound
from .model import (
    Destination,
    DestKey,
    ObservedDestination,
    ObservedService,
    Service,
    ServiceKey,
    SyncDaemon,
    SyncState,
    Timeouts,
)
from .nlmsg import HEADER as _HEADER
from .nlmsg import (
    NETLINK_CAP_ACK,
    NETLINK_GENERIC,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOL_NETLINK,
    encode,
    error_code,
    family_id,
    family_request,
    messages,
)
from .nlmsg import NLA as _NLA
from .reconcile import AddDest, AddService, DelDest, DelService, EditDest, EditService, Flush, Op
from .wire import (
    DEST_KEY_FIELDS,
    DEST_KEY_LEN,
    DEST_LEN,
    Cmd,
    daemon_attr,
    daemon_state_attr,
    dest_attr,
    dest_key_attr,
    dest_request,
    service_key_attr,
    service_nla,
    timeouts_attrs,
)
from .wire import nested as _nested

CHUNK = 256  # messages per datagram (~37 KB of destination adds)
DUMP_YIELD = 32  # destination dumps between two returns to the event loop
BUFSIZE = 1 << 18  # larger than any dump skb the kernel builds (<= 32 KB)
CMD_SERVICE, CMD_DEST = 1, 2  # IPVS_CMD_ATTR_*
REPLY_TIMEOUT = 30.0  # seconds without any reply data -> TimeoutError

PRIME_MAX = 1 << 17  # programmed destinations remembered for the next dump (then dropped)

_NEW_DEST, _SET_DEST, _DEL_DEST = int(Cmd.NEW_DEST), int(Cmd.SET_DEST), int(Cmd.DEL_DEST)
_HTONS = socket.htons
_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6


def op_payload(op: Op) -> tuple[Cmd, bytes]:
    """The command and the attributes of one operation (as ``ipvs.client`` sends them)."""
    if isinstance(op, AddDest):
        return Cmd.NEW_DEST, service_key_attr(op.service) + dest_attr(op.dest)
    if isinstance(op, DelDest):
        return Cmd.DEL_DEST, service_key_attr(op.service) + dest_key_attr(op.dest)
    if isinstance(op, EditDest):
        return Cmd.SET_DEST, service_key_attr(op.service) + dest_attr(op.dest)
    if isinstance(op, AddService):
        return Cmd.NEW_SERVICE, _nested(1, service_nla(op.service))
    if isinstance(op, EditService):
        return Cmd.SET_SERVICE, _nested(1, service_nla(op.service))
    if isinstance(op, DelService):
        return Cmd.DEL_SERVICE, service_key_attr(op.key)
    assert isinstance(op, Flush)
    return Cmd.FLUSH, b""


def encode_ops(family: int, first: int, ops: Sequence[Op]) -> bytes:
    """One datagram: every op as one request, sequence numbers from ``first``, only the last
    asking for an acknowledgement.  The bytes of :func:`encode` over :func:`op_payload`
    (tested); a run of destination ops of one service encodes its identity once, and a full
    destination request is one ``struct`` pack (the fields of :func:`ipvs.wire.dest_attr`)."""
    parts: list[bytes] = []
    add = parts.append
    header = _HEADER.pack
    htons = _HTONS
    last = first + len(ops) - 1
    key: ServiceKey | None = None
    key_attr = b""
    pack = pack_key = header
    full = short = 0
    seq = first
    for op in ops:
        flags = NLM_F_REQUEST | NLM_F_ACK if seq == last else NLM_F_REQUEST
        if isinstance(op, (AddDest, EditDest, DelDest)):
            if op.service is not key:
                key = op.service
                key_attr = service_key_attr(key)
                pack = dest_request(len(key_attr)).pack
                pack_key = dest_request(len(key_attr), DEST_KEY_FIELDS).pack
                full = 20 + len(key_attr) + DEST_LEN
                short = 20 + len(key_attr) + DEST_KEY_LEN
            if isinstance(op, DelDest):
                dkey = op.dest
                addr = dkey.addr
                add(pack_key(
                    short, family, flags, seq, 0, _DEL_DEST, 1, 0, key_attr, DEST_KEY_LEN, 2,
                    6, 11, _AF_INET6 if isinstance(addr, IPv6Address) else _AF_INET,
                    20, 1, addr.packed, 6, 2, htons(dkey.port)))
            else:
                dest = op.dest
                dkey = dest.key
                addr = dkey.addr
                add(pack(
                    full, family, flags, seq, 0,
                    _NEW_DEST if isinstance(op, AddDest) else _SET_DEST, 1, 0, key_attr,
                    DEST_LEN, 2,
                    6, 11, dest.af or (_AF_INET6 if isinstance(addr, IPv6Address) else _AF_INET),
                    20, 1, addr.packed, 6, 2, htons(dkey.port),
                    8, 3, dest.forward, 8, 4, dest.weight, 8, 5, dest.u_threshold,
                    8, 6, dest.l_threshold, 5, 13, dest.tun_type, 6, 14, htons(dest.tun_port),
                    6, 15, dest.tun_flags))
        else:
            cmd, body = op_payload(op)
            add(header(20 + len(body), family, flags, seq, 0, cmd, 1, 0))
            add(body)
        seq += 1
    return b"".join(parts)


def error_for(code: int, op: object) -> IPVSError:
    name = getattr(op, "name", None) or type(op).__name__
    text = f"{name}: {os.strerror(code)}"
    if code in (errno.ENOENT, errno.ESRCH):
        return NotFound(text, operation=name, errno=code)
    if code == errno.EEXIST:
        return Exists(text, operation=name, errno=code)
    if code in (errno.EPERM, errno.EACCES):
        return IPVSPermissionError(text, operation=name, errno=code)
    return IPVSError(text, operation=name, errno=code)


@dataclasses.dataclass(frozen=True)
class _Named:
    """Names a request that is not an Op in error messages (error_for takes ``name``)."""

    name: str


class BatchSender:
    """One plain generic-netlink socket (in the namespace of the thread that opens it)."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self.decoder = DumpDecoder()
        self._sock: socket.socket | None = None
        self._family = 0
        self._seq = 0
        self._buf = bytearray(BUFSIZE)
        self._view = memoryview(self._buf)
        self._programmed: list[Sequence[Op]] = []  # done ops not yet shown to the decoder
        self._programmed_count = 0
        self._stale: list[object] = []  # decoded objects being replaced (by id)

    async def open(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.bind((0, 0))
            sock.setblocking(False)
            self._sock = sock
            self._family = await self._resolve()
        except BaseException:
            self._sock = None
            sock.close()
            raise

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ------------------------------------------------------------ transport

    async def _recv(self) -> memoryview:
        """The next datagram (a view into the shared buffer: use it before the next call)."""
        sock = self._sock
        assert sock is not None
        while True:
            try:
                return self._view[:sock.recv_into(self._buf)]
            except BlockingIOError:
                pass
            await self._readable(sock)

    @staticmethod
    async def _readable(sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        fd = sock.fileno()
        loop.add_reader(fd, wake)
        try:  # the kernel answers within sendmsg: waiting at all is rare, never hang
            await asyncio.wait_for(ready, REPLY_TIMEOUT)
        finally:
            loop.remove_reader(fd)

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        sent = self._sock.send(data)  # to the kernel: processed synchronously, never partial
        if sent != len(data):
            raise IPVSError(f"short netlink send ({sent} of {len(data)})", operation="send")

    async def _resolve(self) -> int:
        self._seq += 1
        self._send(family_request(self._seq, "IPVS"))
        try:
            return family_id(await self._recv())
        except OSError as exc:
            if exc.errno:
                raise IPVSUnavailable(f"open: the kernel has no IPVS ({os.strerror(exc.errno)})",
                                      operation="open", errno=exc.errno) from None
            raise IPVSUnavailable("open: no family id for IPVS", operation="open") from None

    # ------------------------------------------------------------ bulk writes

    async def run(self, ops: Sequence[Op]) -> list[IPVSError | None]:
        """Send every op (in order); one result per op: None = done, else the kernel's error."""
        failed = await self.failures(ops)
        return [failed.get(i) for i in range(len(ops))]

    async def failures(self, ops: Sequence[Op]) -> dict[int, IPVSError]:
        """Send every op (in order); the kernel's error of each op that failed, by index."""
        await self.open()
        failed: dict[int, IPVSError] = {}
        for start in range(0, len(ops), self.chunk):
            if start:
                await asyncio.sleep(0)  # let timers (VRRP adverts) run between chunks
            chunk = ops[start:start + self.chunk]
            errors = await self._run_chunk(chunk)
            for i, error in errors.items():
                failed[start + i] = error
            self._remember(chunk, errors)
        return failed

    async def _run_chunk(self, ops: Sequence[Op]) -> dict[int, IPVSError]:
        first = self._seq + 1
        last = self._seq = first + len(ops) - 1
        self._send(encode_ops(self._family, first, ops))
        failed: dict[int, IPVSError] = {}
        while True:
            data = await self._recv()
            for pos, _length, kind, seq in messages(data):
                if kind == NLMSG_ERROR and first <= seq <= last:
                    code = error_code(data, pos)
                    if code:
                        failed[seq - first] = error_for(code, ops[seq - first])
                    if seq == last:
                        return failed

    def _remember(self, ops: Sequence[Op], failed: dict[int, IPVSError]) -> None:
        """Keep the destinations the kernel accepted for the decoder of the next dump."""
        if failed:
            ops = [op for i, op in enumerate(ops) if i not in failed]
        self._programmed_count += len(ops)
        if self._programmed_count > PRIME_MAX:  # no dump for long: an optimisation, drop it
            self._programmed.clear()
            self._programmed_count = 0
            self._stale.clear()
        else:
            self._programmed.append(ops)

    def expect(self, service: Service | None, key: ServiceKey, dests: Iterable[Destination],
               instead_of: Iterable[object] = ()) -> None:
        """``service`` (when not None) and ``dests`` of service ``key`` are in the kernel as
        such (adopted, found equal): decode them as these objects from the next dump on
        (after what was programmed before), also where a payload was decoded before as one of
        the objects ``instead_of`` (what the last dump gave)."""
        ops: list[Op] = [] if service is None else [EditService(service)]
        self._remember(ops + [EditDest(key, d) for d in dests], {})
        self._stale += instead_of

    @property
    def primed_generation(self) -> int:
        """Changes when the decoder forgot what it was primed with (see :meth:`expect`)."""
        return self.decoder.generation

    def _prime(self) -> None:
        decoder = self.decoder
        for ops in self._programmed:
            key: ServiceKey | None = None
            run: list[Destination] = []
            for op in ops:
                if isinstance(op, (AddService, EditService)):
                    decoder.prime_service(op.service)
                elif isinstance(op, (AddDest, EditDest)):
                    if op.service is not key:
                        if run and key is not None:
                            decoder.prime(key.af, run)
                        key, run = op.service, []
                    run.append(op.dest)
            if run and key is not None:
                decoder.prime(key.af, run)
        decoder.decode_again(self._stale)
        self._programmed.clear()
        self._programmed_count = 0
        self._stale.clear()

    async def _one(self, op: Op) -> None:
        (error,) = await self.run([op])
        if error is not None:
            raise error

    async def _request(self, name: str, cmd: Cmd, payload: bytes) -> None:
        await self.open()
        self._seq += 1
        seq = self._seq
        self._send(encode(self._family, seq, cmd, payload))
        while True:
            data = await self._recv()
            for pos, _length, kind, mseq in messages(data):
                if kind == NLMSG_ERROR and mseq == seq:
                    code = error_code(data, pos)
                    if code:
                        raise error_for(code, _Named(name))
                    return

    # ------------------------------------------------------------ IpvsBackend

    async def new_service(self, service: Service) -> None:
        await self._one(AddService(service))

    async def set_service(self, service: Service) -> None:
        await self._one(EditService(service))

    async def delete_service(self, key: ServiceKey) -> None:
        await self._one(DelService(key))

    async def new_dest(self, key: ServiceKey, dest: Destination) -> None:
        await self._one(AddDest(key, dest))

    async def set_dest(self, key: ServiceKey, dest: Destination) -> None:
        await self._one(EditDest(key, dest))

    async def delete_dest(self, key: ServiceKey, dest: DestKey) -> None:
        await self._one(DelDest(key, dest))

    async def flush(self) -> None:
        await self._one(Flush())

    async def set_timeouts(self, timeouts: Timeouts) -> None:
        await self._request("set_timeouts", Cmd.SET_CONFIG, timeouts_attrs(timeouts))

    async def new_daemon(self, daemon: SyncDaemon) -> None:
        await self._request("new_daemon", Cmd.NEW_DAEMON, daemon_attr(daemon))

    async def delete_daemon(self, state: SyncState) -> None:
        await self._request("delete_daemon", Cmd.DEL_DAEMON, daemon_state_attr(state))

    async def dump_services(self) -> list[ObservedService]:
        return await self.dump()

    async def dump_dests(self, key: ServiceKey) -> list[ObservedDestination]:
        """The destinations of one service, with live counters (NotFound if it is gone)."""
        await self.open()
        found = await self._dump(Cmd.GET_DEST, service_key_attr(key), CMD_DEST)
        return [replies.dest(p, key.af) for p in found]

    # ------------------------------------------------------------ dump

    async def dump(self) -> list[ObservedService]:
        """Every service with its destinations: one GET_SERVICE dump, then one GET_DEST dump
        per service (the kernel has no dump of every destination), equal to what
        ``IPVSClient.dump_services`` returns."""
        await self.open()
        decoder = self.decoder
        dest = decoder.dest
        decoder.next_dump()
        self._prime()
        services = [decoder.service(p) for p in await self._dump(Cmd.GET_SERVICE, b"",
                                                                  CMD_SERVICE)]
        out = []
        for n, svc in enumerate(services, 1):
            key = svc.service.key
            try:
                found = await self._dump(Cmd.GET_DEST, service_key_attr(key), CMD_DEST)
            except NotFound:  # deleted between the two dumps
                continue
            af = key.af
            out.append(decoder.with_dests(svc, tuple([dest(p, af) for p in found])))
            if n % DUMP_YIELD == 0:
                await asyncio.sleep(0)
        return out

    async def _dump(self, cmd: Cmd, payload: bytes, want: int) -> list[bytes]:
        """The payload of top-level attribute ``want`` of every reply of one dump."""
        self._seq += 1
        seq = self._seq
        family = self._family
        self._send(encode(family, seq, cmd, payload, flags=NLM_F_REQUEST | NLM_F_DUMP))
        found: list[bytes] = []
        nla = _NLA.unpack_from
        while True:
            data = await self._recv()
            for pos, length, kind, mseq in messages(data):
                if mseq != seq:
                    continue
                if kind == family:
                    apos, aend = pos + 20, pos + length
                    while apos + 4 <= aend:  # the kernel puts it first: usually one step
                        alen, akind = nla(data, apos)
                        if alen < 4:
                            break
                        if akind & 0x3FFF == want:
                            found.append(bytes(data[apos + 4:apos + alen]))
                            break
                        apos += (alen + 3) & ~3
                elif kind == NLMSG_DONE:
                    return found
                elif kind == NLMSG_ERROR:
                    code = error_code(data, pos)
                    if code:
                        raise error_for(code, _Named(cmd.name))
                    return found
