"""Benchmark: parse a 1,000 virtual servers x 10 real servers config.

Times vrrpd's full load (syntax + model when ``vrrpd.config.loader`` exists,
syntax alone otherwise) in-process, best of 5, and ``keepalived -t -f FILE``
(wall time, inside a throw-away network namespace that has the interface).
Prints both and the ratio, and ``BENCH`` lines (``bench_line``) for ``run_all.py``.  Run as root:
``.venv/bin/python tests/bench/config_parse.py [--vs 1000] [--rs 10] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from bench_line import emit

VS = 1000
RS = 10


def generate(vs: int = VS, rs: int = RS) -> str:
    out = ["global_defs {", "    router_id bench", "}",
           "vrrp_instance VI_1 {", "    state MASTER", "    interface eth0",
           "    virtual_router_id 51", "    priority 100", "    advert_int 1",
           "    virtual_ipaddress {", "        10.99.0.1/24", "    }", "}"]
    for v in range(vs):
        a, b = divmod(v, 250)
        out += [f"virtual_server 10.{100 + a}.{b}.1 80 {{", "    delay_loop 6",
                "    lb_algo wrr", "    lb_kind DR", "    protocol TCP"]
        for r in range(rs):
            out += [f"    real_server 172.16.{v % 250}.{r + 1} 80 {{", "        weight 1",
                    "        TCP_CHECK {", "            connect_timeout 3",
                    "            retry 3", "            delay_before_retry 3",
                    "        }", "    }"]
        out.append("}")
    return "\n".join(out) + "\n"


def time_vrrpd(path: str, runs: int = 5) -> tuple[float, float, str]:
    """(best wall s, best CPU s, what was timed)."""
    try:
        from vrrpd.config.loader import load
        what = "syntax + model"

        def run() -> object:
            return load(path, config_id="bench")
    except ImportError:
        from vrrpd.config.syntax import read_tree
        what = "syntax only (no loader yet)"

        def run() -> object:
            return read_tree(path, config_id="bench", diagnostics=[])
    wall = cpu = float("inf")
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        result = run()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
        del result  # freeing the previous config is not parse time
    return wall, cpu, what


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_keepalived(path: str, runs: int = 5) -> tuple[float, float] | None:
    """(best wall s, best CPU s) of ``keepalived -t``, or None without root/keepalived."""
    ka = shutil.which("keepalived")
    if ka is None or os.geteuid() != 0:
        return None
    ns = f"csb{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer",
                        "name", "cfgpeer0"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
        wall = cpu = float("inf")
        for _ in range(runs):
            t0, c0 = time.perf_counter(), _children_cpu()
            subprocess.run(["ip", "netns", "exec", ns, ka, "-t", "-f", path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            wall = min(wall, time.perf_counter() - t0)
            cpu = min(cpu, _children_cpu() - c0)
        return wall, cpu
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vs", type=int, default=VS, help="virtual servers")
    ap.add_argument("--rs", type=int, default=RS, help="real servers per virtual server")
    ap.add_argument("--runs", type=int, default=5, help="runs of each; the best is kept")
    args = ap.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
    text = generate(args.vs, args.rs)
    size = f"{args.vs} VS x {args.rs} RS"
    with tempfile.TemporaryDirectory(prefix="cfgbench") as tmp:
        path = os.path.join(tmp, "keepalived.conf")
        with open(path, "w") as fh:
            fh.write(text)
        lines = text.count("\n")
        ours, ours_cpu, what = time_vrrpd(path, args.runs)
        print(f"config: {args.vs} virtual servers x {args.rs} real servers, {lines} lines")
        print(f"vrrpd load ({what}), best of {args.runs}: {ours * 1000:.1f} ms wall, "
              f"{ours_cpu * 1000:.1f} ms CPU (target < 500 ms)")
        theirs = time_keepalived(path, args.runs)
        if theirs is None:
            print("keepalived -t: not measured (needs root and keepalived)")
            for kind, value in (("wall", ours), ("CPU", ours_cpu)):
                emit(f"config parse {size} ({kind})", "ms", value * 1e3, None,
                     error="keepalived -t not measured (needs root and keepalived)")
            return 0
        print(f"keepalived -t -f, best of {args.runs}: {theirs[0] * 1000:.1f} ms wall, "
              f"{theirs[1] * 1000:.1f} ms CPU")
        print(f"ratio vrrpd/keepalived: {ours / theirs[0]:.2f} wall, "
              f"{ours_cpu / max(theirs[1], 1e-9):.2f} CPU")
        note = "vrrpd in-process load; keepalived -t whole process"
        emit(f"config parse {size} (wall)", "ms", ours * 1e3, theirs[0] * 1e3, note=note)
        emit(f"config parse {size} (CPU)", "ms", ours_cpu * 1e3, theirs[1] * 1e3, note=note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
