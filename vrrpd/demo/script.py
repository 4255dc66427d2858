"""The demo's narrative: election, ``ipvsadm -L``, requests spread over the real servers, the
master killed while a client keeps asking, a real server stopped, clean-up.

``python -m vrrpd.demo`` picks the mode: the full LVS-DR demo where the kernel has IPVS, else the
same demo inside a QEMU guest (``vrrpd.demo.guest``); ``--vrrp-only`` runs the VRRP part on this
kernel (directors with ``-P``, each serving a stand-in service that names the director).
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vrrpd.demo.client import Answer, Load, NetnsWorker, burst, gap_around, tally
from vrrpd.demo.report import DemoFailed, Reporter
from vrrpd.demo.topology import CLIENT_IP, PORT, VIP, Proc, Topology

SPREAD_REQUESTS = 20


@dataclass(frozen=True)
class Options:
    vrrp_only: bool = False
    slow: float = 1.0  # timeout multiplier (the TCG guest runs Python ~15x slower)
    interactive: bool = False


@dataclass
class DemoResult:
    mode: str
    topology_id: str = ""
    master: str | None = None
    spread: dict[str, int] = field(default_factory=dict)
    takeover_seconds: float | None = None
    gap_seconds: float | None = None
    failed_in_gap: int = 0
    after_failover: dict[str, int] = field(default_factory=dict)
    detect_seconds: float | None = None
    refused_while_detecting: int = 0
    after_rs_stop: dict[str, int] = field(default_factory=dict)


def wait_for(pred: Callable[[], object], timeout: float, what: str, *,
             procs: Sequence[Proc] = (), interval: float = 0.1) -> float:
    """Poll until ``pred()`` is truthy; seconds waited.  DemoFailed on timeout or when one of
    ``procs`` dies meanwhile (with the end of its log)."""
    start = time.monotonic()
    while not pred():
        for proc in procs:
            if not proc.alive():
                raise DemoFailed(f"{proc.name} exited (rc {proc.popen.returncode}) while waiting "
                                 f"for {what}; its log ends with:\n" + "\n".join(proc.tail()))
        if time.monotonic() - start > timeout:
            raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - start


def serving(worker: NetnsWorker, address: str, name: str) -> Callable[[], bool]:
    """A probe: does ``address:PORT`` answer with ``name`` (seen from the client)?"""
    return lambda: worker.call(burst, address, PORT, 1)[0].server == name


def fmt_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"


def run_demo(rep: Reporter, opts: Options) -> DemoResult:
    topo = Topology()
    atexit.register(topo.close)
    worker: NetnsWorker | None = None
    loads: list[Load] = []
    result = DemoResult(mode="vrrp-only" if opts.vrrp_only else "lvs-dr", topology_id=topo.id)
    try:
        rep.act(f"building the seed 000 topology in namespaces {topo.id}-*")
        topo.build()
        d1, d2 = topo.directors()
        rs1, rs2 = topo.real_servers()
        rep.step(f"client {CLIENT_IP} (br0) | directors {d1.name} {d1.ip}, {d2.name} {d2.ip} | "
                 f"real servers {rs1.name} {rs1.ip}, {rs2.name} {rs2.ip} | VIP {VIP}:{PORT}")
        rep.step("real servers: VIP on lo, arp_ignore=1 arp_announce=2 (the seed's realserver.sh)")
        worker = NetnsWorker(topo.client_ns)
        services = [(n, topo.start_service(n)) for n in topo.real_servers()]
        if opts.vrrp_only:  # no IPVS: each director answers on the VIP itself
            services += [(n, topo.start_service(n)) for n in topo.directors()]
        for node, proc in services:
            wait_for(serving(worker, node.ip, node.spec.service), 20 * opts.slow,
                     f"{node.spec.service} on {node.ip}:{PORT}", procs=[proc])
        rep.step("services up: " + ", ".join(f"{n.spec.service}@{n.name}" for n, _ in services))

        rep.act("starting vrrpd on both directors" + (" (-P: VRRP only)" if opts.vrrp_only
                                                       else " (VRRP + IPVS + TCP_CHECK)"))
        daemons = {}
        for node in topo.directors():
            conf = topo.write_config(node)
            daemons[node.name] = topo.start_vrrpd(node, conf, vrrp_only=opts.vrrp_only)
            rep.step(f"{node.name}: vrrpd -f {node.spec.seed} (interface eno16777736 -> eth0, "
                     f"persistence_timeout off) pid {daemons[node.name].pid}")
        waited = wait_for(lambda: topo.vip_holders(), 40 * opts.slow, "a director to hold the VIP",
                          procs=list(daemons.values()))
        time.sleep(1.0)  # let a second claimant show itself, if any
        holders = topo.vip_holders()
        if holders != [d1.name]:
            rep.fail(f"election: expected only {d1.name} (priority 100) to hold {VIP}, "
                     f"found {holders or 'nobody'}")
        result.master = d1.name
        rep.step(f"election: {d1.name} is MASTER ({waited:.1f} s after start); "
                 f"{d2.name} is BACKUP (no VIP)")
        rep.detail(f"ip -4 addr show dev eth0   # on {d1.name}\n" + topo.show_addr(d1))

        if not opts.vrrp_only:
            rep.act(f"IPVS on the master ({d1.name})")

            def both_listed() -> bool:
                table = topo.ipvsadm(d1)
                return all(f"{rs.ip}:{PORT}" in table for rs in topo.real_servers())

            wait_for(both_listed, 30 * opts.slow, "both real servers in ipvsadm -L -n on dir1",
                     procs=list(daemons.values()))
            rep.detail(f"ipvsadm -L -n   # on {d1.name}\n" + topo.ipvsadm(d1))

        rep.act(f"client: {SPREAD_REQUESTS} requests to http://{VIP}:{PORT}/")
        answers = worker.call(burst, VIP, PORT, SPREAD_REQUESTS, 2.0, timeout=120 * opts.slow)
        result.spread = dict(tally(answers))
        rep.step(f"answers per server: {fmt_counts(result.spread)}")
        expect = ({d1.spec.service} if opts.vrrp_only
                  else {rs.spec.service for rs in topo.real_servers()})
        if set(result.spread) != expect:
            rep.fail(f"expected answers from exactly {sorted(expect)}, got {result.spread}")

        rep.act(f"killing the master: SIGKILL vrrpd on {d1.name} and pull its cable")
        load = Load(worker, VIP, PORT, interval=0.05, timeout=0.5)
        loads.append(load)
        time.sleep(1.5)
        daemons[d1.name].kill()
        killed = time.monotonic()  # the takeover is timed from here, not after the cable
        topo.cut_link(d1)  # (several `ip` runs: ~0.5 s in the slow test guest)
        rep.step(f"{d1.name} is gone; the client keeps sending a request every 50 ms")
        wait_for(lambda: d2.name in topo.vip_holders(), 30 * opts.slow,
                 f"{d2.name} to take the VIP over", procs=[daemons[d2.name]], interval=0.05)
        result.takeover_seconds = time.monotonic() - killed
        rep.step(f"{d2.name} holds the VIP {result.takeover_seconds:.2f} s after the kill")
        wait_for(lambda: any(a.ok and a.started > killed for a in load.answers),
                 30 * opts.slow, "the client to be answered again")
        time.sleep(2.0)
        loads.remove(load)
        streamed = load.stop()
        gap = gap_around(streamed, killed)
        result.gap_seconds, result.failed_in_gap = gap.seconds, gap.failed
        after = [a for a in streamed if a.ok and a.started > killed]
        result.after_failover = dict(tally(after))
        rep.step(f"service gap seen by the client: {gap.seconds or 0:.2f} s "
                 f"({gap.failed} failed attempts); then answered by "
                 f"{fmt_counts(result.after_failover)}")
        expect = ({d2.spec.service} if opts.vrrp_only
                  else {rs.spec.service for rs in topo.real_servers()})
        if not set(result.after_failover) <= expect:
            rep.fail(f"after the failover expected answers from {sorted(expect)}, "
                     f"got {result.after_failover}")
        rep.detail(f"ip -4 addr show dev eth0   # on {d2.name}\n" + topo.show_addr(d2))

        if not opts.vrrp_only:
            run_rs_stop(rep, opts, topo, worker, loads, daemons[d2.name], result)
        else:
            rep.step("(--vrrp-only: no IPVS on this kernel, skipping the real-server act)")

        rep.act(f"stopping vrrpd on {d2.name} (SIGTERM)")
        rc = daemons[d2.name].stop(timeout=30 * opts.slow)
        if rc != 0:
            rep.fail(f"vrrpd on {d2.name} exited {rc} on SIGTERM")
        if d2.name in topo.vip_holders():
            rep.fail(f"vrrpd on {d2.name} stopped but left the VIP configured")
        if not opts.vrrp_only:
            table = topo.ipvsadm(d2)
            if VIP in table:
                rep.fail(f"vrrpd on {d2.name} stopped but left its IPVS service:\n{table}")
            rep.step(f"{d2.name}: vrrpd exited 0, released the VIP and removed its IPVS "
                     "entries (as keepalived does on stop)")
        else:
            rep.step(f"{d2.name}: vrrpd exited 0 and released the VIP")
        return result
    except DemoFailed:
        for proc in topo.procs:
            if "vrrpd" in proc.name:
                rep.step(f"log of {proc.name} (last lines):")
                rep.detail("\n".join(proc.tail(12)) or "(empty)")
        raise
    finally:
        for load in loads:
            load.stop()
        if worker is not None:
            worker.close()
        topo.close()
        atexit.unregister(topo.close)
        rep.step(f"cleaned up: namespaces {topo.id}-* and every process removed")


def run_rs_stop(rep: Reporter, opts: Options, topo: Topology, worker: NetnsWorker,
                loads: list[Load], master: Proc, result: DemoResult) -> None:
    rs1, rs2 = topo.real_servers()
    d2 = topo.nodes["dir2"]
    rep.act(f"stopping the service on {rs1.name} ({rs1.spec.service}); TCP_CHECK must notice")
    rep.detail(f"ipvsadm -L -n   # on {d2.name}, the master now\n" + topo.ipvsadm(d2))
    load = Load(worker, VIP, PORT, interval=0.1, timeout=0.5)
    loads.append(load)
    rs1.procs[0].stop()
    result.detect_seconds = wait_for(lambda: f"{rs1.ip}:{PORT}" not in topo.ipvsadm(d2),
                                     90 * opts.slow, f"{rs1.ip} to leave ipvsadm -L on dir2",
                                     procs=[master], interval=0.25)
    loads.remove(load)
    streamed: list[Answer] = load.stop()
    result.refused_while_detecting = sum(1 for a in streamed if not a.ok)
    rep.step(f"{rs1.ip}:{PORT} left the pool {result.detect_seconds:.1f} s after the stop "
             f"(TCP_CHECK: delay_loop 6, connect_timeout 3; the seed's nb_get_retry 3 is "
             f"ignored, as keepalived 2.2.7 ignores it); "
             f"{result.refused_while_detecting} requests refused meanwhile")
    rep.detail(f"ipvsadm -L -n   # on {d2.name}\n" + topo.ipvsadm(d2))
    answers = worker.call(burst, VIP, PORT, 10, 2.0, timeout=60 * opts.slow)
    result.after_rs_stop = dict(tally(answers))
    rep.step(f"client: 10 requests -> {fmt_counts(result.after_rs_stop)}")
    if result.after_rs_stop != {rs2.spec.service: 10}:
        rep.fail(f"expected every answer from {rs2.spec.service}, got {result.after_rs_stop}")


def summary(rep: Reporter, res: DemoResult) -> None:
    rep.step(f"demo OK ({res.mode}): master {res.master}; spread {fmt_counts(res.spread)}; "
             f"failover: VIP moved in {res.takeover_seconds or 0:.2f} s, client gap "
             f"{res.gap_seconds or 0:.2f} s"
             + (f"; real server removed after {res.detect_seconds:.1f} s"
                if res.detect_seconds is not None else ""))


def ipvs_available() -> bool:
    """IPVS in this kernel (loading the module if needed)."""
    if not os.path.exists("/proc/net/ip_vs") and shutil.which("modprobe"):
        subprocess.run(["modprobe", "ip_vs"], capture_output=True, check=False)
    return os.path.exists("/proc/net/ip_vs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vrrpd-demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vrrp-only", action="store_true",
                   help="run only the VRRP part on this kernel (no IPVS needed)")
    p.add_argument("--no-guest", action="store_true",
                   help="fail instead of booting a QEMU guest when this kernel has no IPVS")
    p.add_argument("--inside-guest", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-pause", action="store_true",
                   help="do not wait for Enter between acts (the default when stdin is no TTY)")
    p.add_argument("--slow", type=float, default=None,
                   help="timeout multiplier (default 1, 4 inside the guest)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # both clean up like ^C (even if inherited
        signal.signal(sig, signal.default_int_handler)  # as ignored, e.g. from a `&` job)
    interactive = sys.stdin.isatty() and not args.no_pause and not args.inside_guest
    rep = Reporter(interactive=interactive)
    if os.geteuid() != 0:
        print("vrrpd demo: run as root (it creates network namespaces)", file=sys.stderr)
        return 2
    missing = [t for t in ("ip", "ipvsadm") if shutil.which(t) is None]
    if missing:
        print(f"vrrpd demo: missing {', '.join(missing)} (run scripts/setup.sh)", file=sys.stderr)
        return 2
    if not args.vrrp_only and not ipvs_available():
        if args.inside_guest or args.no_guest:
            print("vrrpd demo: this kernel has no IPVS (/proc/net/ip_vs missing after modprobe "
                  "ip_vs); try --vrrp-only", file=sys.stderr)
            return 3
        from vrrpd.demo.guest import run_demo_in_guest

        rep.step("this kernel has no IPVS: re-running the demo inside a QEMU guest "
                 "(TCG, host root shared read-only; boot ~5-10 s, the demo ~1-2 min)")
        try:
            return run_demo_in_guest(rep, ["--no-pause"])
        except KeyboardInterrupt:
            print("vrrpd demo: interrupted (the guest was stopped)", file=sys.stderr)
            return 130
    slow = args.slow if args.slow is not None else (4.0 if args.inside_guest else 1.0)
    opts = Options(vrrp_only=args.vrrp_only, slow=slow, interactive=interactive)
    try:
        result = run_demo(rep, opts)
    except DemoFailed as exc:
        print(f"vrrpd demo FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("vrrpd demo: interrupted (everything cleaned up)", file=sys.stderr)
        return 130
    except Exception as exc:  # a command or file the demo needs failed: say which, exit 1
        traceback.print_exc()
        print(f"vrrpd demo FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    summary(rep, result)
    return 0
