"""track_file: value parsing, keepalived's weighting, inotify-driven re-reads."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from vrrpd.config.model_vrrp import TrackFile as ConfigTrackFile
from vrrpd.vrrp.trackfile import TrackFile, TrackFileSpec, read_track_value, track_file_weight


@pytest.mark.parametrize(
    ("content", "value"),
    [(b"5\n", 5), (b"  -12 trailing", -12), (b"+3", 3), (b"", 0), (b"abc", 0), (b"7\n8\n", 7)],
)
def test_read_value(tmp_path: Path, content: bytes, value: int) -> None:
    f = tmp_path / "v"
    f.write_bytes(content)
    assert read_track_value(f) == value


def test_missing_file_reads_zero(tmp_path: Path) -> None:
    assert read_track_value(tmp_path / "nope") == 0


def test_weight_rules() -> None:
    assert track_file_weight(0, 0) == 0
    assert track_file_weight(3, 0) is None  # weight 0: non-zero = failure = FAULT
    assert track_file_weight(0, 0, reverse=True) is None
    assert track_file_weight(3, 0, reverse=True) == 0
    assert track_file_weight(5, 10) == 50  # multiplied
    assert track_file_weight(-5, 10) == -50
    assert track_file_weight(5, 10, reverse=True) == -50
    assert track_file_weight(-254, 1) is None  # below -253: FAULT
    assert track_file_weight(-253, 1) == -253


def test_spec_from_config() -> None:
    cfg = ConfigTrackFile(name="tf", file="/x", weight=-2, weight_reverse=True, init_file=True,
                          init_value=4, init_overwrite=True)
    spec = TrackFileSpec.from_config(cfg)
    assert spec == TrackFileSpec("tf", "/x", -2, True, True, 4, True)


async def _until(pred, limit: float = 2.0) -> bool:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while loop.time() < end:
        if pred():
            return True
        await asyncio.sleep(0.01)
    return bool(pred())


async def test_watch_rewrite_rename_delete(tmp_path: Path) -> None:
    path = tmp_path / "prio"
    changes: list[tuple[str, int]] = []
    tf = TrackFile(TrackFileSpec("tf", str(path), init_file=True, init_value=7),
                   lambda n, v: changes.append((n, v)))
    assert tf.start() == 7
    assert path.read_text() == "7\n"
    try:
        path.write_text("12\n")  # rewrite in place (truncate + write + close)
        assert await _until(lambda: changes == [("tf", 12)])
        tmp = tmp_path / ".prio.tmp"
        tmp.write_text("-3\n")
        os.rename(tmp, path)  # atomic replace
        assert await _until(lambda: changes[-1:] == [("tf", -3)])
        path.unlink()
        assert await _until(lambda: changes[-1:] == [("tf", 0)])
        (tmp_path / "other").write_text("99\n")  # another file in the directory: ignored
        await asyncio.sleep(0.1)
        assert changes == [("tf", 12), ("tf", -3), ("tf", 0)]
        assert tf.value == 0
    finally:
        tf.stop()


async def test_init_file_does_not_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "prio"
    path.write_text("4\n")
    keep = TrackFile(TrackFileSpec("a", str(path), init_file=True, init_value=1), lambda n, v: None)
    assert keep.start() == 4
    keep.stop()
    over = TrackFile(TrackFileSpec("b", str(path), init_file=True, init_value=1, overwrite=True),
                     lambda n, v: None)
    assert over.start() == 1
    over.stop()


async def test_missing_directory_falls_back_to_polling(tmp_path: Path) -> None:
    path = tmp_path / "later" / "prio"
    changes: list[int] = []
    tf = TrackFile(TrackFileSpec("tf", str(path)), lambda n, v: changes.append(v))
    tf.poll_interval = 0.05
    assert tf.start() == 0
    try:
        path.parent.mkdir()
        path.write_text("9\n")
        assert await _until(lambda: changes == [9])
    finally:
        tf.stop()
