"""An in-memory store, for unit tests of the modules that use one (a testing helper).

:class:`MemoryStore` keeps the whole contract of :class:`monitor.store.ClusterStore` (the same
contract suite as the real backends runs on it) without a file or a server: states, events and
snapshots go through their JSON forms as they would into a database, so a value a real store could
not hold fails here too. Several :class:`MemoryStore` objects on one :class:`MemoryDatabase` behave
like instances sharing a database; every call yields to the event loop once before it runs, so
concurrent callers really interleave, and then runs without awaiting, so it is atomic.

It is not a backend for the daemon (nothing survives the process) and no URL opens it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from monitor.errors import StoreError
from monitor.models import (
    Delivery,
    DeliveryStatus,
    NewDelivery,
    Silence,
    Snapshot,
    TargetState,
    Validators,
    utc,
)
from monitor.store import (
    CheckCommit,
    CheckLoad,
    CheckTurn,
    Member,
    Observation,
    OutboxCounts,
    OutboxRow,
    TargetLease,
)
from monitor.store.codec import (
    ROW_COLUMNS,
    dumps,
    event_of,
    observation,
    outbox_row,
    row_status,
    target_state,
)

if TYPE_CHECKING:
    from monitor.store import ClusterStore

__all__ = ["MemoryDatabase", "MemoryStore"]


@dataclass(slots=True)
class _Row:
    """One outbox row, with the columns of the real tables."""

    id: int
    dedup_key: str
    sink: str
    target: str
    check_id: str
    event_json: str
    created_at: datetime
    next_attempt_at: datetime
    updated_at: datetime
    status: str = DeliveryStatus.PENDING.value
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_error: str | None = None
    memo: str | None = None
    sent_at: datetime | None = None
    silenced_by: str | None = None

    def free_for(self, owner: str, at: datetime) -> bool:
        """Nobody else holds a live lease on it."""
        return (
            self.lease_owner is None
            or self.lease_owner == owner
            or self.lease_until is None
            or self.lease_until <= at
        )

    def unlease(self) -> None:
        self.lease_owner = None
        self.lease_until = None


@dataclass(slots=True)
class MemoryDatabase:
    """What a database would hold; share one between stores to model several instances."""

    #: target -> (state_json, etag, last_modified)
    targets: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)
    #: (target, observed_at, snapshot_json), in insertion order
    observations: list[tuple[str, datetime, str]] = field(default_factory=list)
    #: id -> row; ids ascend with insertion
    outbox: dict[int, _Row] = field(default_factory=dict)
    last_id: int = 0
    instances: dict[str, Member] = field(default_factory=dict)
    target_leases: dict[str, TargetLease] = field(default_factory=dict)
    #: target -> when its last check began
    target_checks: dict[str, datetime] = field(default_factory=dict)
    #: id -> silence, in insertion order
    silences: dict[str, Silence] = field(default_factory=dict)


def _take(
    db: MemoryDatabase, target: str, owner: str, at: datetime, lease: float
) -> datetime | None:
    """Take ``target``'s lease until ``lease`` seconds after ``at`` unless another owner holds a
    live one; when it ends (None: not taken)."""
    held = db.target_leases.get(target)
    if held is not None and held.owner != owner and held.until > at:
        return None
    until = at + timedelta(seconds=lease)
    db.target_leases[target] = TargetLease(target, owner, until)
    return until


class MemoryStore:
    """:class:`monitor.store.ClusterStore` in memory (see the module's docstring)."""

    #: several stores on one MemoryDatabase stand for instances on several hosts
    single_daemon = False

    def __init__(self, database: MemoryDatabase | None = None) -> None:
        self.database = database if database is not None else MemoryDatabase()
        self._open = False
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStore({len(self.database.outbox)} outbox rows)"

    async def _enter(self, op: str) -> MemoryDatabase:
        """Yield once (so concurrent callers interleave), then check the store is usable."""
        await asyncio.sleep(0)
        if not self._open:
            raise StoreError(f"{op}: the store is {'closed' if self._closed else 'not open'}")
        return self.database

    # --- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        self._open = True
        self._closed = False

    async def aclose(self) -> None:
        if self._open:
            self._open = False
            self._closed = True

    # --- targets -------------------------------------------------------------------------------

    async def load_target(self, target: str) -> tuple[TargetState, Validators]:
        return self._target(await self._enter("load_target"), target)

    @staticmethod
    def _target(db: MemoryDatabase, target: str) -> tuple[TargetState, Validators]:
        row = db.targets.get(target)
        if row is None:
            return TargetState(), Validators()
        state_json, etag, last_modified = row
        return target_state(target, state_json), Validators(etag, last_modified)

    async def load_for_check(self, target: str, *, now: datetime) -> CheckLoad:
        return self._load_for_check(await self._enter("load_for_check"), target, utc(now))

    @staticmethod
    def _load_for_check(db: MemoryDatabase, target: str, at: datetime) -> CheckLoad:
        state, validators = MemoryStore._target(db, target)
        silences = [x for x in db.silences.values() if x.target == target and x.ends_at > at]
        return state, validators, sorted(silences, key=lambda x: (x.starts_at, x.id))

    async def commit_check(
        self,
        target: str,
        *,
        state: TargetState,
        validators: Validators,
        observed: Snapshot | None,
        observed_at: datetime,
        deliveries: Sequence[NewDelivery],
    ) -> int:
        db = await self._enter("commit_check")
        at = utc(observed_at)
        # Everything is serialized and checked before anything is written: all or nothing.
        try:
            state_json = dumps(state.to_json())
            snapshot_json = None if observed is None else dumps(observed.to_json())
            rows = [
                (
                    d.dedup_key,
                    d.sink,
                    d.event.target,
                    d.check_id,
                    dumps(d.event.to_json()),
                    row_status(d),
                    d.silenced_by,
                )
                for d in deliveries
            ]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"commit_check: unstorable value ({type(exc).__name__})") from None
        for _, sink, row_target, check_id, *_ in rows:
            if not all(isinstance(v, str) for v in (sink, row_target, check_id)):
                raise StoreError("commit_check: an outbox row lacks its sink, target or check id")
        db.targets[target] = (state_json, validators.etag, validators.last_modified)
        if snapshot_json is not None:
            db.observations.append((target, at, snapshot_json))
        known = {row.dedup_key for row in db.outbox.values()}
        inserted = 0
        for key, sink, row_target, check_id, event_json, status, silenced_by in rows:
            if key in known:
                continue
            known.add(key)
            db.last_id += 1
            db.outbox[db.last_id] = _Row(
                id=db.last_id,
                dedup_key=key,
                sink=sink,
                target=row_target,
                check_id=check_id,
                event_json=event_json,
                created_at=at,
                next_attempt_at=at,
                updated_at=at,
                status=status,
                silenced_by=silenced_by,
            )
            inserted += 1
        return inserted

    async def commit_checks(self, commits: Sequence[CheckCommit]) -> list[int | StoreError]:
        await self._enter("commit_checks")
        outcomes: list[int | StoreError] = []
        for c in commits:
            try:
                outcomes.append(
                    await self.commit_check(
                        c.target,
                        state=c.state,
                        validators=c.validators,
                        observed=c.observed,
                        observed_at=c.observed_at,
                        deliveries=c.deliveries,
                    )
                )
            except StoreError as exc:  # all or nothing per check: nothing of it was written
                outcomes.append(exc)
        return outcomes

    # --- outbox --------------------------------------------------------------------------------

    def _pending(self, db: MemoryDatabase, sink: str) -> list[_Row]:
        return [r for r in db.outbox.values() if r.sink == sink and r.status == "pending"]

    async def claim(
        self, sink: str, *, now: datetime, limit: int, lease: float, owner: str
    ) -> list[Delivery]:
        db = await self._enter("claim")
        at = utc(now)
        until = at + timedelta(seconds=lease)
        claimed: list[tuple[_Row, Delivery]] = []
        for row in self._pending(db, sink)[: max(limit, 0)]:
            if row.next_attempt_at > at or not row.free_for(owner, at):
                break  # strict order: a backing-off or leased head holds everything behind it
            event = event_of(row.event_json, sink=sink, row_id=row.id)
            if isinstance(event, str):  # unreadable: dead-letter it rather than block
                row.status, row.last_error, row.updated_at = "dead", event, at
                row.unlease()
                continue
            claimed.append(
                (
                    row,
                    Delivery(
                        id=row.id,
                        dedup_key=row.dedup_key,
                        sink=sink,
                        event=event,
                        check_id=row.check_id,
                        attempts=row.attempts,
                        created_at=row.created_at,
                        memo=row.memo,
                    ),
                )
            )
        for row, _ in claimed:
            row.lease_owner, row.lease_until = owner, until
        return [d for _, d in claimed]

    def _live(self, db: MemoryDatabase, ids: Sequence[int]) -> list[_Row]:
        rows = (db.outbox.get(i) for i in ids)
        return [r for r in rows if r is not None and r.status == "pending"]

    async def mark_sent(self, ids: Sequence[int], *, now: datetime) -> None:
        db = await self._enter("mark_sent")
        for row in self._live(db, ids):
            row.status, row.sent_at, row.updated_at = "sent", utc(now), utc(now)
            row.unlease()

    async def mark_retry(
        self,
        ids: Sequence[int],
        *,
        now: datetime,
        next_attempt_at: datetime,
        error: str,
        memo: str | None = None,
    ) -> None:
        db = await self._enter("mark_retry")
        for row in self._live(db, ids):
            row.attempts += 1
            row.next_attempt_at = utc(next_attempt_at)
            row.last_error = error
            row.memo = row.memo if memo is None else memo
            row.updated_at = utc(now)
            row.unlease()

    async def mark_dead(self, ids: Sequence[int], *, now: datetime, error: str) -> None:
        db = await self._enter("mark_dead")
        for row in self._live(db, ids):
            row.status, row.last_error, row.updated_at = "dead", error, utc(now)
            row.attempts += 1
            row.unlease()

    async def release(self, ids: Sequence[int], *, owner: str | None = None) -> None:
        db = await self._enter("release")
        for row in self._live(db, ids):
            if owner is None or row.lease_owner == owner:
                row.unlease()

    async def lease_owners(self) -> list[str]:
        db = await self._enter("lease_owners")
        owners = {r.lease_owner for r in db.outbox.values() if r.status == "pending"}
        return sorted(o for o in owners if o is not None)

    async def release_leases_of(self, owners: Sequence[str]) -> int:
        db = await self._enter("release_leases_of")
        gone = set(owners)
        released = 0
        for row in db.outbox.values():
            if row.status == "pending" and row.lease_owner in gone:
                row.unlease()
                released += 1
        return released

    async def requeue(self, ids: Sequence[int], *, now: datetime) -> int:
        db = await self._enter("requeue")
        at = utc(now)
        changed = 0
        for row_id in dict.fromkeys(ids):
            row = db.outbox.get(row_id)
            if row is not None and row.status == "dead":
                row.status, row.attempts = "pending", 0
                row.next_attempt_at = row.created_at = row.updated_at = at
                row.unlease()
                changed += 1
        return changed

    async def next_due(self, sink: str) -> datetime | None:
        db = await self._enter("next_due")
        pending = self._pending(db, sink)
        if not pending:
            return None
        head = pending[0]
        return max(head.next_attempt_at, head.lease_until or head.next_attempt_at)

    async def expire_history(self, before: datetime) -> int:
        db = await self._enter("expire_history")
        cutoff = utc(before)
        kept = [o for o in db.observations if o[1] >= cutoff]
        removed = len(db.observations) - len(kept)
        db.observations = kept
        for row_id, row in list(db.outbox.items()):
            if row.status in ("sent", "dead", "silenced") and row.created_at < cutoff:
                del db.outbox[row_id]
                removed += 1
        return removed

    async def outbox_counts(self) -> list[OutboxCounts]:
        db = await self._enter("outbox_counts")
        counts: dict[tuple[str, str], int] = {}
        for row in db.outbox.values():
            counts[row.sink, row.status] = counts.get((row.sink, row.status), 0) + 1
        return [OutboxCounts(sink=s, status=st, count=n) for (s, st), n in sorted(counts.items())]

    async def history(
        self,
        *,
        target: str | None = None,
        since: datetime | None = None,
        latest: int | None = None,
    ) -> list[Observation]:
        db = await self._enter("history")
        cutoff = None if since is None else utc(since)
        # oldest first; rows of the same instant in insertion order (the sort is stable)
        ordered = sorted(db.observations, key=lambda o: o[1])
        rows = [
            (name, at, snapshot_json)
            for name, at, snapshot_json in ordered
            if (target is None or name == target) and (cutoff is None or at >= cutoff)
        ]
        if latest is not None:
            rows = rows[max(len(rows) - max(latest, 0), 0) :]
        found = (observation(name, at, snapshot_json) for name, at, snapshot_json in rows)
        return [o for o in found if o is not None]

    async def latest_history(
        self, targets: Sequence[str], *, since: datetime | None = None, latest: int
    ) -> dict[str, list[Observation]]:
        db = await self._enter("latest_history")
        cutoff = None if since is None else utc(since)
        by_target: dict[str, list[tuple[str, datetime, str]]] = {name: [] for name in targets}
        # oldest first; rows of the same instant in insertion order (the sort is stable)
        for row in sorted(db.observations, key=lambda o: o[1]):
            rows = by_target.get(row[0])
            if rows is not None and (cutoff is None or row[1] >= cutoff):
                rows.append(row)
        out: dict[str, list[Observation]] = {}
        for name, rows in by_target.items():
            newest = rows[max(len(rows) - max(latest, 0), 0) :]
            found = (observation(n, at, snapshot_json) for n, at, snapshot_json in newest)
            out[name] = [o for o in found if o is not None]
        return out

    async def outbox_rows(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        db = await self._enter("outbox_rows")
        cutoff = None if since is None else utc(since)
        rows = [
            r
            for r in reversed(db.outbox.values())
            if (status is None or r.status == status)
            and (cutoff is None or r.created_at >= cutoff)
            and (key_prefix is None or r.dedup_key.startswith(key_prefix))
        ]
        return [
            outbox_row(
                [getattr(row, c) for c in ROW_COLUMNS], lambda moment: cast(datetime, moment)
            )
            for row in rows[: max(limit, 0)]
        ]

    async def sinks_with_pending(self) -> list[str]:
        db = await self._enter("sinks_with_pending")
        return sorted({r.sink for r in db.outbox.values() if r.status == "pending"})

    # --- silences ------------------------------------------------------------------------------

    async def add_silence(self, silence: Silence, *, now: datetime) -> None:
        db = await self._enter("add_silence")
        if silence.id in db.silences:
            raise StoreError(f"add_silence: a silence {silence.id!r} already exists")
        db.silences[silence.id] = silence

    async def list_silences(self, *, now: datetime, ended: bool = False) -> list[Silence]:
        db = await self._enter("list_silences")
        at = utc(now)
        found = [x for x in db.silences.values() if ended or x.ends_at > at]
        return sorted(found, key=lambda x: (x.starts_at, x.id))

    async def expire_silence(self, silence_id: str, *, now: datetime) -> Silence | None:
        db = await self._enter("expire_silence")
        before = db.silences.get(silence_id)
        at = utc(now)
        if before is not None and before.ends_at > at:
            db.silences[silence_id] = replace(before, ends_at=at)
        return before

    # --- cluster -------------------------------------------------------------------------------

    async def register(self, member: str, *, host: str, pid: int, now: datetime) -> None:
        db = await self._enter("register")
        at = utc(now)
        db.instances[member] = Member(member, host, pid, started_at=at, last_heartbeat=at)

    async def heartbeat(self, member: str, *, now: datetime) -> bool:
        db = await self._enter("heartbeat")
        found = db.instances.get(member)
        if found is None:
            return False
        db.instances[member] = replace(found, last_heartbeat=utc(now))
        return True

    async def members(self) -> list[Member]:
        db = await self._enter("members")
        return [db.instances[k] for k in sorted(db.instances)]

    async def forget_members(self, *, silent_for: float, now: datetime) -> int:
        db = await self._enter("forget_members")
        cutoff = utc(now) - timedelta(seconds=silent_for)
        silent = [k for k, m in db.instances.items() if m.last_heartbeat < cutoff]
        for k in silent:
            del db.instances[k]
        return len(silent)

    async def acquire_target(
        self, target: str, *, owner: str, lease: float, now: datetime
    ) -> datetime | None:
        db = await self._enter("acquire_target")
        return _take(db, target, owner, utc(now), lease)

    async def release_target(self, target: str, *, owner: str) -> None:
        db = await self._enter("release_target")
        held = db.target_leases.get(target)
        if held is not None and held.owner == owner:
            del db.target_leases[target]

    async def target_leases(self) -> list[TargetLease]:
        db = await self._enter("target_leases")
        return [
            replace(db.target_leases[k], checked_at=db.target_checks.get(k))
            for k in sorted(db.target_leases)
        ]

    async def renew_targets(self, owner: str, *, lease: float, now: datetime) -> list[str]:
        db = await self._enter("renew_targets")
        until = utc(now) + timedelta(seconds=lease)
        held = sorted(t for t, x in db.target_leases.items() if x.owner == owner)
        for target in held:
            db.target_leases[target] = TargetLease(target, owner, until)
        return held

    async def begin_check(
        self,
        target: str,
        *,
        owner: str,
        lease: float,
        spacing: float,
        now: datetime,
        load: bool = False,
    ) -> CheckTurn | None:
        db = await self._enter("begin_check")
        at = utc(now)
        if _take(db, target, owner, at, lease) is None:
            return None
        last = db.target_checks.get(target)
        since = None if last is None or last > at else (at - last).total_seconds()
        granted = since is None or since >= spacing
        if granted:
            db.target_checks[target] = at
        loaded = self._load_for_check(db, target, at) if granted and load else None
        return CheckTurn(granted=granted, since_last=since, loaded=loaded)

    async def renew_claims(
        self, ids: Sequence[int], *, owner: str, lease: float, now: datetime
    ) -> list[int]:
        db = await self._enter("renew_claims")
        until = utc(now) + timedelta(seconds=lease)
        held = sorted({r.id for r in self._live(db, ids) if r.lease_owner == owner})
        for row_id in held:
            db.outbox[row_id].lease_until = until
        return held

    async def leave(self, member: str) -> None:
        db = await self._enter("leave")
        for target in [t for t, held in db.target_leases.items() if held.owner == member]:
            del db.target_leases[target]
        for row in db.outbox.values():
            if row.status == "pending" and row.lease_owner == member:
                row.unlease()
        db.instances.pop(member, None)


if TYPE_CHECKING:  # mypy proves the fake keeps the whole protocol

    def _is_a_cluster_store(store: MemoryStore) -> ClusterStore:
        return store
