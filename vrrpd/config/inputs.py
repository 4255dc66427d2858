"""What a config load read: every file (with its sha256) and every include pattern with the
paths it matched, so a cache derived from the config can tell when it is stale
(:mod:`vrrpd.fast_start`): an edited file changes a digest, a new file matching an include glob
changes a match list.  ``${_RANDOM}`` makes the result depend on more than the files: such a
load is marked ``deterministic = False`` and never cached.

The preprocessor fills a :class:`ConfigInputs` while it reads (hashing bytes it has already
read: no extra I/O); :func:`vrrpd.config.loader.load` keeps the last one per main file here
(:func:`last_inputs`), so nothing in the config model changes shape.
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["ConfigInputs", "has_magic", "last_inputs", "match_include", "remember"]


def has_magic(pattern: str) -> bool:
    """``glob.has_magic`` without importing glob (and re)."""
    return "*" in pattern or "?" in pattern or "[" in pattern


def match_include(pattern: str) -> list[str]:
    """The paths one (brace-expanded, absolute) include pattern names, as the preprocessor
    reads them: a glob's sorted matches, or the plain path if it exists."""
    if has_magic(pattern):
        import glob

        return sorted(glob.glob(pattern))
    return [pattern] if os.path.exists(pattern) else []


class ConfigInputs:
    """Filled while reading (a plain class: this module is imported before the daemon's
    heavy imports by the start-up replay)."""

    __slots__ = ("deterministic", "files", "main", "patterns")

    def __init__(self, main: str = "") -> None:
        self.main = main  # absolute path of the main file
        self.files: list[tuple[str, str]] = []  # (absolute path, sha256 hex), in read order
        self.patterns: list[tuple[str, tuple[str, ...]]] = []  # (pattern, its matches)
        self.deterministic = True

    def read(self, path: str, data: bytes) -> None:
        self.files.append((os.path.abspath(path), hashlib.sha256(data).hexdigest()))

    def globbed(self, pattern: str, matches: list[str]) -> None:
        self.patterns.append((pattern, tuple(matches)))


_last: dict[tuple[str, str], ConfigInputs] = {}  # one assignment per load: atomic


def remember(path: str, config_id: str, inputs: ConfigInputs) -> None:
    _last[(os.path.abspath(path), config_id)] = inputs


def last_inputs(path: str, config_id: str) -> ConfigInputs | None:
    """The inputs of the last :func:`~vrrpd.config.loader.load` of ``path`` (None: not loaded
    in this process)."""
    return _last.get((os.path.abspath(path), config_id))
