"""Domain values: quotes, snapshots, events, per-target state and outbox deliveries.

All are frozen, slotted dataclasses. Rates and percentages are ``Decimal`` exactly as the page wrote
them (``Decimal("-0")`` keeps its sign for display; it compares equal to ``0``). Times are aware UTC.
Each value that crosses the store has a JSON form (``to_json``/``from_json``) with decimals as strings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


def utc(moment: datetime) -> datetime:
    """Return ``moment`` as aware UTC; a naive value is refused rather than guessed."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: times in ticker-monitor are aware UTC")
    return moment.astimezone(UTC)


def dec_str(value: Decimal) -> str:
    """A decimal as the page wrote it, never in exponent form (``0.00000008``, not ``8E-8``)."""
    return format(value, "f")


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else dec_str(value)


def _undec(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True, slots=True)
class Quote:
    """One ticker item: ``TMT/USD = 0.28575 -0.14%``."""

    pair: str
    base: str
    quote: str
    rate: Decimal
    change_pct: Decimal | None = None

    def to_json(self) -> dict[str, str | None]:
        return {
            "pair": self.pair,
            "base": self.base,
            "quote": self.quote,
            "rate": dec_str(self.rate),
            "change_pct": _dec(self.change_pct),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Quote:
        rate = _undec(data["rate"])
        assert rate is not None  # noqa: S101 -- a stored quote always has a rate; corrupt rows fail loudly
        return cls(
            pair=str(data["pair"]),
            base=str(data["base"]),
            quote=str(data["quote"]),
            rate=rate,
            change_pct=_undec(data.get("change_pct")),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one page showed: its distinct quotes in order of first appearance, and its date line."""

    quotes: tuple[Quote, ...]
    page_date: date | None = None
    #: pairs whose marquee repeats disagreed (the first complete block won); the caller logs them
    conflicts: tuple[str, ...] = field(default=(), compare=False)

    def by_pair(self) -> dict[str, Quote]:
        return {q.pair: q for q in self.quotes}

    def to_json(self) -> dict[str, Any]:
        return {
            "page_date": self.page_date.isoformat() if self.page_date else None,
            "quotes": [q.to_json() for q in self.quotes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Snapshot:
        page_date = data.get("page_date")
        return cls(
            quotes=tuple(Quote.from_json(q) for q in data.get("quotes", ())),
            page_date=date.fromisoformat(page_date) if page_date else None,
        )


class EventKind(StrEnum):
    """The event vocabulary of DESIGN.md."""

    RATE_CHANGED = "rate_changed"
    CHANGE_PCT_CHANGED = "change_pct_changed"
    THRESHOLD = "threshold"
    PAIR_ADDED = "pair_added"
    PAIR_REMOVED = "pair_removed"
    SOURCE_DOWN = "source_down"
    SOURCE_RECOVERED = "source_recovered"
    PARSE_FAILED = "parse_failed"
    PARSE_RECOVERED = "parse_recovered"


@dataclass(frozen=True, slots=True)
class Reading:
    """A pair's value at one moment: the rate and the page's change percentage."""

    rate: Decimal | None
    change_pct: Decimal | None = None

    @classmethod
    def of(cls, quote: Quote | None) -> Reading | None:
        return None if quote is None else cls(quote.rate, quote.change_pct)

    def to_json(self) -> dict[str, str | None]:
        return {"rate": _dec(self.rate), "change_pct": _dec(self.change_pct)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Reading | None:
        if data is None:
            return None
        return cls(_undec(data.get("rate")), _undec(data.get("change_pct")))


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth telling a human. ``event_id`` is deterministic: the same facts, the same id.

    ``rule`` names the rule whose threshold fired (threshold events only); ``detail`` is a short
    human sentence (the threshold crossed, the fetch error), never containing a secret.
    """

    kind: EventKind
    target: str
    pair: str | None
    old: Reading | None
    new: Reading | None
    observed_at: datetime
    page_date: date | None = None
    source_url: str = ""
    rule: str | None = None
    detail: str = ""
    event_id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "observed_at", utc(self.observed_at))
        if not self.event_id:
            object.__setattr__(self, "event_id", self._compute_id())

    def _compute_id(self) -> str:
        parts = [
            self.kind.value,
            self.target,
            self.pair or "",
            json.dumps(self.old.to_json() if self.old else None, sort_keys=True),
            json.dumps(self.new.to_json() if self.new else None, sort_keys=True),
            self.observed_at.isoformat(),
            self.rule or "",
        ]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind.value,
            "target": self.target,
            "pair": self.pair,
            "old": self.old.to_json() if self.old else None,
            "new": self.new.to_json() if self.new else None,
            "observed_at": self.observed_at.isoformat(),
            "page_date": self.page_date.isoformat() if self.page_date else None,
            "source_url": self.source_url,
            "rule": self.rule,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        page_date = data.get("page_date")
        return cls(
            kind=EventKind(data["kind"]),
            target=str(data["target"]),
            pair=data.get("pair"),
            old=Reading.from_json(data.get("old")),
            new=Reading.from_json(data.get("new")),
            observed_at=datetime.fromisoformat(str(data["observed_at"])),
            page_date=date.fromisoformat(page_date) if page_date else None,
            source_url=str(data.get("source_url", "")),
            rule=data.get("rule"),
            detail=str(data.get("detail", "")),
            event_id=str(data.get("event_id", "")),
        )


def dedup_key(event: Event, sink: str) -> str:
    """The outbox's unique key for one (event, sink) pair."""
    return hashlib.sha256(f"{event.event_id}\x1f{sink}".encode()).hexdigest()[:24]


def batch_key(keys: Sequence[str]) -> str:
    """One id for the message carrying deliveries with these dedup ``keys``: the key itself for
    one, ``digest-<hash of all the keys>`` for several. The same deliveries always give the same
    id (a retried message keeps it); a batch that grew or shrank gets another one."""
    if len(keys) == 1:
        return keys[0]
    return "digest-" + hashlib.sha256("\x1f".join(keys).encode()).hexdigest()[:32]


def short_id(key: str) -> str:
    """The few characters of a dedup key that a human reads in a message to spot a duplicate."""
    return key[:8]


@dataclass(frozen=True, slots=True)
class Validators:
    """The server's own cache validators for conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class TargetState:
    """Everything the detector remembers about one target between checks.

    ``inside`` holds the threshold keys (``rule|pair|condition``) currently inside their band: they
    fired on entering and fire again only after leaving (hysteresis). ``last_alerted`` holds, per
    ``rule|pair``, the rate that ``min_move_pct`` measures from. ``last_routed`` holds, per
    ``rule|pair``, when that rule last routed an event (for ``cooldown``).
    """

    snapshot: Snapshot | None = None
    consecutive_failures: int = 0
    down: bool = False
    parse_failing: bool = False
    last_success_at: datetime | None = None
    inside: frozenset[str] = frozenset()
    last_alerted: Mapping[str, Decimal] = field(default_factory=dict)
    last_routed: Mapping[str, datetime] = field(default_factory=dict)
    #: what the target's reading settings (URL, selector, grammar, pairs) were when the snapshot
    #: was taken; when they change, the next observation is a new baseline
    fingerprint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot.to_json() if self.snapshot else None,
            "consecutive_failures": self.consecutive_failures,
            "down": self.down,
            "parse_failing": self.parse_failing,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "inside": sorted(self.inside),
            "last_alerted": {k: dec_str(v) for k, v in sorted(self.last_alerted.items())},
            "last_routed": {k: v.isoformat() for k, v in sorted(self.last_routed.items())},
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetState:
        snap = data.get("snapshot")
        last = data.get("last_success_at")
        return cls(
            snapshot=Snapshot.from_json(snap) if snap else None,
            consecutive_failures=int(data.get("consecutive_failures", 0)),
            down=bool(data.get("down", False)),
            parse_failing=bool(data.get("parse_failing", False)),
            last_success_at=datetime.fromisoformat(last) if last else None,
            inside=frozenset(data.get("inside", ())),
            last_alerted={k: Decimal(v) for k, v in data.get("last_alerted", {}).items()},
            last_routed={
                k: datetime.fromisoformat(v) for k, v in data.get("last_routed", {}).items()
            },
            fingerprint=str(data.get("fingerprint", "")),
        )


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row handed to a sink: an event bound for one sink, with its retry bookkeeping."""

    id: int
    dedup_key: str
    sink: str
    event: Event
    check_id: str
    attempts: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    memo: str | None = None

    @property
    def short_id(self) -> str:
        return short_id(self.dedup_key)


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """An outbox row about to be written, in the same transaction as the state it follows from."""

    event: Event
    sink: str
    check_id: str

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.event, self.sink)
