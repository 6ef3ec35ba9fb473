"""Structured logging: one structlog pipeline for our events and for stdlib loggers (httpx, apscheduler).

Event names are constant snake_case strings with key/value fields (``log.info("check_done",
target=..., quotes=5)``). ``console`` renders for a terminal, ``json`` one object per line for
collectors; ``auto`` picks console on a TTY. :class:`Redactor` runs last before rendering and
replaces every configured secret, and anything shaped like a Slack webhook path or URL credentials,
with ``[REDACTED]`` — in the event, in every field and in rendered exceptions.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from monitor.redact import REDACTED, Scrubber

__all__ = [
    "REDACTED",
    "Redactor",
    "bind_check",
    "configure_logging",
    "redact_mapping",
    "unbind_check",
]

# Slack webhook paths, URL userinfo, and token-like query parameters.
_PATTERNS = (
    re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]+"),
    re.compile(r"/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"),
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
    re.compile(r"(?i)(?<=[?&])(token|key|secret|password|sig|signature|access_token)=[^&\s]+"),
)


class Redactor:
    """A structlog processor that removes secrets from every string in the event dict."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # A secret shorter than 4 characters is not a secret: it would redact innocent text.
        self.scrub = Scrubber((s for s in secrets if len(s) >= 4), _PATTERNS)

    def _clean(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if depth > 4:
            return value
        if isinstance(value, dict):
            return {k: self._clean(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean(v, depth + 1) for v in value)
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {k: self._clean(v) for k, v in event_dict.items()}


def _json_default(value: object) -> str:
    """JSON for the values our events carry: times as ISO 8601, decimals exactly."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return repr(value)


def _plain_values(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """For the console: times as ISO 8601 and decimals exactly, not their ``repr``."""
    for key, value in event_dict.items():
        if isinstance(value, datetime | date | Decimal):
            event_dict[key] = _json_default(value)
    return event_dict


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["console", "json", "auto"] = "auto",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    cache: bool = True,
) -> Redactor:
    """Set up structlog and the stdlib root logger; return the redactor (for error messages too).

    ``cache=False`` keeps loggers unbound to this configuration, so that a test can configure
    logging and later capture logs with ``structlog.testing.capture_logs``.
    """
    stream = stream or sys.stderr
    redactor = Redactor(secrets)
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]
    renderer: Processor
    if use_console:
        # plain tracebacks: a "rich" one prints local variables, and locals may hold secrets
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer(default=_json_default)
    exc: list[Processor] = (
        [_plain_values] if use_console else [structlog.processors.format_exc_info]
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *exc,
            redactor,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric)
    # Third-party chatter: their warnings matter, their per-request info lines do not.
    for noisy in (
        "httpx",
        "httpcore",
        "apscheduler",
        "aiosmtplib",
        "asyncio",
        "apprise",
        "urllib3",
        "uvicorn",
    ):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            # first: a line below the level costs its call and nothing more (no context merged,
            # no timestamp, no rendering)
            structlog.stdlib.filter_by_level,
            *shared[:-2],
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )
    return redactor


def bind_check(target: str, check_id: str) -> None:
    """Bind the context of one check (``target``, ``check_id``) for every log line it makes."""
    structlog.contextvars.bind_contextvars(target=target, check_id=check_id)


def unbind_check() -> None:
    structlog.contextvars.unbind_contextvars("target", "check_id")


def redact_mapping(data: MutableMapping[str, Any], redactor: Redactor) -> None:
    """Scrub string values of ``data`` in place (used for error payloads outside logging)."""
    for key, value in data.items():
        if isinstance(value, str):
            data[key] = redactor.scrub(value)
