"""The durable state: per-target state, observation history and the outbox.

:class:`Store` is the interface; ``monitor.store.sqlite`` implements it on a local file (the
default) and a PostgreSQL backend will implement it for several instances. ``open_store`` picks the
backend from the ``database`` setting.

The promise every backend keeps: ``commit_check`` writes the new target state, its history row and
its outbox rows in ONE transaction, so a crash can neither lose an alert nor advance state without
its alerts. Outbox rows are unique by ``dedup_key`` (insert-or-ignore).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from monitor.models import Delivery, NewDelivery, Snapshot, TargetState, Validators


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """Rows per (sink, status), for metrics and the status page."""

    sink: str
    status: str
    count: int


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

    async def release(self, ids: Sequence[int]) -> None:
        """Give leased rows back untouched (graceful shutdown)."""
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

    async def list_outbox(
        self, *, status: str | None = None, limit: int = 100
    ) -> list[dict[str, object]]:
        """Outbox rows, newest first, for operators (``id``, ``sink``, ``status``, ...)."""
        ...

    async def sinks_with_pending(self) -> list[str]:
        """Sinks that have pending rows (to warn about rows for sinks no longer configured)."""
        ...
