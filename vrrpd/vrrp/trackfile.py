"""track_file: a file holding an integer, re-read whenever it changes (inotify on its directory).

``TrackFile(spec, on_change)``: ``start()`` applies ``init_file`` (write ``init_value`` if the
file is missing, or always with ``overwrite``), reads the value and watches the directory with
inotify (the file may be rewritten, replaced by rename, deleted or created later);
``on_change(name, value)`` is called whenever the value read differs from the last one.
If the directory cannot be watched (missing), it is polled every ``poll_interval`` s instead.
``value`` is the integer at the start of the file (``strtol``-like: leading blanks and sign; a
missing, unreadable or non-numeric file reads as 0, logged).

``track_file_weight(value, weight, reverse)`` is keepalived's weighting for VRRP instances
(man keepalived.conf, "Track files"): with weight 0 a non-zero value is a failure (-> None:
FAULT) and 0 is OK (-> 0); otherwise ``value * weight`` (negated with ``reverse``), and a
result below -253 means FAULT (None). The instance adds the result to its base priority and
clamps to 1..254 (not done here).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from healthcheck.filewatch import FileWatcher

if TYPE_CHECKING:
    from vrrpd.config.model_vrrp import TrackFile as ConfigTrackFile

__all__ = ["TrackFile", "TrackFileCallback", "TrackFileSpec", "read_track_value",
           "track_file_weight"]

log = structlog.get_logger(__name__)

TrackFileCallback = Callable[[str, int], None]

_NUMBER = re.compile(rb"\s*([+-]?\d+)")


@dataclass(frozen=True)
class TrackFileSpec:
    name: str
    path: str
    weight: int = 1
    reverse: bool = False
    init_file: bool = False
    init_value: int = 0
    overwrite: bool = False

    @classmethod
    def from_config(cls, tf: ConfigTrackFile) -> TrackFileSpec:
        return cls(
            name=tf.name,
            path=tf.file,
            weight=tf.weight,
            reverse=tf.weight_reverse,
            init_file=tf.init_file,
            init_value=tf.init_value,
            overwrite=tf.init_overwrite,
        )


def read_track_value(path: str | os.PathLike[str]) -> int:
    try:
        data = Path(path).read_bytes()[:64]
    except OSError as exc:
        log.warning("track_file unreadable, value 0", path=str(path), error=str(exc))
        return 0
    match = _NUMBER.match(data)
    if match is None:
        if data.strip():
            log.warning("track_file not a number, value 0", path=str(path))
        return 0
    return int(match.group(1))


def track_file_weight(value: int, weight: int, reverse: bool = False) -> int | None:
    """Priority adjustment for an instance, or None for FAULT (see the module docstring)."""
    if weight == 0:
        failed = value != 0
        return None if failed != reverse else 0
    result = value * (-weight if reverse else weight)
    return None if result < -253 else result


class TrackFile:
    def __init__(self, spec: TrackFileSpec, on_change: TrackFileCallback) -> None:
        self.spec = spec
        self._on_change = on_change
        self._path = Path(spec.path)
        self.value = 0
        self._watcher: FileWatcher | None = None
        self._poller: asyncio.Task[None] | None = None
        self.poll_interval = 1.0

    def start(self) -> int:
        """Initialise the file if asked, read it, begin watching; returns the initial value."""
        if self.spec.init_file and (self.spec.overwrite or not self._path.exists()):
            try:
                self._path.write_text(f"{self.spec.init_value}\n")
            except OSError as exc:
                log.warning("track_file init failed", path=str(self._path), error=str(exc))
        self.value = read_track_value(self._path)
        try:
            self._watch()
        except OSError as exc:  # e.g. the directory does not exist (yet): poll instead
            log.warning("track_file: inotify unavailable, polling", path=str(self._path),
                        error=str(exc))
            self._poller = asyncio.ensure_future(self._poll())
        return self.value

    def _watch(self) -> None:
        """inotify on the file's directory (events as healthcheck's FILE_CHECK watcher)."""
        watcher = FileWatcher(asyncio.get_running_loop(), lambda _path: self.refresh())
        if not watcher.watch(str(self._path)):
            watcher.close()
            raise OSError(f"cannot watch {self._path.parent}")
        self._watcher = watcher

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.refresh()

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    def refresh(self) -> None:
        """Re-read the file now and report a changed value."""
        value = read_track_value(self._path)
        if value != self.value:
            self.value = value
            try:
                self._on_change(self.spec.name, value)
            except Exception:
                log.exception("track_file callback failed", name=self.spec.name)
