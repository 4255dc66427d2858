"""The machine-readable line every bench script prints next to its human output.

    BENCH {"figure": "...", "unit": "ms", "vrrpd": 1.2, "keepalived": 3.4, ...}

``tests/bench/run_all.py`` collects these lines from each script's stdout.  Optional keys:
``baseline`` (what the "keepalived" column really is, when not keepalived, e.g. "scapy"),
``better`` ("lower" or "higher"), ``note`` (one short qualifier), ``error`` (the figure could
not be measured: the row is shown as FAILED with this reason).  Scripts import it as
``from bench_line import emit`` (run as scripts, their directory is on ``sys.path``).
"""

from __future__ import annotations

import json
import math
import sys

PREFIX = "BENCH "


def emit(figure: str, unit: str, vrrpd: float | None, keepalived: float | None, *,
         baseline: str = "keepalived", better: str = "lower", note: str = "",
         error: str = "") -> None:
    """Print one BENCH line on stdout (flushed, so a parent reading a pipe sees it at once)."""
    record: dict[str, object] = {"figure": figure, "unit": unit,
                                 "vrrpd": _finite(vrrpd), "keepalived": _finite(keepalived)}
    if baseline != "keepalived":
        record["baseline"] = baseline
    if better != "lower":
        record["better"] = better
    if note:
        record["note"] = note
    if error:
        record["error"] = error
    print(PREFIX + json.dumps(record), flush=True)
    sys.stdout.flush()


def _finite(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
