"""What the HTTP sinks (Slack, webhook) share: one bounded POST, the status classification, and
carrying one batch in several posts.

:func:`post` sends one request under an overall deadline, never follows a redirect, reads at
most :data:`BODY_CAP` bytes of the answer, and turns every httpx failure into ``SinkError`` with
a message built here: httpx's own exception texts and their ``request`` carry the URL, which for
a Slack webhook is the credential, so none of them is chained or quoted.

:func:`classify` maps a status to the delivery decision:

* 2xx: sent (Slack additionally wants the body ``ok``; see ``monitor.sinks.slack``);
* 408, 425, 429 and 5xx: retryable, after ``Retry-After`` when the server gave one;
* everything else (3xx, other 4xx): permanent, with the (sanitized, truncated) body in the message.

Both sinks are ``bulk``: one send may carry the rows of many checks. :func:`pack` puts whole
checks into posts of at most a given size (a check bigger than that alone gets posts of its own),
and :func:`post_all` sends them in order: each accepted post is reported at once
(``on_accepted``), and a retryable failure carries a memo of the dedup keys already posted
(``{"posted": [...]}``), so the retry posts only the rest (:func:`already_posted`).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import httpx

from monitor.backoff import parse_retry_after
from monitor.errors import SinkError, causes
from monitor.models import Delivery
from monitor.render import sanitize
from monitor.sinks import Accepted

T = TypeVar("T")

#: at most this much of a response body is read (a webhook's answer is a word or a small JSON)
BODY_CAP = 4096
RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's answer: status, ``Retry-After`` in seconds (if any), the start of its body."""

    status: int
    retry_after: float | None
    body: str


def failure_reason(exc: BaseException) -> str:
    """The OS or TLS reason at the root of a failure (``Connection refused``,
    ``TLS error (CERTIFICATE_VERIFY_FAILED)``), or ``""``; never a URL."""
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLError):
            return f"TLS error ({cause.reason or type(cause).__name__})"
        if isinstance(cause, OSError) and cause.errno is not None:
            try:
                return os.strerror(cause.errno)
            except ValueError:
                return errno.errorcode.get(cause.errno, str(cause.errno))
    return ""


_HTTPX_KINDS: dict[type[BaseException], str] = {
    httpx.ConnectError: "connection failed",
    httpx.ReadError: "read failed",
    httpx.WriteError: "write failed",
    httpx.RemoteProtocolError: "protocol error",
    httpx.LocalProtocolError: "protocol error",
    httpx.ProxyError: "proxy error",
}


def describe(exc: BaseException) -> str:
    """A short, URL-free description of a transport failure: ``connection failed (Connection
    refused)``, ``timed out``, ``TLS error (CERTIFICATE_VERIFY_FAILED)``."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timed out"
    reason = failure_reason(exc)
    if reason.startswith("TLS"):
        return reason
    kind = _HTTPX_KINDS.get(type(exc), type(exc).__name__)
    return f"{kind} ({reason})" if reason else kind


async def post(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    deadline: float,
    label: str,
) -> Answer:
    """POST ``content`` to ``url``; every failure to get an answer is a retryable ``SinkError``.

    ``deadline`` bounds the whole exchange (connect, send, answer); ``label`` names the sink in
    messages (``slack webhook 'team'``) and must not hold a secret.
    """
    try:
        async with asyncio.timeout(deadline):
            async with client.stream(
                "POST",
                url,
                content=content,
                headers=headers,
                timeout=deadline,
                follow_redirects=False,
            ) as response:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= BODY_CAP:
                        break
                body = b"".join(chunks)[:BODY_CAP].decode("utf-8", "replace")
                return Answer(
                    status=response.status_code,
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                    body=body,
                )
    except TimeoutError:
        raise SinkError(f"{label}: timed out after {deadline:g}s", retryable=True) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise SinkError(f"{label}: the configured URL is not usable", retryable=False) from None
    except (ValueError, TypeError, httpx.LocalProtocolError):
        # httpx refused to build the request (a header value it cannot encode); the exception's
        # text may quote the value, which may be a secret
        raise SinkError(
            f"{label}: the request could not be built (check the URL and headers)",
            retryable=False,
        ) from None
    except (httpx.HTTPError, aiohttp.ClientError) as exc:  # aiohttp's: what the transport passes
        raise SinkError(f"{label}: {describe(exc)}", retryable=True) from None
    except (OSError, ssl.SSLError) as exc:  # pragma: no cover -- httpx wraps these; a belt
        raise SinkError(f"{label}: {describe(exc)}", retryable=True) from None


def snippet(body: str, redact: Callable[[str], str], limit: int = 300) -> str:
    """A response body fit for a log line or an error message.

    ``redact`` removes the sink's secrets: a receiver's error page may echo the request path
    (``Cannot POST /services/T…/B…/<token>``), which for a webhook is the credential.
    """
    return sanitize(redact(body), limit) or "(empty body)"


def classify(answer: Answer, *, label: str, redact: Callable[[str], str]) -> SinkError | None:
    """``None`` for a 2xx answer, else the ``SinkError`` to raise (retryable or permanent)."""
    status = answer.status
    if 200 <= status < 300:
        return None
    text = f"{label}: HTTP {status}: {snippet(answer.body, redact)}"
    if status in RETRYABLE_STATUSES or status >= 500:
        return SinkError(text, retryable=True, retry_after=answer.retry_after)
    return SinkError(text, retryable=False)


def pack(checks: Sequence[Sequence[T]], limit: int) -> list[list[T]]:
    """Whole checks' items, in order, into parts of at most ``limit`` items; a check of more than
    ``limit`` is a part of its own (its sink splits it further, or sends it whole)."""
    parts: list[list[T]] = []
    room = 0
    for items in checks:
        if not items:
            continue
        if parts and len(items) <= room:
            parts[-1].extend(items)
            room -= len(items)
        else:
            parts.append(list(items))
            room = limit - len(items)
    return parts


def already_posted(batch: Sequence[Delivery]) -> set[str]:
    """The dedup keys of ``batch`` that an earlier, partly failed send posted (its memo)."""
    posted: set[str] = set()
    for delivery in batch:
        if not delivery.memo:
            continue
        try:
            data = json.loads(delivery.memo)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("posted"), list):
            posted.update(str(key) for key in data["posted"])
    return posted & {d.dedup_key for d in batch}


async def post_all(
    parts: Sequence[tuple[Sequence[Delivery], Callable[[], Awaitable[None]]]],
    posted: set[str],
    on_accepted: Accepted | None,
) -> None:
    """Send each ``(deliveries, send)`` part in order (``send`` raises ``SinkError``); after an
    accepted one, add its keys to ``posted`` and report it; a retryable failure gets the memo of
    every key posted so far."""
    for deliveries, send in parts:
        try:
            await send()
        except SinkError as error:
            if error.retryable and posted:
                error.memo = json.dumps({"posted": sorted(posted)})
            raise
        posted.update(d.dedup_key for d in deliveries)
        if on_accepted is not None:
            await on_accepted(deliveries)
