"""Benchmark: VRRP advert lateness of a MASTER, idle / under a checker storm / with a hung check.

A master namespace (``eth0`` 10.78.0.1) and an observer namespace (10.78.0.2) joined by a veth
pair; the observer's tcpdump timestamps every advert (kernel capture time), and each interval
between consecutive adverts gives lateness = interval - advert_int (1 s).  Median / p99 / max
over ``--seconds`` of steady state (after the daemon's first advert + a warmup of delay_loop +
2 s, so the checkers' initial spread is over).  Scenarios, same config text for both daemons:
- idle: the VRRP instance alone;
- storm: + ``--checks`` TCP_CHECKs (delay_loop 6, connect_timeout 3) against a listener in the
  master namespace (127.1.x.y:18080, 100 real servers per virtual server); the listener counts
  accepted connections, so the probe rate shows the storm really ran;
- hung: + 10 MISC_CHECKs running ``sleep 1000000``, misc_timeout 4000 (keepalived's cap: 4294 s).
Daemons: ``vrrpd`` (default process model: parent + VRRP child + checker child when the config
has both), ``vrrpd-single`` (``--single-process``), ``keepalived`` 2.2.7 (whole daemon).

IPVS: the host kernel has none.  On the host keepalived's checker child dies and takes the
daemon with it, so keepalived runs only the idle scenario there; vrrpd runs with an in-memory
IPVS stand-in (tests/unit/vrrpd/ipvs_fake_kernel.py, injected through a ``sitecustomize`` on
PYTHONPATH, ``--no-standin`` to see the real failure) so its checkers really run.  ``--guest``
runs everything inside the QEMU guest with real IPVS (TCG: Python ~15x slower, figures are for
the ratio, not absolute).  Prints a table and ``BENCH`` lines (tests/bench/run_all.py).
Run as root: ``.venv/bin/python tests/bench/advert_lateness.py [--quick] [--guest]``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench_line import emit

REPO = Path(__file__).resolve().parents[2]
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"
PORT = 18080
DELAY_LOOP = 6
PER_VS = 100
HUNG = 10
MASTER_IP, OBS_IP, VIP = "10.78.0.1", "10.78.0.2", "10.78.0.100"
VRID = 61
DAEMONS = ("vrrpd", "vrrpd-single", "keepalived")
SCENARIOS = ("idle", "storm", "hung")
ADVERT = re.compile(r"^(\d+\.\d+) IP (\S+) > 224\.0\.0\.18: VRRPv2, Advertisement, "
                    r"vrid (\d+), prio (\d+)")

STANDIN = """\
import os, sys
if os.environ.get("VRRPD_BENCH_IPVS_STANDIN") == "1":
    sys.path.insert(0, {fake_dir!r})
    import vrrpd.lvs as _lvs
    from ipvs_fake_kernel import FakeKernel as _FakeKernel
    _init = _lvs.LvsRunner.__init__
    def _standin_init(self, config, **kw):
        kw.setdefault("client_factory", _FakeKernel)
        _init(self, config, **kw)
    _lvs.LvsRunner.__init__ = _standin_init
