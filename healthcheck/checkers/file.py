"""FILE_CHECK: the integer in a track_file decides up/down (and a dynamic weight).

The file is small and local: it is read in a worker thread so a slow filesystem never blocks
the loop.  A missing, empty or non-numeric file reads as 0, as in keepalived.
"""

from __future__ import annotations

import asyncio
import time

from healthcheck.checkers.base import fail, ok
from healthcheck.model import CheckResult, FileCheckSpec

__all__ = ["evaluate", "probe", "read_value"]

# keepalived treats a weighted value at or below -254 as a failure
_FAIL_AT = -254


def read_value(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            text = fh.read(64).split(maxsplit=1)
    except OSError:
        return 0
    if not text:
        return 0
    try:
        return int(text[0])
    except ValueError:
        return 0


def evaluate(spec: FileCheckSpec, value: int) -> tuple[bool, int]:
    """(up, weighted value) for a file value."""
    if spec.weight == 0:
        return value == 0, 0
    weighted = value * spec.weight * (-1 if spec.reverse else 1)
    return weighted > _FAIL_AT, weighted


async def probe(spec: FileCheckSpec) -> CheckResult:
    start = time.monotonic()
    value = await asyncio.to_thread(read_value, spec.path)
    up, weighted = evaluate(spec, value)
    if not up:
        return fail(f"{spec.path}: value {value} (weighted {weighted})", start)
    return ok(f"{spec.path}: value {value}", start, weight=weighted if spec.dynamic else None)
