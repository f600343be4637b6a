"""Structured logging (structlog), to stderr.

A terminal gets the console renderer; anything else (a container, CI, a pipe) gets one
JSON object per line with `timestamp` (ISO 8601, UTC), `level`, `event` and the bound
fields. Environment variables win over the arguments, so an operator can change the
output without touching the command line:

    KAFKETTE_LOG_FORMAT=json|console    KAFKETTE_LOG_LEVEL=debug|info|warning|error

Level filtering happens in the bound logger class (make_filtering_bound_logger), so a
debug call below the level costs one method call, and loggers are cached on first use.
Records from the standard library's `logging` (asyncio's "Task exception was never
retrieved", ...) are rendered the same way.

Usage:
    log = get_logger(__name__)
    log.info("partition_rolled", topic="t", partition=0, base_offset=1200)
"""
from __future__ import annotations

import logging as _stdlib_logging
import os
import sys
from typing import Any, TextIO

import structlog

_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    name = level.strip().upper()
    name = _LEVEL_ALIASES.get(name, name)
    mapping = _stdlib_logging.getLevelNamesMapping()
    if name not in mapping:
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    return mapping[name]


def configure_logging(level: str | int = "INFO", json: bool | None = None,
                      stream: TextIO | None = None) -> None:
    """Set up structlog (and the stdlib root logger) once, at process start.

    json=None picks JSON unless `stream` (default: stderr) is a terminal.
    KAFKETTE_LOG_FORMAT and KAFKETTE_LOG_LEVEL override `json` and `level`.
    """
    stream = stream if stream is not None else sys.stderr
    env_level = os.environ.get("KAFKETTE_LOG_LEVEL")
    if env_level:
        level = env_level
    env_format = os.environ.get("KAFKETTE_LOG_FORMAT", "").strip().lower()
    if env_format in ("json", "console"):
        json = env_format == "json"
    elif env_format:
        raise ValueError(f"KAFKETTE_LOG_FORMAT={env_format!r}: use json or console")
    is_tty = hasattr(stream, "isatty") and stream.isatty()
    if json is None:
        json = not is_tty
    levelno = _level_number(level)

    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer()
    else:
        colors = is_tty and "NO_COLOR" not in os.environ
        renderer = structlog.dev.ConsoleRenderer(colors=colors)

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _logger_field,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # JSON keeps the traceback as one string field, so a record stays one line; the
    # console renderer prints exceptions itself.
    tail: list[Any] = [structlog.processors.StackInfoRenderer()]
    if json:
        tail.append(structlog.processors.format_exc_info)

    structlog.configure(
        processors=[*shared, *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )

    # stdlib logging -> same stream, same format.
    handler = _stdlib_logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared, *tail],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = _stdlib_logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_kafkette", False)]:
        root.removeHandler(old)
    handler._kafkette = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(levelno)


def _logger_field(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    # structlog.get_logger() reserves the keyword `logger`, so get_logger() binds the name
    # as `logger_name` and this renames it to `logger`, the key stdlib records get too.
    name = event_dict.pop("logger_name", None)
    if name is not None:
        event_dict["logger"] = name
    return event_dict


def get_logger(name: str | None = None, **initial_values: Any) -> Any:
    """A lazy structlog logger (safe to create at import time); `name` appears as the
    `logger` field. Call configure_logging() before the first log call: loggers are
    cached on first use."""
    if name is not None:
        initial_values["logger_name"] = name
    return structlog.get_logger(**initial_values)
