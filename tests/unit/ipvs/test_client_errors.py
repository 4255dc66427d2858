"""IPVSClient errors that need no IPVS kernel: validation before sending, errno mapping, and
the missing-family case on a kernel without IPVS (this host's).

(Named test_client_errors.py: tests/kernel/test_client.py holds the kernel round trips and
pytest's default import mode needs distinct basenames.)
"""

from __future__ import annotations

import errno
import socket
from ipaddress import IPv4Address, IPv6Address

import pytest

from ipvs.client import IPVSClient, _map
from ipvs.errors import (
    Exists,
    InvalidArgument,
    IPVSError,
    IPVSPermissionError,
    IPVSUnavailable,
    NotFound,
)
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
KEY = ServiceKey(V4, Protocol.TCP, IPv4Address("192.0.2.1"), 80)


async def test_kernel_without_ipvs_raises_unavailable() -> None:
    client = IPVSClient()
    try:
        await client.dump_services()
    except IPVSUnavailable as exc:
        assert exc.operation == "open"
        assert "modprobe ip_vs" in str(exc)
    else:
        pytest.skip("this kernel has IPVS: the kernel tier covers it")
    finally:
        client.close()


@pytest.mark.parametrize(("service", "field"), [
    (Service(ServiceKey(V6, Protocol.TCP, IPv6Address("fd00::1"), 80), "rr", netmask=0),
     "netmask"),
    (Service(ServiceKey(V6, Protocol.TCP, IPv6Address("fd00::1"), 80), "rr", netmask=129),
     "netmask"),
    (Service(KEY, "rr", netmask=33), "netmask"),
    (Service(KEY, ""), "scheduler"),
    (Service(KEY, "x" * 16), "scheduler"),
    (Service(KEY, "rr", pe_name="y" * 16), "pe_name"),
    (Service(KEY, "rr", frozenset({"sticky"})), "flags"),
    (Service(KEY, "rr", timeout=2**32), "timeout"),
    (Service(ServiceKey(V4, Protocol.TCP, IPv6Address("fd00::1"), 80), "rr"), "addr"),
    (Service(ServiceKey(V4, Protocol.TCP, IPv4Address("192.0.2.1"), 65536), "rr"), "port"),
    (Service(ServiceKey(V4, fwmark=2**32), "rr"), "fwmark"),
    (Service(ServiceKey(99, fwmark=1), "rr"), "af"),
])
async def test_service_refused_before_sending(service: Service, field: str) -> None:
    client = IPVSClient()  # never opened: validation comes first
    with pytest.raises(InvalidArgument) as err:
        await client.new_service(service)
    assert (err.value.field, err.value.errno, err.value.operation) == (field, 0, "new_service")


@pytest.mark.parametrize(("dest", "field"), [
    (Destination(DestKey(IPv4Address("10.0.0.1"), 80), weight=-1), "weight"),
    (Destination(DestKey(IPv4Address("10.0.0.1"), 80), weight=2**31), "weight"),
    (Destination(DestKey(IPv4Address("10.0.0.1"), 80), u_threshold=-1), "u_threshold"),
    (Destination(DestKey(IPv4Address("10.0.0.1"), 80), tun_port=70000), "tun_port"),
    (Destination(DestKey(IPv4Address("10.0.0.1"), 80), af=V6), "af"),
    (Destination(DestKey(IPv4Address("10.0.0.1"), -1)), "port"),
])
async def test_destination_refused_before_sending(dest: Destination, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        await IPVSClient().set_dest(KEY, dest)
    assert (err.value.field, err.value.operation) == (field, "set_dest")


async def test_daemon_and_timeouts_refused_before_sending() -> None:
    with pytest.raises(InvalidArgument) as err:
        await IPVSClient().new_daemon(SyncDaemon(SyncState.MASTER, "an-interface-name-too-long"))
    assert err.value.field == "mcast_ifn"
    with pytest.raises(InvalidArgument) as err:
        await IPVSClient().new_daemon(SyncDaemon(SyncState.MASTER, "eth0", mcast_ttl=256))
    assert err.value.field == "mcast_ttl"
    with pytest.raises(InvalidArgument) as err:
        await IPVSClient().set_timeouts(Timeouts(tcp=-5))
    assert err.value.field == "tcp"


def test_errno_mapping() -> None:
    svc = Service(KEY, "nosuch")
    assert isinstance(_map(errno.EPERM, "dump_services"), IPVSPermissionError)
    assert isinstance(_map(errno.EPERM, "dump_services"), PermissionError)
    exists = _map(errno.EEXIST, "new_service", service=svc)
    assert isinstance(exists, Exists) and "TCP 192.0.2.1:80 already exists" in str(exists)
    missing = _map(errno.ESRCH, "delete_service", key=KEY)
    assert isinstance(missing, NotFound) and isinstance(missing, LookupError)
    assert isinstance(_map(errno.ENOENT, "delete_dest", key=KEY), NotFound)
    sched = _map(errno.ENOENT, "new_service", service=svc)
    assert isinstance(sched, InvalidArgument) and sched.field == "scheduler"
    assert isinstance(sched, ValueError)
    pe = _map(errno.ENOENT, "new_service", service=Service(KEY, "rr", pe_name="nosuch"))
    assert isinstance(pe, InvalidArgument) and pe.field == "scheduler/pe_name"
    other = _map(errno.EBUSY, "flush")
    assert type(other) is IPVSError and "EBUSY" in str(other)


@pytest.mark.parametrize(("code", "dest", "field"), [
    (errno.ERANGE, Destination(DestKey(IPv4Address("10.0.0.1"), 80), u_threshold=1,
                               l_threshold=2), "l_threshold"),
    (errno.EINVAL, Destination(DestKey(IPv4Address("10.0.0.1"), 80), forward=Forward.TUN,
                               tun_type=TunnelType.GUE), "tun_port"),
    (errno.EINVAL, Destination(DestKey(IPv4Address("10.0.0.1"), 80), forward=Forward.TUN,
                               tun_type=TunnelType.GRE,
                               tun_flags=TunnelFlag.CSUM | TunnelFlag.REMCSUM), "tun_flags"),
    (errno.EINVAL, Destination(DestKey(IPv6Address("fd00::1"), 80), forward=Forward.NAT),
     "af"),
    (errno.EINVAL, Destination(DestKey(IPv4Address("224.0.0.1"), 80), forward=Forward.NAT),
     "addr"),
    (errno.EINVAL, Destination(DestKey(IPv4Address("10.0.0.1"), 80), forward=Forward.DR),
     "addr"),
])
def test_kernel_einval_names_the_field(code: int, dest: Destination, field: str) -> None:
    err = _map(code, "new_dest", key=KEY, dest=dest)
    assert isinstance(err, InvalidArgument)
    assert (err.field, err.errno, err.operation) == (field, code, "new_dest")
