"""The whole delivery path with real parts: SQLite outbox → delivery worker → Slack sink → receiver.

Real time, a real file, a real HTTP receiver on 127.0.0.1: what the Slack side sees is what a
Slack workspace would see.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from monitor.models import Event, EventKind, NewDelivery, Reading, TargetState, Validators
from monitor.outbox import Deliverer, RetryPolicy
from monitor.sinks.slack import SlackConfig, SlackSink
from monitor.store.sqlite import SqliteStore
from tests.receivers import HttpReceiver, Reply


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    yield store
    await store.aclose()


def change(n: int, target: str = "timesca") -> Event:
    return Event(
        kind=EventKind.CHANGE_PCT_CHANGED,
        target=target,
        pair=f"P{n:02d}/USD",
        old=Reading(Decimal("0.28575"), Decimal("0")),
        new=Reading(Decimal("0.28575"), Decimal(f"-0.{n + 10}")),
        observed_at=datetime.now(UTC),
    )


async def commit(store: SqliteStore, events: list[Event], check_id: str) -> None:
    await store.commit_check(
        events[0].target,
        state=TargetState(),
        validators=Validators(),
        observed=None,
        observed_at=datetime.now(UTC),
        deliveries=[NewDelivery(e, "team", check_id) for e in events],
    )


async def run_until(deliverer: Deliverer, done: asyncio.Event, seconds: float) -> None:
    worker = asyncio.create_task(deliverer.run())
    try:
        async with asyncio.timeout(seconds):
            await done.wait()
    finally:
        await deliverer.stop(1.0)
        worker.cancel()


async def test_429_with_retry_after_then_ok_posts_once_not_before_2s(store: SqliteStore) -> None:
    async with HttpReceiver() as rx, httpx.AsyncClient() as http:
        rx.answer(Reply(429, b"rate_limited", headers={"Retry-After": "2"}))
        config = SlackConfig(type="slack", webhook_url=SecretStr(rx.url("/services/T/B/x")))
        sink = SlackSink("team", config, http=http)
        deliverer = Deliverer(
            store, {"team": sink}, policy=RetryPolicy(backoff_initial=0.1), owner="t"
        )
        await commit(store, [change(1)], "c1")
        done = asyncio.Event()

        async def watch() -> None:
            while len(rx.requests) < 2:  # noqa: ASYNC110 -- polls a receiver that has no event
                await asyncio.sleep(0.02)
            done.set()

        watcher = asyncio.create_task(watch())
        started = time.monotonic()
        await run_until(deliverer, done, seconds=10)
        await watcher
        elapsed = time.monotonic() - started
        await sink.aclose()
    assert len(rx.requests) == 2  # the 429, then the accepted post
    assert elapsed >= 2.0
    first, second = (r.json() for r in rx.requests)
    assert first == second  # the same message, retried
    (row,) = await store.outbox_rows()
    assert (row.status, row.attempts) == ("sent", 1)


async def test_a_burst_of_20_changes_is_one_post_with_every_change(store: SqliteStore) -> None:
    async with HttpReceiver() as rx, httpx.AsyncClient() as http:
        config = SlackConfig(type="slack", webhook_url=SecretStr(rx.url("/services/T/B/x")))
        sink = SlackSink("team", config, http=http)
        deliverer = Deliverer(store, {"team": sink}, policy=RetryPolicy(), owner="t")
        for n in range(20):  # twenty checks of twenty targets, each moving one pair
            await commit(store, [change(n, target=f"site{n}")], f"c{n}")
        assert await deliverer.deliver_due() == 20
        await sink.aclose()
    (post,) = rx.requests
    text = post.body.decode()
    assert all(f"P{n:02d}/USD" in text for n in range(20))
    assert {r.status for r in await store.outbox_rows(limit=50)} == {"sent"}


async def test_posts_to_one_webhook_are_spaced_by_min_interval(store: SqliteStore) -> None:
    async with HttpReceiver() as rx, httpx.AsyncClient() as http:
        rx.answer(Reply(500, b"oops"))
        config = SlackConfig(
            type="slack", webhook_url=SecretStr(rx.url("/services/T/B/x")), min_interval=0.5
        )
        sink = SlackSink("team", config, http=http)
        deliverer = Deliverer(
            store, {"team": sink}, policy=RetryPolicy(backoff_initial=0.01), owner="t"
        )
        await commit(store, [change(1)], "c1")
        done = asyncio.Event()
        times: list[float] = []

        async def watch() -> None:
            seen = 0
            while len(rx.requests) < 3:
                if len(rx.requests) > seen:
                    seen = len(rx.requests)
                    times.append(time.monotonic())
                    if seen == 2:
                        await commit(store, [change(2)], "c2")
                        deliverer.wake()
                await asyncio.sleep(0.005)
            times.append(time.monotonic())
            done.set()

        watcher = asyncio.create_task(watch())
        await run_until(deliverer, done, seconds=10)
        await watcher
        await sink.aclose()
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(rx.requests) == 3
    assert min(gaps) >= 0.45  # the retry and the next message both waited their turn
