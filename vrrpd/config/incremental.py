"""Reload a keepalived.conf re-parsing only what changed since the last load.

Public API::

    loader = IncrementalLoader(path, config_id=...)   # or reloader(path, config_id)
    loader.load() -> LoadResult        # equal to loader.load(path, config_id=...)
    loader.stats -> ReloadStats        # what the last load did (mode, lines re-parsed, ...)

The result is always the one :func:`vrrpd.config.loader.load` gives for the file as it is now
(Config and diagnostics, positions included).  The short way is taken only when it provably
gives that result; otherwise the whole file is parsed again.

Why the short way is exact.  The previous load of the file kept its text lines, its top-level
nodes with their line spans, and what loading each node produced (a
:class:`~vrrpd.config.loader.Piece`).  It is usable only when:

* the file is *plain*, before and after: no ``$`` at all, and no line starting with ``@``,
  ``~`` or ``include`` — then the preprocessor works line by line with no state (no
  definitions, conditions, generators or other files), so a line's tokens depend on that
  line alone;
* the previous load had no syntax diagnostic: every block was closed, no stray brace.  So
  between two top-level nodes that do not share a line, the block builder's stack is empty.

The changed lines are found by comparing the old and new line lists (slice equality,
halving the window: C speed).  The nodes entirely above the first changed line, and — when
the number of lines did not change — those entirely below the last one, keep their lines
and their state at the boundary, hence parse to the same nodes; they are reused as they
are.  The lines in between (from the end of the last reused node above to the start of the
first reused node below, so only blank/comment lines besides the changed blocks) are
parsed on their own with their real line numbers.  That parse equals the full parse of
those lines unless the builder's carried state matters, which happens only when a line
starting with ``{`` would attach to the node before it or a ``}`` has no block to close:
both give a diagnostic in the separate parse, and any diagnostic there means a full
parse.  When lines were added or removed, every node below the change moved: they are
parsed again too (positions must be exact).

Loading then goes through :func:`~vrrpd.config.loader.load_pieces`, which reuses the piece of
each reused node (its own load is a function of the node alone) and the built instance /
virtual server when the global definitions are the same; everything that involves several
blocks (``global_defs``, duplicate names, references, script security) runs again.
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_right
from dataclasses import dataclass

from vrrpd.config.errors import Diagnostic
from vrrpd.config.fastnew import paused_gc
from vrrpd.config.inputs import ConfigInputs, remember
from vrrpd.config.loader import LoadResult, Piece, load, load_pieces
from vrrpd.config.model import GlobalDefs
from vrrpd.config.nodes import Node
from vrrpd.config.preprocess import Preprocessor
from vrrpd.config.syntax import build_tree

__all__ = ["IncrementalLoader", "ReloadStats", "is_plain", "reloader"]


def is_plain(text: str) -> bool:
    """True when the preprocessor treats every line of ``text`` on its own (see above): no
    ``$``, and no line whose first non-blank characters are ``@``, ``~`` or ``include``."""
    if "$" in text:
        return False
    for marker in ("@", "~", "include"):  # few occurrences, if any (an e-mail address...)
        at = text.find(marker)
        while at != -1:
            start = text.rfind("\n", 0, at) + 1
            if start == at or text[start:at].isspace():
                return False
            at = text.find(marker, at + 1)
    return True


@dataclass(frozen=True, slots=True)
class ReloadStats:
    mode: str  # "full", "incremental" or "unchanged"
    reason: str = ""  # why a full parse, or what the incremental one did
    reparsed_lines: int = 0
    reparsed_nodes: int = 0  # top-level nodes made by the parse
    reused_nodes: int = 0  # top-level nodes taken from the previous load


class _State:
    """What a load keeps for the next one (only when the short way can follow it)."""

    __slots__ = ("ends", "gdefs_key", "inputs", "lines", "nodes", "pieces", "result", "starts",
                 "text")

    def __init__(self, text: str, lines: list[str], nodes: list[Node], starts: list[int],
                 ends: list[int], pieces: list[Piece], gdefs_key: GlobalDefs,
                 result: LoadResult, inputs: ConfigInputs) -> None:
        self.text = text
        self.lines = lines
        self.nodes = nodes
        self.starts = starts  # first line of each top-level node
        self.ends = ends  # last line of each top-level node
        self.pieces = {id(p.node): p for p in pieces}
        self.gdefs_key = gdefs_key
        self.result = result
        self.inputs = inputs


def _spans(nodes: list[Node]) -> tuple[list[int], list[int]]:
    starts = [n.keyword.pos.line for n in nodes]
    ends = [n.end.line if n.end is not None else n.keyword.pos.line for n in nodes]
    return starts, ends


def _ordered(starts: list[int], ends: list[int]) -> bool:
    """Each node starts where the previous one ended or later (several may share a line)."""
    return all(s <= e for s, e in zip(starts, ends, strict=True)) and \
        all(s >= e for s, e in zip(starts[1:], ends, strict=False))


def common_prefix(a: list[str], b: list[str]) -> int:
    """How many leading lines ``a`` and ``b`` share (slice compares, O(n) in C)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo]; a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def common_suffix(a: list[str], b: list[str], limit: int) -> int:
    """How many trailing lines ``a`` and ``b`` share, at most ``limit``."""
    la, lb = len(a), len(b)
    if a[la - limit:] == b[lb - limit:]:
        return limit
    lo, hi = 0, limit  # the last lo lines are equal, the last hi are not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[la - mid:la - lo] == b[lb - mid:lb - lo]:
            lo = mid
        else:
            hi = mid
    return lo


