"""Pipelined IPVS writes: many requests per ``sendmsg``, acknowledgements matched by sequence.

Programming 1,000 services x 10 destinations one awaited request at a time costs a netlink
round trip and a pyroute2 NLA encode (~1-2 ms of Python each) per entry.  Here the seven write
commands are encoded with ``struct`` (byte-identical to ``ipvs.netlink`` + pyroute2, which the
unit tests check), packed into one datagram per chunk — the kernel runs every message of a
datagram in order and acks each one — and the acks are read back without a per-request await.
A failure of one message does not stop the others (as when they are sent one by one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import functools
import os
import socket
import struct
from collections.abc import Sequence

from . import replies
from .errors import Exists, IPVSError, IPVSPermissionError, IPVSUnavailable, NotFound
from .model import (
    SERVICE_FLAG_BITS,
    Destination,
    DestKey,
    ObservedService,
    Service,
    ServiceKey,
    canonical_flags,
)
from .netlink import ALL_FLAGS_MASK, GENL_VERSION, Cmd, pack_addr, pack_netmask
from .reconcile import AddDest, AddService, DelService, EditDest, EditService, Flush, Op

NETLINK_GENERIC = 16
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
CHUNK = 256  # messages per datagram: ~9 KB of acks, far below the receive buffer


def _nla(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _u8(kind: int, v: int) -> bytes:
    return _nla(kind, struct.pack("=B", v))


def _u16(kind: int, v: int) -> bytes:
    return _nla(kind, struct.pack("=H", v))


def _be16(kind: int, v: int) -> bytes:
    return _nla(kind, struct.pack(">H", v))


def _u32(kind: int, v: int) -> bytes:
    return _nla(kind, struct.pack("=I", v))


def _str(kind: int, v: str) -> bytes:
    return _nla(kind, v.encode() + b"\0")


def _nested(kind: int, parts: Sequence[bytes]) -> bytes:
    return _nla(kind, b"".join(parts))  # no NLA_F_NESTED, as pyroute2 (the kernel accepts both)


def service_key_nla(key: ServiceKey) -> list[bytes]:
    parts = [_u16(1, key.af)]
    if key.fwmark:
        parts.append(_u32(5, key.fwmark))
    else:
        assert key.addr is not None and key.protocol is not None
        parts += [_u16(2, int(key.protocol)), _nla(3, pack_addr(key.addr)), _be16(4, key.port)]
    return parts


def service_nla(service: Service) -> list[bytes]:
    bits = 0
    for name in canonical_flags(service.flags):
        bits |= SERVICE_FLAG_BITS[name]
    parts = [
        *service_key_nla(service.key),
        _str(6, service.scheduler),
        _nla(7, struct.pack("=II", bits, ALL_FLAGS_MASK)),
        _u32(8, service.timeout),
        _nla(9, pack_netmask(service.key.af, service.netmask)),
    ]
    if service.pe_name:
        parts.append(_str(11, service.pe_name))
    return parts


# A whole destination in one pack (ports pre-swapped to network order): the attributes
# ipvs.netlink.dest_attrs lists, in the same order, with the same padding.
_DEST = struct.Struct("=HHH2x HH16s HHH2x HHI HHI HHI HHI HHB3x HHH2x HHH2x")


def dest_attr(dest: Destination) -> bytes:
    """The nested IPVS_CMD_ATTR_DEST of a full destination (the hot path of bulk adds)."""
    key = dest.key
    family = dest.af or (socket.AF_INET6 if key.addr.version == 6 else socket.AF_INET)
    body = _DEST.pack(
        6, 11, family, 20, 1, key.addr.packed, 6, 2, socket.htons(key.port),
        8, 3, int(dest.forward), 8, 4, dest.weight, 8, 5, dest.u_threshold,
        8, 6, dest.l_threshold, 5, 13, int(dest.tun_type), 6, 14, socket.htons(dest.tun_port),
        6, 15, dest.tun_flags,
    )
    return struct.pack("=HH", 4 + len(body), 2) + body


_DEST_KEY = struct.Struct("=HHH2x HH16s HHH2x")


def dest_key_attr(key: DestKey) -> bytes:
    """The nested IPVS_CMD_ATTR_DEST naming a destination (delete)."""
    family = socket.AF_INET6 if key.addr.version == 6 else socket.AF_INET
    body = _DEST_KEY.pack(6, 11, family, 20, 1, key.addr.packed, 6, 2, socket.htons(key.port))
    return struct.pack("=HH", 4 + len(body), 2) + body


@functools.lru_cache(maxsize=4096)
def _service_key_attr(key: ServiceKey) -> bytes:
    """The nested service identity, shared by every destination op of that service."""
    return _nested(1, service_key_nla(key))


def op_payload(op: Op) -> tuple[Cmd, bytes]:
    """The command and the attributes of one operation (as ``ipvs.client`` sends them)."""
    if isinstance(op, AddService):
        return Cmd.NEW_SERVICE, _nested(1, service_nla(op.service))
    if isinstance(op, EditService):
        return Cmd.SET_SERVICE, _nested(1, service_nla(op.service))
    if isinstance(op, DelService):
        return Cmd.DEL_SERVICE, _nested(1, service_key_nla(op.key))
    if isinstance(op, Flush):
        return Cmd.FLUSH, b""
    svc = _service_key_attr(op.service)
    if isinstance(op, AddDest):
        return Cmd.NEW_DEST, svc + dest_attr(op.dest)
    if isinstance(op, EditDest):
        return Cmd.SET_DEST, svc + dest_attr(op.dest)
    return Cmd.DEL_DEST, svc + dest_key_attr(op.dest)


def encode(family: int, seq: int, cmd: int, payload: bytes, *,
           flags: int = NLM_F_REQUEST | NLM_F_ACK, version: int = GENL_VERSION) -> bytes:
    body = struct.pack("=BBH", cmd, version, 0) + payload
    return struct.pack("=IHHII", 16 + len(body), family, flags, seq, 0) + body


def error_for(code: int, op: object) -> IPVSError:
    name = getattr(op, "name", None) or type(op).__name__
    text = f"{name}: {os.strerror(code)}"
    if code in (errno.ENOENT, errno.ESRCH):
        return NotFound(text, operation=name, errno=code)
    if code == errno.EEXIST:
        return Exists(text, operation=name, errno=code)
    if code == errno.EPERM:
        return IPVSPermissionError(text, operation=name, errno=code)
    return IPVSError(text, operation=name, errno=code)


class BatchSender:
    """A second, plain netlink socket for bulk writes (same namespace as the opener's thread)."""

    def __init__(self, chunk: int = CHUNK) -> None:
        self.chunk = chunk
        self._sock: socket.socket | None = None
        self._family = 0
        self._seq = 0

    async def open(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
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

    async def _resolve(self) -> int:
        assert self._sock is not None
        self._seq += 1
        msg = encode(GENL_ID_CTRL, self._seq, CTRL_CMD_GETFAMILY,
                     _str(CTRL_ATTR_FAMILY_NAME, "IPVS"), flags=NLM_F_REQUEST, version=1)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self._sock, msg)
        data = await loop.sock_recv(self._sock, 65536)
        length, kind = struct.unpack_from("=IH", data)
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, 16)[0]
            raise IPVSUnavailable(f"open: the kernel has no IPVS ({os.strerror(code)})",
                                  operation="open", errno=code)
        pos = 20
        while pos + 4 <= length:
            alen, atype = struct.unpack_from("=HH", data, pos)
            if atype == CTRL_ATTR_FAMILY_ID:
                return int(struct.unpack_from("=H", data, pos + 4)[0])
            pos += (alen + 3) & ~3
        raise IPVSUnavailable("open: no family id for IPVS", operation="open")

    async def run(self, ops: Sequence[Op]) -> list[IPVSError | None]:
        """Send every op (in order); one result per op: None = done, else the kernel's error."""
        await self.open()
        results: list[IPVSError | None] = []
        for start in range(0, len(ops), self.chunk):
            results += await self._run_chunk(ops[start:start + self.chunk])
            await asyncio.sleep(0)  # let timers (VRRP adverts) run between chunks
        return results

    async def _run_chunk(self, ops: Sequence[Op]) -> list[IPVSError | None]:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        first = self._seq + 1
        datagram = bytearray()
        for i, op in enumerate(ops):
            cmd, payload = op_payload(op)
            datagram += encode(self._family, first + i, cmd, payload)
        self._seq += len(ops)
        await loop.sock_sendall(self._sock, bytes(datagram))
        results: list[IPVSError | None] = [None] * len(ops)
        pending = len(ops)
        async with asyncio.timeout(30.0):  # the kernel acks synchronously; never hang
            await self._collect(ops, first, results, pending)
        return results

    async def _collect(self, ops: Sequence[Op], first: int, results: list[IPVSError | None],
                       pending: int) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        while pending:
            data = await loop.sock_recv(self._sock, 1 << 20)
            pos = 0
            while pos + 16 <= len(data):
                length, kind, _flags, seq = struct.unpack_from("=IHHI", data, pos)
                if kind == NLMSG_ERROR and first <= seq < first + len(ops):
                    code = -struct.unpack_from("=i", data, pos + 16)[0]
                    if code:
                        results[seq - first] = error_for(code, ops[seq - first])
                    pending -= 1
                pos += (length + 3) & ~3 if length else len(data)

    # ------------------------------------------------------------ dump

    async def dump(self) -> list[ObservedService]:
        """Every service with its destinations: one GET_SERVICE dump, then one GET_DEST dump
        per service on this plain socket (no per-request pyroute2 machinery), decoded by
        ``ipvs.replies`` exactly as ``IPVSClient.dump_services`` decodes them."""
        await self.open()
        services = [replies.service(p) for p in await self._dump(Cmd.GET_SERVICE, b"",
                                                                  replies.CMD_SERVICE)]
        out = []
        for svc in services:
            key = svc.service.key
            try:
                found = await self._dump(Cmd.GET_DEST, _service_key_attr(key), replies.CMD_DEST)
            except NotFound:  # deleted between the two dumps
                continue
            out.append(dataclasses.replace(
                svc, dests=tuple(replies.dest(p, key.af) for p in found)))
        return out

    async def _dump(self, cmd: Cmd, payload: bytes, want: int) -> list[bytes]:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        self._seq += 1
        seq = self._seq
        await loop.sock_sendall(self._sock, encode(self._family, seq, cmd, payload,
                                                   flags=NLM_F_REQUEST | NLM_F_DUMP))
        found: list[bytes] = []
        async with asyncio.timeout(30.0):
            while True:
                data = await loop.sock_recv(self._sock, 1 << 20)
                pos = 0
                while pos + 16 <= len(data):
                    length, kind, _flags, mseq = struct.unpack_from("=IHHI", data, pos)
                    if length < 16:
                        break
                    if mseq == seq:
                        if kind == NLMSG_DONE:
                            return found
                        if kind == NLMSG_ERROR:
                            code = -struct.unpack_from("=i", data, pos + 16)[0]
                            if code:
                                raise error_for(code, _DumpOp(cmd.name))
                            return found
                        if kind == self._family:
                            nested = replies.nested(data[pos + 20:pos + length], want)
                            if nested is not None:
                                found.append(nested)
                    pos += (length + 3) & ~3


@dataclasses.dataclass(frozen=True)
class _DumpOp:
    """Names a failed dump in error messages (error_for takes the op's type name)."""

    name: str