"""


def make_config(scenario: str, checks: int) -> str:
    out = ["global_defs {\n  router_id bnlate\n  script_user root\n  enable_script_security\n}\n",
           f"vrrp_instance VI_1 {{\n  state MASTER\n  interface eth0\n  virtual_router_id {VRID}\n"
           f"  priority 150\n  advert_int 1\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n"]
    if scenario == "storm":
        for v in range((checks + PER_VS - 1) // PER_VS):
            out.append(f"virtual_server 10.10.{v // 250}.{v % 250 + 1} 80 {{\n"
                       f"  delay_loop {DELAY_LOOP}\n  lb_algo rr\n  lb_kind NAT\n"
                       "  protocol TCP\n")
            for i in range(v * PER_VS, min(checks, (v + 1) * PER_VS)):
                out.append(f"  real_server 127.1.{i // 250}.{i % 250 + 1} {PORT} {{\n"
                           "    weight 1\n    TCP_CHECK {\n      connect_timeout 3\n    }\n  }\n")
            out.append("}\n")
    elif scenario == "hung":
        out.append(f"virtual_server 10.11.0.1 80 {{\n  delay_loop {DELAY_LOOP}\n  lb_algo rr\n"
                   "  lb_kind NAT\n  protocol TCP\n")
        for i in range(HUNG):
            out.append(f"  real_server 127.2.0.{i + 1} 80 {{\n    weight 1\n    MISC_CHECK {{\n"
                       '      misc_path "/bin/sleep 1000000"\n      misc_timeout 4000\n'
                       "    }\n  }\n")
        out.append("}\n")
    return "".join(out)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def parse_adverts(text: str, src: str = MASTER_IP) -> list[float]:
    """Capture times of the adverts (priority > 0) ``src`` sent, from ``tcpdump -tt`` text."""
    times = []
    for line in text.splitlines():
        m = ADVERT.match(line)
        if m and m.group(2) == src and int(m.group(3)) == VRID and int(m.group(4)) > 0:
            times.append(float(m.group(1)))
    return times


def lateness(times: list[float], start: float, end: float, advert_int: float = 1.0) -> list[float]:
    window = [t for t in times if start <= t <= end]
    return [b - a - advert_int for a, b in itertools.pairwise(window)]


@dataclass
class Result:
    daemon: str
    scenario: str
    late: list[float] = field(default_factory=list)
    probes_per_s: float | None = None
    hung_scripts: int | None = None
    error: str = ""

    def stats(self) -> tuple[float, float, float] | None:
        if not self.late:
            return None
        return (statistics.median(self.late), percentile(self.late, 0.99), max(self.late))


# ---------------------------------------------------------------- one run


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


class Rig:
    """Two namespaces, a veth pair, processes started in them; ``close()`` removes it all."""

    def __init__(self, tmp: Path) -> None:
        self.id = f"bn{secrets.token_hex(3)}"
        self.tmp = tmp
        self.master, self.obs = f"{self.id}-m", f"{self.id}-o"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        for ns in (self.master, self.obs):
            self.namespaces.append(ns)
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
               check=False)
        sh("ip", "-n", self.master, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", self.obs)
        for ns, ip in ((self.master, MASTER_IP), (self.obs, OBS_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def spawn(self, ns: str, argv: list[str], log: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=env)
        self.procs.append(proc)
        return proc

    def pids(self, ns: str) -> list[int]:
        return [int(p) for p in sh("ip", "netns", "pids", ns, check=False).split()]

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        for ns in self.namespaces:  # anything left in them (daemon children, scripts) is ours
            for pid in self.pids(ns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            sh("ip", "netns", "del", ns, check=False)


def stop(proc: subprocess.Popen[bytes], timeout: float = 40.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def daemon_argv(daemon: str, conf: Path, tmp: Path) -> list[str]:
    if daemon == "keepalived":
        return [KEEPALIVED, "-n", "-l", "-D", "-f", str(conf), "-p", str(tmp / "ka.pid"),
                "-r", str(tmp / "ka.vrrp.pid"), "-c", str(tmp / "ka.check.pid")]
    argv = [sys.executable, "-m", "vrrpd", "-n", "-l", "-f", str(conf), "-p", str(tmp / "vd.pid"),
            "--log-format", "json", "--control-socket", str(tmp / "vd.ctl")]
    return [*argv, "--single-process"] if daemon == "vrrpd-single" else argv


def wait_for(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def run_one(daemon: str, scenario: str, args: argparse.Namespace, slow: float) -> Result:
    result = Result(daemon, scenario)
    with tempfile.TemporaryDirectory(prefix="bn-late-") as d:
        tmp = Path(d)
        conf = tmp / "keepalived.conf"
        conf.write_text(make_config(scenario, args.checks))
        rig = Rig(tmp)
        try:
            count = tmp / "accepted"
            if scenario == "storm":
                rig.spawn(rig.master, [sys.executable, __file__, "--listen", str(count)],
                          tmp / "listener.log")
                wait_for(count.exists, 30 * slow, "the listener")
            cap_log = tmp / "capture.txt"
            rig.spawn(rig.obs, ["tcpdump", "-i", "eth0", "-n", "-tt", "-l", "--immediate-mode",
                                "ip proto 112"], cap_log)
            time.sleep(1.0 * slow)  # tcpdump listening
            env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
            if daemon != "keepalived" and args.standin:
                standin = tmp / "standin"
                standin.mkdir()
                fake_dir = str(REPO / "tests" / "unit" / "vrrpd")
                (standin / "sitecustomize.py").write_text(STANDIN.format(fake_dir=fake_dir))
                env.update(PYTHONPATH=f"{standin}:{REPO}", VRRPD_BENCH_IPVS_STANDIN="1")
            log = tmp / "daemon.log"
            proc = rig.spawn(rig.master, daemon_argv(daemon, conf, tmp), log, env)
            try:
                wait_for(lambda: parse_adverts(cap_log.read_text()) or proc.poll() is not None,
                         120 * slow, "the first advert")
                if proc.poll() is not None:
                    raise RuntimeError(f"{daemon} exited {proc.returncode}: "
                                       f"{_tail(log.read_text(errors='replace'))}")
                time.sleep((DELAY_LOOP + 2) * slow if scenario != "idle" else 2.0)
                a0 = _accepted(count)
                t0 = time.time()
                time.sleep(args.seconds)
                t1 = time.time()
                a1 = _accepted(count)
                if scenario == "storm":
                    result.probes_per_s = (a1 - a0) / (t1 - t0)
                if scenario == "hung":
                    result.hung_scripts = sum(_is_hung_sleep(p) for p in rig.pids(rig.master))
                if proc.poll() is not None:
                    raise RuntimeError(f"{daemon} exited {proc.returncode} during the window")
                time.sleep(0.5)
                result.late = lateness(parse_adverts(cap_log.read_text()), t0, t1)
                if len(result.late) < max(3, args.seconds // 2):
                    result.error = f"only {len(result.late)} advert intervals captured"
            finally:
                stop(proc)
            if args.verbose:
                print(_tail(log.read_text(errors="replace"), 15), file=sys.stderr)
        except Exception as exc:
            result.error = str(exc)
        finally:
            rig.close()
    return result


def _tail(text: str, n: int = 3) -> str:
    return " | ".join(x.strip()[:200] for x in text.strip().splitlines()[-n:])


def _accepted(path: Path) -> int:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text() or 0)
    return 0


def _is_hung_sleep(pid: int) -> bool:
    with contextlib.suppress(OSError):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        # keepalived execs the resolved path (/usr/bin/sleep), vrrpd the configured one
        return len(argv) > 1 and argv[0].endswith(b"/sleep") and argv[1] == b"1000000"
    return False


def listen(count_file: Path) -> int:
    """Accept and close every connection on 0.0.0.0:PORT; the count goes to ``count_file``."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", PORT))
    sock.listen(4096)
    accepted = [0]

    def report() -> None:
        while True:
            tmp = count_file.with_suffix(".tmp")
            tmp.write_text(str(accepted[0]))
            tmp.replace(count_file)
            time.sleep(0.5)

    threading.Thread(target=report, daemon=True).start()
    while True:
        conn, _ = sock.accept()
        conn.close()
        accepted[0] += 1


