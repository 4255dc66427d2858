"""Netlink framing shared by every IPVS sender: constants, the request header, the walk over
the messages of one datagram and the generic-netlink family lookup.

Imports only ``os`` and ``struct``: :mod:`ipvs.replay` runs before the daemon has imported
anything heavy (:mod:`vrrpd.fast_start`), and :mod:`ipvs.batch` / :mod:`ipvs.wire` use the same
code (they re-export the constants).
"""

from __future__ import annotations

import os
import struct

TYPE_CHECKING = False  # typing / collections.abc cost start-up time in ipvs.replay
if TYPE_CHECKING:
    from collections.abc import Iterator

GENL_VERSION = 1
NETLINK_GENERIC = 16
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # error messages without the echoed request
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2

MSG = struct.Struct("=IHHI")  # nlmsghdr without the pid: length, type, flags, seq
ERR = struct.Struct("=i")  # nlmsgerr's error (negative errno, 0 = ack)
NLA = struct.Struct("=HH")
HEADER = struct.Struct("=IHHIIBBH")  # nlmsghdr + genlmsghdr


def encode(family: int, seq: int, cmd: int, payload: bytes, *,
           flags: int = NLM_F_REQUEST | NLM_F_ACK, version: int = GENL_VERSION) -> bytes:
    """One generic-netlink request: header + ``payload`` (the attributes)."""
    return HEADER.pack(20 + len(payload), family, flags, seq, 0, cmd, version, 0) + payload


def messages(data: memoryview | bytes) -> Iterator[tuple[int, int, int, int]]:
    """``(offset, length, type, seq)`` of every netlink message of one datagram."""
    pos, end = 0, len(data)
    unpack = MSG.unpack_from
    while pos + 16 <= end:
        length, kind, _flags, seq = unpack(data, pos)
        if length < 16:
            return
        yield pos, length, kind, seq
        pos += (length + 3) & ~3


def error_code(data: memoryview | bytes, pos: int) -> int:
    """The errno of the NLMSG_ERROR message at ``pos`` (0: an acknowledgement)."""
    return -int(ERR.unpack_from(data, pos + 16)[0])


def family_request(seq: int, name: str) -> bytes:
    """CTRL_CMD_GETFAMILY for the generic-netlink family ``name``."""
    raw = name.encode() + b"\0"
    attr = NLA.pack(4 + len(raw), CTRL_ATTR_FAMILY_NAME) + raw + b"\0" * (-len(raw) % 4)
    return encode(GENL_ID_CTRL, seq, CTRL_CMD_GETFAMILY, attr, flags=NLM_F_REQUEST)


def family_id(data: memoryview | bytes) -> int:
    """The family id in the answer to :func:`family_request`.  OSError with the kernel's errno
    when it refused (no such family: the module is not loaded), errno 0 when the answer holds
    no id."""
    length, kind = struct.unpack_from("=IH", data)
    if kind == NLMSG_ERROR:
        code = error_code(data, 0)
        raise OSError(code, os.strerror(code))
    pos = 20
    while pos + 4 <= length:
        alen, atype = NLA.unpack_from(data, pos)
        if alen < 4:
            break
        if atype == CTRL_ATTR_FAMILY_ID:
            return int(struct.unpack_from("=H", data, pos + 4)[0])
        pos += (alen + 3) & ~3
    raise OSError(0, "no family id in the answer")
