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
import contextlib
import ctypes
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from vrrpd.config.model_vrrp import TrackFile as ConfigTrackFile

__all__ = ["TrackFile", "TrackFileCallback", "TrackFileSpec", "read_track_value",
           "track_file_weight"]

log = structlog.get_logger(__name__)

TrackFileCallback = Callable[[str, int], None]

_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_DELETE = 0x200
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_EVENT = struct.Struct("iIII")
_NUMBER = re.compile(rb"\s*([+-]?\d+)")

_libc = ctypes.CDLL(None, use_errno=True)


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
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
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
        self._loop = asyncio.get_running_loop()
        try:
            self._watch()
        except OSError as exc:  # e.g. the directory does not exist (yet): poll instead
            log.warning("track_file: inotify unavailable, polling", path=str(self._path),
                        error=str(exc))
            self._poller = asyncio.ensure_future(self._poll())
        return self.value

    def _watch(self) -> None:
        assert self._loop is not None
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        # Not IN_MODIFY/IN_CREATE: ``echo 5 > f`` truncates first and would read as 0 for a moment.
        mask = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_MOVED_FROM | _IN_DELETE
        directory = str(self._path.parent).encode()
        if _libc.inotify_add_watch(fd, directory, mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"cannot watch {self._path.parent}")
        self._fd = fd
        self._loop.add_reader(fd, self._readable)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.refresh()

    def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if self._fd >= 0 and self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
        self._fd = -1

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        name = self._path.name.encode()
        relevant = False
        offset = 0
        while offset + _EVENT.size <= len(data):
            _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if raw.rstrip(b"\0") == name:
                relevant = True
        if relevant:
            self.refresh()

    def refresh(self) -> None:
        """Re-read the file now and report a changed value."""
        value = read_track_value(self._path)
        if value != self.value:
            self.value = value
            try:
                self._on_change(self.spec.name, value)
            except Exception:
                log.exception("track_file callback failed", name=self.spec.name)
