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
Dumps are decoded by :class:`ipvs.dumpdecode.DumpDecoder` (unchanged entries cost nothing).

:class:`BatchSender` also implements ``vrrpd.lvs_kernel.IpvsBackend``: it is the LVS runner's
default kernel client (``ipvs.client.IPVSClient`` stays the complete, pyroute2-based client).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import os
import socket
import struct
from collections.abc import Sequence

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
from .reconcile import AddDest, AddService, DelDest, DelService, EditDest, EditService, Flush, Op
from .wire import (
    CTRL_ATTR_FAMILY_ID,
    CTRL_ATTR_FAMILY_NAME,
    CTRL_CMD_GETFAMILY,
    GENL_ID_CTRL,
    NETLINK_CAP_ACK,
    NETLINK_GENERIC,
    NLM_F_ACK,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    SOL_NETLINK,
    Cmd,
    daemon_attr,
    daemon_state_attr,
    dest_attr,
    dest_key_attr,
    encode,
    nla_str,
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

_MSG = struct.Struct("=IHHI")
_ERR = struct.Struct("=i")
_NLA = struct.Struct("=HH")


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
        self._send(encode(GENL_ID_CTRL, self._seq, CTRL_CMD_GETFAMILY,
                          nla_str(CTRL_ATTR_FAMILY_NAME, "IPVS"), flags=NLM_F_REQUEST,
                          version=1))
        data = await self._recv()
        length, kind = struct.unpack_from("=IH", data)
        if kind == NLMSG_ERROR:
            code = -_ERR.unpack_from(data, 16)[0]
            raise IPVSUnavailable(f"open: the kernel has no IPVS ({os.strerror(code)})",
                                  operation="open", errno=code)
        pos = 20
        while pos + 4 <= length:
            alen, atype = _NLA.unpack_from(data, pos)
            if atype == CTRL_ATTR_FAMILY_ID:
                return int(struct.unpack_from("=H", data, pos + 4)[0])
            pos += (alen + 3) & ~3
        raise IPVSUnavailable("open: no family id for IPVS", operation="open")

    # ------------------------------------------------------------ bulk writes

    async def run(self, ops: Sequence[Op]) -> list[IPVSError | None]:
        """Send every op (in order); one result per op: None = done, else the kernel's error."""
        await self.open()
        results: list[IPVSError | None] = []
        for start in range(0, len(ops), self.chunk):
            if start:
                await asyncio.sleep(0)  # let timers (VRRP adverts) run between chunks
            results += await self._run_chunk(ops[start:start + self.chunk])
        return results

    async def _run_chunk(self, ops: Sequence[Op]) -> list[IPVSError | None]:
        family = self._family
        first = self._seq + 1
        last = first + len(ops) - 1
        self._seq = last
        parts = []
        for seq, op in enumerate(ops, first):
            cmd, payload = op_payload(op)
            flags = NLM_F_REQUEST | NLM_F_ACK if seq == last else NLM_F_REQUEST
            parts.append(encode(family, seq, cmd, payload, flags=flags))
        self._send(b"".join(parts))
        results: list[IPVSError | None] = [None] * len(ops)
        while True:
            data = await self._recv()
            pos, end = 0, len(data)
            while pos + 16 <= end:
                length, kind, _flags, seq = _MSG.unpack_from(data, pos)
                if length < 16:
                    break
                if kind == NLMSG_ERROR and first <= seq <= last:
                    code = -_ERR.unpack_from(data, pos + 16)[0]
                    if code:
                        results[seq - first] = error_for(code, ops[seq - first])
                    if seq == last:
                        return results
                pos += (length + 3) & ~3

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
            pos = 0
            while pos + 16 <= len(data):
                length, kind, _flags, mseq = _MSG.unpack_from(data, pos)
                if length < 16:
                    break
                if kind == NLMSG_ERROR and mseq == seq:
                    code = -_ERR.unpack_from(data, pos + 16)[0]
                    if code:
                        raise error_for(code, _Named(name))
                    return
                pos += (length + 3) & ~3

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
        decoder.next_dump()
        services = [decoder.service(p) for p in await self._dump(Cmd.GET_SERVICE, b"",
                                                                  CMD_SERVICE)]
        out = []
        for n, svc in enumerate(services, 1):
            key = svc.service.key
            try:
                found = await self._dump(Cmd.GET_DEST, service_key_attr(key), CMD_DEST)
            except NotFound:  # deleted between the two dumps
                continue
            out.append(decoder.with_dests(svc, tuple(decoder.dest(p, key.af) for p in found)))
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
        while True:
            data = await self._recv()
            pos, end = 0, len(data)
            while pos + 16 <= end:
                length, kind, _flags, mseq = _MSG.unpack_from(data, pos)
                if length < 16:
                    break
                if mseq == seq:
                    if kind == NLMSG_DONE:
                        return found
                    if kind == NLMSG_ERROR:
                        code = -_ERR.unpack_from(data, pos + 16)[0]
                        if code:
                            raise error_for(code, _Named(cmd.name))
                        return found
                    if kind == family:
                        apos, aend = pos + 20, pos + length
                        while apos + 4 <= aend:
                            alen, akind = _NLA.unpack_from(data, apos)
                            if alen < 4:
                                break
                            if akind & 0x3FFF == want:
                                found.append(bytes(data[apos + 4:apos + alen]))
                                break
                            apos += (alen + 3) & ~3
                pos += (length + 3) & ~3
