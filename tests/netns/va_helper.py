"""Child process for tests/netns/test_adapters.py, run inside a namespace with ``ip netns exec``.

Each subcommand prints JSON lines on stdout: ``{"ready": ...}`` once set up, then results.
Runs the real adapters (raw sockets, AF_PACKET, rtnetlink) in the namespace it was started in.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import structlog

structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

from vrrpd.vrrp.addresses import NetlinkAddressManager, Vip  # noqa: E402
from vrrpd.vrrp.garp import GarpScheduler, GarpSettings, GarpTarget, PacketGarpSender  # noqa: E402
from vrrpd.vrrp.links import NetlinkLinkMonitor  # noqa: E402
from vrrpd.vrrp.sockets import VrrpSocketPool  # noqa: E402


def emit(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


async def cmd_recv(ifname: str, count: str, seconds: str, join: str = "1") -> None:
    """Receive ``count`` VRRP packets on ``ifname`` (or stop after ``seconds``)."""
    got: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
    mgr = NetlinkAddressManager()
    link = await mgr.link(ifname)
    pool = VrrpSocketPool(lambda data, ifindex: got.put_nowait((data, ifindex)))
    pool.get(ifname, link.index, join_multicast=join == "1")
    emit(ready=True, ifindex=link.index)
    deadline = time.monotonic() + float(seconds)
    n = 0
    while n < int(count):
        try:
            data, ifindex = await asyncio.wait_for(got.get(), deadline - time.monotonic())
        except TimeoutError:
            break
        n += 1
        emit(packet=data.hex(), ifindex=ifindex, t=time.time())
    emit(done=n)
    pool.close()
    await mgr.close()


async def cmd_send(ifname: str, dst: str, packet_hex: str, listen: str = "0") -> None:
    """Send one packet on ``ifname``'s VRRP socket, then count what comes back for ``listen`` s."""
    got: list[bytes] = []
    mgr = NetlinkAddressManager()
    link = await mgr.link(ifname)
    pool = VrrpSocketPool(lambda data, ifindex: got.append(data))
    sock = pool.get(ifname, link.index)
    emit(ready=True, primary=await mgr.primary_ipv4(ifname))
    ok = sock.send(bytes.fromhex(packet_hex), dst)
    await asyncio.sleep(float(listen))
    emit(sent=ok, echoed=len(got), t=time.time())
    pool.close()
    await mgr.close()


async def cmd_sendloop(ifname: str, dst: str, packet_hex: str, count: str, period: str) -> None:
    """Send the same packet ``count`` times, ``period`` s apart (a master's adverts)."""
    mgr = NetlinkAddressManager()
    link = await mgr.link(ifname)
    pool = VrrpSocketPool(lambda data, ifindex: None)
    sock = pool.get(ifname, link.index)
    emit(ready=True)
    sent = 0
    for _ in range(int(count)):
        sent += sock.send(bytes.fromhex(packet_hex), dst)
        await asyncio.sleep(float(period))
    emit(sent=sent, t=time.time())
    pool.close()
    await mgr.close()


async def cmd_garp(ifname: str, vip: str, repeat: str, delay: str, interval: str) -> None:
    mgr = NetlinkAddressManager()
    link = await mgr.link(ifname)
    sender = PacketGarpSender()
    settings = GarpSettings(master_repeat=int(repeat), master_delay=float(delay),
                            interval=float(interval))
    sched = GarpScheduler(sender, settings)
    emit(ready=True, mac=link.mac.hex())
    sched.start([GarpTarget(ifname, link.mac, vip)])
    await asyncio.sleep(float(delay) + 0.5)
    emit(sent=sender.sent, errors=sender.errors, active=sched.active)
    await sched.wait_cancelled()
    sender.close()
    await mgr.close()


def cmd_arpcap(ifname: str, count: str, seconds: str) -> None:
    """Capture ARP frames on ``ifname`` with an AF_PACKET socket (kernel receive timestamps)."""
    so_timestampns = 35  # also SCM_TIMESTAMPNS
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sock.setsockopt(socket.SOL_SOCKET, so_timestampns, 1)
    sock.bind((ifname, 0))
    sock.settimeout(0.2)
    emit(ready=True)
    deadline = time.monotonic() + float(seconds)
    n = 0
    while n < int(count) and time.monotonic() < deadline:
        try:
            frame, ancdata, _flags, addr = sock.recvmsg(2048, socket.CMSG_SPACE(16))
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        stamp = time.time()
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == so_timestampns:
                sec, nsec = struct.unpack("qq", data[:16])
                stamp = sec + nsec / 1e9
        n += 1
        emit(frame=frame.hex(), t=stamp)
    emit(done=n)


async def cmd_vip(action: str, address: str, prefix: str, dev: str, brd: str, scope: str,
                  label: str) -> None:
    mgr = NetlinkAddressManager()
    vip = Vip(address, int(prefix), dev, brd if brd != "-" else None, scope,
              label if label != "-" else None)
    emit(ready=True)
    for _ in range(2):  # twice: the second call shows idempotence
        res = await (mgr.add(vip) if action == "add" else mgr.remove(vip))
        emit(outcome=res.outcome, attempts=res.attempts, error=res.error)
    await mgr.close()


async def cmd_link(ifname: str) -> None:
    mgr = NetlinkAddressManager()
    link = await mgr.link(ifname)
    emit(ready=True)
    emit(index=link.index, mac=link.mac.hex(), running=link.running, admin_up=link.admin_up,
         primary=await mgr.primary_ipv4(ifname), addresses=await mgr.addresses(ifname))
    try:
        await mgr.link("va-nonexistent")
    except LookupError as exc:
        emit(lookup_error=str(exc))
    await mgr.close()


async def cmd_linkmon(seconds: str) -> None:
    mon = NetlinkLinkMonitor(
        lambda info: emit(event=info.name, running=info.running, admin_up=info.admin_up,
                          operstate=info.operstate, t=time.time())
    )
    initial = await mon.start()
    emit(ready=True, initial={k: v.running for k, v in initial.items()})
    await asyncio.sleep(float(seconds))
    await mon.stop()
    emit(done=True)


def main() -> None:
    cmd, *args = sys.argv[1:]
    if cmd == "arpcap":
        cmd_arpcap(*args)
        return
    fn = {"recv": cmd_recv, "send": cmd_send, "sendloop": cmd_sendloop, "garp": cmd_garp,
          "vip": cmd_vip, "link": cmd_link, "linkmon": cmd_linkmon}[cmd]
    asyncio.run(fn(*args))  # type: ignore[operator]


if __name__ == "__main__":
    main()
