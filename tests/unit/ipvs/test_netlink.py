"""IPVS requests without a kernel: the exact bytes ``ipvs.netlink`` puts on the wire.

Checked with an independent TLV walker (below), not with pyroute2, so a wrong attribute number,
width or byte order shows up here; the kernel tier checks the same values against the real
kernel and ipvsadm, and test_replies.py decodes these bytes back.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from ipvs import netlink as nl
from ipvs.model import (
    Destination,
    DestKey,
    Forward,
    Protocol,
    Service,
    ServiceKey,
    SyncDaemon,
    SyncState,
    Timeouts,
    TunnelFlag,
    TunnelType,
)

V4, V6 = socket.AF_INET, socket.AF_INET6
NLA_F_NESTED = 0x8000


def tlvs(data: bytes) -> dict[int, bytes]:
    """Attribute type -> payload, for one level of netlink attributes."""
    out: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        assert length >= 4
        out[kind & ~NLA_F_NESTED] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return out


def encode(cmd: nl.Cmd, attrs: list) -> bytes:  # type: ignore[type-arg]
    msg = nl.request(cmd, attrs)
    msg.encode()
    return bytes(msg.data)


def top_attrs(data: bytes) -> tuple[int, dict[int, bytes]]:
    """(genl cmd, top-level attributes) of an encoded message."""
    length = struct.unpack_from("=I", data)[0]
    assert length == len(data)
    cmd, version = struct.unpack_from("=BB", data, 16)
    assert version == nl.GENL_VERSION
    return cmd, tlvs(data[20:])


def with_service(cmd: nl.Cmd, attrs: list) -> bytes:  # type: ignore[type-arg]
    return encode(cmd, [("IPVS_CMD_ATTR_SERVICE", {"attrs": attrs})])


SVC4 = Service(
    ServiceKey(V4, Protocol.TCP, IPv4Address("192.168.244.10"), 8066),
    "sh", frozenset({"persistent", "sh-port", "sh-fallback"}), 50, 24, "sip",
)


def test_all_17_commands_have_the_kernel_numbers() -> None:
    assert len(nl.Cmd) == 17
    assert [c.value for c in nl.Cmd] == list(range(1, 18))
    assert (nl.Cmd.NEW_DEST, nl.Cmd.GET_DAEMON, nl.Cmd.GET_INFO, nl.Cmd.FLUSH) == (5, 11, 15, 17)


def test_service_message_bytes() -> None:
    cmd, top = top_attrs(encode(nl.Cmd.NEW_SERVICE,
                                [("IPVS_CMD_ATTR_SERVICE", {"attrs": nl.service_attrs(SVC4)})]))
    assert cmd == 1 and set(top) == {1}
    svc = tlvs(top[1])
    assert svc[1] == struct.pack("=H", V4)  # AF
    assert svc[2] == struct.pack("=H", 6)  # PROTOCOL
    assert svc[3] == bytes([192, 168, 244, 10]) + b"\0" * 12  # ADDR: 16-byte nf_inet_addr
    assert svc[4] == b"\x1f\x82"  # PORT 8066 big-endian
    assert svc[6] == b"sh\0"  # SCHED_NAME, NUL-terminated
    # FLAGS: persistent | sched-flag-1 | sched-flag-2, mask all; hashed (0x2) never sent
    assert svc[7] == struct.pack("=II", 0x1 | 0x8 | 0x10, 0xFFFFFFFF)
    assert svc[8] == struct.pack("=I", 50)  # TIMEOUT
    assert svc[9] == b"\xff\xff\xff\x00"  # NETMASK: an IPv4 mask, big-endian
    assert svc[11] == b"sip\0"  # PE_NAME
    assert 5 not in svc  # no FWMARK for an address service


def test_ipv6_and_fwmark_services_always_carry_a_netmask() -> None:
    v6 = Service(ServiceKey(V6, Protocol.UDP, IPv6Address("fd00::10"), 53), "mh",
                 frozenset({"mh-port", "onepacket"}), netmask=64)
    svc = tlvs(top_attrs(with_service(nl.Cmd.NEW_SERVICE, nl.service_attrs(v6)))[1][1])
    assert svc[3] == IPv6Address("fd00::10").packed
    assert svc[9] == struct.pack("=I", 64)  # IPv6: a prefix length in host order
    assert svc[7][:4] == struct.pack("=I", 0x4 | 0x10)
    fwm = Service(ServiceKey(V4, fwmark=7), "rr")
    svc = tlvs(top_attrs(with_service(nl.Cmd.NEW_SERVICE, nl.service_attrs(fwm)))[1][1])
    assert svc[5] == struct.pack("=I", 7)
    assert svc[9] == b"\xff\xff\xff\xff"
    assert not {2, 3, 4} & set(svc)  # no protocol/addr/port for a fwmark service


def test_destination_message_bytes() -> None:
    dest = Destination(DestKey(IPv4Address("10.0.0.2"), 8080), weight=5, forward=Forward.TUN,
                       u_threshold=10, l_threshold=2, tun_type=TunnelType.GUE, tun_port=6080,
                       tun_flags=TunnelFlag.REMCSUM)
    cmd, top = top_attrs(encode(nl.Cmd.NEW_DEST, [
        ("IPVS_CMD_ATTR_SERVICE", {"attrs": nl.service_key_attrs(SVC4.key)}),
        ("IPVS_CMD_ATTR_DEST", {"attrs": nl.dest_attrs(V4, dest)}),
    ]))
    assert cmd == 5 and set(top) == {1, 2}
    d = tlvs(top[2])
    assert d[1] == bytes([10, 0, 0, 2]) + b"\0" * 12
    assert d[2] == struct.pack("!H", 8080)
    assert d[3] == struct.pack("=I", 2)  # FWD_METHOD: IP_VS_CONN_F_TUNNEL
    assert (d[4], d[5], d[6]) == tuple(struct.pack("=I", v) for v in (5, 10, 2))
    assert d[11] == struct.pack("=H", V4)  # ADDR_FAMILY
    assert d[13] == b"\x01"  # TUN_TYPE gue (u8)
    assert d[14] == struct.pack("!H", 6080)  # TUN_PORT big-endian (pyroute2 gets this wrong)
    assert d[15] == struct.pack("=H", 2)  # TUN_FLAGS remcsum


def test_daemon_timeouts_and_key_only_messages() -> None:
    daemon = SyncDaemon(SyncState.BACKUP, "eth1", sync_id=9, sync_maxlen=1400,
                        mcast_group=IPv4Address("239.1.2.3"), mcast_port=8850, mcast_ttl=3)
    _, top = top_attrs(encode(nl.Cmd.NEW_DAEMON,
                              [("IPVS_CMD_ATTR_DAEMON", {"attrs": nl.daemon_attrs(daemon)})]))
    d = tlvs(top[3])
    assert d[1] == struct.pack("=I", 2)
    assert d[2] == b"eth1\0"
    assert (d[3], d[4]) == (struct.pack("=I", 9), struct.pack("=H", 1400))
    assert d[5] == bytes([239, 1, 2, 3])
    assert d[7] == struct.pack("=H", 8850)  # host order: ipvsadm prints port=8850 for this
    assert d[8] == b"\x03"
    _, top = top_attrs(encode(nl.Cmd.SET_CONFIG, nl.timeout_attrs(Timeouts(900, 120, 300))))
    assert (top[4], top[5], top[6]) == tuple(struct.pack("=I", v) for v in (900, 120, 300))
    _, top = top_attrs(with_service(nl.Cmd.DEL_SERVICE, nl.service_key_attrs(SVC4.key)))
    assert set(tlvs(top[1])) == {1, 2, 3, 4}  # the key only


@pytest.mark.parametrize(("af", "prefix", "raw"), [
    (V4, 32, b"\xff\xff\xff\xff"), (V4, 0, b"\0\0\0\0"), (V4, 16, b"\xff\xff\0\0"),
    (V6, 128, struct.pack("=I", 128)), (V6, 48, struct.pack("=I", 48)),
])
def test_netmask_encoding(af: int, prefix: int, raw: bytes) -> None:
    assert nl.pack_netmask(af, prefix) == raw
