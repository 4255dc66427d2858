"""Logging setup: structlog, one line per event.

- ``json`` (default when stdout is not a TTY, e.g. under systemd): one JSON object per line with
  ``timestamp`` (ISO 8601 UTC), ``level``, ``event``, ``logger`` (when the logger has a name) and
  the bound key/values.  With ``syslog_prefix`` each line starts with ``<N>`` (the syslog
  priority), which journald's ``SyslogLevelPrefix=`` (on by default) turns into the entry's
  PRIORITY and strips; by default it is on exactly when stdout is the journal (``JOURNAL_STREAM``).
- ``console`` (default on a TTY): structlog's readable renderer, coloured on a TTY.
Level filtering happens in the bound logger class (``make_filtering_bound_logger``): a filtered-out
call costs a no-op method call.  The stdlib ``logging`` records of libraries (pyroute2, asyncio)
go through the same renderer, at WARNING and above (or the configured level if higher).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import IO, Any, Literal, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["auto", "json", "console"]
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
# syslog(3) priorities for the <N> prefix
SYSLOG_PRIORITY = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "warn": 4, "error": 3,
                   "exception": 3, "critical": 2}
_HANDLER_MARK = "_vrrpd_logs_handler"


class _NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name given to ``structlog.get_logger(name)``."""

    def __init__(self, file: IO[str], name: str | None) -> None:
        super().__init__(cast(TextIO, file))
        self.name = name


class _NamedPrintLoggerFactory:
    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args and args[0] else None)


def _add_logger_name(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name and "logger" not in event_dict:
        event_dict["logger"] = name
    return event_dict


class JsonLineRenderer:
    """JSON object per line (non-JSON values via ``str``: addresses, enums, paths), optionally
    prefixed with ``<N>`` for journald."""

    def __init__(self, *, syslog_prefix: bool = False) -> None:
        self.syslog_prefix = syslog_prefix

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
        line = json.dumps(event_dict, default=str, ensure_ascii=False, separators=(",", ":"))
        if self.syslog_prefix:
            level = str(event_dict.get("level", method)).lower()
            return f"<{SYSLOG_PRIORITY.get(level, 6)}>{line}"
        return line


def stream_is_journal(stream: IO[str], env: dict[str, str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``JOURNAL_STREAM=dev:ino``)."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return bool(value) and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def configure_logging(level: str = "info", fmt: LogFormat | str = "auto", *,
                      stream: IO[str] | None = None, syslog_prefix: bool | None = None,
                      cache_loggers: bool = True) -> str:
    """Configure structlog (and route stdlib logging) once at start; returns the format chosen,
    ``"json"`` or ``"console"``.  ``level``: debug/info/warning/error/critical.  ``stream``
    defaults to stdout.  ``syslog_prefix`` None = on when the stream is the journal."""
    out = sys.stdout if stream is None else stream
    try:
        lvl = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}: expected one of {', '.join(LEVELS)}")
    if fmt not in ("auto", "json", "console"):
        raise ValueError(f"unknown log format {fmt!r}: expected auto, json or console")
    tty = _is_tty(out)
    chosen = ("console" if tty else "json") if fmt == "auto" else str(fmt)
    if syslog_prefix is None:
        syslog_prefix = chosen == "json" and stream_is_journal(out)
    renderer: Processor = (JsonLineRenderer(syslog_prefix=syslog_prefix) if chosen == "json"
                           else structlog.dev.ConsoleRenderer(colors=tty))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.reset_defaults()
    structlog.configure(
        processors=[*shared, _add_logger_name, structlog.processors.StackInfoRenderer(),
                    structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=_NamedPrintLoggerFactory(out),
        cache_logger_on_first_use=cache_loggers,
    )
    _route_stdlib(out, max(lvl, logging.WARNING), shared, renderer)
    return chosen


def _route_stdlib(out: IO[str], lvl: int, shared: list[Processor], renderer: Processor) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(out)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root.addHandler(handler)
    root.setLevel(lvl)
