"""Run every vrrpd-vs-keepalived benchmark and print one table: figure | vrrpd | keepalived | ratio.

    ./scripts/bench [--quick] [--only NAME[,NAME]] [--out FILE]

Each bench script runs as its own subprocess (the guest ones boot their own QEMU guest, one
after the other); its output is echoed to stderr as it comes, prefixed ``[name]``, and its
``BENCH {...}`` lines (``tests/bench/bench_line.py``) become the rows.  A script that exits
non-zero, times out or prints no BENCH line, and a figure with an ``error`` or a missing side,
is a FAILED row with the reason; then the exit status is 1.  ``--out FILE`` also writes the
table as Markdown (``FILE`` with suffix ``.md``) and JSON (suffix ``.json``).
Ratio = vrrpd / keepalived (for times, < 1 = vrrpd faster; n/a for a figure <= 0).  The
machine is shared: figures are noisy; compare ratios, not absolute numbers, rerun a surprise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFIX = "BENCH "


@dataclass(frozen=True)
class BenchSpec:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    timeout: float          # seconds, full run (quick: a third, at least 120 s)
    guest: bool = False     # boots a QEMU guest (IPVS)

    def argv(self, python: str, quick: bool) -> list[str]:
        return [python, str(HERE / self.script), *(self.quick if quick else self.full)]

    def time_limit(self, quick: bool) -> float:
        return max(120.0, self.timeout / 3) if quick else self.timeout


# cheapest first
BENCHES: tuple[BenchSpec, ...] = (
    BenchSpec("vrrp_codec", "vrrp_codec.py", (), ("2000",), 300),
    BenchSpec("config_parse", "config_parse.py", (),
              ("--vs", "100", "--rs", "10", "--runs", "2"), 600),
    BenchSpec("takeover", "takeover.py", (), ("--trials", "2"), 1800),
    BenchSpec("advert_lateness", "advert_lateness.py", (), ("--quick",), 1800),
    BenchSpec("advert_lateness_guest", "advert_lateness.py",
              ("--guest", "--checks", "1000", "--seconds", "30"),
              ("--guest", "--checks", "200", "--seconds", "10"), 3600, guest=True),
    BenchSpec("ipvs_program", "ipvs_program.py", (),
              ("--services", "100", "--dests", "10", "--repeat", "1"), 3600, guest=True),
    BenchSpec("checks_10k", "checks_10k.py",
              ("--guest", "--checks", "1000", "--duration", "30", "--rounds", "3"),
              ("--guest", "--checks", "200", "--duration", "10", "--rounds", "1"), 1800,
              guest=True),
)


@dataclass(frozen=True)
class Row:
    bench: str
    figure: str
    unit: str = ""
    vrrpd: float | None = None
    keepalived: float | None = None
    baseline: str = "keepalived"
    note: str = ""
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error) or self.vrrpd is None or self.keepalived is None

    @property
    def reason(self) -> str:
        if self.error:
            return self.error
        missing = [k for k in ("vrrpd", self.baseline)
                   if (self.vrrpd if k == "vrrpd" else self.keepalived) is None]
        return f"no {' or '.join(missing)} figure" if missing else ""

    @property
    def ratio(self) -> float | None:
        if self.failed or self.vrrpd is None or self.keepalived is None:
            return None
        if self.keepalived <= 1e-12 or self.vrrpd < 0:
            return None  # a ratio of signed or zero figures (e.g. a lateness of -0.1 ms) is noise
        return self.vrrpd / self.keepalived


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parse_lines(bench: str, lines: Iterable[str]) -> list[Row]:
    """The rows of every well-formed ``BENCH {...}`` line that has a ``figure``."""
    rows = []
    for line in lines:
        line = line.strip()
        if not line.startswith(PREFIX):
            continue
        try:
            rec = json.loads(line[len(PREFIX):])
        except ValueError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("figure"), str):
            continue  # e.g. ipvs_program's raw guest result line
        rows.append(Row(bench, rec["figure"], str(rec.get("unit", "")), _number(rec.get("vrrpd")),
                        _number(rec.get("keepalived")), str(rec.get("baseline", "keepalived")),
                        str(rec.get("note", "")), str(rec.get("error", ""))))
    return rows


@dataclass(frozen=True)
class Outcome:
    """What running one bench script gave."""

    returncode: int | None          # None: killed after its time limit
    output: str
    seconds: float = 0.0
    timeout: float = 0.0


def collect(bench: str, outcome: Outcome) -> list[Row]:
    """Rows for one bench: its BENCH lines, plus a FAILED row if the script itself failed."""
    lines = outcome.output.splitlines()
    rows = parse_lines(bench, lines)
    problem = ""
    if outcome.returncode is None:
        problem = f"timed out after {outcome.timeout:.0f} s"
    elif outcome.returncode != 0:
        tail = [x.strip() for x in lines if x.strip() and not x.startswith(PREFIX)]
        problem = f"exit {outcome.returncode}" + (f": {tail[-1][:160]}" if tail else "")
    elif not rows:
        problem = "printed no BENCH line"
    if problem:
        rows.append(Row(bench, "(script)", error=problem))
    return rows


# ---------------------------------------------------------------- formatting


def fmt_value(value: float | None) -> str:
    if value is None:
        return "-"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _cells(row: Row) -> list[str]:
    figure = f"{row.bench}: {row.figure}"
    unit = row.unit
    if row.failed:
        return [figure, unit, fmt_value(row.vrrpd), fmt_value(row.keepalived),
                f"FAILED: {row.reason}"]
    theirs = fmt_value(row.keepalived)
    if row.baseline != "keepalived":
        theirs += f" ({row.baseline})"
    ratio = row.ratio
    return [figure, unit, fmt_value(row.vrrpd), theirs,
            "n/a" if ratio is None else f"{ratio:.2f}x"]


HEADER = ["figure", "unit", "vrrpd", "keepalived", "ratio vrrpd/keepalived"]


def format_table(rows: Sequence[Row]) -> str:
    """Plain-text table for the terminal, then the notes."""
    cells = [HEADER, *(_cells(r) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER) - 1)]
    out = []
    for c in cells:
        out.append("  ".join([c[0].ljust(widths[0]), c[1].ljust(widths[1]),
                              c[2].rjust(widths[2]), c[3].rjust(widths[3]), c[4]]).rstrip())
        if c is HEADER:
            out.append("-" * (sum(widths) + 2 * len(widths) + len(HEADER[-1])))
    notes = list(dict.fromkeys(f"  {r.bench}: {r.note}" for r in rows if r.note))
    if notes:
        out += ["notes:", *notes]
    return "\n".join(out)


def format_markdown(rows: Sequence[Row], title: str = "vrrpd vs keepalived 2.2.7") -> str:
    out = [f"## {title}", "", "| " + " | ".join([*HEADER, "note"]) + " |",
           "|" + "---|" * (len(HEADER) - 1) + "---|---|"]
    for r in rows:
        c = _cells(r)
        out.append("| " + " | ".join([*(x.replace("|", "/") for x in c), r.note]) + " |")
    return "\n".join(out) + "\n"


def to_json(rows: Sequence[Row], meta: dict[str, object]) -> dict[str, object]:
    return {**meta, "failed": any(r.failed for r in rows),
            "rows": [{**asdict(r), "ratio": r.ratio, "failed": r.failed,
                      "reason": r.reason if r.failed else ""} for r in rows]}


def write_out(path: Path, rows: Sequence[Row], meta: dict[str, object]) -> list[Path]:
    md, js = path.with_suffix(".md"), path.with_suffix(".json")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(format_markdown(rows) + f"\n{meta_line(meta)}\n")
    js.write_text(json.dumps(to_json(rows, meta), indent=1) + "\n")
    return [md, js]


def meta_line(meta: dict[str, object]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in meta.items())


# ---------------------------------------------------------------- running


@dataclass
class Runner:
    """Runs bench scripts one at a time; echoes their output with ``[name]`` prefixes."""

    echo: Callable[[str], None] = field(default=lambda s: print(s, file=sys.stderr, flush=True))
    current: subprocess.Popen[str] | None = None

    def run(self, argv: Sequence[str], name: str, timeout: float) -> Outcome:
        t0 = time.monotonic()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = self.current = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True, env=env, cwd=HERE.parents[1])
        timed_out = threading.Event()

        def expire() -> None:
            timed_out.set()
            self.interrupt(proc)

        timer = threading.Timer(timeout, expire)
        timer.start()
        chunks = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                chunks.append(line)
                self.echo(f"[{name}] {line.rstrip()}")
            proc.wait()
        finally:
            timer.cancel()
            self.current = None
        rc = None if timed_out.is_set() else proc.returncode
        return Outcome(rc, "".join(chunks), time.monotonic() - t0, timeout)

    @staticmethod
    def interrupt(proc: subprocess.Popen[str], grace: float = 30.0) -> None:
        """SIGINT to the bench's process group (its ``finally`` removes namespaces and
        daemons), SIGKILL after ``grace`` s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


