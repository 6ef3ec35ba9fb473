"""The delivery worker against a real SQLite store and fake sinks (our own Sink interface)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.errors import SinkError, StoreError
from monitor.models import Delivery, Event, EventKind, NewDelivery, Reading, TargetState, Validators
from monitor.outbox import Deliverer, RetryPolicy
from monitor.sinks import Accepted, Sink
from monitor.sinks.file import FileConfig, FileSink
from monitor.store import OutboxRow
from monitor.store.sqlite import SqliteStore

T0 = datetime(2025, 5, 16, 8, 30, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeSink:
    """Records accepted batches; raises the scripted failures first; can hang on a gate."""

    def __init__(
        self,
        name: str,
        *,
        digest: bool = False,
        bulk: bool = False,
        min_interval: float = 0.0,
        failures: Sequence[BaseException] = (),
        always_fail: BaseException | None = None,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.name = name
        self.digest = digest
        self.bulk = bulk
        self.min_interval = min_interval
        self.failures = list(failures)
        self.always_fail = always_fail
        self.gate = gate
        self.started = asyncio.Event()
        self.delivered = asyncio.Event()  # set on every accepted batch
        self.batches: list[list[str]] = []  # accepted batches, as event ids
        self.calls = 0
        self.call_times: list[float] = []
        self.memos: list[str | None] = []

    @property
    def accepted(self) -> list[str]:
        return [key for batch in self.batches for key in batch]

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        self.calls += 1
        self.call_times.append(time.monotonic())
        self.memos.append(batch[0].memo)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        if self.always_fail is not None:
            raise self.always_fail
        self.batches.append([d.event.event_id for d in batch])
        self.delivered.set()

    async def aclose(self) -> None:
        return None


def event(n: int, *, at: datetime = T0, target: str = "timesca") -> Event:
    return Event(
        kind=EventKind.RATE_CHANGED,
        target=target,
        pair="TMT/USD",
        old=Reading(Decimal("0.28575")),
        new=Reading(Decimal("0.28575") + Decimal(n) / 100000),
        observed_at=at,
    )


async def add(
    store: SqliteStore,
    sink: str,
    numbers: Sequence[int],
    *,
    at: datetime = T0,
    check_id: str | None = None,
) -> list[str]:
    """Commit one check producing events ``numbers`` for ``sink``; return their event ids."""
    events = [event(n, at=at) for n in numbers]
    await store.commit_check(
        "timesca",
        state=TargetState(),
        validators=Validators(),
        observed=None,
        observed_at=at,
        deliveries=[NewDelivery(e, sink, check_id or f"check-{numbers[0]}") for e in events],
    )
    return [e.event_id for e in events]


async def statuses(store: SqliteStore) -> dict[int, str]:
    return {int(str(r.id)): str(r.status) for r in await store.outbox_rows(limit=1000)}


async def row(store: SqliteStore, row_id: int) -> OutboxRow:
    (found,) = [r for r in await store.outbox_rows(limit=1000) if r.id == row_id]
    return found


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    await s.open()
    yield s
    await s.aclose()


def deliverer(
    store: SqliteStore, *sinks: FakeSink, clock: Clock | None = None, **kw: Any
) -> Deliverer:
    policy = kw.pop("policy", RetryPolicy(backoff_initial=1.0, backoff_max=10.0))
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    return Deliverer(
        store,
        {s.name: s for s in sinks},
        policy=policy,
        owner="test-worker",
        rng=random.Random(7),
        **extra,
        **kw,
    )


def test_fake_sink_is_a_sink() -> None:
    assert isinstance(FakeSink("x"), Sink)


# --- RetryPolicy --------------------------------------------------------------------------------


def test_next_delay_is_capped_full_jitter_with_retry_after_as_a_floor() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=60.0)
    rng = random.Random(1)
    for attempts, cap in [(1, 1.0), (2, 2.0), (4, 8.0), (7, 60.0), (10_000, 60.0)]:
        delays = [policy.next_delay(attempts, rng, None) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # really spread over the whole range
    assert policy.next_delay(1, rng, 120.0) == 120.0  # above backoff_max: the receiver decides
    assert policy.next_delay(30, rng, 0.001) >= 0.001


# --- deliver_due --------------------------------------------------------------------------------


async def test_everything_due_is_sent_once_in_order(store: SqliteStore) -> None:
    sink = FakeSink("slack")
    ids = await add(store, "slack", [1, 2, 3])
    ids += await add(store, "slack", [4, 5])
    counts: list[tuple[str, str, int]] = []
    d = deliverer(store, sink, clock=Clock(), on_result=lambda *a: counts.append(a))
    with capture_logs() as logs:
        assert await d.deliver_due() == 5
    assert sink.accepted == ids
    assert sink.batches == [[i] for i in ids]  # no digest: one message per row
    assert set((await statuses(store)).values()) == {"sent"}
    assert await d.deliver_due() == 0
    assert sink.calls == 5
    assert counts == [("slack", "sent", 1)] * 5
    sent = [entry for entry in logs if entry["event"] == "delivery_sent"]
    assert len(sent) == 5
    assert sent[0]["sink"] == "slack"
    assert len(sent[0]["dedup_id"]) == 8
    assert sent[0]["attempts"] == 1


async def test_a_flaky_sink_gets_every_message_once_in_order(store: SqliteStore) -> None:
    clock = Clock()
    sink = FakeSink("slack", failures=[SinkError("503", retryable=True)] * 3)
    ids = await add(store, "slack", [1, 2, 3])
    d = deliverer(store, sink, clock=clock)
    for attempt in range(1, 4):
        assert await d.deliver_due() == 1  # the head fails; the rows behind it wait
        assert sink.accepted == []
        head = await row(store, 1)
        assert head.attempts == attempt
        assert head.last_error == "503"
        assert await d.deliver_due() == 0  # backing off: not due yet, no call made
        assert sink.calls == attempt
        clock.advance(10.0)  # backoff_max
    assert await d.deliver_due() == 3
    assert sink.accepted == ids
    assert sink.calls == 6
    assert set((await statuses(store)).values()) == {"sent"}


async def test_a_permanent_failure_dead_letters_and_the_rest_goes_on(store: SqliteStore) -> None:
    sink = FakeSink("slack", failures=[SinkError("404 no such channel", retryable=False)])
    ids = await add(store, "slack", [1, 2, 3])
    with capture_logs() as logs:
        assert await deliverer(store, sink, clock=Clock()).deliver_due() == 3
    assert sink.accepted == ids[1:]
    assert await statuses(store) == {1: "dead", 2: "sent", 3: "sent"}
    assert (await row(store, 1)).last_error == "404 no such channel"
    (dead,) = [e for e in logs if e["event"] == "delivery_dead"]
    assert dead["error"] == "404 no such channel"
    assert dead["log_level"] == "error"


async def test_a_failing_or_hanging_sink_does_not_delay_a_healthy_one(store: SqliteStore) -> None:
    never = asyncio.Event()
    hanging = FakeSink("hanging", gate=never)
    failing = FakeSink("failing", always_fail=SinkError("502", retryable=True))
    healthy = FakeSink("healthy")
    for name in ("hanging", "failing", "healthy"):
        await add(store, name, [1, 2, 3, 4, 5])
    d = deliverer(store, hanging, failing, healthy, clock=Clock(), send_timeout=0.5)
    start = time.monotonic()
    assert await d.deliver_due() == 7  # 5 sent + 1 retry + 1 timed-out retry
    assert len(healthy.accepted) == 5
    assert healthy.call_times[-1] - start < 0.3  # not after the hanging send's 0.5 s
    assert failing.calls == 1
    assert hanging.calls == 1
    hung = await row(store, 1)  # the hanging sink's head: retried, not lost
    assert hung.status == "pending"
    assert hung.attempts == 1
    assert "did not finish within 0.5s" in str(hung.last_error)


async def test_retry_after_is_honoured(store: SqliteStore) -> None:
    clock = Clock()
    sink = FakeSink("slack", failures=[SinkError("429", retryable=True, retry_after=120.0)])
    await add(store, "slack", [1])
    d = deliverer(store, sink, clock=clock)  # backoff_max is 10 s
    assert await d.deliver_due() == 1
    due = await store.next_due("slack")
    assert due is not None
    assert due >= T0 + timedelta(seconds=120)
    clock.advance(119)
    assert await d.deliver_due() == 0
    clock.advance(1)
    assert await d.deliver_due() == 1
    assert sink.calls == 2


async def test_rows_older_than_max_age_expire(store: SqliteStore) -> None:
    clock = Clock()
    sink = FakeSink("slack")
    await add(store, "slack", [1, 2], at=T0)
    clock.advance(3601)
    fresh = await add(store, "slack", [3], at=clock.now)
    policy = RetryPolicy(max_age=3600.0)
    counts: list[tuple[str, str, int]] = []
    d = deliverer(store, sink, clock=clock, policy=policy, on_result=lambda *a: counts.append(a))
    with capture_logs() as logs:
        assert await d.deliver_due() == 3
    assert sink.accepted == fresh
    assert await statuses(store) == {1: "dead", 2: "dead", 3: "sent"}
    assert str((await row(store, 1)).last_error).startswith("expired after 3600s")
    assert [e["event"] for e in logs].count("delivery_expired") == 2
    assert counts == [("slack", "dead", 2), ("slack", "sent", 1)]


async def test_max_attempts_dead_letters_then_moves_on(store: SqliteStore) -> None:
    clock = Clock()
    sink = FakeSink("slack", failures=[SinkError("503", retryable=True)] * 2)
    ids = await add(store, "slack", [1, 2])
    d = deliverer(store, sink, clock=clock, policy=RetryPolicy(max_attempts=2, backoff_max=1.0))
    assert await d.deliver_due() == 1
    clock.advance(1.0)
    assert await d.deliver_due() == 2  # attempt 2 fails -> dead; row 2 is sent
    assert await statuses(store) == {1: "dead", 2: "sent"}
    head = await row(store, 1)
    assert head.attempts == 2
    assert head.last_error == "gave up after 2 attempts: 503"
    assert sink.accepted == ids[1:]


async def test_a_rate_limited_digest_sink_gets_a_burst_as_one_batch(store: SqliteStore) -> None:
    slack_like = FakeSink("slack", digest=True, min_interval=1.0)
    a = await add(store, "slack", [1, 2], check_id="c1")
    b = await add(store, "slack", [3], check_id="c2")
    c = await add(store, "slack", [4, 5], check_id="c3")
    assert await deliverer(store, slack_like, clock=Clock()).deliver_due() == 5
    assert slack_like.batches == [a + b + c]


async def test_a_digest_sink_gets_one_batch_per_check(store: SqliteStore) -> None:
    digest = FakeSink("digest", digest=True)
    single = FakeSink("single")
    a = await add(store, "digest", [1, 2, 3], check_id="c1")
    b = await add(store, "digest", [4, 5], check_id="c2")
    c = await add(store, "digest", [6], check_id="c3")
    await add(store, "single", [1, 2, 3], check_id="c1")
    assert await deliverer(store, digest, single, clock=Clock()).deliver_due() == 9
    assert digest.batches == [a, b, c]
    assert [len(batch) for batch in single.batches] == [1, 1, 1]


async def test_a_bulk_sink_gets_everything_due_as_one_batch(store: SqliteStore) -> None:
    bulk = FakeSink("file", digest=True, bulk=True)  # a file: one write, one fsync
    a = await add(store, "file", [1, 2], check_id="c1")
    b = await add(store, "file", [3], check_id="c2")
    assert await deliverer(store, bulk, clock=Clock()).deliver_due() == 3
    assert bulk.batches == [a + b]


async def test_a_file_sink_writes_every_check_of_a_bulk_batch_as_its_lines(
    store: SqliteStore, tmp_path: Path
) -> None:
    path = tmp_path / "alerts.jsonl"
    sink = FileSink("file", FileConfig(type="file", path=path))
    a = await add(store, "file", [1], check_id="c1")
    b = await add(store, "file", [2], check_id="c2")
    assert await deliverer(store, sink, clock=Clock()).deliver_due() == 2
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [r["event_id"] for r in records] == a + b  # one line per check's pair, in order


class SplittingSink(FakeSink):
    """Sends a batch as posts of two, reporting each accepted post; the posts after the first
    ``good`` ones fail (retryably), once."""

    def __init__(self, name: str, *, good: int, store: SqliteStore) -> None:
        super().__init__(name, digest=True, min_interval=0.5)
        self.good = good
        self.store = store
        self.posts: list[list[str]] = []
        self.seen_sent: list[list[str]] = []  # statuses in the store right after each report

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        assert on_accepted is not None
        for start in range(0, len(batch), 2):
            part = batch[start : start + 2]
            if len(self.posts) == self.good:
                self.good = -1
                raise SinkError("503", retryable=True)
            self.posts.append([d.event.event_id for d in part])
            await on_accepted(part)
            rows = await self.store.outbox_rows(limit=100)
            self.seen_sent.append(sorted(str(r.id) for r in rows if r.status == "sent"))


async def test_each_accepted_part_of_a_digest_is_marked_sent_at_once(store: SqliteStore) -> None:
    clock = Clock()
    ids = await add(store, "slack", [1, 2, 3, 4, 5], check_id="c1")
    sink = SplittingSink("slack", good=1, store=store)
    d = deliverer(store, sink, clock=clock)
    await d.deliver_due()
    assert sink.seen_sent == [["1", "2"]]  # the first post was marked before the second went
    assert await statuses(store) == {1: "sent", 2: "sent", 3: "pending", 4: "pending", 5: "pending"}
    assert (await row(store, 3)).attempts == 1
    assert (await row(store, 1)).attempts == 0
    clock.advance(60)
    await d.deliver_due()
    assert sink.posts == [ids[0:2], ids[2:4], ids[4:5]]  # nothing posted twice
    assert set((await statuses(store)).values()) == {"sent"}


async def test_a_memo_comes_back_with_the_retry(store: SqliteStore) -> None:
    clock = Clock()
    sink = FakeSink("email", failures=[SinkError("451", retryable=True, memo="accepted:a@x")])
    await add(store, "email", [1])
    d = deliverer(store, sink, clock=clock)
    await d.deliver_due()
    clock.advance(10)
    await d.deliver_due()
    assert sink.memos == [None, "accepted:a@x"]
    assert sink.calls == 2
    assert len(sink.accepted) == 1


async def test_a_sink_bug_is_logged_and_retried(store: SqliteStore) -> None:
    sink = FakeSink("buggy", failures=[RuntimeError("oops https://user:pw@example.invalid")])
    await add(store, "buggy", [1])
    with capture_logs() as logs:
        assert await deliverer(store, sink, clock=Clock()).deliver_due() == 1
    head = await row(store, 1)
    assert head.status == "pending"
    assert head.last_error == "the sink raised RuntimeError (a bug)"
    crash = next(e for e in logs if e["event"] == "delivery_sink_crashed")
    assert crash["exc_info"] is True
    assert crash["sink"] == "buggy"


async def test_rows_leased_by_a_dead_worker_come_back_after_the_lease(store: SqliteStore) -> None:
    clock = Clock()
    sink = FakeSink("slack")
    ids = await add(store, "slack", [1, 2])
    await store.claim("slack", now=T0, limit=10, lease=60, owner="crashed-worker")
    d = deliverer(store, sink, clock=clock)
    assert await d.deliver_due() == 0
    clock.advance(60)
    assert await d.deliver_due() == 2
    assert sink.accepted == ids


async def test_rows_leased_by_a_life_that_is_over_are_released_at_once(
    store: SqliteStore,
) -> None:
    clock = Clock()
    sink = FakeSink("slack")
    ids = await add(store, "slack", [1, 2])
    await add(store, "email", [3])
    await store.claim("slack", now=T0, limit=10, lease=60, owner="vm/41/boot/100")  # killed
    await store.claim("email", now=T0, limit=10, lease=60, owner="other-host/7/boot/5")
    assert await store.lease_owners() == ["other-host/7/boot/5", "vm/41/boot/100"]
    d = deliverer(store, sink, clock=clock)
    with capture_logs() as logs:
        assert await d.release_orphans(lambda owner: owner.startswith("vm/")) == 2
    assert [e["event"] for e in logs] == ["outbox_leases_released"]
    assert await d.deliver_due() == 2  # now, not after the 60 s lease
    assert sink.accepted == ids
    assert await store.lease_owners() == ["other-host/7/boot/5"]  # another host's: it lapses


async def test_min_interval_spaces_the_sends(store: SqliteStore) -> None:
    sink = FakeSink("slack", min_interval=0.2)
    await add(store, "slack", [1, 2, 3])
    start = time.monotonic()
    assert await deliverer(store, sink, clock=Clock()).deliver_due() == 3
    assert time.monotonic() - start >= 0.4
    gaps = [b - a for a, b in zip(sink.call_times, sink.call_times[1:], strict=False)]
    assert all(gap >= 0.195 for gap in gaps)


# --- run / wake / stop --------------------------------------------------------------------------


async def test_run_wakes_at_once_when_rows_are_committed(store: SqliteStore) -> None:
    sink = FakeSink("slack")
    d = deliverer(store, sink)  # the real clock
    worker = asyncio.create_task(d.run())
    await asyncio.sleep(0.1)  # the lane found nothing and sleeps (idle poll: 30 s)
    ids = await add(store, "slack", [1], at=datetime.now(UTC))
    start = time.monotonic()
    d.wake()
    await asyncio.wait_for(sink.delivered.wait(), 2.0)
    assert sink.accepted == ids
    assert time.monotonic() - start < 0.1
    await d.stop(grace=1.0)
    await asyncio.wait_for(worker, 1.0)


async def test_run_sleeps_until_a_retry_is_due(store: SqliteStore) -> None:
    sink = FakeSink("slack", failures=[SinkError("503", retryable=True, retry_after=0.3)])
    d = deliverer(store, sink)
    ids = await add(store, "slack", [1], at=datetime.now(UTC))
    worker = asyncio.create_task(d.run())
    await asyncio.wait_for(sink.delivered.wait(), 3.0)
    assert sink.accepted == ids
    assert 0.3 <= sink.call_times[1] - sink.call_times[0] < 0.6
    await d.stop(grace=1.0)
    await asyncio.wait_for(worker, 1.0)


async def test_stop_lets_the_inflight_send_finish_and_releases_the_rest(
    store: SqliteStore,
) -> None:
    gate = asyncio.Event()
    sink = FakeSink("slack", gate=gate)
    ids = await add(store, "slack", [1, 2, 3], at=datetime.now(UTC))
    d = deliverer(store, sink)
    worker = asyncio.create_task(d.run())
    await asyncio.wait_for(sink.started.wait(), 1.0)  # row 1 is in flight; 2 and 3 are leased
    assert (await row(store, 2)).lease_owner == "test-worker"
    stopping = asyncio.create_task(d.stop(grace=2.0))
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the in-flight send
    gate.set()
    await asyncio.wait_for(stopping, 1.0)
    await asyncio.wait_for(worker, 1.0)
    assert sink.accepted == ids[:1]
    assert sink.calls == 1  # nothing new after stop
    assert await statuses(store) == {1: "sent", 2: "pending", 3: "pending"}
    for row_id in (2, 3):
        released = await row(store, row_id)
        assert released.lease_owner is None
        assert released.attempts == 0


async def test_stop_cancels_a_send_that_outlives_the_grace_period(store: SqliteStore) -> None:
    sink = FakeSink("slack", gate=asyncio.Event())  # never opens
    await add(store, "slack", [1, 2], at=datetime.now(UTC))
    d = deliverer(store, sink)
    worker = asyncio.create_task(d.run())
    await asyncio.wait_for(sink.started.wait(), 1.0)
    start = time.monotonic()
    await d.stop(grace=0.2)
    assert 0.2 <= time.monotonic() - start < 1.0
    await asyncio.wait_for(worker, 1.0)
    for row_id in (1, 2):  # back in the queue untouched: the next start sends them
        released = await row(store, row_id)
        assert released.status == "pending"
        assert released.lease_owner is None
        assert released.attempts == 0


async def test_the_loop_survives_a_store_failure(store: SqliteStore) -> None:
    real_claim = store.claim
    failures = [StoreError("claim: sqlite OperationalError: disk I/O error")]

    async def flaky_claim(sink: str, **kw: Any) -> list[Delivery]:
        if failures:
            raise failures.pop()
        return await real_claim(sink, **kw)

    store.claim = flaky_claim  # type: ignore[method-assign]
    sink = FakeSink("slack")
    ids = await add(store, "slack", [1], at=datetime.now(UTC))
    d = deliverer(store, sink, idle_poll=0.2)
    with capture_logs() as logs:
        worker = asyncio.create_task(d.run())
        await asyncio.wait_for(sink.delivered.wait(), 2.0)
        await d.stop(grace=1.0)
        await asyncio.wait_for(worker, 1.0)
    assert sink.accepted == ids
    assert [e["event"] for e in logs if e["event"] == "delivery_store_failed"] == [
        "delivery_store_failed"
    ]


# --- claims shared with other instances ---------------------------------------------------------


class CutOff(SqliteStore):
    """A SQLite store whose claim renewals fail while ``cut`` (an instance cut off from the
    database while its send goes on)."""

    cut = False

    async def renew_claims(
        self, ids: Sequence[int], *, owner: str, lease: float, now: datetime
    ) -> list[int]:
        if self.cut:
            raise StoreError("renew_claims: cut off")
        return await super().renew_claims(ids, owner=owner, lease=lease, now=now)


async def eventually(check: Any) -> None:
    """Wait (polling, at most 5 s) until the async ``check()`` is true."""
    async with asyncio.timeout(5.0):
        while not await check():  # noqa: ASYNC110 -- the condition is a row: no event to await
            await asyncio.sleep(0.02)


async def test_claims_are_renewed_while_a_send_outlasts_the_lease(tmp_path: Path) -> None:
    clock = Clock()
    mine, other = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    await mine.open()
    await other.open()
    try:
        await add(mine, "slack", [1, 2, 3])
        gate = asyncio.Event()
        sink = FakeSink("slack", gate=gate)
        d = deliverer(mine, sink, clock=clock, policy=RetryPolicy(lease=0.3))
        sending = asyncio.create_task(d.deliver_due())
        await asyncio.wait_for(sink.started.wait(), 2.0)
        for _ in range(4):  # 0.8 s of the store's time pass: the 0.3 s lease holds, renewed
            clock.advance(0.2)
            target = clock() + timedelta(seconds=0.25)

            async def renewed(t: datetime = target) -> bool:
                until = (await row(mine, 1)).lease_until
                assert isinstance(until, datetime)
                return until >= t

            await eventually(renewed)
            assert await other.claim("slack", now=clock(), limit=10, lease=15, owner="B") == []
        gate.set()
        assert await asyncio.wait_for(sending, 5.0) == 3
        assert sink.accepted == [event(n).event_id for n in (1, 2, 3)]
    finally:
        await mine.aclose()
        await other.aclose()


async def test_a_lane_that_lost_its_claims_stops_and_leaves_them_to_their_new_owner(
    tmp_path: Path,
) -> None:
    clock = Clock()
    mine, other = CutOff(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    await mine.open()
    await other.open()
    try:
        ids = await add(mine, "slack", [1, 2, 3])
        gate = asyncio.Event()
        sink = FakeSink("slack", gate=gate)
        d = deliverer(mine, sink, clock=clock, policy=RetryPolicy(lease=0.3))
        with capture_logs() as logs:
            sending = asyncio.create_task(d.deliver_due())
            await asyncio.wait_for(sink.started.wait(), 2.0)  # row 1 is in flight
            mine.cut = True
            clock.advance(1.0)  # the lease lapsed unrenewed: another instance takes the rows
            taken = await other.claim("slack", now=clock(), limit=10, lease=15, owner="B")
            assert [r.event.event_id for r in taken] == ids
            mine.cut = False

            async def told() -> bool:
                return any(e["event"] == "delivery_claims_lost" for e in logs)

            await eventually(told)
            gate.set()  # row 1's send ends (the receiver got it): it is marked sent
            await asyncio.wait_for(sending, 5.0)
        assert sink.accepted == [ids[0]]  # rows 2 and 3 are B's now: not sent here
        assert [(await row(other, n)).lease_owner for n in (2, 3)] == ["B", "B"]
        theirs = FakeSink("slack")
        b = Deliverer(other, {"slack": theirs}, policy=RetryPolicy(), owner="B", clock=clock)
        assert await b.deliver_due() == 2
        assert theirs.accepted == ids[1:]  # every row sent once, in order
    finally:
        await mine.aclose()
        await other.aclose()
