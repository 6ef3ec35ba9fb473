"""Fetching pages: one shared ``httpx.AsyncClient``, bounded in time, size, redirects and retries.

Policy (:class:`FetchPolicy`, per target) is kept apart from I/O (:class:`Fetcher`, one a process).
One :meth:`Fetcher.fetch` call:

- runs under ONE overall deadline (``policy.timeout``) that covers connecting, every retry, every
  backoff sleep and the whole body: a server that drips a byte a second never trips httpx's read
  timeout, but it does trip this deadline (``FetchTimeout``);
- sends a conditional GET when it has the server's validators (``If-None-Match`` /
  ``If-Modified-Since``) and returns ``not_modified=True`` on 304;
- streams the body and stops reading the moment it passes ``policy.max_bytes`` (``FetchTooLarge``),
  counting *decoded* bytes; gzip/deflate are inflated here in bounded steps, so a compressed bomb
  never expands past the cap in memory;
- follows at most ``policy.max_redirects`` redirects itself (http/https only, loops refused);
- retries transport errors, single-attempt timeouts, 408, 425, 429 and 5xx up to ``policy.attempts``
  times with full-jitter exponential backoff, honouring ``Retry-After`` on 429/503 when it fits;
- holds a per-host slot (``max_per_host`` concurrent requests to one host).

httpx is the interface; underneath, the connections are aiohttp's (``monitor.transport``).

Every httpx, aiohttp, h11, ssl, zlib and OS error is translated into the ``FetchError`` family here; nothing
else leaves this module. Messages and logs carry :func:`safe_url` forms only (no userinfo, query or
fragment), so tokens in a target's URL never reach a log line or an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import NoReturn
from urllib.parse import urlsplit

import aiohttp
import h11
import httpx
import structlog

from monitor.backoff import full_jitter, parse_retry_after
from monitor.errors import (
    FetchError,
    FetchHTTPStatus,
    FetchTimeout,
    FetchTooLarge,
    FetchTransport,
    causes,
)
from monitor.models import Validators
from monitor.redact import Scrubber
from monitor.transport import LIMITS, CookielessClient, aiohttp_transport

__all__ = [
    "DEFAULT_TIMEOUT",
    "FetchPolicy",
    "FetchResult",
    "Fetcher",
    "fetch_once",
    "safe_url",
]

log = structlog.get_logger("monitor.fetch")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_AFTER_STATUSES = frozenset({429, 503})
#: only what this module can inflate in bounded steps (see ``_Inflater``)
_ACCEPT_ENCODING = "gzip, deflate"
_ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.8"
#: headers that must not follow a redirect to another origin
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")
_MAX_DETAIL = 200
#: a target's overall fetch deadline when its interval is longer and it sets none
DEFAULT_TIMEOUT = 30.0

Sleep = Callable[[float], Awaitable[None]]


# --- values ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """How one target is fetched. Build it from ``TargetConfig`` (``timeout``, ``max_bytes``)."""

    #: the OVERALL deadline of one ``fetch()`` call, retries and backoff included
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = 5.0
    #: the longest silence between two reads of one response
    read_timeout: float = 10.0
    #: decoded body bytes; enforced while streaming
    max_bytes: int = 5_000_000
    max_redirects: int = 3
    #: total attempts inside one fetch (1 = no retry)
    attempts: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 5.0
    #: a Retry-After longer than this (or than the time left) is not waited for: it is raised
    max_retry_after: float = 30.0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("FetchPolicy: timeouts must be positive")
        if self.max_bytes < 1:
            raise ValueError("FetchPolicy: max_bytes must be at least 1")
        if self.max_redirects < 0:
            raise ValueError("FetchPolicy: max_redirects cannot be negative")
        if self.attempts < 1:
            raise ValueError("FetchPolicy: attempts must be at least 1")
        if self.backoff_initial < 0 or self.backoff_max < 0 or self.max_retry_after < 0:
            raise ValueError("FetchPolicy: backoff and retry-after limits cannot be negative")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A page fetched (2xx) or confirmed unchanged (304)."""

    #: the final URL after redirects (may carry the target's query: log it with ``safe_url``)
    url: str
    #: 200 (or another 2xx) or 304
    status: int
    #: the decoded body; ``b""`` on 304
    body: bytes
    #: this response's ETag / Last-Modified; on 304 the ones sent, updated by any the server sent
    validators: Validators
    not_modified: bool
    #: seconds for the whole ``fetch()`` call, retries included
    elapsed: float
    attempts: int
    #: the response's Content-Type header (``""`` when absent), for the parser's charset
    content_type: str = ""


