"""The Slack sink against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from monitor.errors import SinkError
from monitor.models import Delivery, EventKind
from monitor.sinks import Sink
from monitor.sinks.slack import EVENTS_PER_MESSAGE, MAX_BLOCKS, SlackConfig, SlackSink
from tests.receivers import (
    HttpReceiver,
    Reply,
    batch_of,
    checks_of,
    delivery,
    refused_port,
    retried,
)

TOKEN_PATH = "/services/T0SECRET/B0SECRET/slack-token-Zx9"


@pytest.fixture
async def rx() -> AsyncIterator[HttpReceiver]:
    async with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make(url: str, http: httpx.AsyncClient | None = None, **extra: Any) -> SlackSink:
    config = SlackConfig(type="slack", webhook_url=SecretStr(url), timeout=2.0, **extra)
    return SlackSink("team", config, http=http)


def texts(payload: dict[str, Any]) -> list[str]:
    """Every text of a payload: the fallback, the header, sections and context elements."""
    out = [payload["text"]]
    for block in payload["blocks"]:
        if "text" in block:
            out.append(block["text"]["text"])
        out += [element["text"] for element in block.get("elements", ())]
    return out


async def test_ok_posts_block_kit(rx: HttpReceiver, http: httpx.AsyncClient) -> None:
    sink = make(rx.url(TOKEN_PATH), http)
    assert isinstance(sink, Sink)
    assert (sink.digest, sink.min_interval) == (True, 1.0)
    d = delivery()
    await sink.send([d])
    (request,) = rx.requests
    assert (request.method, request.path) == ("POST", TOKEN_PATH)
    assert request.headers["content-type"].startswith("application/json")
    payload = request.json()
    header, section, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": "timesca: TMT/USD ▼ 0.28575, change -0.14%",
            "emoji": True,
        },
    }
    assert section["text"] == {
        "type": "mrkdwn",
        "text": "▼ *TMT/USD* 0.28575, change 0% → -0.14%",
    }
    context_text = context["elements"][0]["text"]
    for piece in ("timesca", "https://timesca.com/", "2025-05-16T09:30:00Z", "2025-05-16"):
        assert piece in context_text
    assert f"`{d.short_id}`" in context_text
    assert payload["text"].startswith("timesca: TMT/USD ▼ 0.28575, change -0.14%")
    await sink.aclose()
    assert not http.is_closed  # a shared client belongs to the caller


async def test_429_is_retryable_after_retry_after(rx: HttpReceiver) -> None:
    rx.answer(Reply(429, "rate_limited", {"Retry-After": "2"}))
    sink = make(rx.url(TOKEN_PATH))
    with pytest.raises(SinkError) as info:
        await sink.send([delivery()])
    assert info.value.retryable
    assert info.value.retry_after == 2.0
    await sink.aclose()


async def test_5xx_is_retryable(rx: HttpReceiver, http: httpx.AsyncClient) -> None:
    rx.answer(Reply(500, "internal_error"), Reply(503, "", {"Retry-After": "bogus"}))
    sink = make(rx.url(TOKEN_PATH), http)
    for _ in range(2):
        with pytest.raises(SinkError) as info:
            await sink.send([delivery()])
        assert info.value.retryable
        assert info.value.retry_after is None
    await sink.aclose()


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, "invalid_payload"),
        (403, "action_prohibited"),
        (404, "no_service"),
        (410, "channel_is_archived"),
        (404, "channel_not_found"),
    ],
)
async def test_other_4xx_is_permanent_with_the_body(
    rx: HttpReceiver, http: httpx.AsyncClient, status: int, body: str
) -> None:
    rx.answer(Reply(status, body))
    sink = make(rx.url(TOKEN_PATH), http)
    with pytest.raises(SinkError) as info:
        await sink.send([delivery()])
    assert not info.value.retryable
    assert body in str(info.value)
    assert f"HTTP {status}" in str(info.value)
    assert "slack-token" not in str(info.value)
    await sink.aclose()


async def test_2xx_without_ok_is_retryable(rx: HttpReceiver, http: httpx.AsyncClient) -> None:
    rx.answer(Reply(200, "<html>captive portal</html>"))
    sink = make(rx.url(TOKEN_PATH), http)
    with pytest.raises(SinkError) as info:
        await sink.send([delivery()])
    assert info.value.retryable
    await sink.aclose()


async def test_transport_errors_are_retryable_and_name_no_url(http: httpx.AsyncClient) -> None:
    sink = make(f"http://127.0.0.1:{refused_port()}{TOKEN_PATH}", http)
    with pytest.raises(SinkError) as info:
        await sink.send([delivery()])
    assert info.value.retryable
    assert str(info.value).startswith("slack webhook 'team': connection failed")
    assert info.value.__cause__ is None
    assert "slack-token" not in str(info.value)
    await sink.aclose()


async def test_timeout_is_retryable(rx: HttpReceiver, http: httpx.AsyncClient) -> None:
    rx.answer(Reply(200, "ok", delay=1.0))
    config = SlackConfig(type="slack", webhook_url=SecretStr(rx.url(TOKEN_PATH)), timeout=0.2)
    sink = SlackSink("team", config, http=http)
    with pytest.raises(SinkError) as info:
        await sink.send([delivery()])
    assert info.value.retryable
    assert "timed out" in str(info.value)
    await sink.aclose()


async def test_scraped_text_is_escaped(rx: HttpReceiver, http: httpx.AsyncClient) -> None:
    sink = make(rx.url(TOKEN_PATH), http)
    await sink.send([delivery(pair="<!channel> R&D\r\n<@U123>", detail="a <b> & c")])
    payload = rx.requests[0].json()
    for text in texts(payload):
        assert "<!channel>" not in text
        assert "<@U123>" not in text
        assert "\n" not in text or text == payload["text"]
    section = payload["blocks"][1]["text"]["text"]
    assert "&lt;!channel&gt; R&amp;D &lt;@U123&gt;" in section
    await sink.aclose()


async def test_digest_of_20_fits_one_message_under_50_blocks(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    batch = batch_of(20)
    sink = make(rx.url(TOKEN_PATH), http)
    await sink.send(batch)
    (request,) = rx.requests
    payload = request.json()
    assert len(payload["blocks"]) == 41 <= MAX_BLOCKS
    assert payload["blocks"][0]["text"]["text"] == "timesca: P00/USD ▲, P01/USD ▲ (+18 more)"
    joined = "\n".join(texts(payload))
    for d in batch:
        assert d.short_id in joined
        assert d.event.pair is not None
        assert d.event.pair in joined
    await sink.aclose()


def ids_in(payloads: list[dict[str, Any]], batch: list[Delivery]) -> list[str]:
    found = []
    for payload in payloads:
        for block in payload["blocks"]:
            for element in block.get("elements", ()):
                found += [d.short_id for d in batch if f"`{d.short_id}`" in element["text"]]
    return found


async def test_big_digest_is_split_and_every_event_sent_once(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    batch = batch_of(60)
    sink = make(rx.url(TOKEN_PATH), http)
    await sink.send(batch)
    payloads = [r.json() for r in rx.requests]
    assert len(payloads) == 3
    assert all(len(p["blocks"]) <= MAX_BLOCKS for p in payloads)
    assert [len(p["blocks"]) for p in payloads] == [49, 49, 25]
    assert payloads[0]["blocks"][0]["text"]["text"] == (
        "timesca: P00/USD ▲, P01/USD ▲ (+58 more) (1/3)"
    )
    assert sorted(ids_in(payloads, batch)) == sorted(d.short_id for d in batch)
    assert EVENTS_PER_MESSAGE == 24
    await sink.aclose()


async def test_half_sent_digest_retries_only_the_rest(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    batch = batch_of(30)
    rx.answer(Reply(200, "ok"), Reply(503, "busy"))
    sink = make(rx.url(TOKEN_PATH), http)
    with pytest.raises(SinkError) as info:
        await sink.send(batch)
    assert info.value.retryable
    assert info.value.memo is not None
    # the worker stores the memo on every row of the batch and hands them back
    await sink.send(retried(batch, info.value.memo))
    payloads = [r.json() for r in rx.requests]
    first, _failed, second = payloads
    assert sorted(ids_in([first, second], batch)) == sorted(d.short_id for d in batch)
    assert second["blocks"][0]["text"]["text"] == "timesca: P24/USD ▲, P25/USD ▲ (+4 more)"
    await sink.aclose()


async def test_each_accepted_post_is_reported_as_soon_as_slack_took_it(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    batch = batch_of(30)
    rx.answer(Reply(200, "ok"), Reply(503, "busy"))
    sink = make(rx.url(TOKEN_PATH), http)
    reported: list[list[str]] = []

    async def on_accepted(part: Sequence[Delivery]) -> None:
        assert len(rx.requests) == 1  # right after the first post, before the second
        reported.append([d.short_id for d in part])

    with pytest.raises(SinkError):
        await sink.send(batch, on_accepted)
    assert reported == [[d.short_id for d in batch[:EVENTS_PER_MESSAGE]]]
    await sink.aclose()


async def test_long_texts_respect_slack_limits(rx: HttpReceiver, http: httpx.AsyncClient) -> None:
    sink = make(
        rx.url(TOKEN_PATH),
        http,
        title_template="&" * 400,
        body_template="$detail " * 40,
    )
    await sink.send([delivery(detail="<&>" * 200)])
    payload = rx.requests[0].json()
    header = payload["blocks"][0]["text"]["text"]
    assert len(header) <= 150
    assert header.endswith("…")
    for text in texts(payload):
        assert len(text) <= 3000
    await sink.aclose()


async def test_repr_shows_no_secret(rx: HttpReceiver) -> None:
    sink = make(rx.url(TOKEN_PATH))
    assert "slack-token" not in repr(sink)
    assert "T0SECRET" not in repr(sink)
    await sink.aclose()


async def test_split_header_keeps_its_part_number(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    sink = make(rx.url(TOKEN_PATH), http, title_template="x" * 300)
    await sink.send(batch_of(30))
    headers = [r.json()["blocks"][0]["text"]["text"] for r in rx.requests]
    assert [h[-6:] for h in headers] == [" (1/2)", " (2/2)"]
    assert all(len(h) <= 150 for h in headers)
    await sink.aclose()


async def test_two_pairs_moving_in_one_check_are_one_post_with_a_line_each(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    move = {"old": ("0.28575", "0"), "new": ("0.28550", "-0.14")}
    batch = [
        delivery(kind=EventKind.RATE_CHANGED, row=1, **move),  # type: ignore[arg-type]
        delivery(kind=EventKind.CHANGE_PCT_CHANGED, row=2, **move),  # type: ignore[arg-type]
        delivery(
            kind=EventKind.RATE_CHANGED,
            pair="KZT/USD",
            old=("0.00196", "0"),
            new=("0.00197", "0"),
            row=3,
        ),
    ]
    sink = make(rx.url(TOKEN_PATH), http)
    await sink.send(batch)
    (request,) = rx.requests
    blocks = request.json()["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "context", "section", "context"]
    assert blocks[0]["text"]["text"] == "timesca: TMT/USD ▼, KZT/USD ▲"
    assert blocks[1]["text"]["text"] == "▼ *TMT/USD* 0.28575 → 0.28550 (-0.09%), change 0% → -0.14%"
    assert blocks[3]["text"]["text"] == "▲ *KZT/USD* 0.00196 → 0.00197 (+0.51%), change 0%"
    # the line's context names both rows' ids
    assert f"`{batch[0].short_id}` `{batch[1].short_id}`" in blocks[2]["elements"][0]["text"]
    await sink.aclose()


async def test_many_checks_share_posts_each_titled_by_its_own_lines(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    """A burst of many targets' changes is a few posts, never a check cut in two."""
    batch = checks_of([5] * 12)  # 12 targets' checks of 5 lines each: 4 fit in 24 lines
    sink = make(rx.url(TOKEN_PATH), http)
    assert sink.bulk
    await sink.send(batch)
    payloads = [r.json() for r in rx.requests]
    assert [(len(p["blocks"]) - 1) // 2 for p in payloads] == [20, 20, 20]
    assert payloads[0]["blocks"][0]["text"]["text"] == "t0: P00/USD ▲, P01/USD ▲ (+18 more)"
    assert payloads[1]["blocks"][0]["text"]["text"] == "t4: P00/USD ▲, P01/USD ▲ (+18 more)"
    assert sorted(ids_in(payloads, batch)) == sorted(d.short_id for d in batch)
    for payload, first in zip(payloads, (0, 4, 8), strict=True):
        contexts = [b["elements"][0]["text"] for b in payload["blocks"] if b["type"] == "context"]
        assert {c.split(" · ")[0] for c in contexts} == {f"t{first + k}" for k in range(4)}
    await sink.aclose()


async def test_a_big_check_among_small_ones_keeps_its_own_numbered_posts(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    batch = checks_of([3, 30, 3])
    sink = make(rx.url(TOKEN_PATH), http)
    await sink.send(batch)
    headers = [r.json()["blocks"][0]["text"]["text"] for r in rx.requests]
    assert headers == [
        "t0: P00/USD ▲, P01/USD ▲ (+1 more)",
        "t1: P00/USD ▲, P01/USD ▲ (+28 more) (1/2)",
        "t1: P00/USD ▲, P01/USD ▲ (+28 more) (2/2)",
        "t2: P00/USD ▲, P01/USD ▲ (+1 more)",
    ]
    assert sorted(ids_in([r.json() for r in rx.requests], batch)) == sorted(
        d.short_id for d in batch
    )
    await sink.aclose()


async def test_a_burst_half_sent_retries_only_the_checks_not_posted(
    rx: HttpReceiver, http: httpx.AsyncClient
) -> None:
    batch = checks_of([6] * 8)  # two posts of 4 checks
    rx.answer(Reply(200, "ok"), Reply(503, "busy"))
    sink = make(rx.url(TOKEN_PATH), http)
    reported: list[Delivery] = []

    async def on_accepted(part: Sequence[Delivery]) -> None:
        reported.extend(part)

    with pytest.raises(SinkError) as info:
        await sink.send(batch, on_accepted)
    assert info.value.retryable
    assert reported == batch[:24]
    await sink.send(retried(batch, info.value.memo))
    first, _failed, second = [r.json() for r in rx.requests]
    assert ids_in([second], batch) == [d.short_id for d in batch[24:]]
    assert sorted(ids_in([first, second], batch)) == sorted(d.short_id for d in batch)
    await sink.aclose()