def select(only: Sequence[str]) -> list[BenchSpec]:
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    known = {b.name: b for b in BENCHES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown bench {', '.join(unknown)}; known: {', '.join(known)}")
    return [b for b in BENCHES if not names or b.name in names]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    ap.add_argument("--only", action="append", default=[], metavar="NAME[,NAME]",
                    help="run only these benches: " + ", ".join(b.name for b in BENCHES))
    ap.add_argument("--out", type=Path, help="also write FILE.md and FILE.json")
    ap.add_argument("--list", action="store_true", help="list the benches and exit")
    args = ap.parse_args(argv)
    if args.list:
        for b in BENCHES:
            print(f"{b.name:16} {b.script}{'  (QEMU guest)' if b.guest else ''}")
        return 0
    benches = select(args.only)
    runner = Runner()
    rows: list[Row] = []
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        for b in benches:
            runner.echo(f"== {b.name} ({'quick' if args.quick else 'full'})")
            outcome = runner.run(b.argv(sys.executable, args.quick), b.name,
                                 b.time_limit(args.quick))
            runner.echo(f"== {b.name}: exit {outcome.returncode}, {outcome.seconds:.0f} s")
            rows += collect(b.name, outcome)
    except KeyboardInterrupt:
        if runner.current is not None:
            runner.interrupt(runner.current)
        rows.append(Row("run_all", "(interrupted)", error="interrupted"))
    meta: dict[str, object] = {"started": started, "quick": args.quick,
                               "cpus": os.cpu_count(), "load": _loadavg()}
    print()
    print(format_table(rows))
    print(f"({meta_line(meta)}; shared machine: figures are noisy)")
    if args.out:
        for p in write_out(args.out, rows, meta):
            print(f"written {p}")
    return 1 if any(r.failed for r in rows) else 0


def _loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


if __name__ == "__main__":
    sys.exit(main())
