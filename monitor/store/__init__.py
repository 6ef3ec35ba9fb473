"""The durable state: per-target state, observation history and the outbox.

:class:`Store` is the interface; :class:`ClusterStore` adds what several instances on one database
need to coordinate (membership, per-target leases, renewable outbox claims). Every backend
implements both: ``monitor.store.sqlite`` on a local file (the default), ``monitor.store.postgres``
for several instances on one PostgreSQL database, and ``monitor.store.memory`` in memory, for
unit tests of other modules. ``open_store`` picks the backend from the ``database`` setting.
``tests/test_store_contract.py`` is the contract every backend passes.

The promise every backend keeps: ``commit_check`` writes the new target state, its history row and
its outbox rows in ONE transaction, so a crash can neither lose an alert nor advance state without
its alerts. ``commit_checks`` does the same for several checks in one transaction (one fsync:
``monitor.store.group`` gathers the checks that finish together), each check still all or nothing.
Outbox rows are unique by ``dedup_key`` (insert-or-ignore). A row whose delivery carries
``silenced_by`` is written with status ``silenced`` and never claimed.

Silences live in the store too, so every instance sharing it honours them: a check reads its
target's state and its silences in one call (``load_for_check``).

Time. The methods take the caller's ``now``. A backend owned by one process (SQLite, memory) uses
it for everything. A backend shared by several hosts (PostgreSQL) uses its *own* clock wherever
leases and due times are compared, never a host's, so hosts whose clocks disagree still agree on
who holds what; it keeps the caller's ``now`` only as a record (``sent_at``, ``updated_at``,
``created_at``) and translates durations (a retry ``next_attempt_at - now`` later) onto its clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from monitor.errors import StoreError
from monitor.models import (
    Delivery,
    Event,
    NewDelivery,
    Silence,
    Snapshot,
    TargetState,
    Validators,
    short_id,
)


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """Rows per (sink, status), for metrics and the status page."""

    sink: str
    status: str
    count: int


@dataclass(frozen=True, slots=True)
class CheckCommit:
    """What one check writes: the arguments of :meth:`Store.commit_check`, for
    :meth:`Store.commit_checks`."""

    target: str
    state: TargetState
    validators: Validators
    observed: Snapshot | None
    observed_at: datetime
    deliveries: Sequence[NewDelivery] = ()


@dataclass(frozen=True, slots=True)
class Observation:
    """One history row: what a target's page showed when it last changed."""

    target: str
    observed_at: datetime
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One outbox row as operators see it (``alerts``, the status page).

    ``status`` is whatever the outbox holds (``pending``, ``sent``, ``dead``, and any status a
    later schema adds); ``event`` is None when the stored event cannot be read.
    """

    id: int
    dedup_key: str
    sink: str
    target: str
    status: str
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    event: Event | None
    #: the check that wrote it
    check_id: str = ""
    #: who holds its lease and until when (None when nobody does)
    lease_owner: str | None = None
    lease_until: datetime | None = None
    #: what a partly sent batch already delivered (a sink's memo), or None
    memo: str | None = None
    #: the silence that muted it, or None
    silenced_by: str | None = None

    @property
    def short_id(self) -> str:
        """The dedup id people see in Slack and email (``#3f9a1c2e``)."""
        return short_id(self.dedup_key)


@dataclass(frozen=True, slots=True)
class Member:
    """One instance registered in the store, and when it last said it was alive."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat: datetime


@dataclass(frozen=True, slots=True)
class TargetLease:
    """Who checks a target, until when (by the store's clock), and when its last check began."""

    target: str
    owner: str
    until: datetime
    #: when the target's last check began (:meth:`ClusterStore.begin_check`; None: never)
    checked_at: datetime | None = None


CheckLoad = tuple[TargetState, Validators, list[Silence]]
"""What a check reads before it fetches (:meth:`Store.load_for_check`): the target's state, its
validators and its silences not yet ended."""


@dataclass(frozen=True, slots=True)
class CheckTurn:
    """The answer of :meth:`ClusterStore.begin_check` to the target's lease holder."""

    #: check now: the check's start is recorded (at the store's now)
    granted: bool
    #: seconds since the target's previous check began, by the store's clock (None: never)
    since_last: float | None
    #: granted and asked to ``load``: what :meth:`Store.load_for_check` gives at the same now
    loaded: CheckLoad | None = None


class Store(Protocol):
    async def open(self) -> None:
        """Connect, create or migrate the schema.

        Raises ``StoreError`` on a schema from the future.
        """
        ...

    async def aclose(self) -> None: ...

    async def load_target(self, target: str) -> tuple[TargetState, Validators]:
        """The stored state of a target; a fresh ``TargetState()`` for one never seen."""
        ...

    async def load_for_check(self, target: str, *, now: datetime) -> CheckLoad:
        """``load_target``, and the target's silences that have not ended at ``now`` (some may
        not have started yet), in one round trip."""
        ...

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
        """Write state, history (when ``observed``) and outbox rows atomically.

        Returns how many outbox rows were inserted (a dedup key already present inserts nothing).
        """
        ...

    async def commit_checks(self, commits: Sequence[CheckCommit]) -> list[int | StoreError]:
        """Several checks' :meth:`commit_check` in ONE transaction, in order, each all or nothing.

        Returns, for each, how many outbox rows it inserted, or the ``StoreError`` that kept it
        out (nothing of it was written; the others were). Everything returned as written is
        durable when this returns. Raises ``StoreError`` when the transaction itself fails:
        then none of them was written.
        """
        ...

    async def claim(
        self, sink: str, *, now: datetime, limit: int, lease: float, owner: str
    ) -> list[Delivery]:
        """Lease the oldest pending rows of ``sink`` that are due, in order.

        Order is strict per sink: if the oldest pending row is not yet due (backing off) or is
        leased by another owner, nothing is returned.
        """
        ...

    async def mark_sent(self, ids: Sequence[int], *, now: datetime) -> None: ...

    async def mark_retry(  # memo=None keeps the stored memo
        self,
        ids: Sequence[int],
        *,
        now: datetime,
        next_attempt_at: datetime,
        error: str,
        memo: str | None = None,
    ) -> None: ...

    async def mark_dead(self, ids: Sequence[int], *, now: datetime, error: str) -> None: ...

    async def release(self, ids: Sequence[int], *, owner: str | None = None) -> None:
        """Give leased rows back untouched (graceful shutdown).

        With ``owner``, only the rows it still holds: a row another instance took over after this
        one's lease lapsed keeps its new owner.
        """
        ...

    async def lease_owners(self) -> list[str]:
        """The owners holding a lease on some pending row (lapsed or not)."""
        ...

    async def release_leases_of(self, owners: Sequence[str]) -> int:
        """Give back every pending row leased by one of ``owners`` (lives known to be over, see
        ``monitor.owner``); count them."""
        ...

    async def requeue(self, ids: Sequence[int], *, now: datetime) -> int:
        """Dead rows back to pending (attempts reset, due now, age counted from now); count them."""
        ...

    async def next_due(self, sink: str) -> datetime | None:
        """When the oldest pending row of ``sink`` becomes due (None: nothing pending).

        The later of its ``next_attempt_at`` and its lease, so a sender does not spin on a row
        another sender holds.
        """
        ...

    async def expire_history(self, before: datetime) -> int:
        """Delete history and finished (sent/dead) outbox rows older than ``before``; count them."""
        ...

    async def outbox_counts(self) -> list[OutboxCounts]: ...

    async def history(
        self,
        *,
        target: str | None = None,
        since: datetime | None = None,
        latest: int | None = None,
    ) -> list[Observation]:
        """Observation history (of one target, from ``since`` on), oldest first; with ``latest``,
        only the newest ``latest`` of those rows (still oldest first)."""
        ...

    async def latest_history(
        self, targets: Sequence[str], *, since: datetime | None = None, latest: int
    ) -> dict[str, list[Observation]]:
        """Each of ``targets``' newest ``latest`` observations (from ``since`` on), oldest first,
        in one call: what ``history(target=t, since=since, latest=latest)`` returns for each
        ``t``, keyed by target (every target asked for is a key; ``[]``: none)."""
        ...

    async def outbox_rows(
        self,
        *,
        status: str | None = None,
        since: datetime | None = None,
        key_prefix: str | None = None,
        limit: int = 100,
    ) -> list[OutboxRow]:
        """Outbox rows, newest first: of one ``status``, created at or after ``since``, whose
        dedup key starts with ``key_prefix`` (the short id people see), at most ``limit``."""
        ...

    async def sinks_with_pending(self) -> list[str]:
        """Sinks that have pending rows (to warn about rows for sinks no longer configured)."""
        ...

    async def add_silence(self, silence: Silence, *, now: datetime) -> None:
        """Store a new silence (its ``id`` must be new)."""
        ...

    async def list_silences(self, *, now: datetime, ended: bool = False) -> list[Silence]:
        """Silences not yet ended at ``now`` (with ``ended``: every one), oldest first."""
        ...

    async def expire_silence(self, silence_id: str, *, now: datetime) -> Silence | None:
        """End a silence at ``now``; return it as it was before (None: no such silence)."""
        ...


class ClusterStore(Store, Protocol):
    """A store several instances share: who is there, who checks what, who sends what.

    An instance id is also the ``owner`` of its target leases and its outbox claims, so
    :meth:`leave` can release everything an instance holds. Leases are compared on the store's
    clock (see the module's docstring). A backend owned by one process implements the same
    methods on its own tables, so the daemon has one code path.

    When each target's last check began is kept apart from its lease (it outlives a release, a
    ``leave`` and a lapse), so whoever takes a target over knows when it is due.
    """

    @property
    def single_daemon(self) -> bool:
        """True for a backend only one daemon may use at a time (SQLite: one file on one host);
        the daemon refuses to start next to another live member of it."""
        ...

    async def register(self, member: str, *, host: str, pid: int, now: datetime) -> None:
        """Join, or join again after a restart: ``started_at`` and ``last_heartbeat`` are now."""
        ...

    async def heartbeat(self, member: str, *, now: datetime) -> bool:
        """Say ``member`` is alive; False when it is not registered (forgotten: register again)."""
        ...

    async def members(self) -> list[Member]:
        """Every registered instance, by id, with its last heartbeat."""
        ...

    async def forget_members(self, *, silent_for: float, now: datetime) -> int:
        """Unregister instances whose last heartbeat is older than ``silent_for`` seconds; count
        them. Their leases are not touched: those lapse on their own."""
        ...

    async def acquire_target(
        self, target: str, *, owner: str, lease: float, now: datetime
    ) -> datetime | None:
        """Take the target's lease for ``lease`` seconds, or renew it if ``owner`` holds it.

        Returns when the lease ends, or None while another owner holds a live one. Of several
        instances asking at once, exactly one wins.
        """
        ...

    async def release_target(self, target: str, *, owner: str) -> None:
        """Give a target's lease up (if ``owner`` holds it), so another may take it at once."""
        ...

    async def target_leases(self) -> list[TargetLease]:
        """Every target lease (live or lapsed), by target, with when the target's last check
        began."""
        ...

    async def renew_targets(self, owner: str, *, lease: float, now: datetime) -> list[str]:
        """Extend every target lease ``owner`` holds to ``lease`` seconds from now, in one go (the
        heartbeat's renewal); return those targets, by name. A lease another owner took after
        this one's lapsed is not ``owner``'s any more and is missing from the answer."""
        ...

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
        """Take or renew the target's lease (as :meth:`acquire_target`) and, unless its last
        check began less than ``spacing`` seconds ago, record that a check begins now, all in
        one step: of several instances asking, at most one is granted a check per ``spacing``.
        With ``load``, a granted turn also carries what :meth:`Store.load_for_check` gives at
        ``now`` (the check's next step: one round trip instead of two).

        None while another owner holds a live lease (nothing changes). Otherwise ``owner`` holds
        the lease, and the turn says whether it checks now and how long ago the last check began
        (so a new owner checks at the last check + the interval, not twice in one interval). A
        last check that began after now (the clock stepped back) counts as none.
        """
        ...

    async def renew_claims(
        self, ids: Sequence[int], *, owner: str, lease: float, now: datetime
    ) -> list[int]:
        """Extend ``owner``'s claims on pending outbox rows to ``lease`` seconds from now.

        Returns the ids still held (ascending); a row missing from it was finished, released, or
        taken over by another owner after the lease lapsed.
        """
        ...

    async def leave(self, member: str) -> None:
        """Clean shutdown: release every target lease and outbox claim ``member`` holds, and
        unregister it."""
        ...
