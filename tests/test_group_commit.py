"""Group commit (``monitor.store.group``): checks that finish together share a transaction, and
each still returns only when it is written -- or raises, and then nothing of it was.

On a real SQLite file, read back through a connection of its own (what a restart after a crash
would find).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from monitor.errors import StoreError
from monitor.models import (
    Event,
    EventKind,
    NewDelivery,
    Quote,
    Reading,
    Snapshot,
    TargetState,
    Validators,
)
from monitor.store.group import GroupCommit
from monitor.store.sqlite import SqliteStore

T0 = datetime(2025, 5, 16, 8, 30, tzinfo=UTC)


def snapshot(rate: str) -> Snapshot:
    return Snapshot(quotes=(Quote("TMT/USD", "TMT", "USD", Decimal(rate), Decimal("-0.14")),))


def delivery(target: str, n: int, check_id: str | None = "c") -> NewDelivery:
    event = Event(
        kind=EventKind.RATE_CHANGED,
        target=target,
        pair="TMT/USD",
        old=Reading(Decimal("0.28575"), Decimal("0")),
        new=Reading(Decimal(f"0.2857{n}"), Decimal("-0.14")),
        observed_at=T0,
    )
    return NewDelivery(event=event, sink="audit", check_id=check_id)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    made = SqliteStore(tmp_path / "state.db")
    await made.open()
    yield made
    await made.aclose()


def on_disk(path: str) -> tuple[set[str], list[str]]:
    """The targets and the outbox rows' targets, as another process would read them."""
    conn = sqlite3.connect(path)
    try:
        targets = {r[0] for r in conn.execute("SELECT name FROM targets")}
        outbox = sorted(r[0] for r in conn.execute("SELECT target FROM outbox"))
    finally:
        conn.close()
    return targets, outbox


async def check(group: GroupCommit, target: str, *deliveries: NewDelivery) -> int:
    return await group.commit_check(
        target,
        state=TargetState(snapshot=snapshot("0.2")),
        validators=Validators(),
        observed=snapshot("0.2"),
        observed_at=T0,
        deliveries=list(deliveries),
    )


async def test_checks_that_finish_together_share_transactions(store: SqliteStore) -> None:
    group = GroupCommit(store)
    names = [f"t{n}" for n in range(40)]
    inserted = await asyncio.gather(*(check(group, name, delivery(name, 1)) for name in names))
    assert inserted == [1] * 40
    assert group.checks == 40
    assert group.groups < 10  # 40 commits, a handful of transactions
    targets, outbox = on_disk(store.path)
    assert targets == set(names)
    assert outbox == sorted(names)


async def test_a_check_is_on_disk_when_its_commit_returns(store: SqliteStore) -> None:
    group = GroupCommit(store, delay=0.05)
    others = [asyncio.create_task(check(group, f"o{n}", delivery(f"o{n}", 1))) for n in range(5)]
    assert await check(group, "mine", delivery("mine", 1)) == 1
    targets, outbox = on_disk(store.path)
    assert "mine" in targets
    assert "mine" in outbox
    await asyncio.gather(*others)


async def test_a_failing_check_fails_alone_and_writes_nothing(store: SqliteStore) -> None:
    group = GroupCommit(store, delay=0.05)  # long enough for all three to share a transaction
    # its second row cannot be written (no check id): after its state and its first row
    bad = check(group, "bad", delivery("bad", 1), delivery("bad", 2, check_id=None))
    results = await asyncio.gather(
        check(group, "a", delivery("a", 1)),
        bad,
        check(group, "b", delivery("b", 1)),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert results[2] == 1
    assert isinstance(results[1], StoreError)
    assert group.groups == 1
    targets, outbox = on_disk(store.path)
    assert targets == {"a", "b"}
    assert outbox == ["a", "b"]


async def test_a_transaction_that_fails_fails_every_check_in_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.open()
    await store.aclose()  # the store refuses every call: the whole transaction fails
    group = GroupCommit(store)
    results = await asyncio.gather(
        *(check(group, f"t{n}", delivery(f"t{n}", 1)) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, StoreError) for r in results)
    assert group.groups == 0


async def test_a_cancelled_check_does_not_stop_the_others(store: SqliteStore) -> None:
    group = GroupCommit(store, delay=0.05)
    cancelled = asyncio.create_task(check(group, "gone", delivery("gone", 1)))
    kept = asyncio.create_task(check(group, "kept", delivery("kept", 1)))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await kept == 1
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await group.aclose()
    targets, _ = on_disk(store.path)
    assert "kept" in targets  # "gone" may or may not be written: as a commit cut short may
