"""Send pre-encoded IPVS requests with nothing but ``socket`` and ``struct`` (blocking).

The daemon's cold start replays a cached table (:mod:`vrrpd.fast_start`) before it has
imported asyncio or parsed its config, so this cannot use :class:`ipvs.batch.BatchSender`
(asyncio, the model, the reconciler).  The protocol is the same: the generic-netlink
controller names the IPVS family, requests go up to :data:`CHUNK` per datagram, only the
last of a datagram asks for an acknowledgement, the kernel answers failures only
(``NETLINK_CAP_ACK``: without the echoed request).  Constants as in :mod:`ipvs.wire`
(kernel uapi ``linux/netlink.h``, ``linux/genetlink.h``, ``linux/ip_vs.h``).

    with IpvsSocket() as ipvs:        # OSError when the kernel has no IPVS / no permission
        if ipvs.service_count() == 0:
            sent, failed = ipvs.send(cmds, payloads)
"""

from __future__ import annotations

import os
import socket
import struct

TYPE_CHECKING = False  # typing / collections.abc cost start-up time here
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

__all__ = ["CHUNK", "IpvsSocket"]

CHUNK = 256  # requests per datagram, as ipvs.batch
NETLINK_GENERIC, SOL_NETLINK, NETLINK_CAP_ACK = 16, 270, 10
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
IPVS_CMD_GET_SERVICE = 4
GENL_VERSION = 1
TIMEOUT = 10.0  # seconds without an answer: give up (the caller falls back)

_HEADER = struct.Struct("=IHHIIBBH")  # nlmsghdr + genlmsghdr
_MSG = struct.Struct("=IHHI")
_ERR = struct.Struct("=i")
_NLA = struct.Struct("=HH")


class IpvsSocket:
    """One blocking generic-netlink socket bound to the IPVS family of this namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.seq = 0
        self.buf = bytearray(1 << 18)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self.sock.settimeout(TIMEOUT)
            self.sock.bind((0, 0))
            self.family = self._resolve()
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> IpvsSocket:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.sock.close()

    def _message(self, family: int, cmd: int, payload: bytes, flags: int) -> bytes:
        self.seq += 1
        return _HEADER.pack(20 + len(payload), family, flags, self.seq, 0, cmd, GENL_VERSION,
                            0) + payload

    def _recv(self) -> memoryview:
        return memoryview(self.buf)[:self.sock.recv_into(self.buf)]

    def _resolve(self) -> int:
        name = b"IPVS\0"
        attr = _NLA.pack(4 + len(name), CTRL_ATTR_FAMILY_NAME) + name + b"\0" * (-len(name) % 4)
        self.sock.send(self._message(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, attr, NLM_F_REQUEST))
        data = self._recv()
        length, kind = struct.unpack_from("=IH", data)
        if kind == NLMSG_ERROR:
            code = -_ERR.unpack_from(data, 16)[0]
            raise OSError(code, f"no IPVS family ({os.strerror(code)})")
        pos = 20
        while pos + 4 <= length:
            alen, atype = _NLA.unpack_from(data, pos)
            if alen < 4:
                break
            if atype == CTRL_ATTR_FAMILY_ID:
                return int(struct.unpack_from("=H", data, pos + 4)[0])
            pos += (alen + 3) & ~3
        raise OSError(0, "no IPVS family id")

    def service_count(self) -> int:
        """How many services the kernel table holds (one GET_SERVICE dump)."""
        self.sock.send(self._message(self.family, IPVS_CMD_GET_SERVICE, b"",
                                     NLM_F_REQUEST | NLM_F_DUMP))
        seq, count = self.seq, 0
        while True:
            data = self._recv()
            pos, end = 0, len(data)
            while pos + 16 <= end:
                length, kind, _flags, mseq = _MSG.unpack_from(data, pos)
                if length < 16:
                    break
                if mseq == seq:
                    if kind == NLMSG_DONE:
                        return count
                    if kind == NLMSG_ERROR:
                        code = -_ERR.unpack_from(data, pos + 16)[0]
                        if code:
                            raise OSError(code, f"service dump: {os.strerror(code)}")
                        return count
                    if kind == self.family:
                        count += 1
                pos += (length + 3) & ~3

    def send(self, cmds: bytes, payloads: Sequence[bytes], chunk: int = CHUNK
             ) -> tuple[int, int]:
        """Send request ``i`` = command ``cmds[i]`` with attributes ``payloads[i]``, in order;
        returns (sent, failed).  A failing request does not stop the others."""
        family, failed = self.family, 0
        for start in range(0, len(payloads), chunk):
            part = payloads[start:start + chunk]
            first = self.seq + 1
            last = first + len(part) - 1
            msgs = [self._message(family, cmds[start + i], p, NLM_F_REQUEST)
                    for i, p in enumerate(part[:-1])]
            msgs.append(self._message(family, cmds[start + len(part) - 1], part[-1],
                                      NLM_F_REQUEST | NLM_F_ACK))
            self.sock.send(b"".join(msgs))
            failed += self._answers(first, last)
        return len(payloads), failed

    def _answers(self, first: int, last: int) -> int:
        """Count the failures of requests ``first..last`` up to the last one's ack."""
        failed = 0
        while True:
            data = self._recv()
            pos, end = 0, len(data)
            while pos + 16 <= end:
                length, kind, _flags, seq = _MSG.unpack_from(data, pos)
                if length < 16:
                    break
                if kind == NLMSG_ERROR and first <= seq <= last:
                    if _ERR.unpack_from(data, pos + 16)[0]:
                        failed += 1
                    if seq == last:
                        return failed
                pos += (length + 3) & ~3
