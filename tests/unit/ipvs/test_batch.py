from __future__ import annotations

import asyncio
import socket
import struct
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ipvs import netlink as nl
from ipvs.batch import BatchSender, encode, encode_ops, error_for, messages, op_payload
from ipvs.errors import Exists, IPVSError, NotFound
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
from ipvs.reconcile import (
    AddDest,
    AddService,
    DelDest,
    DelService,
    EditDest,
    EditService,
    Flush,
    Op,
)
from ipvs.wire import daemon_attr, daemon_state_attr, timeouts_attrs

v4 = st.builds(IPv4Address, st.integers(1, 2**32 - 1))
v6 = st.builds(IPv6Address, st.integers(1, 2**128 - 1))
keys = st.one_of(
    st.builds(lambda a, p, port: ServiceKey(socket.AF_INET, p, a, port), v4,
              st.sampled_from(list(Protocol)), st.integers(0, 65535)),
    st.builds(lambda a, port: ServiceKey(socket.AF_INET6, Protocol.TCP, a, port), v6,
              st.integers(0, 65535)),
    st.builds(lambda af, m: ServiceKey(af, fwmark=m),
              st.sampled_from([socket.AF_INET, socket.AF_INET6]), st.integers(1, 2**32 - 1)),
)
flags = st.frozensets(st.sampled_from(["persistent", "onepacket", "sched-flag-1",
                                       "sched-flag-2", "sched-flag-3", "hashed"]))


@st.composite
def services(draw: st.DrawFn) -> Service:
    key = draw(keys)
    full = 128 if key.af == socket.AF_INET6 else 32
    return Service(key, draw(st.sampled_from(["rr", "wlc", "sh", "mh"])), draw(flags),
                   draw(st.integers(0, 2**31)), draw(st.integers(0, full)),
                   draw(st.sampled_from(["", "sip"])))


dests = st.builds(
    lambda a, port, w, f, u, low, af, tt, tp, tf: Destination(
        DestKey(a, port), w, f, u, low, af, tt, tp, tf),
    st.one_of(v4, v6), st.integers(0, 65535), st.integers(0, 2**31), st.sampled_from(
        [Forward.NAT, Forward.DR, Forward.TUN]), st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1), st.sampled_from([0, socket.AF_INET, socket.AF_INET6]),
    st.sampled_from(list(TunnelType)), st.integers(0, 65535), st.integers(0, 3))

ops = st.one_of(
    st.builds(AddService, services()), st.builds(EditService, services()),
    st.builds(DelService, keys), st.builds(AddDest, keys, dests),
    st.builds(EditDest, keys, dests),
    st.builds(DelDest, keys, st.builds(DestKey, st.one_of(v4, v6), st.integers(0, 65535))),
    st.just(Flush()),
)


