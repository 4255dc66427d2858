"""Watch files for changes with inotify (FILE_CHECK's track files), as keepalived does.

One inotify instance for all files, one watch per *directory*: a track file is often replaced
by rename, deleted or created later, which a watch on the file itself would miss.  Events:
close-after-write, moved in/out, deleted -- not IN_MODIFY/IN_CREATE, because ``echo 5 > f``
truncates first and would read as an empty file for a moment.

``healthcheck`` never imports ``vrrpd``; ``vrrpd.vrrp.trackfile`` uses this watcher for
``track_file`` in VRRP instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import struct
from collections.abc import Callable
from pathlib import Path

__all__ = ["FileWatcher"]

_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_DELETE = 0x200
_MASK = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_MOVED_FROM | _IN_DELETE
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of NUL-padded name)

_libc = ctypes.CDLL(None, use_errno=True)


class FileWatcher:
    """``on_change(path)`` runs in the loop for every watched path whose directory entry was
    written, replaced or removed (once per path per batch of events)."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_change: Callable[[str], None]) -> None:
        self._loop = loop
        self._on_change = on_change
        self._fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        # watch descriptor -> {file name in that directory: path as given}
        self._names: dict[int, dict[bytes, str]] = {}
        self._wds: dict[str, int] = {}  # directory -> watch descriptor
        loop.add_reader(self._fd, self._readable)

    def watch(self, path: str) -> bool:
        """Start reporting changes of ``path``; False when its directory cannot be watched
        (missing, no permission): the caller then has to poll."""
        p = Path(path)
        directory = str(p.parent)
        wd = self._wds.get(directory)
        if wd is None:
            wd = _libc.inotify_add_watch(self._fd, os.fsencode(directory), _MASK)
            if wd < 0:
                return False
            self._wds[directory] = wd
        self._names.setdefault(wd, {})[os.fsencode(p.name)] = path
        return True

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except (BlockingIOError, InterruptedError):
            return
        changed: dict[str, None] = {}
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            path = self._names.get(wd, {}).get(name)
            if path is not None:
                changed[path] = None
        for path in changed:
            self._on_change(path)
