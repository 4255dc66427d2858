"""IPVSClient against the real kernel: every attribute round-trips through our dump and ipvsadm.

ipvsadm (Debian 1.31, its own libipvs) is the independent reader: ``-S -n`` prints every service
and destination attribute as the command line that would recreate it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import ip_address

import pytest
from guest.netns import IPVS_SCHEDULERS, GuestNetns

from ipvs.client import IPVSClient
from ipvs.errors import Exists, InvalidArgument, NotFound
from ipvs.model import (
    Destination,
    DestKey,
    Forward,
    ObservedService,
    Protocol,
    Service,
    ServiceKey,
    SyncDaemon,
    SyncState,
    Timeouts,
    TunnelFlag,
    TunnelType,
    canonical_flags,
)

pytestmark = pytest.mark.kernel

V4, V6 = socket.AF_INET, socket.AF_INET6


def key(proto: Protocol, addr: str, port: int) -> ServiceKey:
    a = ip_address(addr)
    return ServiceKey(af=V6 if a.version == 6 else V4, protocol=proto, addr=a, port=port)


def dkey(addr: str, port: int) -> DestKey:
    return DestKey(ip_address(addr), port)


def saved(ns: GuestNetns) -> set[str]:
    return set(ns.ipvsadm("-S", "-n").splitlines())


def canonical(service: Service) -> Service:
    return dataclasses.replace(service, flags=canonical_flags(service.flags))


# (service, the line `ipvsadm -S -n` prints for it)
SERVICES = [
    (Service(key(Protocol.TCP, "192.168.244.10", 8066), "rr", frozenset({"persistent"}), 50, 24),
     "-A -t 192.168.244.10:8066 -s rr -p 50 -M 255.255.255.0"),
    (Service(key(Protocol.TCP, "192.168.244.10", 8067), "wlc", frozenset({"persistent"}), 300),
     "-A -t 192.168.244.10:8067 -s wlc -p 300"),
    (Service(key(Protocol.UDP, "192.168.244.10", 5060), "rr", frozenset({"persistent"}), 30, 32,
             "sip"),
     "-A -u 192.168.244.10:5060 -s rr -p 30 --pe sip"),
    (Service(key(Protocol.SCTP, "1.2.3.4", 9), "lblcr"),
     "-A --sctp-service 1.2.3.4:9 -s lblcr"),
    (Service(key(Protocol.UDP, "fd00::10", 53), "mh",
             frozenset({"mh-port", "mh-fallback", "onepacket"}), netmask=128),
     "-A -u [fd00::10]:53 -s mh -o -b mh-fallback,mh-port"),
    (Service(key(Protocol.TCP, "fd00::11", 443), "sh", frozenset({"sh-fallback"}), netmask=128),
     "-A -t [fd00::11]:443 -s sh -b sh-fallback"),
    (Service(ServiceKey(af=V4, fwmark=7), "sh", frozenset({"sh-port"})),
     "-A -f 7 -s sh -b sh-port"),
    (Service(ServiceKey(af=V6, fwmark=8), "wlc", frozenset({"persistent"}), 60, 64),
     "-A -f 8 -6 -s wlc -p 60 -M 64"),
]


async def test_service_attributes_round_trip(ipvs_ns: GuestNetns) -> None:
    async with IPVSClient() as ipvs:
        for service, _ in SERVICES:
            await ipvs.new_service(service)
        observed = await ipvs.dump_services(dests=False)
        assert {o.service for o in observed} == {canonical(s) for s, _ in SERVICES}
        for service, _ in SERVICES:
            got = await ipvs.get_service(service.key)
            assert got.service == canonical(service)
            assert got.dests == ()
    assert saved(ipvs_ns) == {line for _, line in SERVICES}
    listing = ipvs_ns.ipvsadm("-L", "-n")
    assert "TCP  192.168.244.10:8066 rr persistent 50 mask 255.255.255.0" in listing
    assert "UDP  [fd00::10]:53 mh (mh-fallback,mh-port) ops" in listing
    assert "FWM  8 IPv6 wlc persistent 60 mask 64" in listing


async def test_every_kernel_scheduler(ipvs_ns: GuestNetns, ipvs_modules: tuple[str, ...]) -> None:
    assert set(ipvs_modules) == set(IPVS_SCHEDULERS)
    wanted = [Service(key(Protocol.TCP, "10.1.0.1", port), name)
              for port, name in enumerate(IPVS_SCHEDULERS, start=1)]
    async with IPVSClient() as ipvs:
        for service in wanted:
            await ipvs.new_service(service)
        assert {o.service for o in await ipvs.dump_services()} == set(wanted)
    assert saved(ipvs_ns) == {f"-A -t 10.1.0.1:{port} -s {name}"
                              for port, name in enumerate(IPVS_SCHEDULERS, start=1)}


async def test_set_service_replaces_every_field(ipvs_ns: GuestNetns) -> None:
    k = key(Protocol.TCP, "192.0.2.1", 80)
    async with IPVSClient() as ipvs:
        await ipvs.new_service(Service(k, "rr"))
        changed = Service(k, "sh", frozenset({"persistent", "sh-port"}), 120, 24)
        await ipvs.set_service(changed)
        assert (await ipvs.get_service(k)).service == canonical(changed)
        assert saved(ipvs_ns) == {"-A -t 192.0.2.1:80 -s sh -p 120 -M 255.255.255.0 -b sh-port"}
        plain = Service(k, "wrr")  # persistence and flags must be cleared, not kept
        await ipvs.set_service(plain)
        assert (await ipvs.get_service(k)).service == plain
    assert saved(ipvs_ns) == {"-A -t 192.0.2.1:80 -s wrr"}


V4_DESTS = [
    (Destination(dkey("192.168.244.20", 8066), weight=2, forward=Forward.DR,
                 u_threshold=10, l_threshold=5),
     "-a -t 192.168.244.10:8066 -r 192.168.244.20:8066 -g -w 2"),
    (Destination(dkey("192.168.244.21", 8066), weight=0, forward=Forward.NAT),
     "-a -t 192.168.244.10:8066 -r 192.168.244.21:8066 -m -w 0"),
    (Destination(dkey("192.168.244.22", 8066), forward=Forward.TUN, tun_type=TunnelType.GUE,
                 tun_port=6080, tun_flags=TunnelFlag.NOCSUM),
     "-a -t 192.168.244.10:8066 -r 192.168.244.22:8066 -i -w 1 --tun-type gue --tun-port 6080 "
     "--tun-nocsum"),
    (Destination(dkey("192.168.244.23", 8066), forward=Forward.TUN, tun_type=TunnelType.GRE,
                 tun_flags=TunnelFlag.CSUM),
     "-a -t 192.168.244.10:8066 -r 192.168.244.23:8066 -i -w 1 --tun-type gre --tun-csum"),
    (Destination(dkey("192.168.244.24", 8066), weight=65535, forward=Forward.TUN,
                 tun_type=TunnelType.GUE, tun_port=6081, tun_flags=TunnelFlag.REMCSUM),
     "-a -t 192.168.244.10:8066 -r 192.168.244.24:8066 -i -w 65535 --tun-type gue "
     "--tun-port 6081 --tun-remcsum"),
    (Destination(dkey("fd00::24", 8066), forward=Forward.TUN, af=V6),  # mixed family: TUN only
     "-a -t 192.168.244.10:8066 -r [fd00::24]:8066 -i -w 1 --tun-type ipip"),
]


async def test_destination_attributes_round_trip(ipvs_ns: GuestNetns) -> None:
    svc4 = Service(key(Protocol.TCP, "192.168.244.10", 8066), "wrr")
    svc6 = Service(key(Protocol.UDP, "fd00::10", 53), "rr", netmask=128)
    d6 = Destination(dkey("fd00::20", 53), weight=7, u_threshold=100, l_threshold=50)
    async with IPVSClient() as ipvs:
        await ipvs.new_service(svc4)
        await ipvs.new_service(svc6)
        for dest, _ in V4_DESTS:
            await ipvs.new_dest(svc4.key, dest)
        await ipvs.new_dest(svc6.key, d6)
        got4 = await ipvs.get_service(svc4.key)
        assert {o.dest for o in got4.dests} == {d for d, _ in V4_DESTS}
        assert [o.dest for o in await ipvs.dump_dests(svc6.key)] == [d6]
        by_service = {o.service.key: o for o in await ipvs.dump_services()}
        assert {o.dest for o in by_service[svc4.key].dests} == {d for d, _ in V4_DESTS}
    assert saved(ipvs_ns) == {
        "-A -t 192.168.244.10:8066 -s wrr",
        "-A -u [fd00::10]:53 -s rr",
        "-a -u [fd00::10]:53 -r [fd00::20]:53 -g -w 7",
        *(line for _, line in V4_DESTS),
    }
    thresholds = _rows(ipvs_ns.ipvsadm("-L", "-n", "--thresholds"))
    assert thresholds["192.168.244.20:8066"] == ["10", "5", "0", "0"]
    assert thresholds["192.168.244.21:8066"] == ["0", "0", "0", "0"]
    assert thresholds["[fd00::20]:53"] == ["100", "50", "0", "0"]
    tun = _rows(ipvs_ns.ipvsadm("-L", "-n", "--tun-info"))
    assert tun["192.168.244.22:8066"][:2] == ["Tunnel", "gue:6080:-c"]
    assert tun["192.168.244.23:8066"][:2] == ["Tunnel", "gre:+c"]
    assert tun["192.168.244.24:8066"][:2] == ["Tunnel", "gue:6081:r+c"]
    assert tun["[fd00::24]:8066"][:2] == ["Tunnel", "ipip"]


async def test_set_get_delete_destination(ipvs_ns: GuestNetns) -> None:
    svc = Service(key(Protocol.TCP, "192.0.2.1", 80), "wlc")
    first = Destination(dkey("198.51.100.1", 8080), weight=3)
    async with IPVSClient() as ipvs:
        await ipvs.new_service(svc)
        await ipvs.new_dest(svc.key, first)
        await ipvs.new_dest(svc.key, Destination(dkey("198.51.100.2", 8080)))
        changed = Destination(first.key, weight=9, forward=Forward.NAT, u_threshold=40,
                              l_threshold=20)
        await ipvs.set_dest(svc.key, changed)
        assert (await ipvs.get_dest(svc.key, first.key)).dest == changed
        assert "-a -t 192.0.2.1:80 -r 198.51.100.1:8080 -m -w 9" in saved(ipvs_ns)
        await ipvs.delete_dest(svc.key, first.key)
        assert [o.dest.key for o in await ipvs.dump_dests(svc.key)] == [dkey("198.51.100.2", 8080)]
        with pytest.raises(NotFound):
            await ipvs.get_dest(svc.key, first.key)
        await ipvs.delete_service(svc.key)
        assert await ipvs.dump_services() == []
    assert saved(ipvs_ns) == set()


async def test_flush_removes_everything(ipvs_ns: GuestNetns) -> None:
    ipvs_ns.ipvsadm("-A", "-t", "192.0.2.9:80", "-s", "rr")  # created by someone else
    async with IPVSClient() as ipvs:
        await ipvs.new_service(Service(ServiceKey(af=V4, fwmark=3), "rr"))
        assert len(await ipvs.dump_services()) == 2
        await ipvs.flush()
        assert await ipvs.dump_services() == []
    assert saved(ipvs_ns) == set()


def _rows(listing: str) -> dict[str, list[str]]:
    """``ipvsadm -L -n`` variants: first column (address, or 'FWM N') -> remaining columns."""
    rows = {}
    for line in listing.splitlines():
        fields = line.replace("->", " ").split()
        if len(fields) >= 2 and fields[0] in ("TCP", "UDP", "SCTP", "FWM"):
            rows[f"{fields[0]} {fields[1]}"] = fields[2:]
        elif line.startswith("  ->") and fields and fields[0] != "RemoteAddress:Port":
            rows[fields[0]] = fields[1:]
    return rows


async def test_stats_and_rates_match_ipvsadm(ipvs_ns: GuestNetns) -> None:
    svc = Service(key(Protocol.UDP, "10.255.0.1", 9999), "rr")  # a local address of the netns
    dest = Destination(dkey("10.255.7.7", 9999), forward=Forward.DR)
    payload = b"x" * 100
    async with IPVSClient() as ipvs:
        await ipvs.new_service(svc)
        await ipvs.new_dest(svc.key, dest)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(40):  # a local client: IPVS schedules it at LOCAL_OUT
                sock.sendto(payload, ("10.255.0.1", 9999))
                await asyncio.sleep(0.05)
        observed = await _poll(ipvs, svc.key, lambda o: o.stats.inpkts >= 40)
        assert observed.stats.conns == 1
        assert observed.stats.inpkts == 40
        assert observed.stats.inbytes == 40 * (len(payload) + 28)
        assert observed.dests[0].stats.inpkts == 40
        assert observed.dests[0].inactive_conns + observed.dests[0].active_conns == 1

        stats = _rows(ipvs_ns.ipvsadm("-L", "-n", "--stats", "--exact"))
        s = observed.stats
        assert stats["UDP 10.255.0.1:9999"] == [
            str(v) for v in (s.conns, s.inpkts, s.outpkts, s.inbytes, s.outbytes)]
        d = observed.dests[0].stats
        assert stats["10.255.7.7:9999"] == [
            str(v) for v in (d.conns, d.inpkts, d.outpkts, d.inbytes, d.outbytes)]

        # rates change every ~2 s: compare ipvsadm with our readings on both sides of it
        for _ in range(10):
            before = (await ipvs.get_service(svc.key)).stats
            rates = _rows(ipvs_ns.ipvsadm("-L", "-n", "--rate", "--exact"))
            after = (await ipvs.get_service(svc.key)).stats
            if before == after:
                break
        assert before == after
        assert before.inpps > 0 and before.inbps > 0  # traffic just happened
        assert rates["UDP 10.255.0.1:9999"] == [
            str(v) for v in (before.cps, before.inpps, before.outpps, before.inbps, before.outbps)]

        await ipvs.zero(svc.key)
        zeroed = await ipvs.get_service(svc.key)
        assert (zeroed.stats.conns, zeroed.stats.inpkts, zeroed.stats.inbytes) == (0, 0, 0)
        assert zeroed.dests[0].stats.inpkts == 0
    assert _rows(ipvs_ns.ipvsadm("-L", "-n", "--stats", "--exact"))[
        "UDP 10.255.0.1:9999"] == ["0", "0", "0", "0", "0"]


async def _poll(ipvs: IPVSClient, k: ServiceKey, ready: Callable[[ObservedService], bool],
                timeout: float = 15.0) -> ObservedService:
    deadline = time.monotonic() + timeout
    while True:
        observed = await ipvs.get_service(k)
        if ready(observed) or time.monotonic() > deadline:
            return observed
        await asyncio.sleep(0.5)


async def test_info_and_timeouts(ipvs_ns: GuestNetns) -> None:
    async with IPVSClient() as ipvs:
        info = await ipvs.info()
        header = ipvs_ns.ipvsadm("-L", "-n").splitlines()[0]
        assert header == (f"IP Virtual Server version {info.version} "
                          f"(size={info.conn_tab_size})")
        assert info.version_code >> 16 == 1
        assert await ipvs.get_timeouts() == Timeouts(900, 120, 300)  # fresh namespace
        await ipvs.set_timeouts(Timeouts(100, 20, 30))
        assert await ipvs.get_timeouts() == Timeouts(100, 20, 30)
        assert ipvs_ns.ipvsadm("-L", "--timeout").strip() == "Timeout (tcp tcpfin udp): 100 20 30"
        await ipvs.set_timeouts(Timeouts(tcp=200))  # 0 = unchanged
        assert await ipvs.get_timeouts() == Timeouts(200, 20, 30)


async def test_sync_daemons_master_and_backup(
    netns_factory: Callable[[], GuestNetns],
) -> None:
    master, backup = netns_factory(), netns_factory()
    master.ip("link", "add", "sync0", "type", "veth", "peer", "name", "sync0", "netns",
              backup.name)
    for ns, addr in ((master, "10.77.0.1/24"), (backup, "10.77.0.2/24")):
        ns.ip("addr", "add", addr, "dev", "sync0")
        ns.ip("link", "set", "sync0", "up")
    svc = Service(key(Protocol.UDP, "10.255.0.1", 5000), "rr")
    dest = Destination(dkey("10.255.9.9", 5000))
    m_daemon = SyncDaemon(SyncState.MASTER, "sync0", sync_id=9, mcast_ttl=2, mcast_port=8849)
    b_daemon = SyncDaemon(SyncState.BACKUP, "sync0", sync_id=9, mcast_port=8849)
    with master.entered():
        m_ipvs = IPVSClient()
        await m_ipvs.open()
    b_ipvs = IPVSClient(netns=backup.name)  # the other way to reach a namespace
    await b_ipvs.open()
    try:
        for client in (m_ipvs, b_ipvs):
            await client.new_service(svc)
            await client.new_dest(svc.key, dest)
        await b_ipvs.new_daemon(b_daemon)
        await m_ipvs.new_daemon(m_daemon)
        with pytest.raises(Exists):
            await m_ipvs.new_daemon(m_daemon)
        (m_seen,) = await m_ipvs.dump_daemons()
        (b_seen,) = await b_ipvs.dump_daemons()
        assert (m_seen.state, m_seen.mcast_ifn, m_seen.sync_id, m_seen.mcast_ttl,
                m_seen.mcast_port) == (SyncState.MASTER, "sync0", 9, 2, 8849)
        assert str(m_seen.mcast_group) == "224.0.0.81"  # kernel default
        assert (b_seen.state, b_seen.sync_id) == (SyncState.BACKUP, 9)
        assert re.search(r"master sync daemon \(mcast=sync0, syncid=9, maxlen=\d+, "
                         r"group=224\.0\.0\.81, port=8849, ttl=2\)",
                         master.ipvsadm("-L", "--daemon"))
        assert "backup sync daemon (mcast=sync0, syncid=9" in backup.ipvsadm("-L", "--daemon")

        # a connection made through the master shows up in the backup's table
        with master.entered(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(6):
                sock.sendto(b"sync me", ("10.255.0.1", 5000))
        deadline = time.monotonic() + 20
        while "10.255.0.1:5000" not in backup.ipvsadm("-L", "-n", "-c"):
            assert time.monotonic() < deadline, master.ipvsadm("-L", "-n", "-c")
            await asyncio.sleep(0.5)

        await m_ipvs.delete_daemon(SyncState.MASTER)
        await b_ipvs.delete_daemon(SyncState.BACKUP)
        assert await m_ipvs.dump_daemons() == []
        assert await b_ipvs.dump_daemons() == []
        with pytest.raises(NotFound):
            await m_ipvs.delete_daemon(SyncState.MASTER)
    finally:
        m_ipvs.close()
        b_ipvs.close()


async def test_kernel_errors_become_clear_exceptions(ipvs_ns: GuestNetns) -> None:
    svc = Service(key(Protocol.TCP, "192.0.2.1", 80), "rr")
    missing = key(Protocol.TCP, "192.0.2.99", 80)
    async with IPVSClient() as ipvs:
        await ipvs.new_service(svc)
        with pytest.raises(Exists):
            await ipvs.new_service(svc)
        with pytest.raises(NotFound) as nf:
            await ipvs.delete_service(missing)
        assert nf.value.operation == "delete_service" and "192.0.2.99:80" in str(nf.value)
        with pytest.raises(NotFound):
            await ipvs.get_service(missing)
        with pytest.raises(NotFound):
            await ipvs.new_dest(missing, Destination(dkey("198.51.100.1", 80)))
        with pytest.raises(NotFound):
            await ipvs.delete_dest(svc.key, dkey("198.51.100.1", 80))
        await ipvs.new_dest(svc.key, Destination(dkey("198.51.100.1", 80)))
        with pytest.raises(Exists):
            await ipvs.new_dest(svc.key, Destination(dkey("198.51.100.1", 80)))

        cases = [  # (coroutine, field, errno name) -- kernel-side refusals
            (ipvs.new_dest(svc.key, Destination(dkey("224.0.0.5", 80))), "addr", "EINVAL"),
            (ipvs.new_dest(svc.key, Destination(dkey("198.51.100.2", 80), forward=Forward.TUN,
                                                tun_type=TunnelType.GUE)), "tun_port", "EINVAL"),
            (ipvs.new_dest(svc.key, Destination(dkey("198.51.100.3", 80), u_threshold=1,
                                                l_threshold=5)), "l_threshold", "ERANGE"),
            (ipvs.new_dest(svc.key, Destination(dkey("fd00::5", 80), forward=Forward.DR)),
             "af", "EINVAL"),
            (ipvs.new_service(Service(missing, "nosuchsched")), "scheduler", "ENOENT"),
            (ipvs.new_daemon(SyncDaemon(SyncState.MASTER, "nosuchif0")), "mcast_ifn", "ENODEV"),
        ]
        for coro, field, code in cases:
            with pytest.raises(InvalidArgument) as err:
                await coro
            assert err.value.field == field, str(err.value)
            assert err.value.errno == getattr(errno, code), str(err.value)
        # refused before sending: the kernel would take it but mean something else
        with pytest.raises(InvalidArgument) as err:
            await ipvs.new_service(Service(key(Protocol.TCP, "fd00::1", 80), "rr", netmask=0))
        assert (err.value.field, err.value.errno) == ("netmask", 0)
        assert [o.service for o in await ipvs.dump_services(dests=False)] == [svc]


def test_needs_cap_net_admin(ipvs_ns: GuestNetns) -> None:
    """Root without CAP_NET_ADMIN (dropped from the bounding set before exec) is refused."""
    code = (
        "import asyncio\n"
        "from ipvs.client import IPVSClient\n"
        "from ipvs.errors import IPVSPermissionError\n"
        "async def main():\n"
        "    async with IPVSClient() as c:\n"
        "        try:\n"
        "            await c.dump_services()\n"
        "        except IPVSPermissionError as e:\n"
        "            print('denied', isinstance(e, PermissionError), e.operation)\n"
        "asyncio.run(main())\n"
    )
    root = __file__.rsplit("/tests/", 1)[0]
    proc = subprocess.run(
        ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
         sys.executable, "-c", code],
        capture_output=True, text=True, timeout=120, cwd=root,
        env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"},
    )
    assert proc.stdout.strip() == "denied True dump_services", proc.stderr