def reference(op: Op) -> tuple[nl.Cmd, list[tuple[str, Any]]]:
    """What ipvs.client sends for the op, built with ipvs.netlink's attribute lists."""
    def svc(attrs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [("IPVS_CMD_ATTR_SERVICE", {"attrs": attrs})]

    def dest(attrs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        return [("IPVS_CMD_ATTR_DEST", {"attrs": attrs})]

    if isinstance(op, AddService):
        return nl.Cmd.NEW_SERVICE, svc(nl.service_attrs(op.service))
    if isinstance(op, EditService):
        return nl.Cmd.SET_SERVICE, svc(nl.service_attrs(op.service))
    if isinstance(op, DelService):
        return nl.Cmd.DEL_SERVICE, svc(nl.service_key_attrs(op.key))
    if isinstance(op, AddDest):
        return nl.Cmd.NEW_DEST, svc(nl.service_key_attrs(op.service)) + dest(
            nl.dest_attrs(op.service.af, op.dest))
    if isinstance(op, EditDest):
        return nl.Cmd.SET_DEST, svc(nl.service_key_attrs(op.service)) + dest(
            nl.dest_attrs(op.service.af, op.dest))
    if isinstance(op, DelDest):
        return nl.Cmd.DEL_DEST, svc(nl.service_key_attrs(op.service)) + dest(
            nl.dest_key_attrs(op.service.af, op.dest))
    return nl.Cmd.FLUSH, []


@settings(max_examples=400, deadline=None)
@given(ops, st.integers(1, 0xFFFF), st.integers(0, 2**32 - 1))
def test_struct_encoding_is_byte_identical_to_pyroute2(op: Op, family: int, seq: int) -> None:
    cmd, attrs = reference(op)
    msg = nl.request(cmd, attrs)
    msg["header"]["type"] = family
    msg["header"]["flags"] = 0x5  # NLM_F_REQUEST | NLM_F_ACK
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    c, payload = op_payload(op)
    assert c == cmd
    assert encode(family, seq, c, payload) == bytes(msg.data)


def test_header_layout() -> None:
    data = encode(30, 9, 17, b"")
    assert struct.unpack("=IHHIIBBH", data) == (20, 30, 5, 9, 0, 17, 1, 0)


def test_kernel_errors_map_to_the_client_exceptions() -> None:
    k = ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address("10.0.0.1"), 80)
    assert isinstance(error_for(2, DelService(k)), NotFound)
    assert isinstance(error_for(3, DelService(k)), NotFound)
    assert isinstance(error_for(17, AddService(Service(k))), Exists)
    err = error_for(22, AddService(Service(k)))
    assert type(err) is IPVSError and err.errno == 22 and "Invalid argument" in str(err)


daemons = st.builds(
    SyncDaemon, state=st.sampled_from(list(SyncState)),
    mcast_ifn=st.text("abcdefgh0123456789", min_size=1, max_size=15),
    sync_id=st.integers(0, 2**32 - 1), sync_maxlen=st.integers(0, 65535),
    mcast_group=st.one_of(st.none(), v4, v6), mcast_port=st.integers(0, 65535),
    mcast_ttl=st.integers(0, 255))


@settings(max_examples=200, deadline=None)
@given(daemons)
def test_daemon_attributes_are_byte_identical_to_pyroute2(daemon: SyncDaemon) -> None:
    msg = nl.request(nl.Cmd.NEW_DAEMON, [("IPVS_CMD_ATTR_DAEMON",
                                          {"attrs": nl.daemon_attrs(daemon)})])
    msg.encode()
    assert bytes(msg.data)[20:] == daemon_attr(daemon)
    msg = nl.request(nl.Cmd.DEL_DAEMON, [("IPVS_CMD_ATTR_DAEMON", {"attrs": [
        ("IPVS_DAEMON_ATTR_STATE", int(daemon.state))]})])
    msg.encode()
    assert bytes(msg.data)[20:] == daemon_state_attr(daemon.state)


@given(st.builds(Timeouts, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                 st.integers(0, 2**32 - 1)))
def test_timeout_attributes_are_byte_identical_to_pyroute2(timeouts: Timeouts) -> None:
    msg = nl.request(nl.Cmd.SET_CONFIG, nl.timeout_attrs(timeouts))
    msg.encode()
    assert bytes(msg.data)[20:] == timeouts_attrs(timeouts)


def test_only_the_last_message_of_a_datagram_asks_for_an_ack() -> None:
    k = ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address("10.0.0.1"), 80)
    sender = BatchSender()
    sent: list[bytes] = []
    sender._send = sent.append  # type: ignore[method-assign]
    sender._family = 30

    async def no_answer() -> memoryview:
        seq = sender._seq  # the kernel's ack of the last message, then nothing else
        return memoryview(struct.pack("=IHHIIi", 20, 2, 0, seq, 0, 0))

    sender._recv = no_answer  # type: ignore[method-assign]
    sender._sock = object()  # type: ignore[assignment]
    ops = [AddService(Service(k))] + [AddDest(k, Destination(DestKey(IPv4Address(f"10.1.0.{i}"),
                                                                       80))) for i in range(1, 6)]
    assert asyncio.run(sender.run(ops)) == [None] * 6
    (datagram,) = sent
    flags, pos = [], 0
    while pos < len(datagram):
        length, _family, flag = struct.unpack_from("=IHH", datagram, pos)
        flags.append(flag)
        pos += length
    assert flags == [1, 1, 1, 1, 1, 5]


def _one_by_one(family: int, first: int, ops: list[Op]) -> bytes:
    last = first + len(ops) - 1
    return b"".join(encode(family, seq, *op_payload(op), flags=5 if seq == last else 1)
                    for seq, op in enumerate(ops, first))


@st.composite
def op_runs(draw: st.DrawFn) -> list[Op]:
    """Ops as the reconciler emits them: runs of destination ops on one service key object,
    mixed with service ops and keys equal to but not the same object as earlier ones."""
    out: list[Op] = []
    for _ in range(draw(st.integers(0, 5))):
        key = draw(keys)
        if draw(st.booleans()):
            out.append(draw(st.one_of(st.builds(AddService, services()), ops)))
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from([AddDest, EditDest, DelDest]))
            dest = draw(dests)
            out.append(DelDest(key, dest.key) if kind is DelDest else kind(key, dest))
    return out


@settings(max_examples=300, deadline=None)
@given(op_runs(), st.integers(1, 0xFFFF), st.integers(1, 2**31))
def test_encode_ops_equals_one_encode_per_op(ops: list[Op], family: int, first: int) -> None:
    assert encode_ops(family, first, ops) == _one_by_one(family, first, ops)