# ---------------------------------------------------------------- plan and report


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    runs = []
    for scenario in args.scenarios:
        for daemon in args.daemons:
            if scenario == "idle" and daemon == "vrrpd-single":
                continue  # no virtual server: vrrpd is a single process anyway
            runs.append((daemon, scenario))
    return runs


def skip_reason(daemon: str, scenario: str, args: argparse.Namespace) -> str:
    if daemon == "keepalived" and scenario != "idle" and not Path("/proc/net/ip_vs").exists():
        return ("keepalived needs IPVS for virtual servers (this kernel has none: its checker "
                "child dies and the daemon exits); run with --guest")
    return ""


def report(results: list[Result], args: argparse.Namespace) -> None:
    where = "QEMU guest (TCG), real IPVS" if os.environ.get("VRRPD_IN_GUEST") else (
        "host, vrrpd with an in-memory IPVS stand-in" if args.standin else "host, no IPVS")
    print(f"\nadvert lateness (interval - 1 s), ms, {args.seconds} s per run, {where}; "
          f"storm = {args.checks} TCP_CHECKs")
    print(f"{'scenario':8} {'daemon':13} {'n':>4} {'median':>8} {'p99':>8} {'max':>8}  extra")
    for r in results:
        s = r.stats()
        extra = []
        if r.probes_per_s is not None:
            extra.append(f"{r.probes_per_s:.0f} probes/s")
        if r.hung_scripts is not None:
            extra.append(f"{r.hung_scripts} hung scripts running")
        if r.late:
            extra.append(f"{sum(x > 0.005 for x in r.late)} over 5 ms")
        if r.error:
            extra.append(f"ERROR: {r.error}")
        cols = (f"{s[0] * 1e3:8.2f} {s[1] * 1e3:8.2f} {s[2] * 1e3:8.2f}" if s else
                f"{'-':>8} {'-':>8} {'-':>8}")
        print(f"{r.scenario:8} {r.daemon:13} {len(r.late):4d} {cols}  {', '.join(extra)}")
    by = {(r.daemon, r.scenario): r for r in results}
    for scenario in args.scenarios:
        ka = by.get(("keepalived", scenario))
        single = by.get(("vrrpd-single", scenario))
        for daemon in ("vrrpd", "vrrpd-single"):
            ours = by.get((daemon, scenario))
            if ours is None:
                continue
            note = f"{len(ours.late)} intervals, {where}"
            if scenario == "storm":
                note += f", {args.checks} TCP_CHECKs"
            if scenario == "idle":
                label = "advert lateness, idle"
            elif daemon == "vrrpd-single":
                label = f"advert lateness, {scenario}, vrrpd --single-process"
            else:
                label = f"advert lateness, {scenario}, vrrpd isolated"
            base, baseline = ka, "keepalived"
            if ka is not None and skip_reason("keepalived", scenario, args):
                # no keepalived figure on this kernel: the isolated run against our own single
                # process (the issue-6 question); keepalived's figures come from --guest
                if daemon == "vrrpd-single" or single is None:
                    continue
                base, baseline = single, "vrrpd --single-process"
                note += "; keepalived needs IPVS: see --guest"
            so, sb = ours.stats(), base.stats() if base else None
            error = ours.error or (base.error if base else f"{baseline} not run")
            for i, stat in ((0, "median"), (1, "p99"), (2, "max")):
                emit(f"{label} ({stat})", "ms", so[i] * 1e3 if so else None,
                     sb[i] * 1e3 if sb else None, baseline=baseline, note=note, error=error)


