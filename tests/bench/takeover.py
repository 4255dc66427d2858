"""Benchmark: VRRP takeover delay beyond the protocol bound, vrrpd pair vs keepalived pair.

Two routers (a: priority 150, b: priority 100, advert_int 1) and an observer capturing with
tcpdump in network namespaces on one bridge; timestamps are the observer's kernel capture times.
Each cycle, for each pair (interleaved, so both see the same machine load):
- SIGKILL a (the whole process group, no priority 0):
  delay = (b's first advert - a's last advert) - Master_Down_Interval(b) (3 + 156/256 s);
- restart a (it preempts), then SIGTERM a (priority 0):
  delay = (b's first advert - a's priority-0 advert) - skew(b) (156/256 s);
- restart a again for the next cycle.
Prints median and max per pair and the ratio vrrpd/keepalived (+ ``BENCH`` lines).  Run as root:
``.venv/bin/python tests/bench/takeover.py [--trials 20]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench_line import emit

from tests.netns import confs
from tests.netns.lab import Lab, Proc, wait_until
from tests.netns.pair import VIP, Pair

PRIO_A, PRIO_B = 150, 100
MDI_B = confs.master_down(PRIO_B)
SKEW_B = confs.skew(PRIO_B)
VERBOSE = False


class Rig:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lab = Lab()
        self.pair = Pair.build(self.lab)
        self.b = self.pair.start(kind, self.pair.b, PRIO_B)
        self.a: Proc = self.start_a()
        self.kill: list[float] = []
        self.handover: list[float] = []

    def start_a(self) -> Proc:
        a = self.pair.start(self.kind, self.pair.a, PRIO_A)
        self.pair.wait_master(self.pair.a, MDI_B + 6.0)
        time.sleep(1.5)  # a few adverts from the settled master
        return a

    def _first_b_after(self, t: float) -> float:
        wait_until(lambda: self.pair.b.has_ip(VIP), MDI_B + 3.0, what="b taking over")
        time.sleep(0.3)
        ads = self.pair.adverts()
        return next(x.time for x in ads if x.src == self.pair.b.ip and x.time > t
                    and x.priority > 0)

    def trial_kill(self) -> float:
        self.a.crash()
        # the crashed master keeps its VIP (as keepalived's would): clear it for the restart
        self.pair.a.ip_cmd("addr", "flush", "dev", "eth0", "to", f"{VIP}/32")
        last_a = [x for x in self.pair.adverts() if x.src == self.pair.a.ip][-1]
        first_b = self._first_b_after(last_a.time)
        self.kill.append(first_b - last_a.time - MDI_B)
        self._explain(self.kill[-1])
        self.a = self.start_a()
        return self.kill[-1]

    def trial_handover(self) -> float:
        self.a.stop()
        bye = [x for x in self.pair.adverts() if x.src == self.pair.a.ip and x.priority == 0][-1]
        first_b = self._first_b_after(bye.time)
        self.handover.append(first_b - bye.time - SKEW_B)
        self._explain(self.handover[-1])
        self.a = self.start_a()
        return self.handover[-1]

    def _explain(self, delay: float) -> None:
        """With --verbose: on an outlier, what vrrpd's own log says about its timer."""
        if VERBOSE and delay > 0.002 and self.kind == "vrrpd":
            late = [line for line in self.b.output().splitlines()[-40:] if "timer late" in line]
            print(f"  outlier {delay * 1e3:.2f} ms; vrrpd timer: {late[-1:] or 'on time'}")

    def close(self) -> None:
        self.lab.close()


def fmt(values: list[float]) -> tuple[str, str]:
    return f"{statistics.median(values) * 1e3:8.2f}", f"{max(values) * 1e3:8.2f}"


def ratio(a: list[float], b: list[float]) -> str:
    mb = statistics.median(b)
    return f"{statistics.median(a) / mb:6.2f}" if abs(mb) > 1e-6 else "   n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--verbose", action="store_true", help="explain vrrpd outliers")
    args = ap.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    rigs = {k: Rig(k) for k in ("vrrpd", "keepalived")}
    try:
        for i in range(args.trials):
            for rig in rigs.values():
                k = rig.trial_kill()
                h = rig.trial_handover()
                print(f"trial {i + 1:2d} {rig.kind:10s} sigkill {k * 1e3:7.2f} ms  "
                      f"prio0 {h * 1e3:7.2f} ms", flush=True)
    finally:
        for rig in rigs.values():
            rig.close()
    vd, ka = rigs["vrrpd"], rigs["keepalived"]
    print()
    print(f"takeover delay beyond the protocol bound, ms ({args.trials} trials each; "
          f"bound: MDI {MDI_B:.3f} s after SIGKILL, skew {SKEW_B:.3f} s after priority 0)")
    print(f"{'':22s}{'vrrpd median':>14s}{'max':>9s}{'keepalived median':>19s}{'max':>9s}"
          f"{'ratio (median)':>16s}")
    for label, a, b in (("SIGKILL takeover", vd.kill, ka.kill),
                        ("priority-0 handover", vd.handover, ka.handover)):
        am, ax = fmt(a)
        bm, bx = fmt(b)
        print(f"{label:22s}{am:>14s}{ax:>9s}{bm:>19s}{bx:>9s}{ratio(a, b):>16s}")
    note = f"beyond the protocol bound, {args.trials} trials"
    for label, a, b in (("SIGKILL takeover delay", vd.kill, ka.kill),
                        ("priority-0 handover delay", vd.handover, ka.handover)):
        emit(f"{label} (median)", "ms", statistics.median(a) * 1e3,
             statistics.median(b) * 1e3, note=note)
        emit(f"{label} (max)", "ms", max(a) * 1e3, max(b) * 1e3, note=note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