def test_messages_walks_every_header_and_stops_at_a_bad_length() -> None:
    data = encode(30, 7, 5, b"abcd") + encode(31, 8, 6, b"") + struct.pack("=IHHI", 3, 0, 0, 9)
    assert list(messages(data)) == [(0, 24, 30, 7), (24, 20, 31, 8)]
    assert list(messages(memoryview(data)[:30])) == [(0, 24, 30, 7)]


def _answering_sender(errors: dict[int, int]) -> tuple[BatchSender, list[bytes]]:
    """A sender whose 'kernel' acknowledges each datagram's last message and fails the
    requests whose sequence number is in ``errors`` (errno) -- in one reply datagram."""
    sender = BatchSender(chunk=4)
    sent: list[bytes] = []
    sender._family = 30
    sender._sock = object()  # type: ignore[assignment]

    def send(data: bytes) -> None:
        sent.append(data)

    async def answer() -> memoryview:
        seqs = [seq for _pos, _len, _kind, seq in messages(sent[-1])]
        out = b"".join(struct.pack("=IHHIIi", 20, 2, 0, seq, 0, -errors.get(seq, 0))
                       for seq in seqs if seq in errors or seq == seqs[-1])
        return memoryview(out)

    sender._send = send  # type: ignore[method-assign]
    sender._recv = answer  # type: ignore[method-assign]
    return sender, sent


def test_failures_are_reported_per_op_across_datagrams() -> None:
    k = ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address("10.0.0.1"), 80)
    ops: list[Op] = [AddService(Service(k))]
    ops += [AddDest(k, Destination(DestKey(IPv4Address(f"10.1.0.{i}"), 80))) for i in range(1, 10)]
    sender, sent = _answering_sender({3: 17, 6: 2, 10: 22})  # seqs 1..10 = ops 0..9
    failed = asyncio.run(sender.failures(ops))
    assert len(sent) == 3  # chunks of 4: 4 + 4 + 2 requests, one sendmsg each
    assert sorted(failed) == [2, 5, 9]
    assert isinstance(failed[2], Exists) and isinstance(failed[5], NotFound)
    assert failed[9].errno == 22 and "AddDest" in str(failed[9])
    sender2, _ = _answering_sender({3: 17, 6: 2, 10: 22})
    results = asyncio.run(sender2.run(ops))
    assert [type(r).__name__ if r else None for r in results] == [
        None, None, "Exists", None, None, "NotFound", None, None, None, "IPVSError"]


def test_accepted_destinations_are_decoded_as_the_objects_sent() -> None:
    from test_dumpdecode import kernel_dest

    k = ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address("10.0.0.1"), 80)
    sent_dests = [Destination(DestKey(IPv4Address(f"10.1.0.{i}"), 80), weight=i)
                  for i in range(1, 6)]
    ops: list[Op] = [AddDest(k, d) for d in sent_dests]
    sender, _ = _answering_sender({2: 17})  # the second add failed: not ours in the kernel
    asyncio.run(sender.failures(ops))
    sender.decoder.next_dump()
    sender._prime()  # what dump() does before decoding
    got = [sender.decoder.dest(kernel_dest(d.key.addr, 80, 3, d.weight, 0, 0, (1, 2, 0),
                                           [0] * 10), socket.AF_INET) for d in sent_dests]
    assert [g.dest == d for g, d in zip(got, sent_dests, strict=True)] == [True] * 5
    assert [g.dest is d for g, d in zip(got, sent_dests, strict=True)] == [
        True, False, True, True, True]
    assert got[0].active_conns == 1 and got[0].inactive_conns == 2  # counters: the dump's


def test_expected_objects_replace_what_the_last_dump_decoded() -> None:
    """Entries adopted at start were decoded as the kernel's copies; once the runner says
    they are its own (equal) objects, the next dump gives those, even for cached payloads."""
    from test_dumpdecode import kernel_dest

    k = ServiceKey(socket.AF_INET, Protocol.TCP, IPv4Address("10.0.0.1"), 80)
    mine = [Destination(DestKey(IPv4Address(f"10.1.0.{i}"), 80)) for i in (1, 2)]
    payloads = [kernel_dest(d.key.addr, 80, 3, 1, 0, 0, (0, 0, 0), [0] * 10) for d in mine]
    sender = BatchSender()
    sender.decoder.next_dump()
    adopted = [sender.decoder.dest(p, socket.AF_INET) for p in payloads]
    assert adopted[0].dest == mine[0] and adopted[0].dest is not mine[0]
    sender.expect(None, k, mine, [o.dest for o in adopted])
    for _ in range(3):
        sender.decoder.next_dump()
        sender._prime()  # what dump() does before decoding
        got = [sender.decoder.dest(p, socket.AF_INET) for p in payloads]
        assert [g.dest is d for g, d in zip(got, mine, strict=True)] == [True, True]
