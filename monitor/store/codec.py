"""What every backend stores the same way: values as JSON text, and the outbox as operators see it.

States, snapshots and events are kept as compact JSON text exactly as ``to_json`` writes them
(decimals as strings, never through ``float``); reading one back that no longer parses is a
:class:`~monitor.errors.StoreError` for a target's state, and a dead letter for an outbox row (a row
nobody can read would otherwise block its sink for ever). :func:`outbox_row` gives the operator's view
of an outbox row (``outbox_rows``) from its columns, whatever the backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime

import structlog

from monitor.errors import StoreError
from monitor.models import (
    DeliveryStatus,
    Event,
    EventKind,
    NewDelivery,
    Silence,
    Snapshot,
    TargetState,
)
from monitor.store import Observation, OutboxRow

__all__ = [
    "ROW_COLUMNS",
    "SILENCE_COLUMNS",
    "dumps",
    "event_of",
    "observation",
    "outbox_row",
    "row_status",
    "silence_of",
    "target_state",
]

log = structlog.get_logger("monitor.store")

#: what a stored JSON text that no longer reads as its value raises
_UNREADABLE = (ValueError, KeyError, TypeError, AttributeError)


def dumps(value: object) -> str:
    """Compact JSON text, unicode kept as is."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def target_state(target: str, state_json: str) -> TargetState:
    """A target's stored state; ``StoreError`` when it no longer reads."""
    try:
        return TargetState.from_json(json.loads(state_json))
    except _UNREADABLE as exc:
        raise StoreError(
            f"target {target!r}: the stored state is unreadable ({type(exc).__name__})"
        ) from None


def event_of(event_json: str, *, sink: str, row_id: int) -> Event | str:
    """An outbox row's event, or (logged) why it cannot be read: the row's dead-letter reason."""
    try:
        return Event.from_json(json.loads(event_json))
    except _UNREADABLE as exc:
        log.exception("outbox_row_corrupt", sink=sink, id=row_id, error=type(exc).__name__)
        return f"unreadable event_json ({type(exc).__name__})"


#: the columns of ``outbox_rows``, in the order :func:`outbox_row` takes them
ROW_COLUMNS = (
    "id",
    "dedup_key",
    "sink",
    "target",
    "status",
    "attempts",
    "created_at",
    "updated_at",
    "next_attempt_at",
    "sent_at",
    "last_error",
    "event_json",
    "check_id",
    "lease_owner",
    "lease_until",
    "memo",
    "silenced_by",
)


def outbox_row(values: Sequence[object], time: Callable[[object], datetime]) -> OutboxRow:
    """An outbox row for operators from its :data:`ROW_COLUMNS` values (``time`` reads the
    backend's form of a time); its ``event`` is None when it no longer reads."""
    (row_id, key, sink, target, status, attempts, created, updated, due, sent, error, raw) = values[
        :12
    ]
    check_id, lease_owner, lease_until, memo, silenced_by = values[12:]
    try:
        event: Event | None = Event.from_json(json.loads(str(raw)))
    except _UNREADABLE:
        event = None
    return OutboxRow(
        id=int(str(row_id)),
        dedup_key=str(key),
        sink=str(sink),
        target=str(target),
        status=str(status),
        attempts=int(str(attempts)),
        created_at=time(created),
        updated_at=time(updated),
        next_attempt_at=time(due),
        sent_at=None if sent is None else time(sent),
        last_error=None if error is None else str(error),
        event=event,
        check_id=str(check_id or ""),
        lease_owner=None if lease_owner is None else str(lease_owner),
        lease_until=None if lease_until is None else time(lease_until),
        memo=None if memo is None else str(memo),
        silenced_by=None if silenced_by is None else str(silenced_by),
    )


def observation(target: str, observed_at: datetime, snapshot_json: str) -> Observation | None:
    """A history row; None (and a warning) when its snapshot no longer reads."""
    try:
        snapshot = Snapshot.from_json(json.loads(snapshot_json))
    except _UNREADABLE as exc:
        log.warning("observation_unreadable", target=target, error=type(exc).__name__)
        return None
    return Observation(target=target, observed_at=observed_at, snapshot=snapshot)


#: the columns of a silence, in the order :func:`silence_of` takes them
SILENCE_COLUMNS = ("id", "target", "pair", "kind", "starts_at", "ends_at", "comment", "created_by")


def silence_of(values: Sequence[object], time: Callable[[object], datetime]) -> Silence:
    """A stored silence from its :data:`SILENCE_COLUMNS` values."""
    sid, target, pair, kind, starts_at, ends_at, comment, created_by = values
    return Silence(
        id=str(sid),
        target=str(target),
        pair=None if pair is None else str(pair),
        kind=EventKind(str(kind)) if kind else None,
        starts_at=time(starts_at),
        ends_at=time(ends_at),
        comment=str(comment),
        created_by=str(created_by),
    )


def row_status(delivery: NewDelivery) -> str:
    """The status a new outbox row is written with: ``silenced`` (recorded, never claimed) when a
    silence or mute window holds it, else ``pending``."""
    silenced = delivery.silenced_by is not None
    return (DeliveryStatus.SILENCED if silenced else DeliveryStatus.PENDING).value