def guest_main(args: argparse.Namespace, argv: list[str]) -> int:
    sys.path.insert(0, str(REPO / "tests"))
    from guest.qemu import run_in_guest

    inner = [a for a in argv if a != "--guest"]
    budget = len(plan(args)) * (args.seconds + 240) + 300
    with tempfile.TemporaryDirectory(prefix="bn-late-guest-") as share:
        res = run_in_guest([sys.executable, str(Path(__file__).resolve()), *inner],
                           Path(share), cwd=str(REPO), timeout=budget, memory_mb=3072,
                           smp=int(os.environ.get("VRRPD_GUEST_SMP", "2")),
                           env={"VRRPD_IN_GUEST": "1", "PYTHONDONTWRITEBYTECODE": "1",
                                "PYTHONUNBUFFERED": "1"},
                           on_output=lambda line: print(line, flush=True))
    if res.returncode != 0:
        sys.stdout.write(res.console[-3000:])
    return 1 if res.returncode is None else res.returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="measured window per run")
    ap.add_argument("--quick", action="store_true", help="15 s windows")
    ap.add_argument("--checks", type=int, default=10_000, help="TCP_CHECKs in the storm")
    ap.add_argument("--daemons", default=",".join(DAEMONS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--guest", action="store_true", help="run it all in the QEMU guest (IPVS)")
    ap.add_argument("--no-standin", dest="standin", action="store_false",
                    help="host: no IPVS stand-in for vrrpd (its LVS part then fails)")
    ap.add_argument("--verbose", action="store_true", help="daemon log tails")
    ap.add_argument("--listen", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.listen:
        return listen(args.listen)
    if args.quick and "--seconds" not in argv:
        args.seconds = 15
    args.daemons = [d for d in args.daemons.split(",") if d]
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    bad = set(args.daemons) - set(DAEMONS) | set(args.scenarios) - set(SCENARIOS)
    if bad:
        ap.error(f"unknown daemon/scenario: {', '.join(sorted(bad))}")
    if os.geteuid() != 0:
        ap.error("needs root (network namespaces)")
    if args.guest:
        return guest_main(args, argv)
    in_guest = bool(os.environ.get("VRRPD_IN_GUEST"))
    if in_guest:
        sh("modprobe", "ip_vs")
        sh("modprobe", "ip_vs_rr")
        args.standin = False
    slow = 4.0 if in_guest else 1.0
    results = []
    for daemon, scenario in plan(args):
        reason = skip_reason(daemon, scenario, args)
        if reason:
            results.append(Result(daemon, scenario, error=reason))
            continue
        print(f"run: {scenario} / {daemon} ...", flush=True)
        r = run_one(daemon, scenario, args, slow)
        s = r.stats()
        print(f"run: {scenario} / {daemon}: " + (
            f"median {s[0] * 1e3:.2f} p99 {s[1] * 1e3:.2f} max {s[2] * 1e3:.2f} ms"
            if s else "no figures") + (f" ERROR {r.error}" if r.error else ""), flush=True)
        results.append(r)
    report(results, args)
    return 1 if any(r.error and not skip_reason(r.daemon, r.scenario, args)
                    for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