class IncrementalLoader:
    """Loads one config file again and again (the daemon's SIGHUP), re-parsing what changed."""

    def __init__(self, path: str | os.PathLike[str], *, config_id: str) -> None:
        self.path = os.fspath(path)
        self.config_id = config_id
        self.stats = ReloadStats("full", "first load")
        self._state: _State | None = None
        self._lock = threading.Lock()

    def load(self) -> LoadResult:
        with self._lock:
            return self._load()

    def _load(self) -> LoadResult:
        try:
            with open(self.path, "rb") as fh:
                data = fh.read()
        except OSError:
            self._state = None
            self.stats = ReloadStats("full", "the file cannot be read")
            return load(self.path, config_id=self.config_id)
        text = data.decode("utf-8", errors="replace")
        state = self._state
        if state is None:
            return self._full(text, data, "no previous load to start from")
        if text == state.text:
            self.stats = ReloadStats("unchanged", "the file is unchanged",
                                     reused_nodes=len(state.nodes))
            remember(self.path, self.config_id, state.inputs)
            return state.result
        if not is_plain(text):
            return self._full(text, data, "the new text uses $, @, ~ or include")
        return self._incremental(state, text, data)

    # ---- from scratch --------------------------------------------------------

    def _directory(self) -> tuple[str, str]:
        real = os.path.realpath(self.path)
        return real, os.path.dirname(real) or "."

    def _full(self, text: str, data: bytes, reason: str) -> LoadResult:
        """What :func:`~vrrpd.config.loader.load` does (on the text already read)."""
        self._state = None
        diagnostics: list[Diagnostic] = []
        inputs = ConfigInputs(main=os.path.abspath(self.path))
        inputs.read(self.path, data)
        real, directory = self._directory()
        with paused_gc():
            pre = Preprocessor(self.config_id, diagnostics, inputs=inputs)
            pre.run_text(text, self.path, directory, real=real)
            nodes = list(build_tree(pre.lines, diagnostics))
        syntax_clean = not diagnostics
        loaded = load_pieces(nodes, diagnostics)
        result = LoadResult(loaded.config, tuple(diagnostics))
        remember(self.path, self.config_id, inputs)
        self.stats = ReloadStats("full", reason, reparsed_lines=text.count("\n") + 1,
                                 reparsed_nodes=len(nodes))
        if syntax_clean and is_plain(text):
            starts, ends = _spans(nodes)
            if _ordered(starts, ends):
                self._state = _State(text, text.split("\n"), nodes, starts, ends,
                                     loaded.pieces, loaded.gdefs_key, result, inputs)
        return result

    # ---- the short way -------------------------------------------------------

    def _incremental(self, state: _State, text: str, data: bytes) -> LoadResult:
        old, new = state.lines, text.split("\n")
        same_head = common_prefix(old, new)
        same_tail = common_suffix(old, new, min(len(old), len(new)) - same_head)
        delta = len(new) - len(old)
        last_changed = len(old) - same_tail  # old lines same_head+1 .. last_changed changed
        starts, ends, nodes = state.starts, state.ends, state.nodes
        n = len(nodes)
        # Reused above: the nodes ending before the first changed line, less one that shares
        # its last line with the next node.
        i0 = bisect_right(ends, same_head)
        while 0 < i0 < n and starts[i0] <= ends[i0 - 1]:
            i0 -= 1
        first_line = ends[i0 - 1] + 1 if i0 else 1
        if delta:
            i1, last_line = n, len(old)  # everything below moved: parse it again
        else:
            i1 = max(bisect_right(starts, last_changed), i0)
            while i0 < i1 < n and starts[i1] <= ends[i1 - 1]:
                i1 += 1
            last_line = starts[i1] - 1 if i1 < n else len(old)
        region = new[first_line - 1:last_line + delta]
        diagnostics: list[Diagnostic] = []
        real, directory = self._directory()
        with paused_gc():
            pre = Preprocessor(self.config_id, diagnostics)
            pre.run_text("\n".join(region), self.path, directory, real=real,
                         first_line=first_line)
            middle = list(build_tree(pre.lines, diagnostics))
        if diagnostics:
            return self._full(text, data, "the changed lines have a syntax diagnostic")
        mid_starts, mid_ends = _spans(middle)
        nodes = nodes[:i0] + middle + nodes[i1:]
        starts = starts[:i0] + mid_starts + starts[i1:]
        ends = ends[:i0] + mid_ends + ends[i1:]
        loaded = load_pieces(nodes, diagnostics, cache=state.pieces,
                             prev_gdefs=state.gdefs_key)
        result = LoadResult(loaded.config, tuple(diagnostics))
        inputs = ConfigInputs(main=os.path.abspath(self.path))
        inputs.read(self.path, data)
        remember(self.path, self.config_id, inputs)
        self._state = _State(text, new, nodes, starts, ends, loaded.pieces, loaded.gdefs_key,
                             result, inputs)
        self.stats = ReloadStats(
            "incremental", f"lines {first_line}..{last_line + delta} parsed again",
            reparsed_lines=len(region), reparsed_nodes=len(middle), reused_nodes=n - (i1 - i0))
        return result


_registry_lock = threading.Lock()
_registry: dict[tuple[str, str], IncrementalLoader] = {}


def reloader(path: str | os.PathLike[str], config_id: str) -> IncrementalLoader:
    """The process's loader of ``path`` (one is kept: a daemon reloads one config)."""
    key = (os.fspath(path), config_id)
    with _registry_lock:
        got = _registry.get(key)
        if got is None:
            _registry.clear()
            got = _registry[key] = IncrementalLoader(key[0], config_id=config_id)
        return got
