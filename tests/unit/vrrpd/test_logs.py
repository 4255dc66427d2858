"""configure_logging: JSON line format, <N> prefix, level filtering, console on a TTY."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
from collections.abc import Iterator
from datetime import UTC, datetime
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import structlog

from vrrpd.logs import configure_logging, stream_is_journal


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line]


def test_json_lines_carry_event_level_timestamp_logger_and_values() -> None:
    buf = io.StringIO()
    assert configure_logging("info", "auto", stream=buf) == "json"  # StringIO is not a TTY
    log = structlog.get_logger("vrrpd.vrrp.runner")
    log.info("transition", instance="VI_1", old="BACKUP", new="MASTER", reason="timer expired",
             src=IPv4Address("10.0.0.2"))
    (line,) = lines(buf)
    record = json.loads(line)
    assert record["event"] == "transition"
    assert record["level"] == "info"
    assert record["logger"] == "vrrpd.vrrp.runner"
    assert record["instance"] == "VI_1" and record["old"] == "BACKUP" and record["new"] == "MASTER"
    assert record["src"] == "10.0.0.2"  # non-JSON values rendered with str()
    ts = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert ts.tzinfo is not None and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 60


def test_level_filtering_drops_lower_levels() -> None:
    buf = io.StringIO()
    configure_logging("warning", "json", stream=buf)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [json.loads(x)["event"] for x in lines(buf)] == ["w", "e"]
    assert "logger" not in json.loads(lines(buf)[0])  # unnamed logger: no key


def test_syslog_prefix_maps_levels_to_priorities() -> None:
    buf = io.StringIO()
    configure_logging("debug", "json", stream=buf, syslog_prefix=True)
    log = structlog.get_logger("x")
    log.debug("a")
    log.info("b")
    log.warning("c")
    log.error("d")
    log.critical("e")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("f")
    out = lines(buf)
    prefixes = [x[: x.index(">") + 1] for x in out if x.startswith("<")]
    assert prefixes == ["<7>", "<6>", "<4>", "<3>", "<2>", "<3>"]
    exc = json.loads(out[-1][3:])
    assert exc["event"] == "f" and "RuntimeError: boom" in exc["exception"]


def test_stdlib_records_use_the_same_json_format() -> None:
    buf = io.StringIO()
    configure_logging("info", "json", stream=buf)
    logging.getLogger("pyroute2.test").warning("netlink %s", "hiccup")
    logging.getLogger("pyroute2.test").info("below the library floor")
    (line,) = lines(buf)
    record = json.loads(line)
    assert record["event"] == "netlink hiccup"
    assert record["level"] == "warning" and record["logger"] == "pyroute2.test"


def test_reconfiguring_replaces_the_stdlib_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)
    logging.getLogger("lib").error("once")
    assert lines(first) == [] and len(lines(second)) == 1


def test_console_renderer_on_a_tty() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=True) as tty:
            assert configure_logging("info", "auto", stream=tty) == "console"
            structlog.get_logger("vrrpd").info("hello", instance="VI_1")
            tty.flush()
            out = os.read(master, 4096).decode()
    finally:
        os.close(master)
    assert "hello" in out and "VI_1" in out
    assert not out.lstrip().startswith("{")


def test_console_forced_on_a_pipe_has_no_colours() -> None:
    buf = io.StringIO()
    assert configure_logging("info", "console", stream=buf) == "console"
    structlog.get_logger().info("plain", k=1)
    out = buf.getvalue()
    assert "plain" in out and "k=1" in out and "\x1b[" not in out


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud", "json", stream=io.StringIO())
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml", stream=io.StringIO())


def test_journal_detection_by_device_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "stream"
    with path.open("w") as f:
        st = os.fstat(f.fileno())
        assert stream_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stream_is_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not stream_is_journal(f, {})
        assert not stream_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})
