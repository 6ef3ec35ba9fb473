"""The project's exceptions: one rooted tree.

Third-party errors (httpx, sqlite3, psycopg, aiosmtplib, pydantic) are translated into these at the
boundary where they occur; nothing above that boundary catches a foreign exception type.

::

    MonitorError
     ├── ConfigError              invalid configuration; carries one line per problem   (CLI exit 2)
     ├── ParseError               the page holds no ticker                              (CLI exit 3)
     ├── FetchError               the page could not be fetched                         (CLI exit 4)
     │    ├── FetchTimeout        connect/read timeout or the overall deadline passed
     │    ├── FetchTooLarge       the body passed the size cap while streaming
     │    ├── FetchHTTPStatus     a non-success status (``status``, ``retry_after``)
     │    └── FetchTransport      DNS, connection, TLS, protocol or redirect errors
     ├── StoreError               the state database failed or holds an unknown schema
     └── SinkError                a sink could not deliver (``retryable``, ``retry_after``)

Every message is safe to log: secrets never go into an exception's text (``monitor.logs`` redacts a
second time, as a belt to these braces).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class MonitorError(Exception):
    """The root of every error this project raises on purpose."""


class ConfigError(MonitorError):
    """The configuration is invalid. ``problems`` holds one ``key.path: message`` line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class ParseError(MonitorError):
    """No ticker was found on the page."""


class FetchError(MonitorError):
    """The page could not be fetched. ``retryable`` says whether trying again soon may help."""

    retryable: bool = True

    def __init__(self, message: str, *, url: str = "") -> None:
        self.url = url
        super().__init__(message)


class FetchTimeout(FetchError):
    """A connect, read or pool timeout, or the overall per-fetch deadline."""


class FetchTooLarge(FetchError):
    """The response body passed the configured size cap."""

    retryable = False


class FetchHTTPStatus(FetchError):
    """The server answered with a status that is not success (nor 304 Not Modified)."""

    def __init__(
        self, message: str, *, url: str = "", status: int, retry_after: float | None = None
    ) -> None:
        super().__init__(message, url=url)
        self.status = status
        self.retry_after = retry_after
        self.retryable = status in (408, 425, 429) or status >= 500


class FetchTransport(FetchError):
    """DNS, connection, TLS, protocol or redirect failures."""


class StoreError(MonitorError):
    """The state database failed, or holds a schema this version does not know."""


class SinkError(MonitorError):
    """A sink could not deliver a batch.

    ``retryable`` separates a temporary failure (retry later, after ``retry_after`` seconds if the
    receiver said so) from a permanent one (dead-letter the rows). ``memo`` lets a sink remember
    progress across attempts (for example which mail recipients already accepted the message).
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        memo: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.memo = memo


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what caused it (``__cause__``, else ``__context__``), and so on; each once.

    For finding the root of a foreign library's failure (an ``OSError`` errno, a TLS verification
    error) at the boundary where it is translated.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
