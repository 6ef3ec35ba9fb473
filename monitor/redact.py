"""Redaction: the one marker, and the helpers that put it where a secret would have been.

:class:`Scrubber` replaces given strings (longest first) and patterns with :data:`REDACTED`; the
structured-log processor (``monitor.logs.Redactor``), the fetcher's error messages and the sinks'
log filter below all use it.

Keeping a sink's secrets out of third-party libraries' log records:

httpx logs every request's full URL at INFO (``HTTP Request: POST
https://hooks.slack.com/services/T…/B…/<token> "HTTP/1.1 200 OK"``); Apprise and urllib3 log the
notification URLs at DEBUG. For a Slack webhook or an Apprise URL the URL *is* the credential. A
sink that owns such a secret installs a :class:`SecretFilter` on those libraries' loggers for its
lifetime (``aclose`` removes it): the filter rewrites any record whose message or traceback
contains a secret, or a distinctive fragment of one (a URL's password, path segments, query
values), to ``[redacted]``, before any handler sees it.

This is the sink's own belt; ``monitor.logs`` redacts structured logs a second time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, unquote, urlsplit

#: what a secret reads as in logs, errors and messages
REDACTED = "[REDACTED]"
#: fragments shorter than this are not redacted on their own (they would mangle ordinary words)
MIN_FRAGMENT = 6


def fragments(secret: str) -> set[str]:
    """The strings that betray ``secret``: itself and, for a URL, its distinctive parts."""
    found = {secret}
    if "://" in secret:
        try:
            parts = urlsplit(secret)
        except ValueError:
            parts = None
        if parts is not None:
            if parts.password:
                found.update({parts.password, unquote(parts.password)})
            if parts.netloc and "@" in parts.netloc:
                found.add(parts.netloc.rsplit("@", 1)[0])
            if parts.path.strip("/"):
                found.add(parts.path)
            found.update(seg for seg in parts.path.split("/") if seg)
            found.update(value for _, value in parse_qsl(parts.query))
            if parts.query:
                found.add(parts.query)
    return {f for f in found if len(f) >= MIN_FRAGMENT or f == secret}


class Scrubber:
    """Replaces each of some strings (longest first, so a whole URL goes before its parts) and
    each match of some patterns with :data:`REDACTED`."""

    def __init__(self, strings: Iterable[str], patterns: Sequence[re.Pattern[str]] = ()) -> None:
        self._strings = sorted({s for s in strings if s}, key=len, reverse=True)
        self._patterns = tuple(patterns)

    def __call__(self, text: str) -> str:
        for secret in self._strings:
            if secret in text:
                text = text.replace(secret, REDACTED)
        for pattern in self._patterns:
            text = pattern.sub(REDACTED, text)
        return text

    def __len__(self) -> int:
        return len(self._strings)

    def __repr__(self) -> str:
        return f"Scrubber({len(self._strings)} strings, {len(self._patterns)} patterns)"


class SecretFilter(logging.Filter):
    """A logging filter that rewrites records containing any of some secrets."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        found: set[str] = set()
        for secret in secrets:
            if secret:
                found |= fragments(secret)
        self._scrub = Scrubber(found)

    def redact(self, text: str) -> str:
        return self._scrub(text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 -- a malformed third-party record: redact its raw parts
            message = f"{record.msg} {record.args}"
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            cleaned = self.redact(text)
            if cleaned != text:
                record.exc_info, record.exc_text = None, cleaned
        return True

    def __repr__(self) -> str:
        return f"SecretFilter({len(self._scrub)} fragments)"


class LoggerGuard:
    """Install one :class:`SecretFilter` on some loggers; ``remove()`` takes it off again."""

    def __init__(self, secrets: Iterable[str], loggers: Iterable[str]) -> None:
        self._filter = SecretFilter(secrets)
        self._loggers = [logging.getLogger(name) for name in loggers]
        for logger in self._loggers:
            logger.addFilter(self._filter)

    def redact(self, text: str) -> str:
        return self._filter.redact(text)

    def remove(self) -> None:
        for logger in self._loggers:
            logger.removeFilter(self._filter)

    def __repr__(self) -> str:
        return f"LoggerGuard({[logger.name for logger in self._loggers]})"
