"""Benchmark: programming IPVS, vrrpd vs keepalived's checker process, in the same QEMU guest.

    .venv/bin/python tests/bench/ipvs_program.py [--services 1000] [--dests 10]

Same config for both (N virtual servers x M real servers, DR, no checkers), same guest, same
fresh namespace each.  Figures:
- cold: process launch -> every destination in the kernel table (polled in /proc/net/ip_vs);
  for vrrpd also the in-process time of ``LvsRunner.start()`` (adopt dump + programming),
- one change: the weight of one real server changed in the config -> visible in the kernel
  (keepalived: SIGHUP reload; vrrpd: ``LvsRunner.apply_config``, the reload path),
- stop: SIGTERM -> keepalived exited / ``stop()`` returned (both delete each dest then each
  service; entries keepalived left behind are reported).
Prints both times and the ratio vrrpd / keepalived (< 1 = vrrpd faster).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

CHANGED_WEIGHT = 5


def make_config(services: int, dests: int, changed: bool = False) -> str:
    out = ["global_defs {\n  router_id bench\n}\n"]
    for i in range(services):
        vip = f"10.0.{i // 250}.{i % 250 + 1}"
        out.append(f"virtual_server {vip} 80 {{\n  lb_algo wrr\n  lb_kind DR\n  protocol TCP\n")
        for r in range(dests):
            weight = CHANGED_WEIGHT if changed and i == services - 1 and r == dests - 1 else 1
            out.append(f"  real_server 10.{1 + i // 250}.{i % 250}.{r + 1} 80 {{\n"
                       f"    weight {weight}\n  }}\n")
        out.append("}\n")
    return "".join(out)


# ---------------------------------------------------------------- inside the guest


def proc_table() -> tuple[int, int, bool]:
    """(services, destinations, changed weight visible) from /proc/net/ip_vs."""
    services = dests = 0
    changed = False
    with open("/proc/net/ip_vs") as fh:
        for line in fh.readlines()[3:]:
            if line.startswith("  ->"):
                dests += 1
                if line.split()[3] == str(CHANGED_WEIGHT):
                    changed = True
            else:
                services += 1
    return services, dests, changed


def wait_for(pred: object, timeout: float = 600.0, interval: float = 0.02) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if pred():  # type: ignore[operator]
            return time.monotonic()
        time.sleep(interval)
    raise TimeoutError("condition not reached")


def bench_keepalived(conf: Path, conf2: Path, n: int, m: int, tmp: Path) -> dict[str, float]:
    live = tmp / "ka.conf"
    live.write_text(conf.read_text())
    t0 = time.monotonic()
    # no -l: console logging goes to the guest's serial console, which is slow under TCG
    proc = subprocess.Popen(["keepalived", "-C", "-n", "-f", str(live),
                             "-p", str(tmp / "ka.pid"), "-c", str(tmp / "ka-c.pid")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t1 = wait_for(lambda: proc_table()[:2] == (n, n * m))
        live.write_text(conf2.read_text())
        t2 = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        t3 = wait_for(lambda: proc_table()[2])
        t4 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
        t5 = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # keepalived's parent kills a checker child that takes too long to delete its entries
    left = sum(proc_table()[:2])
    return {"cold": t1 - t0, "change": t3 - t2, "stop": t5 - t4, "left_after_stop": left}


def bench_vrrpd(conf: Path, conf2: Path, n: int, m: int) -> dict[str, float]:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, __file__, "--vrrpd-run", str(conf), str(conf2)],
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"vrrpd run failed: {out}")
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    result["cold"] = result.pop("programmed_at") - t0  # launch -> start() returned
    return result


async def _vrrpd_run(conf: str, conf2: str) -> dict[str, float]:
    import ipvs.client  # noqa: F401  (imported here so start() measures programming only)
    from vrrpd.config.loader import load
    from vrrpd.lvs import LvsRunner

    config = load(conf, config_id="bench").config
    config2 = load(conf2, config_id="bench").config
    runner = LvsRunner(config, checker_manager=None, sync_interval=3600)
    t0 = time.monotonic()
    await runner.start()
    t1 = time.monotonic()
    n = len(runner.owned)
    assert proc_table()[:2] == (n, sum(len(s.dests) for s in runner.observed.values()))
    t2 = time.monotonic()
    result = await runner.apply_config(config2)
    t3 = time.monotonic()
    assert len(result.ops) == 1 and proc_table()[2], result
    t4 = time.monotonic()
    idle = await runner.sync()  # one periodic sync with nothing to repair: a full dump
    t5 = time.monotonic()
    assert idle.dumped and not idle.ops, idle
    await runner.stop()
    t6 = time.monotonic()
    assert proc_table()[:2] == (0, 0)
    return {"programmed_at": t1, "start_inproc": t1 - t0, "change": t3 - t2,
            "sync": t5 - t4, "stop": t6 - t5}


def guest_main(services: int, dests: int, repeat: int) -> int:
    from guest.netns import GuestNetns, _setns, load_ipvs_modules

    load_ipvs_modules()
    with tempfile.TemporaryDirectory(prefix="ir-bench-") as d:
        tmp = Path(d)
        conf, conf2 = tmp / "bench.conf", tmp / "bench2.conf"
        conf.write_text(make_config(services, dests))
        conf2.write_text(make_config(services, dests, changed=True))
        results: dict[str, list[dict[str, float]]] = {"keepalived": [], "vrrpd": []}
        for name in ("keepalived", "vrrpd") * repeat:
            print(f"bench: {name}...", file=sys.stderr, flush=True)
            ns = GuestNetns.create("irb")
            try:
                fd = os.open(ns.path, os.O_RDONLY)
                _setns(fd)  # the whole (single-threaded) process: children inherit it
                os.close(fd)
                if name == "keepalived":
                    one = bench_keepalived(conf, conf2, services, dests, tmp)
                else:
                    one = bench_vrrpd(conf, conf2, services, dests)
                results[name].append(one)
                print(f"bench: {name} {one}", file=sys.stderr, flush=True)
            finally:
                fd = os.open("/proc/1/ns/net", os.O_RDONLY)
                _setns(fd)
                os.close(fd)
                ns.delete()
        print("BENCH " + json.dumps(results))
    return 0


# ---------------------------------------------------------------- on the host


def host_main(services: int, dests: int, repeat: int) -> int:
    from guest import qemu

    with tempfile.TemporaryDirectory(prefix="ir-bench-share-") as share:
        argv = [sys.executable, str(Path(__file__).resolve()), "--guest",
                "--services", str(services), "--dests", str(dests), "--repeat", str(repeat)]
        res = qemu.run_in_guest(argv, Path(share), cwd=str(REPO), timeout=3600,
                                env={"PYTHONDONTWRITEBYTECODE": "1"})
    line = next((x for x in res.output.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        print(res.output[-4000:], file=sys.stderr)
        print(res.console[-2000:], file=sys.stderr)
        return 1
    data = json.loads(line[6:])
    # the machine is shared: the best of the runs is the least disturbed figure
    ka = {k: min(r[k] for r in data["keepalived"]) for k in data["keepalived"][0]}
    vd = {k: min(r[k] for r in data["vrrpd"]) for k in data["vrrpd"][0]}
    print(f"IPVS programming, {services} services x {dests} destinations, QEMU guest (TCG), "
          f"best of {repeat}")
    print(f"{'':34}{'keepalived':>12}{'vrrpd':>12}{'ratio':>8}")
    rows = [("cold: launch -> table complete", "cold", "cold"),
            ("one real server changed (reload)", "change", "change"),
            ("stop: entries removed", "stop", "stop")]
    for label, k1, k2 in rows:
        print(f"{label:34}{ka[k1]:>11.3f}s{vd[k2]:>11.3f}s{vd[k2] / ka[k1]:>8.2f}")
    left = [r.get("left_after_stop", 0) for r in data["keepalived"]]
    if any(left):
        print(f"keepalived exited with IPVS entries still in the table: {left}")
    for name in ("keepalived", "vrrpd"):
        for r in data[name]:
            print(f"  {name:10} " + " ".join(f"{k}={v:.3f}" for k, v in r.items()))
    print(f"vrrpd LvsRunner.start() in-process: {vd['start_inproc']:.3f}s "
          f"(rest of cold = interpreter + imports + config load)")
    if "sync" in vd:
        print(f"vrrpd periodic sync (full dump, nothing to repair): {vd['sync']:.3f}s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--dests", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is shown")
    ap.add_argument("--guest", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--vrrpd-run", nargs=2, metavar=("CONF", "CONF2"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.vrrpd_run:
        print(json.dumps(asyncio.run(_vrrpd_run(*args.vrrpd_run))))
        return 0
    if args.guest:
        return guest_main(args.services, args.dests, args.repeat)
    return host_main(args.services, args.dests, args.repeat)


if __name__ == "__main__":
    raise SystemExit(main())
