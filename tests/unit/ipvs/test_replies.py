"""Replies decoded with ``struct`` (ipvs.replies) from bytes encoded by pyroute2 (ipvs.netlink):
two independent implementations of the IPVS attribute layout must agree, value for value.
"""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipvs import netlink as nl
from ipvs import replies
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
    TunnelType,
)

V4, V6 = socket.AF_INET, socket.AF_INET6


def encode(cmd: nl.Cmd, attrs: list) -> bytes:  # type: ignore[type-arg]
    msg = nl.request(cmd, attrs)
    msg.encode()
    return bytes(msg.data)


def reply_payload(data: bytes) -> bytes:
    """What the client sees: pyroute2's header decode, attributes left raw."""
    msg = replies.IPVSReply(data)
    msg.decode()
    return bytes(msg.payload)


def nested(data: bytes, kind: int) -> bytes:
    found = replies.nested(reply_payload(data), kind)
    assert found is not None
    return found


SVC4 = Service(
    ServiceKey(V4, Protocol.TCP, IPv4Address("192.168.244.10"), 8066),
    "sh", frozenset({"persistent", "sh-port", "sh-fallback"}), 50, 24, "sip",
)


def _service_back(service: Service) -> Service:
    data = encode(nl.Cmd.NEW_SERVICE, [("IPVS_CMD_ATTR_SERVICE",
                                        {"attrs": nl.service_attrs(service)})])
    return replies.service(nested(data, replies.CMD_SERVICE)).service


def test_service_decodes_back_with_canonical_flags() -> None:
    back = _service_back(SVC4)
    assert back.key == SVC4.key
    assert back.flags == frozenset({"persistent", "sched-flag-1", "sched-flag-2"})
    assert (back.scheduler, back.timeout, back.netmask, back.pe_name) == ("sh", 50, 24, "sip")


def test_destination_family_is_zero_when_it_matches_the_service() -> None:
    same = Destination(DestKey(IPv4Address("10.0.0.2"), 80))
    mixed = Destination(DestKey(IPv6Address("fd00::2"), 80), forward=Forward.TUN, af=V6)
    for dest in (same, mixed):
        data = encode(nl.Cmd.NEW_DEST, [("IPVS_CMD_ATTR_DEST", {"attrs": nl.dest_attrs(V4, dest)})])
        assert replies.dest(nested(data, replies.CMD_DEST), V4).dest == dest


def test_stats64_preferred_over_legacy_stats() -> None:
    names = ["CONNS", "INPKTS", "OUTPKTS", "INBYTES", "OUTBYTES",
             "CPS", "INPPS", "OUTPPS", "INBPS", "OUTBPS"]
    legacy = [(f"IPVS_STATS_ATTR_{n}", 1) for n in names]
    wide = [(f"IPVS_STATS_ATTR_{n}", 2**33 + i) for i, n in enumerate(names)]
    base = nl.service_attrs(Service(SVC4.key, "rr"))
    attrs = [*base, ("IPVS_SVC_ATTR_STATS", {"attrs": legacy}),
             ("IPVS_SVC_ATTR_STATS64", {"attrs": wide})]
    data = encode(nl.Cmd.NEW_SERVICE, [("IPVS_CMD_ATTR_SERVICE", {"attrs": attrs})])
    stats = replies.service(nested(data, replies.CMD_SERVICE)).stats
    assert stats.conns == 2**33 and stats.outbps == 2**33 + 9
    legacy_only = [*base, ("IPVS_SVC_ATTR_STATS", {"attrs": legacy})]
    data = encode(nl.Cmd.NEW_SERVICE, [("IPVS_CMD_ATTR_SERVICE", {"attrs": legacy_only})])
    assert replies.service(nested(data, replies.CMD_SERVICE)).stats.inpkts == 1


def test_info_reply_decodes_its_own_attribute_space() -> None:
    body = struct.pack("=BBH", nl.Cmd.SET_INFO, 1, 0)  # the kernel answers with cmd SET_INFO
    body += struct.pack("=HHI", 8, 1, 0x010201) + struct.pack("=HHI", 8, 2, 4096)
    data = struct.pack("=IHHII", 16 + len(body), 0x20, 0, 1, 0) + body
    info = replies.info(reply_payload(data))
    assert (info.version, info.version_code, info.conn_tab_size) == ("1.2.1", 0x010201, 4096)


def test_daemon_decodes_back() -> None:
    for group in (IPv4Address("224.0.0.81"), IPv6Address("ff02::81")):
        daemon = SyncDaemon(SyncState.MASTER, "sync0", 7, 1472, group, 8848, 1)
        data = encode(nl.Cmd.NEW_DAEMON,
                      [("IPVS_CMD_ATTR_DAEMON", {"attrs": nl.daemon_attrs(daemon)})])
        assert replies.daemon(nested(data, replies.CMD_DAEMON)) == daemon


@pytest.mark.parametrize(("af", "prefix"), [(V4, 32), (V4, 0), (V4, 16), (V6, 128), (V6, 48)])
def test_netmask_decodes_back(af: int, prefix: int) -> None:
    key = ServiceKey(af, fwmark=1)
    assert _service_back(Service(key, "rr", netmask=prefix)).netmask == prefix


def test_timeouts_reply() -> None:
    data = encode(nl.Cmd.SET_CONFIG, nl.timeout_attrs(Timeouts(900, 120, 300)))
    assert replies.timeouts(reply_payload(data)) == Timeouts(900, 120, 300)


_v4 = st.integers(1, 2**32 - 1).map(IPv4Address)
_v6 = st.integers(1, 2**128 - 1).map(IPv6Address)
_flags = st.frozensets(st.sampled_from(["persistent", "onepacket", "sched-flag-1",
                                        "sched-flag-2", "sched-flag-3"]))


@st.composite
def services(draw: st.DrawFn) -> Service:
    six = draw(st.booleans())
    af = V6 if six else V4
    if draw(st.booleans()):
        key = ServiceKey(af, fwmark=draw(st.integers(1, 2**32 - 1)))
    else:
        key = ServiceKey(af, draw(st.sampled_from(list(Protocol))), draw(_v6 if six else _v4),
                         draw(st.integers(0, 65535)))
    return Service(
        key, draw(st.sampled_from(["rr", "wlc", "sh", "mh", "lblcr"])), draw(_flags),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(1, 128) if six else st.integers(0, 32)),
        draw(st.sampled_from(["", "sip"])),
    )


@given(services())
def test_any_service_round_trips(service: Service) -> None:
    assert _service_back(service) == service


@given(st.builds(
    Destination,
    key=st.builds(DestKey, st.one_of(_v4, _v6), st.integers(0, 65535)),
    weight=st.integers(0, 2**31 - 1), forward=st.sampled_from([Forward.NAT, Forward.DR,
                                                               Forward.TUN]),
    u_threshold=st.integers(0, 2**32 - 1), l_threshold=st.integers(0, 2**32 - 1),
    tun_type=st.sampled_from(list(TunnelType)), tun_port=st.integers(0, 65535),
    tun_flags=st.integers(0, 3),
))
def test_any_destination_round_trips(dest: Destination) -> None:
    service_af = V4 if dest.key.addr.version == 4 else V6
    data = encode(nl.Cmd.NEW_DEST, [("IPVS_CMD_ATTR_DEST",
                                     {"attrs": nl.dest_attrs(service_af, dest)})])
    assert replies.dest(nested(data, replies.CMD_DEST), service_af).dest == dest