# --- helpers ---------------------------------------------------------------------------------


def safe_url(url: str | httpx.URL) -> str:
    """``scheme://host[:port]/path`` of ``url``, without userinfo, query and fragment (tokens)."""
    try:
        parts = urlsplit(str(url))
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return "<invalid url>"
    if not parts.scheme and not host:
        return "<invalid url>"
    return f"{parts.scheme}://{host}{parts.path}"


def _secrets_of(url: str) -> list[str]:
    """The parts of ``url`` that must not appear in any message (userinfo, query, fragment)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    userinfo = parts.netloc.rpartition("@")[0]
    candidates = [userinfo, *userinfo.split(":", 1), parts.query, parts.fragment]
    # longest first, so a whole query is scrubbed before any of its pieces
    return sorted({c for c in candidates if len(c) >= 3}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    text = Scrubber(_secrets_of(url))(text)
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 3] + "..."
    return text


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


def _tls_verify_failure(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    for cause in causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return cause
    return None


def _check_url(url: httpx.URL, raw: str) -> None:
    """Refuse what no request should be made for (httpx would fail later, less clearly)."""
    port = url.port
    if (
        url.scheme not in ("http", "https")
        or not url.host
        or not (port is None or 0 < port < 65536)
    ):
        where = safe_url(raw)
        error = FetchTransport(f"unsupported or invalid URL {where}", url=where)
        error.retryable = False
        raise error


def _echoes_request(exc: BaseException) -> bool:
    """Errors about our own request, whose text may quote a header value (never shown)."""
    return isinstance(
        exc, httpx.LocalProtocolError | h11.LocalProtocolError | httpx.StreamError | ValueError
    )


def _raise_translated(exc: BaseException, url: str) -> NoReturn:
    """Raise ``exc`` as a ``FetchError``; chained to it unless its text may hold a secret."""
    error = _translate(exc, url)
    if _echoes_request(exc):
        raise error from None
    raise error from exc


def _translate(exc: BaseException, url: str) -> FetchError:
    """One foreign exception of one attempt -> the matching ``FetchError`` (message URL-safe)."""
    where = safe_url(url)
    detail = _scrub(str(exc) or type(exc).__name__, url)
    error: FetchError
    # the aiohttp transport raises httpx's errors from its own: a timeout keeps httpx's name
    # (ReadTimeout ...), anything else is told by aiohttp's (it maps a dropped connection to
    # ConnectTimeout)
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError) and not isinstance(
        cause, aiohttp.ServerTimeoutError | TimeoutError
    ):
        exc = cause
    if isinstance(exc, httpx.TimeoutException | TimeoutError | aiohttp.ServerTimeoutError):
        kind = type(exc).__name__
        error = FetchTimeout(f"{kind} fetching {where}: {detail}", url=where)
    elif (cert := _tls_verify_failure(exc)) is not None:
        detail_of = getattr(cert, "certificate_error", cert)  # aiohttp's wraps the ssl error
        reason = _scrub(getattr(detail_of, "verify_message", None) or str(detail_of), url)
        error = FetchTransport(f"TLS certificate rejected by {where}: {reason}", url=where)
        error.retryable = False
    elif isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        error = FetchTransport(f"unsupported or invalid URL {where}: {detail}", url=where)
        error.retryable = False
    elif isinstance(exc, httpx.DecodingError | zlib.error):
        error = FetchTransport(f"undecodable body from {where}: {detail}", url=where)
        error.retryable = False
    elif _echoes_request(exc):
        # our request could not be sent as given (a bad header value...): retrying cannot help.
        # The detail is left out: h11 quotes the offending header value, which may be a token.
        kind = type(exc).__name__
        error = FetchTransport(
            f"invalid request to {where} ({kind}: a header name or value is not valid HTTP)",
            url=where,
        )
        error.retryable = False
    else:
        kind = type(exc).__name__
        error = FetchTransport(f"{kind} fetching {where}: {detail}", url=where)
    return error


# Everything a request may raise that is not ours. ``TimeoutError`` (an ``OSError``) is listed for
# clarity: the per-fetch deadline's own ``TimeoutError`` is raised outside the attempt, never here.
_FOREIGN_ERRORS: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    httpx.InvalidURL,
    httpx.StreamError,
    h11.ProtocolError,
    OSError,  # includes ssl.SSLError and ConnectionError
    zlib.error,
    ValueError,  # includes UnicodeError from non-ASCII header values
    ExceptionGroup,  # anyio's happy-eyeballs connect groups what is not an OSError
    aiohttp.ClientError,  # what the transport does not map to httpx's errors
)


class _Inflater:
    """Content decoding in bounded steps: never more than ``room + 1`` bytes out of one chunk.

    httpx's own decoders inflate a whole network read at once (64 KiB of gzip can become ~64 MB);
    here each step asks zlib for at most the bytes still allowed, so a bomb stops at the cap.
    """

    def __init__(self, encoding: str) -> None:
        self._deflate = encoding == "deflate"
        wbits = zlib.MAX_WBITS if self._deflate else zlib.MAX_WBITS | 16
        self._zlib = zlib.decompressobj(wbits)
        self._first = True

    def decode(self, data: bytes, room: int) -> bytes:
        first, self._first = self._first, False
        try:
            return self._zlib.decompress(data, room + 1)
        except zlib.error:
            if not (first and self._deflate):
                raise
            # "deflate" is often sent raw, without the zlib header (as httpx's decoder allows)
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._zlib.decompress(data, room + 1)

    def flush(self) -> bytes:
        return self._zlib.flush()


def _inflater_for(content_encoding: str) -> tuple[bool, _Inflater | None]:
    """``(True, None)``: identity; ``(True, inflater)``: gzip/deflate; ``(False, None)``: other.

    Other codings (``br``, ``zstd``, stacked ones) are not asked for; if a server sends them anyway,
    httpx decodes them and the decoded bytes are still counted, only in bigger steps.
    """
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return True, None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return True, _Inflater("deflate" if codings[0] == "deflate" else "gzip")
    return False, None


async def _read_capped(response: httpx.Response, limit: int, where: str) -> bytes:
    """The decoded body, or ``FetchTooLarge`` as soon as it passes ``limit`` (the rest unread)."""

    def too_large() -> FetchTooLarge:
        return FetchTooLarge(f"body from {where} is larger than {limit} bytes", url=where)

    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise too_large()
    parts: list[bytes] = []
    total = 0
    bounded, inflater = _inflater_for(response.headers.get("content-encoding", ""))
    if not bounded:
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > limit:
                raise too_large()
            parts.append(chunk)
        return b"".join(parts)
    async for raw in response.aiter_raw():
        chunk = raw if inflater is None else inflater.decode(raw, limit - total)
        total += len(chunk)
        if total > limit:
            raise too_large()
        parts.append(chunk)
    if inflater is not None:
        tail = inflater.flush()
        total += len(tail)
        if total > limit:
            raise too_large()
        parts.append(tail)
    return b"".join(parts)


@dataclass(slots=True)
class _HostSlot:
    semaphore: asyncio.Semaphore
    users: int = 0


@dataclass(slots=True)
class _Outcome:
    url: str
    status: int
    body: bytes
    validators: Validators
    not_modified: bool
    content_type: str


# --- the fetcher -----------------------------------------------------------------------------


async def _drain(response: httpx.Response, limit: int = 65536, seconds: float = 0.5) -> None:
    """Read and drop a small body (304, errors, redirects) so its keep-alive connection is reused.

    A body longer than ``limit`` or slower than ``seconds`` is not worth it: the connection is
    closed instead. Transport errors here do not matter either; the status is what counts.
    """
    seen = 0
    with contextlib.suppress(TimeoutError, httpx.HTTPError):
        async with asyncio.timeout(seconds):
            async for chunk in response.aiter_raw():
                seen += len(chunk)
                if seen > limit:
                    return


class Fetcher:
    """Fetches pages through one shared ``httpx.AsyncClient``; build one per process.

    ``client`` or ``transport`` may be given for tests (not both); a given client is not closed by
    :meth:`aclose`. ``sleep`` and ``rng`` drive the retry waits and their jitter.
    """

    def __init__(
        self,
        *,
        user_agent: str,
        max_per_host: int = 2,
        client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_per_host < 1:
            raise ValueError("Fetcher: max_per_host must be at least 1")
        if client is not None and transport is not None:
            raise ValueError("Fetcher: give a client or a transport, not both")
        self._user_agent = user_agent
        self._max_per_host = max_per_host
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 -- backoff jitter, not a secret
        self._hosts: dict[str, _HostSlot] = {}
        self._owns_client = client is None
        if client is None:
            # no cookie survives a fetch: checks stay independent
            client = CookielessClient(
                transport=aiohttp_transport() if transport is None else transport,
                follow_redirects=False,  # followed in _attempt, counted and checked
                trust_env=True,  # HTTP(S)_PROXY / NO_PROXY / SSL_CERT_FILE as httpx reads them
                http1=True,
                http2=False,
                verify=True,
                limits=LIMITS,
                headers={"User-Agent": user_agent},
            )
        self._client = client

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client (if this fetcher created it) and its pooled connections."""
        if self._owns_client:
            await self._client.aclose()

    async def fetch(
        self,
        url: str,
        *,
        policy: FetchPolicy,
        validators: Validators | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FetchResult:
        """GET ``url`` within ``policy``; raise only ``FetchError`` subclasses.

        ``headers`` are the target's own (a ``User-Agent`` among them replaces the fetcher's).
        ``validators`` make the request conditional.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + policy.timeout
        try:
            request_headers = self._headers(headers, validators)
        except _FOREIGN_ERRORS as exc:
            _raise_translated(exc, url)
        conditional = validators is not None and bool(validators.etag or validators.last_modified)
        sent = validators if validators is not None else Validators()
        attempts = 0
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    attempts += 1
                    try:
                        outcome = await self._attempt(
                            url, request_headers, policy, sent, conditional=conditional
                        )
                        break
                    except FetchError as exc:
                        delay = self._retry_delay(exc, attempts, policy, deadline - loop.time())
                        if delay is None:
                            raise
                        log.info(
                            "fetch_retry",
                            url=safe_url(url),
                            attempt=attempts,
                            attempts=policy.attempts,
                            delay=round(delay, 3),
                            error=type(exc).__name__,
                            status=getattr(exc, "status", None),
                            reason=str(exc),
                        )
                    await self._sleep(delay)
        except TimeoutError:
            where = safe_url(url)
            raise FetchTimeout(
                f"deadline of {policy.timeout:g}s passed fetching {where} "
                f"(attempt {attempts} of {policy.attempts})",
                url=where,
            ) from None
        elapsed = loop.time() - started
        log.debug(
            "fetch_done",
            url=safe_url(outcome.url),
            status=outcome.status,
            bytes=len(outcome.body),
            not_modified=outcome.not_modified,
            attempts=attempts,
            elapsed=round(elapsed, 4),
        )
        return FetchResult(
            url=outcome.url,
            status=outcome.status,
            body=outcome.body,
            validators=outcome.validators,
            not_modified=outcome.not_modified,
            elapsed=elapsed,
            attempts=attempts,
            content_type=outcome.content_type,
        )

    # --- one attempt -------------------------------------------------------------------------

    def _headers(
        self, headers: Mapping[str, str] | None, validators: Validators | None
    ) -> httpx.Headers:
        merged = httpx.Headers(
            {
                "User-Agent": self._user_agent,
                "Accept": _ACCEPT,
                "Accept-Encoding": _ACCEPT_ENCODING,
            }
        )
        if headers:
            merged.update(headers)  # case-insensitive: the target's own names win
        if validators is not None:
            if validators.etag:
                merged["If-None-Match"] = validators.etag
            if validators.last_modified:
                merged["If-Modified-Since"] = validators.last_modified
        return merged

    async def _attempt(
        self,
        url: str,
        headers: httpx.Headers,
        policy: FetchPolicy,
        sent: Validators,
        *,
        conditional: bool,
    ) -> _Outcome:
        """One request and its redirect chain; every foreign error becomes a ``FetchError``."""
        timeout = httpx.Timeout(
            policy.read_timeout,
            connect=policy.connect_timeout,
            pool=policy.timeout,
        )
        headers = httpx.Headers(headers)  # a redirect may drop credentials for this attempt only
        current = url
        visited: set[str] = set()
        redirects = 0
        try:
            while True:
                target = httpx.URL(current)
                _check_url(target, current)
                visited.add(str(target))
                async with (
                    self._host_slot(target.host),
                    self._client.stream(
                        "GET", target, headers=headers, timeout=timeout
                    ) as response,
                ):
                    status = response.status_code
                    location = response.headers.get("location")
                    if status not in _REDIRECTS or not location:
                        return await self._complete(
                            response, current, policy, sent, conditional=conditional
                        )
                    await _drain(response)
                next_url = target.join(location.strip()).copy_with(fragment=None)
                redirects += 1
                self._check_redirect(
                    url=url,
                    current=current,
                    next_url=next_url,
                    redirects=redirects,
                    visited=visited,
                    policy=policy,
                )
                if _origin(next_url) != _origin(target) and not (
                    target.scheme == "http"
                    and next_url.scheme == "https"
                    and target.host == next_url.host
                ):
                    for name in _CREDENTIAL_HEADERS:
                        headers.pop(name, None)
                log.debug(
                    "fetch_redirect",
                    url=safe_url(current),
                    location=safe_url(next_url),
                    status=status,
                    redirects=redirects,
                )
                current = str(next_url)
        except FetchError:
            raise
        except _FOREIGN_ERRORS as exc:
            _raise_translated(exc, current)

    @staticmethod
    def _check_redirect(
        *,
        url: str,
        current: str,
        next_url: httpx.URL,
        redirects: int,
        visited: set[str],
        policy: FetchPolicy,
    ) -> None:
        where = safe_url(url)
        problem = None
        if next_url.scheme not in ("http", "https"):
            problem = f"redirect from {safe_url(current)} to an unsupported scheme"
        elif str(next_url) in visited:
            problem = f"too many redirects fetching {where} (redirect loop)"
        elif redirects > policy.max_redirects:
            problem = f"too many redirects fetching {where} (more than {policy.max_redirects})"
        if problem is not None:
            error = FetchTransport(problem, url=where)
            error.retryable = False
            raise error

    async def _complete(
        self,
        response: httpx.Response,
        url: str,
        policy: FetchPolicy,
        sent: Validators,
        *,
        conditional: bool,
    ) -> _Outcome:
        status = response.status_code
        where = safe_url(url)
        etag = response.headers.get("etag")
        last_modified = response.headers.get("last-modified")
        content_type = response.headers.get("content-type", "")
        if 200 <= status < 300:
            body = await _read_capped(response, policy.max_bytes, where)
            return _Outcome(url, status, body, Validators(etag, last_modified), False, content_type)
        await _drain(response)  # so that the connection can serve the next request
        if status == 304 and conditional:
            validators = Validators(etag or sent.etag, last_modified or sent.last_modified)
            return _Outcome(url, status, b"", validators, True, content_type)
        retry_after = None
        if status in _RETRY_AFTER_STATUSES:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        phrase = _scrub(response.reason_phrase, url)
        raise FetchHTTPStatus(
            f"HTTP {status}{' ' + phrase if phrase else ''} from {where}",
            url=where,
            status=status,
            retry_after=retry_after,
        )

    # --- retries and host slots --------------------------------------------------------------

    def _retry_delay(
        self, exc: FetchError, attempt: int, policy: FetchPolicy, remaining: float
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to raise ``exc`` now."""
        if not exc.retryable or attempt >= policy.attempts:
            return None
        retry_after = exc.retry_after if isinstance(exc, FetchHTTPStatus) else None
        if retry_after is not None:
            if retry_after > policy.max_retry_after or retry_after >= remaining:
                log.info(
                    "fetch_retry_after_too_long",
                    url=exc.url,
                    retry_after=retry_after,
                    remaining=round(remaining, 3),
                )
                return None
            return retry_after
        delay = full_jitter(
            attempt, initial=policy.backoff_initial, cap=policy.backoff_max, rng=self._rng
        )
        if delay >= remaining:
            return None
        return delay

    @asynccontextmanager
    async def _host_slot(self, host: str) -> AsyncIterator[None]:
        """One of ``max_per_host`` slots for ``host``; the entry is dropped when nobody uses it."""
        slot = self._hosts.get(host)
        if slot is None:
            slot = self._hosts[host] = _HostSlot(asyncio.Semaphore(self._max_per_host))
        slot.users += 1
        try:
            async with slot.semaphore:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0:
                del self._hosts[host]


async def fetch_once(
    url: str,
    *,
    policy: FetchPolicy,
    user_agent: str,
    headers: Mapping[str, str] | None = None,
) -> FetchResult:
    """Fetch one page with a fetcher of its own (the one-shot CLI's ``check URL``)."""
    async with Fetcher(user_agent=user_agent, max_per_host=1) as fetcher:
        return await fetcher.fetch(url, policy=policy, headers=headers)
