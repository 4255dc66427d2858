"""Benchmark: N TCP_CHECKs (delay_loop 6) against local listeners, vrrpd vs keepalived's checker.

Both sides read the same generated keepalived.conf (N real servers on 127.1.x.y:18080, spread
over virtual servers of 100 real servers; one listener on 0.0.0.0:18080 accepts them all):
- vrrpd: a child process loads the config with ``vrrpd.config.loader``, builds the specs with
  ``vrrpd.lvs_checks`` and runs ``healthcheck.manager.CheckerManager``; a 1 s ``call_at`` timer
  in the same loop stands in for VRRP adverts and records its worst lateness.
- keepalived: ``keepalived -C`` (checkers only); its checker child's CPU (/proc/PID/stat) and
  peak RSS (VmHWM).  keepalived's checker needs IPVS: on a host without it, it is skipped.
CPU is reported for the steady state (after the warmup spread, ``delay_loop`` s) and in total.

Run on the host: ``.venv/bin/python tests/bench/checks_10k.py [--checks N] [--duration S]``;
in the QEMU guest (both daemons, same guest run): add ``--guest`` (and ``--rounds 3``: the
daemons alternate and each keeps its best round, since a shared host makes TCG speed drift).
Under TCG 10,000 checks saturate the emulated CPU for both daemons: compare with ~1,000 there.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_line import emit

ROOT = Path(__file__).resolve().parents[2]
PORT = 18080
DELAY_LOOP = 6
PER_VS = 100


def rs_address(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


def write_config(path: Path, checks: int) -> None:
    out = ["global_defs {\n  router_id bench\n}\n"]
    for v in range((checks + PER_VS - 1) // PER_VS):
        out.append(f"virtual_server 10.10.{v // 250}.{v % 250 + 1} 80 {{\n"
                   f"  delay_loop {DELAY_LOOP}\n  lb_algo rr\n  lb_kind NAT\n  protocol TCP\n")
        for i in range(v * PER_VS, min(checks, (v + 1) * PER_VS)):
            out.append(f"  real_server {rs_address(i)} {PORT} {{\n    weight 1\n"
                       f"    TCP_CHECK {{\n      connect_timeout 3\n    }}\n  }}\n")
        out.append("}\n")
    path.write_text("".join(out))


class Listener:
    """Accepts and closes every connection on 0.0.0.0:PORT (a thread of the bench process)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", PORT))
        self.sock.listen(4096)
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()
            self.accepted += 1

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def _cpu_of(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def _hwm_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])  # KiB
    return 0


# ---------------------------------------------------------------- vrrpd child


