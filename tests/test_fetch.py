"""monitor.fetch against a real HTTP server on loopback (tests/servers.py)."""

from __future__ import annotations

import asyncio
import gzip
import random
import socket
import ssl
import sys
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Literal

import httpx
import pytest
import trustme
from structlog.testing import capture_logs

from monitor.errors import (
    FetchError,
    FetchHTTPStatus,
    FetchTimeout,
    FetchTooLarge,
    FetchTransport,
)
from monitor.fetch import (
    Fetcher,
    FetchPolicy,
    fetch_once,
    safe_url,
)
from monitor.models import Validators
from monitor.transport import CookielessClient, aiohttp_transport, proxies_configured
from tests.servers import PageServer, Reply, Request, ThreadedPageServer

PAGE = "<html><body><div class='ticker'>• KGS/USD = 0.01144 0%</div></body></html>"
UA = "ticker-monitor-test/1.0"
MB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[1]
#: a policy whose retries do not wait for real (the recording sleep returns at once anyway)
FAST = FetchPolicy(timeout=5.0, connect_timeout=1.0, read_timeout=2.0, backoff_initial=0.01)


class RecordingSleep:
    """An injected ``sleep`` that records the delays asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client trusts the environment; loopback tests must not be sent through a proxy."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
async def server() -> AsyncIterator[PageServer]:
    async with PageServer(PAGE) as srv:
        yield srv


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def fetcher(sleep: RecordingSleep) -> AsyncIterator[Fetcher]:
    async with Fetcher(user_agent=UA, sleep=sleep, rng=random.Random(7)) as f:
        yield f


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- success and conditional GET --------------------------------------------------------------


async def test_200_returns_body_validators_and_sends_headers(
    server: PageServer, fetcher: Fetcher
) -> None:
    result = await fetcher.fetch(server.url_for("/page"), policy=FAST)

    assert result.status == 200
    assert result.body == PAGE.encode()
    assert result.not_modified is False
    assert result.attempts == 1
    assert result.url == server.url_for("/page")
    assert result.validators == Validators(server.etag, server.last_modified)
    assert result.content_type == "text/html; charset=utf-8"
    assert 0 < result.elapsed < 2
    (request,) = server.requests
    assert request.method == "GET"
    assert request.path == "/page"
    assert request.headers["user-agent"] == UA
    assert request.headers["accept-encoding"] == "gzip, deflate"
    assert "if-none-match" not in request.headers


async def test_target_headers_and_user_agent_override_the_fetchers(
    server: PageServer, fetcher: Fetcher
) -> None:
    await fetcher.fetch(
        server.url, policy=FAST, headers={"user-agent": "custom/2", "X-Token": "abc"}
    )

    (request,) = server.requests
    assert request.headers["user-agent"] == "custom/2"
    assert request.headers["x-token"] == "abc"


async def test_conditional_get_gets_304_and_keeps_validators(
    server: PageServer, fetcher: Fetcher
) -> None:
    first = await fetcher.fetch(server.url, policy=FAST)
    second = await fetcher.fetch(server.url, policy=FAST, validators=first.validators)

    assert second.status == 304
    assert second.not_modified is True
    assert second.body == b""
    assert second.validators == first.validators
    request = server.requests[-1]
    assert request.headers["if-none-match"] == first.validators.etag
    assert request.headers["if-modified-since"] == first.validators.last_modified

    server.set_page("<p>TMT/USD = 0.28575 -0.14%</p>")
    third = await fetcher.fetch(server.url, policy=FAST, validators=first.validators)
    assert third.status == 200
    assert third.body == b"<p>TMT/USD = 0.28575 -0.14%</p>"
    assert third.validators.etag == server.etag != first.validators.etag


async def test_304_updates_only_the_validators_the_server_sent(
    server: PageServer, fetcher: Fetcher
) -> None:
    server.script(Reply(304, headers=[("ETag", '"new"')]))
    sent = Validators(etag='"old"', last_modified="Fri, 16 May 2025 10:00:00 GMT")

    result = await fetcher.fetch(server.url, policy=FAST, validators=sent)

    assert result.not_modified is True
    assert result.validators == Validators('"new"', "Fri, 16 May 2025 10:00:00 GMT")


async def test_304_to_an_unconditional_request_is_an_error(
    server: PageServer, fetcher: Fetcher
) -> None:
    server.script(Reply(304))

    with pytest.raises(FetchHTTPStatus) as info:
        await fetcher.fetch(server.url, policy=FAST)

    assert info.value.status == 304
    assert len(server.requests) == 1


async def test_gzip_and_deflate_bodies_are_decoded(server: PageServer, fetcher: Fetcher) -> None:
    body = PAGE.encode() * 50
    server.script(
        Reply(body=gzip.compress(body), headers=[("Content-Encoding", "gzip")]),
        Reply(body=zlib.compress(body), headers=[("Content-Encoding", "deflate")]),
        Reply(body=zlib.compress(body)[2:-4], headers=[("Content-Encoding", "deflate")]),  # raw
        Reply(body=gzip.compress(body), headers=[("Content-Encoding", "gzip")], framing="chunked"),
    )

    for _ in range(4):
        result = await fetcher.fetch(server.url, policy=FAST)
        assert result.body == body


async def test_corrupt_gzip_is_a_fetch_error(server: PageServer, fetcher: Fetcher) -> None:
    server.script(Reply(body=b"not gzip at all", headers=[("Content-Encoding", "gzip")]))

    with pytest.raises(FetchTransport, match="undecodable"):
        await fetcher.fetch(server.url, policy=FAST)

    assert len(server.requests) == 1  # not retried


# --- retries ---------------------------------------------------------------------------------


async def test_500_twice_then_200_is_retried(
    server: PageServer, fetcher: Fetcher, sleep: RecordingSleep
) -> None:
    server.script(Reply(500), Reply(502))

    result = await fetcher.fetch(server.url, policy=FAST)

    assert result.status == 200
    assert result.attempts == 3
    assert len(server.requests) == 3
    assert len(sleep.delays) == 2
    # full jitter: each wait is within [0, min(backoff_max, initial * 2 ** (n - 1))]
    assert 0 <= sleep.delays[0] <= 0.01
    assert 0 <= sleep.delays[1] <= 0.02


async def test_500_forever_raises_the_status_after_all_attempts(
    server: PageServer, fetcher: Fetcher, sleep: RecordingSleep
) -> None:
    server.route("/", Reply(500))

    with pytest.raises(FetchHTTPStatus) as info:
        await fetcher.fetch(server.url, policy=FAST)

    assert info.value.status == 500
    assert info.value.retryable is True
    assert len(server.requests) == FAST.attempts == 3
    assert len(sleep.delays) == 2


async def test_404_is_not_retried(
    server: PageServer, fetcher: Fetcher, sleep: RecordingSleep
) -> None:
    server.route("/", Reply(404))

    with pytest.raises(FetchHTTPStatus) as info:
        await fetcher.fetch(server.url, policy=FAST)

    assert info.value.status == 404
    assert info.value.retryable is False
    assert len(server.requests) == 1
    assert sleep.delays == []


async def test_429_with_retry_after_seconds_waits_that_long(
    server: PageServer, fetcher: Fetcher, sleep: RecordingSleep
) -> None:
    server.script(Reply(429, headers=[("Retry-After", "1")]))

    result = await fetcher.fetch(server.url, policy=FAST)

    assert result.status == 200
    assert result.attempts == 2
    assert sleep.delays == [1.0]


async def test_503_with_retry_after_date_waits_until_then(
    server: PageServer, fetcher: Fetcher, sleep: RecordingSleep
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=3)
    server.script(Reply(503, headers=[("Retry-After", format_datetime(when, usegmt=True))]))

    result = await fetcher.fetch(server.url, policy=FAST)

    assert result.attempts == 2
    (delay,) = sleep.delays
    assert 1.0 < delay <= 3.0


async def test_retry_after_is_honoured_with_the_real_sleep(server: PageServer) -> None:
    server.script(Reply(429, headers=[("Retry-After", "1")]))
    started = time.monotonic()

    async with Fetcher(user_agent=UA) as fetcher:
        result = await fetcher.fetch(server.url, policy=FAST)

    assert result.attempts == 2
    assert time.monotonic() - started >= 0.95


async def test_429_with_a_long_retry_after_is_raised_without_waiting(
    server: PageServer, fetcher: Fetcher, sleep: RecordingSleep
) -> None:
    server.script(Reply(429, headers=[("Retry-After", "3600")]))

    with pytest.raises(FetchHTTPStatus) as info:
        await fetcher.fetch(server.url, policy=FAST)

    assert info.value.status == 429
    assert info.value.retry_after == 3600
    assert sleep.delays == []
    assert len(server.requests) == 1


async def test_retry_after_past_the_deadline_is_raised_without_waiting(
    server: PageServer, fetcher: Fetcher, sleep: RecordingSleep
) -> None:
    server.script(Reply(503, headers=[("Retry-After", "10")]))  # <= max_retry_after, > timeout

    with pytest.raises(FetchHTTPStatus) as info:
        await fetcher.fetch(server.url, policy=FAST)

    assert info.value.retry_after == 10
    assert sleep.delays == []


async def test_backoff_never_sleeps_past_the_deadline(server: PageServer) -> None:
    class Greedy(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    sleep = RecordingSleep()
    server.route("/", Reply(500))
    policy = FetchPolicy(timeout=1.0, backoff_initial=5.0, backoff_max=5.0)

    async with Fetcher(user_agent=UA, sleep=sleep, rng=Greedy()) as fetcher:
        with pytest.raises(FetchHTTPStatus):
            await fetcher.fetch(server.url, policy=policy)

    assert sleep.delays == []  # a 5 s wait cannot fit in 1 s: the 500 is raised at once
    assert len(server.requests) == 1


async def test_backoff_is_deterministic_with_a_seeded_rng(server: PageServer) -> None:
    delays = []
    for _ in range(2):
        sleep = RecordingSleep()
        server.script(Reply(500), Reply(500))
        async with Fetcher(user_agent=UA, sleep=sleep, rng=random.Random(42)) as fetcher:
            await fetcher.fetch(server.url, policy=FetchPolicy(backoff_initial=1.0))
        delays.append(sleep.delays)

    assert delays[0] == delays[1]
    assert len(delays[0]) == 2


async def test_a_slow_first_attempt_times_out_and_is_retried(
    server: PageServer, fetcher: Fetcher
) -> None:
    server.script(Reply(200, body=b"late", delay=1.0))
    policy = FetchPolicy(timeout=5.0, read_timeout=0.2, backoff_initial=0.01)

    result = await fetcher.fetch(server.url, policy=policy)

    assert result.attempts == 2
    assert result.body == PAGE.encode()


async def test_read_timeouts_on_every_attempt_raise_fetch_timeout(
    server: PageServer, fetcher: Fetcher
) -> None:
    server.route("/", Reply(200, body=b"late", delay=1.0))
    policy = FetchPolicy(timeout=5.0, read_timeout=0.1, attempts=2, backoff_initial=0.01)

    with pytest.raises(FetchTimeout, match="ReadTimeout"):
        await fetcher.fetch(server.url, policy=policy)

    assert len(server.requests) == 2


# --- the overall deadline and the size cap ---------------------------------------------------


async def test_a_dripping_server_hits_the_overall_deadline(
    server: PageServer, fetcher: Fetcher
) -> None:
    server.route("/", Reply(body=b"x" * 60, chunk_size=1, drip=1.0))
    started = time.monotonic()

    with pytest.raises(FetchTimeout, match="deadline of 2s"):
        await fetcher.fetch(server.url, policy=FetchPolicy(timeout=2.0, read_timeout=10.0))

    assert time.monotonic() - started < 2.5
    assert len(server.requests) == 1


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
async def test_a_huge_body_is_refused_quickly(
    server: PageServer, fetcher: Fetcher, framing: Literal["length", "chunked", "close"]
) -> None:
    server.route("/", Reply(body=b"x" * 65536, repeat=800, framing=framing))
    started = time.monotonic()

    with pytest.raises(FetchTooLarge, match="larger than 1048576 bytes"):
        await fetcher.fetch(server.url, policy=FetchPolicy(max_bytes=MB))

    assert time.monotonic() - started < 1.5
    assert len(server.requests) == 1  # not retried


async def test_a_body_of_exactly_max_bytes_is_accepted(
    server: PageServer, fetcher: Fetcher
) -> None:
    server.script(Reply(body=b"y" * 4096, framing="chunked", chunk_size=1000))

    result = await fetcher.fetch(server.url, policy=FetchPolicy(max_bytes=4096))

    assert result.body == b"y" * 4096


async def test_a_gzip_bomb_stops_at_the_cap_without_inflating_it(
    server: PageServer, fetcher: Fetcher
) -> None:
    bomb = gzip.compress(b"\0" * (50 * MB), compresslevel=9)  # ~50 KB on the wire
    assert len(bomb) < MB
    server.route("/", Reply(body=bomb, headers=[("Content-Encoding", "gzip")]))

    tracemalloc.start()
    try:
        with pytest.raises(FetchTooLarge):
            await fetcher.fetch(server.url, policy=FetchPolicy(max_bytes=MB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 8 * MB  # httpx's own decoder would have inflated ~50 MB from one read


# --- redirects -------------------------------------------------------------------------------


def chain(server: PageServer, hops: int) -> str:
    """``/r{hops}`` -> ... -> ``/r1`` -> ``/final`` (the page), mixing relative and absolute."""
    for n in range(hops, 0, -1):
        nxt = "/final" if n == 1 else f"/r{n - 1}"
        location = nxt if n % 2 else server.url_for(nxt)
        server.route(f"/r{n}", Reply.redirect(location, status=(301, 302, 303, 307, 308)[n % 5]))
    return server.url_for(f"/r{hops}")


async def test_three_redirects_are_followed(server: PageServer, fetcher: Fetcher) -> None:
    result = await fetcher.fetch(chain(server, 3), policy=FAST)

    assert result.status == 200
    assert result.url == server.url_for("/final")
    assert [r.path for r in server.requests] == ["/r3", "/r2", "/r1", "/final"]


async def test_four_redirects_are_too_many(server: PageServer, fetcher: Fetcher) -> None:
    with pytest.raises(FetchTransport, match="too many redirects"):
        await fetcher.fetch(chain(server, 4), policy=FAST)

    assert len(server.requests) == 4  # the fifth URL is never asked for; nothing is retried


async def test_a_redirect_loop_is_refused(server: PageServer, fetcher: Fetcher) -> None:
    server.route("/a", Reply.redirect("/b"))
    server.route("/b", Reply.redirect("/a"))

    with pytest.raises(FetchTransport, match="redirect loop") as info:
        await fetcher.fetch(server.url_for("/a"), policy=FAST)

    assert info.value.retryable is False
    assert len(server.requests) == 2


async def test_a_redirect_to_another_scheme_is_refused(
    server: PageServer, fetcher: Fetcher
) -> None:
    server.route("/", Reply.redirect("file:///etc/passwd"))

    with pytest.raises(FetchTransport, match="unsupported scheme"):
        await fetcher.fetch(server.url, policy=FAST)


async def test_credentials_do_not_follow_a_redirect_to_another_origin(fetcher: Fetcher) -> None:
    async with PageServer(PAGE) as first, PageServer(PAGE) as second:
        first.route("/", Reply.redirect(second.url_for("/landing")))
        headers = {"Authorization": "Bearer t0ken", "X-Keep": "1"}

        result = await fetcher.fetch(first.url, policy=FAST, headers=headers)

        assert result.url == second.url_for("/landing")
        assert first.requests[0].headers["authorization"] == "Bearer t0ken"
        (landed,) = second.requests
        assert "authorization" not in landed.headers
        assert landed.headers["x-keep"] == "1"


# --- transport failures ----------------------------------------------------------------------


async def test_a_refused_connection_is_a_transport_error_and_retried(
    fetcher: Fetcher, sleep: RecordingSleep
) -> None:
    with pytest.raises(FetchTransport) as info:
        await fetcher.fetch(f"http://127.0.0.1:{closed_port()}/", policy=FAST)

    assert info.value.retryable is True
    assert len(sleep.delays) == FAST.attempts - 1


async def test_a_garbage_response_is_a_fetch_error(server: PageServer, fetcher: Fetcher) -> None:
    server.route("/", Reply(raw=b"SSH-2.0-OpenSSH_9.6\r\nthis is not http\r\n\r\n"))

    with pytest.raises(FetchError) as info:
        await fetcher.fetch(server.url, policy=FAST)

    assert isinstance(info.value, FetchTransport)


async def test_a_response_cut_short_is_a_fetch_error(server: PageServer, fetcher: Fetcher) -> None:
    server.route("/", Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this"))

    with pytest.raises(FetchTransport):
        await fetcher.fetch(server.url, policy=FAST)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/file",
        "http://[::1/",
        "not a url",
        "http://127.0.0.1:99999/",
        "http:///nohost",
        "http://exa mple.com/",
    ],
)
async def test_unusable_urls_are_transport_errors(fetcher: Fetcher, url: str) -> None:
    with pytest.raises(FetchTransport):
        await fetcher.fetch(url, policy=FAST)


async def test_an_untrusted_certificate_is_refused_and_a_trusted_one_accepted() -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    async with PageServer(PAGE, ssl_context=server_ctx) as tls:
        async with Fetcher(user_agent=UA, sleep=RecordingSleep()) as fetcher:
            with pytest.raises(FetchTransport, match="TLS certificate") as info:
                await fetcher.fetch(tls.url, policy=FAST)
        assert info.value.retryable is False
        assert tls.requests == []

        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        async with (
            httpx.AsyncClient(verify=client_ctx) as client,
            Fetcher(user_agent=UA, client=client) as fetcher,
        ):
            result = await fetcher.fetch(tls.url, policy=FAST)
        assert result.body == PAGE.encode()


# --- secrets never leak ----------------------------------------------------------------------


async def test_userinfo_and_query_never_reach_errors_or_logs(server: PageServer) -> None:
    port = server.port
    secret_url = f"http://user:pa55word@127.0.0.1:{port}/p?token=SECRET#frag"
    server.route("/p", Reply(500))
    server.route("/loop", Reply.redirect("/loop?token=SECRET"))
    server.route("/drip", Reply(body=b"x" * 10, chunk_size=1, drip=1.0))
    cases = [
        (secret_url, FetchPolicy(timeout=5.0, backoff_initial=0.01)),
        (secret_url.replace("/p?", "/missing?"), FAST),
        (secret_url.replace("/p?", "/loop?"), FAST),
        (secret_url.replace("/p?", "/drip?"), FetchPolicy(timeout=0.5)),
        (f"http://user:pa55word@127.0.0.1:{closed_port()}/p?token=SECRET", FAST),
    ]
    server.route("/missing", Reply(404))
    texts: list[str] = []
    with capture_logs() as logs:
        async with Fetcher(user_agent=UA, sleep=RecordingSleep()) as fetcher:
            for url, policy in cases:
                with pytest.raises(FetchError) as info:
                    await fetcher.fetch(url, policy=policy)
                texts += [str(info.value), info.value.url, repr(info.value)]
                cause = info.value.__cause__
                texts += [str(cause), repr(cause)] if cause is not None else []

    texts.append(repr(logs))
    assert any(entry["event"] == "fetch_retry" for entry in logs)
    for text in texts:
        for secret in ("SECRET", "pa55word", "user:", "frag"):
            assert secret not in text, text
    assert f"http://127.0.0.1:{port}/p" in texts[0]
    # the userinfo was still used: httpx turns it into Basic auth for the server itself
    assert server.requests[0].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize("value", ["Bearer s3cr3t\r\nX-Injected: 1", "Bearer s3cr3t-\u00e9"])
async def test_an_invalid_header_value_is_refused_without_echoing_it(
    server: PageServer, fetcher: Fetcher, value: str
) -> None:
    with pytest.raises(FetchTransport, match="not valid HTTP") as info:
        await fetcher.fetch(server.url, policy=FAST, headers={"Authorization": value})

    assert "s3cr3t" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.retryable is False
    assert server.requests == []


def test_safe_url_keeps_scheme_host_and_path_only() -> None:
    assert safe_url("https://u:p@Example.com:8443/a/b?token=x#f") == "https://Example.com:8443/a/b"
    assert safe_url("http://example.com") == "http://example.com"
    assert safe_url(httpx.URL("http://h/p?q=1")) == "http://h/p"
    assert safe_url("http://[::1") == "<invalid url>"
    assert safe_url("") == "<invalid url>"


def test_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        FetchPolicy(attempts=0)
    with pytest.raises(ValueError, match="timeouts"):
        FetchPolicy(timeout=0)


# --- per-host concurrency, fetch_once, lifecycle ---------------------------------------------


async def test_concurrency_per_host_is_capped(server: PageServer, sleep: RecordingSleep) -> None:
    server.route("/", Reply(body=b"slow", delay=0.2))
    async with Fetcher(user_agent=UA, max_per_host=2, sleep=sleep) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(server.url, policy=FAST) for _ in range(6)))
        assert fetcher._hosts == {}  # slots are dropped when nobody holds them

    assert [r.body for r in results] == [b"slow"] * 6
    assert server.peak_in_flight == 2


async def test_fetch_once_fetches_and_closes(server: PageServer) -> None:
    result = await fetch_once(server.url, policy=FAST, user_agent="once/1")

    assert result.body == PAGE.encode()
    assert server.requests[0].headers["user-agent"] == "once/1"


async def test_a_given_client_is_not_closed(server: PageServer) -> None:
    async with httpx.AsyncClient() as client:
        async with Fetcher(user_agent=UA, client=client) as fetcher:
            await fetcher.fetch(server.url, policy=FAST)
        assert not client.is_closed


def test_client_and_transport_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        Fetcher(user_agent=UA, client=httpx.AsyncClient(), transport=httpx.AsyncHTTPTransport())


async def test_connections_are_reused(server: PageServer, fetcher: Fetcher) -> None:
    for _ in range(3):
        await fetcher.fetch(server.url, policy=FAST)

    assert server.connections == 1


# --- the server helper itself, as other tests use it -----------------------------------------


@pytest.fixture
def threaded() -> Iterator[ThreadedPageServer]:
    with ThreadedPageServer(PAGE) as srv:
        yield srv


async def test_threaded_server_serves_page_changes_and_handlers(
    threaded: ThreadedPageServer, fetcher: Fetcher
) -> None:
    first = await fetcher.fetch(threaded.url, policy=FAST)
    threaded.set_page("changed")
    second = await fetcher.fetch(threaded.url, policy=FAST, validators=first.validators)
    threaded.route("/echo", lambda request: Reply(body=request.query.encode()))
    echo = await fetcher.fetch(threaded.url_for("/echo?a=1"), policy=FAST)

    assert first.body == PAGE.encode()
    assert second.body == b"changed"
    assert echo.body == b"a=1"
    assert [r.path for r in threaded.requests] == ["/", "/", "/echo"]
    assert isinstance(threaded.requests[0], Request)


async def test_server_runs_as_a_process_and_rereads_its_page_file(
    tmp_path: Path, fetcher: Fetcher
) -> None:
    page = tmp_path / "page.html"
    page.write_text("one")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.servers",
        "--page",
        str(page),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        url = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip()
        assert (await fetcher.fetch(url, policy=FAST)).body == b"one"
        page.write_text("two, longer")
        assert (await fetcher.fetch(url, policy=FAST)).body == b"two, longer"
    finally:
        process.terminate()
        await process.wait()


# --- proxies from the environment ------------------------------------------------------------


async def _forward_proxy(seen: list[bytes]) -> asyncio.Server:
    """A loopback HTTP proxy that answers every request itself, recording its request line."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        body = PAGE.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_http_proxy_from_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch, sleep: RecordingSleep
) -> None:
    """The proxy variables are read when the fetcher is made (the daemon's environment does not
    change); a request then goes through the proxy they name."""
    seen: list[bytes] = []
    proxy = await _forward_proxy(seen)
    port = proxy.sockets[0].getsockname()[1]
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    target = (
        f"http://localhost:{closed_port()}/page"  # nothing listens there: only the proxy answers
    )
    async with proxy, Fetcher(user_agent=UA, sleep=sleep, rng=random.Random(7)) as fetcher:
        result = await fetcher.fetch(target, policy=FAST)
    assert result.status == 200
    assert seen == [f"GET {target} HTTP/1.1".encode()]


