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

# _socket, not socket: socket.py builds its enums at import (~0.1 s in the TCG guest, before the
# table can go in); the C module has every call used here
import _socket as socket
import os

from .attrs import IPVS_CMD_GET_SERVICE
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

TYPE_CHECKING = False  # typing / collections.abc cost start-up time here
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

__all__ = ["CHUNK", "IpvsSocket"]

CHUNK = 256  # requests per datagram, as ipvs.batch
TIMEOUT = 10.0  # seconds without an answer: give up (the caller falls back)


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
        return encode(family, self.seq, cmd, payload, flags=flags)

    def _recv(self) -> memoryview:
        return memoryview(self.buf)[:self.sock.recv_into(self.buf)]

    def _resolve(self) -> int:
        self.seq += 1
        self.sock.send(family_request(self.seq, "IPVS"))
        try:
            return family_id(self._recv())
        except OSError as exc:
            if exc.errno:
                raise OSError(exc.errno, f"no IPVS family ({os.strerror(exc.errno)})") from None
            raise OSError(0, "no IPVS family id") from None

    def service_count(self) -> int:
        """How many services the kernel table holds (one GET_SERVICE dump)."""
        self.sock.send(self._message(self.family, IPVS_CMD_GET_SERVICE, b"",
                                     NLM_F_REQUEST | NLM_F_DUMP))
        seq, count = self.seq, 0
        while True:
            data = self._recv()
            for pos, _length, kind, mseq in messages(data):
                if mseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return count
                if kind == NLMSG_ERROR:
                    code = error_code(data, pos)
                    if code:
                        raise OSError(code, f"service dump: {os.strerror(code)}")
                    return count
                if kind == self.family:
                    count += 1

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
            for pos, _length, kind, seq in messages(data):
                if kind == NLMSG_ERROR and first <= seq <= last:
                    if error_code(data, pos):
                        failed += 1
                    if seq == last:
                        return failed