async def _ours(conf: str, duration: float) -> dict[str, float]:
    from healthcheck.manager import CheckerManager
    from vrrpd.config.loader import load
    from vrrpd.lvs_checks import health_specs

    t0 = time.monotonic()
    config, _diags = load(conf, config_id="")
    specs = health_specs(config)
    gc_pauses: list[float] = []
    gc_t0 = [0.0]

    def gc_cb(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_t0[0] = time.perf_counter()
        else:
            gc_pauses.append(time.perf_counter() - gc_t0[0])

    gc.callbacks.append(gc_cb)

    mgr = CheckerManager(specs, on_change=lambda vs, servers: None)

    def probes() -> int:
        return sum(st.runs for st in mgr.core.states)

    def ups() -> int:
        return sum(bool(st.up and st.last_ok) for st in mgr.core.states)

    loop = asyncio.get_running_loop()
    late: list[float] = []
    start = loop.time()
    tick = [start + 1.0]

    def advert() -> None:
        # like a VRRP advert timer: due every second; a late one is re-based on its firing time
        now = loop.time()
        late.append(now - tick[0])
        tick[0] = now + 1.0
        loop.call_at(tick[0], advert)

    loop.call_at(tick[0], advert)
    await mgr.start()
    if os.environ.get("HC_BENCH_GC_FREEZE", "1") == "1":
        # what a daemon does once its config is loaded and running: the long-lived objects
        # (config, specs, checker states) leave the cyclic GC, so collections stay short
        gc.collect()
        gc.freeze()
    setup = time.monotonic() - t0
    await asyncio.sleep(DELAY_LOOP)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    p0 = probes()
    gc_pauses.clear()
    late_before = len(late)
    await asyncio.sleep(duration)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    steady_probes = probes() - p0
    total_probes, ok = probes(), ups()
    await mgr.stop()
    return {
        "setup_s": setup,
        "cpu_steady_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
        "cpu_total_s": ru1.ru_utime + ru1.ru_stime,
        "cpu_steady_user_s": ru1.ru_utime - ru0.ru_utime,
        "cpu_steady_sys_s": ru1.ru_stime - ru0.ru_stime,
        "peak_rss_kib": ru1.ru_maxrss,
        "probes_steady": steady_probes,
        "checks_up_at_end": ok,
        "probes": total_probes,
        "advert_lateness_max_ms": max(late[late_before:]) * 1000,
        "advert_lateness_p50_ms": sorted(late[late_before:])[(len(late) - late_before) // 2] * 1000,
        "advert_lateness_max_warmup_ms": max(late[:late_before], default=0.0) * 1000,
        "adverts": len(late),
        "advert_lateness_ms": [round(x * 1000, 1) for x in late],
        "distinct_checks": len(mgr.core.states),
        "gc_runs": len(gc_pauses),
        "gc_pause_max_steady_ms": max(gc_pauses, default=0.0) * 1000,
    }


def run_ours(conf: Path, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-ours", str(conf), "--duration", str(duration)],
        cwd=ROOT, check=True, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- keepalived


def run_keepalived(conf: Path, duration: float, tmp: Path,
                   listener: Listener) -> dict[str, float] | str:
    if not Path("/proc/net/ip_vs").exists():
        subprocess.run(["modprobe", "ip_vs"], capture_output=True)
    if not Path("/proc/net/ip_vs").exists():
        return "skipped: no IPVS in this kernel (run with --guest)"
    pidfile, chkfile = tmp / "ka.pid", tmp / "ka-checkers.pid"
    proc = subprocess.Popen(
        ["keepalived", "-C", "-n", "-l", "-D", "-f", str(conf), "-p", str(pidfile),
         "-c", str(chkfile)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not chkfile.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not chkfile.exists():
            return "failed: keepalived's checker process did not start"
        time.sleep(0.5)
        child = int(chkfile.read_text().split()[0])
        t_start = time.monotonic()
        time.sleep(DELAY_LOOP)
        c0, a0 = _cpu_of(child), listener.accepted
        time.sleep(duration)
        c1, a1 = _cpu_of(child), listener.accepted
        return {"cpu_steady_s": sum(c1) - sum(c0), "cpu_total_s": sum(c1),
                "cpu_steady_user_s": c1[0] - c0[0], "cpu_steady_sys_s": c1[1] - c0[1],
                "peak_rss_kib": _hwm_of(child), "elapsed_s": time.monotonic() - t_start,
                "probes_steady": a1 - a0}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- main


def _per_probe(r: object) -> float:
    if not isinstance(r, dict):
        return float("inf")
    return float(r["cpu_steady_s"]) / max(int(r["probes_steady"]), 1)


def bench(checks: int, duration: float, which: str, rounds: int = 1) -> dict[str, object]:
    """Alternate the daemons ``rounds`` times (load on a shared machine drifts) and keep, for
    each, the round with the least CPU per probe."""
    results: dict[str, object] = {"checks": checks, "duration_s": duration, "rounds": rounds,
                                  "where": "guest" if os.environ.get("VRRPD_IN_GUEST") else
                                  "host", "cpus": os.cpu_count()}
    per_round: dict[str, list[float]] = {"vrrpd": [], "keepalived": []}
    with tempfile.TemporaryDirectory(prefix="hc-bench-") as tmpdir:
        tmp = Path(tmpdir)
        conf = tmp / "keepalived.conf"
        write_config(conf, checks)
        listener = Listener()
        try:
            for _ in range(rounds):
                if which in ("ours", "both"):
                    r = run_ours(conf, duration)
                    per_round["vrrpd"].append(_per_probe(r))
                    if _per_probe(r) <= _per_probe(results.get("vrrpd")):
                        results["vrrpd"] = r
                if which in ("keepalived", "both"):
                    k = run_keepalived(conf, duration, tmp, listener)
                    per_round["keepalived"].append(_per_probe(k))
                    if not isinstance(k, dict) or \
                            _per_probe(k) <= _per_probe(results.get("keepalived")):
                        results["keepalived"] = k
        finally:
            listener.close()
    results["cpu_ms_per_probe_each_round"] = {
        k: [round(v * 1e3, 3) for v in vs] for k, vs in per_round.items() if vs}
    return results


def report(r: dict[str, object]) -> None:
    print(json.dumps(r, indent=1))
    ours, ka = r.get("vrrpd"), r.get("keepalived")
    if isinstance(ours, dict):
        rate = ours["probes_steady"] / float(r["duration_s"])  # type: ignore[arg-type]
        print(f"vrrpd: {ours['cpu_steady_s']:.2f} CPU-s over {r['duration_s']} s steady "
              f"({100 * ours['cpu_steady_s'] / float(r['duration_s']):.1f}% of a core, "  # type: ignore[arg-type]
              f"{rate:.0f} probes/s), peak RSS {ours['peak_rss_kib'] / 1024:.1f} MiB, "
              f"worst advert lateness {ours['advert_lateness_max_ms']:.1f} ms steady, "
              f"{ours['advert_lateness_max_warmup_ms']:.1f} ms during warmup")
    if isinstance(ka, dict) and isinstance(ours, dict):
        ours_per = ours["cpu_steady_s"] / max(ours["probes_steady"], 1)
        ka_per = ka["cpu_steady_s"] / max(ka["probes_steady"], 1)
        print(f"keepalived checker: {ka['cpu_steady_s']:.2f} CPU-s "
              f"({ka['probes_steady'] / float(r['duration_s']):.0f} probes/s), peak RSS "  # type: ignore[arg-type]
              f"{ka['peak_rss_kib'] / 1024:.1f} MiB")
        cpu_ratio = ours["cpu_steady_s"] / max(ka["cpu_steady_s"], 0.01)
        rss_ratio = ours["peak_rss_kib"] / max(ka["peak_rss_kib"], 1)
        print(f"ratios vrrpd/keepalived: CPU {cpu_ratio:.2f}, CPU per probe "
              f"{ours_per / max(ka_per, 1e-9):.2f} ({ours_per * 1e3:.2f} vs {ka_per * 1e3:.2f} ms),"
              f" peak RSS {rss_ratio:.2f}")
    elif ka is not None:
        print(f"keepalived: {ka}")
    emit_lines(r)


def emit_lines(r: dict[str, object]) -> None:
    """BENCH lines (tests/bench/run_all.py): CPU per probe, CPU share, peak RSS."""
    ours, ka = r.get("vrrpd"), r.get("keepalived")
    if not isinstance(ours, dict):
        return
    n, duration = r["checks"], float(r["duration_s"])  # type: ignore[arg-type]
    note = f"{r['where']}, delay_loop {DELAY_LOOP}, {duration:.0f} s steady"
    error = "" if isinstance(ka, dict) else f"keepalived {ka}"
    k = ka if isinstance(ka, dict) else None
    emit(f"{n} TCP_CHECKs: CPU per probe", "ms", 1e3 * _per_probe(ours),
         1e3 * _per_probe(k) if k else None, note=note, error=error)
    emit(f"{n} TCP_CHECKs: checker CPU", "% core", 100 * ours["cpu_steady_s"] / duration,
         100 * k["cpu_steady_s"] / duration if k else None, note=note, error=error)
    emit(f"{n} TCP_CHECKs: checker peak RSS", "MiB", ours["peak_rss_kib"] / 1024,
         k["peak_rss_kib"] / 1024 if k else None, note=note, error=error)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=10_000)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--which", choices=("ours", "keepalived", "both"), default="both")
    ap.add_argument("--rounds", type=int, default=1, help="alternate the daemons N times")
    ap.add_argument("--guest", action="store_true", help="run everything in the QEMU guest")
    ap.add_argument("--child-ours", metavar="CONF")
    args = ap.parse_args()
    if args.child_ours:
        print(json.dumps(asyncio.run(_ours(args.child_ours, args.duration))))
        return 0
    if args.guest:
        sys.path.insert(0, str(ROOT / "tests"))
        from guest.qemu import run_in_guest

        with tempfile.TemporaryDirectory(prefix="hc-bench-guest-") as share:
            res = run_in_guest(
                [sys.executable, str(Path(__file__).resolve()), "--checks", str(args.checks),
                 "--duration", str(args.duration), "--which", args.which,
                 "--rounds", str(args.rounds)],
                Path(share), cwd=str(ROOT), env={"VRRPD_IN_GUEST": "1"},
                timeout=300 + 3 * args.duration * args.rounds, memory_mb=2048)
        sys.stdout.write(res.output)
        if res.returncode != 0:
            sys.stdout.write(res.console[-3000:])
        return 1 if res.returncode is None else res.returncode
    report(bench(args.checks, args.duration, args.which, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
