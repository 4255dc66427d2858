"""keepalived's line generators ``~SEQ``/``~SEQx``/``~LST`` and the csh ``{a,b}`` braces of
``include`` patterns: pure string functions used by :mod:`vrrpd.config.preprocess`.

A generator yields rows; each row binds the generator's variables for one copy of the line.
"""

from __future__ import annotations

import re

Rows = list[list[tuple[str, str]]]
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_seq(kind: str, spec: str, limit: int) -> Rows | str:
    """Rows of ``~SEQ(var, [start, [step,]] end)`` / ``~SEQx``, or an error message."""
    parts = [p.strip() for p in spec.split(",")]
    bad = f"~{kind}({spec}): expected (var, [start, [step,]] end) with integers"
    if len(parts) < 2 or len(parts) > 4 or not _NAME_RE.fullmatch(parts[0]):
        return bad
    try:
        nums = [int(p, 0) for p in parts[1:]]
    except ValueError:
        return bad
    if len(nums) == 1:
        end = nums[0]
        start = -1 if end < 0 else 1  # measured: (n,0) -> 1,0; (n,-2) -> -1,-2
        step = 1 if end >= start else -1
    elif len(nums) == 2:
        start, end = nums
        step = 1 if end >= start else -1
    else:
        start, step, end = nums
    if step == 0:
        return f"~{kind}({spec}): step 0 never ends"
    count = (end - start) // step + 1 if (end - start) * step >= 0 else 0
    if count > limit:
        return f"~{kind}({spec}) generates {count} lines"
    fmt = "{:x}" if kind == "SEQx" else "{:d}"
    return [[(parts[0], fmt.format(start + k * step))] for k in range(count)]


def parse_lst(spec: str) -> Rows | str:
    """Rows of ``~LST(var, v1, ...)`` / ``~LST({a,b}, {1,2}, ...)``, or an error message."""
    bad = f"~LST({spec}): expected (var, v1, v2, ...) or ({{a,b}}, {{1,2}}, ...)"
    items = split_top(spec)
    if items is None or len(items) < 2:
        return bad
    names = group(items[0])
    if not names or not all(_NAME_RE.fullmatch(n) for n in names):
        return bad
    rows = []
    for item in items[1:]:
        values = group(item)
        if len(values) != len(names):
            return f"~LST: {item!r} has {len(values)} values for {len(names)} variables"
        rows.append(list(zip(names, values, strict=True)))
    return rows


def matching_paren(text: str, open_idx: int) -> int:
    depth = 0
    for i in range(open_idx, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def split_top(spec: str) -> list[str] | None:
    """Split on commas outside ``{...}``."""
    items: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in spec:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return None
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        return None
    items.append("".join(cur).strip())
    return items


def group(item: str) -> list[str]:
    item = item.strip()
    if item.startswith("{") and item.endswith("}"):
        return [p.strip() for p in item[1:-1].split(",")]
    return [item]


def expand_braces(pattern: str) -> list[str]:
    """csh-style ``{a,b}`` expansion, as glob(GLOB_BRACE) does."""
    start = pattern.find("{")
    if start == -1:
        return [pattern]
    depth = 0
    parts: list[str] = []
    cur = start + 1
    for i in range(start, len(pattern)):
        ch = pattern[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                parts.append(pattern[cur:i])
                head, tail = pattern[:start], pattern[i + 1:]
                out = []
                for p in parts:
                    out.extend(expand_braces(head + p + tail))
                return out
        elif ch == "," and depth == 1:
            parts.append(pattern[cur:i])
            cur = i + 1
    return [pattern]