def test_proxies_configured_reads_the_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    assert proxies_configured() is False
    monkeypatch.setenv("NO_PROXY", "example.org")  # names no proxy
    assert proxies_configured() is False
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:3128")
    assert proxies_configured() is True


# --- cookies ------------------------------------------------------------------------------------

SETS_A_COOKIE = Reply(
    200,
    body=PAGE.encode(),
    headers=[("Content-Type", "text/html"), ("Set-Cookie", "session=s3cr3t; Path=/")],
)


async def test_no_cookie_survives_a_fetch(server: PageServer, fetcher: Fetcher) -> None:
    server.route("/login", SETS_A_COOKIE)
    await fetcher.fetch(server.url_for("/login"), policy=FAST)
    await fetcher.fetch(server.url_for("/login"), policy=FAST)
    await fetcher.fetch(server.url, policy=FAST)
    assert len(server.requests) == 3
    assert [r.headers.get("cookie") for r in server.requests] == [None, None, None]


async def test_the_cookieless_client_sends_no_cookie_a_receiver_set(server: PageServer) -> None:
    """The sinks' client (``monitor.app``): an alert never carries a receiver's session."""
    server.route("/hook", SETS_A_COOKIE)
    async with CookielessClient(transport=aiohttp_transport()) as client:
        for _ in range(2):
            response = await client.post(server.url_for("/hook"), content=b"{}")
            assert response.headers["set-cookie"].startswith("session=")
        assert len(client.cookies) == 0
    assert [r.headers.get("cookie") for r in server.requests] == [None, None]


def test_the_cookieless_client_refuses_cookies() -> None:
    with pytest.raises(ValueError, match="keeps no cookies"):
        CookielessClient(cookies={"session": "x"})
    client = CookielessClient()
    with pytest.raises(AttributeError, match="keeps no cookies"):
        client.cookies = {"session": "x"}  # type: ignore[assignment]  # the refusal under test
