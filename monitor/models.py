"""Domain values: quotes, snapshots, events, per-target state and outbox deliveries.

All are frozen, slotted dataclasses. Rates and percentages are ``Decimal`` exactly as the page wrote
them (``Decimal("-0")`` keeps its sign for display; it compares equal to ``0``); quotes and readings
also keep the page's own text of each number (``+0.09``, ``12,850.50``) for display. Times are aware UTC.
Each value that crosses the store has a JSON form (``to_json``/``from_json``) with decimals as strings.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
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


def _as_written(text: str, value: Decimal | None) -> str | None:
    """The page's text of a number, else (stored before texts were kept) its exact decimal string."""
    if value is None:
        return None
    return text or dec_str(value)


def _texts_json(
    rate: Decimal | None, rate_text: str, change: Decimal | None, change_text: str
) -> dict[str, str]:
    """The texts worth storing: those that differ from the exact decimal string (``+0.09``)."""
    out = {}
    if rate is not None and rate_text and rate_text != dec_str(rate):
        out["rate_text"] = rate_text
    if change is not None and change_text and change_text != dec_str(change):
        out["change_text"] = change_text
    return out


@dataclass(frozen=True, slots=True)
class Quote:
    """One ticker item: ``TMT/USD = 0.28575 -0.14%``.

    ``rate`` and ``change_pct`` are the values, compared and stored exactly. ``rate_text`` and
    ``change_text`` are the page's own text of them (``12,850.50``, ``+0.09``, ``−0.14``: the
    number with its sign as written, without ``%``), for display only: they never take part in a
    comparison. ``""`` means the page's text is the exact decimal string (or is not known).
    Show a quote through :attr:`rate_as_written` and :attr:`change_as_written`.
    """

    pair: str
    base: str
    quote: str
    rate: Decimal
    change_pct: Decimal | None = None
    rate_text: str = field(default="", compare=False)
    change_text: str = field(default="", compare=False)

    @property
    def rate_as_written(self) -> str:
        """The rate as the page wrote it: ``12,850.50``, ``0.09650``."""
        return self.rate_text or dec_str(self.rate)

    @property
    def change_as_written(self) -> str | None:
        """The change as the page wrote it, sign kept, without ``%``: ``+0.09``; None if none."""
        return _as_written(self.change_text, self.change_pct)

    def to_json(self) -> dict[str, str | None]:
        return {
            "pair": self.pair,
            "base": self.base,
            "quote": self.quote,
            "rate": dec_str(self.rate),
            "change_pct": _dec(self.change_pct),
            **_texts_json(self.rate, self.rate_text, self.change_pct, self.change_text),
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
            rate_text=str(data.get("rate_text") or ""),
            change_text=str(data.get("change_text") or ""),
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
    """The event vocabulary of DESIGN.md, and ``threshold_cleared`` (a rule's ``send_resolved``)."""

    RATE_CHANGED = "rate_changed"
    CHANGE_PCT_CHANGED = "change_pct_changed"
    THRESHOLD = "threshold"
    THRESHOLD_CLEARED = "threshold_cleared"
    PAIR_ADDED = "pair_added"
    PAIR_REMOVED = "pair_removed"
    SOURCE_DOWN = "source_down"
    SOURCE_RECOVERED = "source_recovered"
    PARSE_FAILED = "parse_failed"
    PARSE_RECOVERED = "parse_recovered"


#: the kinds whose events always concern one pair (the others concern the whole target)
PAIR_KINDS = frozenset(
    {
        EventKind.RATE_CHANGED,
        EventKind.CHANGE_PCT_CHANGED,
        EventKind.THRESHOLD,
        EventKind.THRESHOLD_CLEARED,
        EventKind.PAIR_ADDED,
        EventKind.PAIR_REMOVED,
    }
)


@dataclass(frozen=True, slots=True)
class Reading:
    """A pair's value at one moment: the rate and the page's change percentage.

    As in :class:`Quote`, ``rate_text``/``change_text`` keep the page's own text for display
    (:attr:`rate_as_written`, :attr:`change_as_written`) and never take part in a comparison.
    :meth:`values_json` is a reading's identity (its values only: what an event id is to be
    derived from); :meth:`to_json` adds the texts that differ from the exact decimal strings, so
    that a stored event still shows them after a restart.
    """

    rate: Decimal | None
    change_pct: Decimal | None = None
    rate_text: str = field(default="", compare=False)
    change_text: str = field(default="", compare=False)

    @classmethod
    def of(cls, quote: Quote | None) -> Reading | None:
        if quote is None:
            return None
        return cls(quote.rate, quote.change_pct, quote.rate_text, quote.change_text)

    @property
    def rate_as_written(self) -> str | None:
        """The rate as the page wrote it (``12,850.50``); None if unknown."""
        return _as_written(self.rate_text, self.rate)

    @property
    def change_as_written(self) -> str | None:
        """The change as the page wrote it, sign kept, without ``%`` (``+0.09``); None if none."""
        return _as_written(self.change_text, self.change_pct)

    def values_json(self) -> dict[str, str | None]:
        """The values alone, as exact decimal strings: the reading's identity."""
        return {"rate": _dec(self.rate), "change_pct": _dec(self.change_pct)}

    def to_json(self) -> dict[str, str | None]:
        return {
            **self.values_json(),
            **_texts_json(self.rate, self.rate_text, self.change_pct, self.change_text),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Reading | None:
        if data is None:
            return None
        return cls(
            _undec(data.get("rate")),
            _undec(data.get("change_pct")),
            str(data.get("rate_text") or ""),
            str(data.get("change_text") or ""),
        )


def _opt_time(value: object) -> datetime | None:
    return None if value in (None, "") else datetime.fromisoformat(str(value))


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth telling a human. ``event_id`` is deterministic: the same facts, the same id.

    ``rule`` names the rule whose threshold fired (threshold events), or the rule that asked for a
    reminder or a confirmation (``repeat_interval``, ``for``). ``detail`` is a short human sentence
    (the level crossed, the fetch error), never containing a secret.

    ``since`` is when the condition the event is about began (the first failed check of an outage,
    the first check beyond a threshold's level), so ``duration`` says how long it has lasted.
    ``failed_checks`` counts an outage's failed checks. ``reminder`` is 0 for the first message and
    N for the N-th reminder of a condition still going on. ``test`` marks ``test-sink``'s sample.
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
    since: datetime | None = None
    failed_checks: int | None = None
    reminder: int = 0
    test: bool = False
    event_id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "observed_at", utc(self.observed_at))
        if self.since is not None:
            object.__setattr__(self, "since", utc(self.since))
        if not self.event_id:
            object.__setattr__(self, "event_id", self._compute_id())

    @property
    def duration(self) -> timedelta | None:
        """How long the condition has lasted when this event was raised (None: unknown)."""
        return None if self.since is None else self.observed_at - self.since

    def _compute_id(self) -> str:
        parts = [
            self.kind.value,
            self.target,
            self.pair or "",
            json.dumps(self.old.values_json() if self.old else None, sort_keys=True),
            json.dumps(self.new.values_json() if self.new else None, sort_keys=True),
            self.observed_at.isoformat(),
            self.rule or "",
        ]
        # Appended only when set, so an event without them keeps the id earlier versions gave it.
        if self.reminder:
            parts.append(f"reminder={self.reminder}")
        if self.test:
            parts.append("test")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]

    def to_json(self) -> dict[str, Any]:
        duration = self.duration
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
            "since": self.since.isoformat() if self.since else None,
            # derived from since (ignored when read back); whole seconds, for receivers
            "duration_seconds": None if duration is None else int(duration.total_seconds()),
            "failed_checks": self.failed_checks,
            "reminder": self.reminder,
            "test": self.test,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        """Read an event back; rows written before ``since``/``reminder``/... existed load too."""
        page_date = data.get("page_date")
        failed = data.get("failed_checks")
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
            since=_opt_time(data.get("since")),
            failed_checks=None if failed is None else int(failed),
            reminder=int(data.get("reminder") or 0),
            test=bool(data.get("test", False)),
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
class Alarm:
    """One rule's ongoing condition: a threshold beyond its level, or a source down for a rule that
    confirms (``for``) or reminds (``repeat_interval``) on its own.

    *Pending* (``fired_at`` is None) while the condition has held for less than the rule's ``for``;
    *firing* from then until it clears. ``since`` is the first check at which it held (None in
    states written before it was recorded). ``notified`` is false for a condition absorbed silently
    (a first observation already beyond the level): no reminder and no ``threshold_cleared`` for
    it. ``reminders`` counts the reminders sent (reminder N is due ``N * repeat_interval`` after
    ``fired_at``).
    """

    since: datetime | None
    fired_at: datetime | None = None
    notified: bool = False
    reminders: int = 0

    @property
    def firing(self) -> bool:
        return self.fired_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "fired_at": self.fired_at.isoformat() if self.fired_at else None,
            "notified": self.notified,
            "reminders": self.reminders,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alarm:
        return cls(
            since=_opt_time(data.get("since")),
            fired_at=_opt_time(data.get("fired_at")),
            notified=bool(data.get("notified", False)),
            reminders=int(data.get("reminders", 0)),
        )


@dataclass(frozen=True, slots=True)
class TargetState:
    """Everything the detector remembers about one target between checks.

    ``alarms`` holds the rules' conditions that are pending or firing, keyed ``rule|pair|condition``
    (condition ``above``, ``below``, ``abs_change`` or ``move``; pair ``*`` and condition
    ``source_down`` or ``parse_failed`` for a rule's own outage alarm). A key absent is armed.
    ``last_alerted`` holds, per ``rule|pair``, the rate that ``min_move_pct`` measures from.
    ``last_routed`` holds, per ``rule|pair``, when that rule last routed an event (for ``cooldown``).
    ``failing_since`` / ``parse_failing_since``: the first failed check of the current outage / run
    of pages without a ticker (durations in messages are measured from them);
    ``parse_failed_checks`` counts the checks of that run.
    """

    snapshot: Snapshot | None = None
    consecutive_failures: int = 0
    down: bool = False
    parse_failing: bool = False
    last_success_at: datetime | None = None
    alarms: Mapping[str, Alarm] = field(default_factory=dict)
    last_alerted: Mapping[str, Decimal] = field(default_factory=dict)
    last_routed: Mapping[str, datetime] = field(default_factory=dict)
    #: what the target's reading settings (URL, selector, grammar, pairs) were when the snapshot
    #: was taken; when they change, the next observation is a new baseline
    fingerprint: str = ""
    failing_since: datetime | None = None
    parse_failing_since: datetime | None = None
    #: checks that found no ticker since the page last showed one
    parse_failed_checks: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot": self.snapshot.to_json() if self.snapshot else None,
            "consecutive_failures": self.consecutive_failures,
            "down": self.down,
            "parse_failing": self.parse_failing,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            "alarms": {k: v.to_json() for k, v in sorted(self.alarms.items())},
            "last_alerted": {k: dec_str(v) for k, v in sorted(self.last_alerted.items())},
            "last_routed": {k: v.isoformat() for k, v in sorted(self.last_routed.items())},
            "fingerprint": self.fingerprint,
            "failing_since": self.failing_since.isoformat() if self.failing_since else None,
            "parse_failing_since": (
                self.parse_failing_since.isoformat() if self.parse_failing_since else None
            ),
            "parse_failed_checks": self.parse_failed_checks,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetState:
        """Read a stored state; one written before ``alarms`` existed keeps its bands as fired."""
        snap = data.get("snapshot")
        last = data.get("last_success_at")
        if "alarms" in data:
            alarms = {k: Alarm.from_json(v) for k, v in data["alarms"].items()}
        else:  # the first version's ``inside``: bands that fired (or were absorbed) and stay in
            fired = _opt_time(last) or datetime.fromtimestamp(0, UTC)
            alarms = {k: Alarm(since=None, fired_at=fired) for k in data.get("inside", ())}
        return cls(
            snapshot=Snapshot.from_json(snap) if snap else None,
            consecutive_failures=int(data.get("consecutive_failures", 0)),
            down=bool(data.get("down", False)),
            parse_failing=bool(data.get("parse_failing", False)),
            last_success_at=datetime.fromisoformat(last) if last else None,
            alarms=alarms,
            last_alerted={k: Decimal(v) for k, v in data.get("last_alerted", {}).items()},
            last_routed={
                k: datetime.fromisoformat(v) for k, v in data.get("last_routed", {}).items()
            },
            fingerprint=str(data.get("fingerprint", "")),
            failing_since=_opt_time(data.get("failing_since")),
            parse_failing_since=_opt_time(data.get("parse_failing_since")),
            parse_failed_checks=int(data.get("parse_failed_checks", 0)),
        )


class DeliveryStatus(StrEnum):
    """An outbox row's status. ``silenced``: recorded, never delivered (a silence or a mute window)."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"
    SILENCED = "silenced"


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

    @property
    def line_key(self) -> tuple[str, str, str]:
        """Rows sharing this key make one line of a message: one pair's events of one check.
        An event without a pair (``source_down`` ...) is a line of its own."""
        event = self.event
        return (self.check_id, event.target, event.pair or f"#{self.dedup_key}")


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """An outbox row about to be written, in the same transaction as the state it follows from.

    ``silenced_by`` names what holds it back (a silence's id, or ``mute:RULE``): such a row is
    recorded with status ``silenced`` and never delivered.
    """

    event: Event
    sink: str
    check_id: str
    silenced_by: str | None = None
    #: the rule that sent it (for ``rules test``; not stored)
    rule: str | None = field(default=None, compare=False)

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.event, self.sink)


def new_silence_id() -> str:
    """A fresh, short silence id to type back (``silence expire 3f9a1c2e``)."""
    return secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class Silence:
    """An operator's silence: events of ``target`` (and ``pair``, ``kind`` when set) between
    ``starts_at`` and ``ends_at`` are recorded as silenced instead of delivered.

    A pair silence does not match target-level events (``source_down`` ...): an outage still
    alerts. ``expire`` ends a silence by moving ``ends_at`` to now.
    """

    id: str
    target: str
    pair: str | None
    kind: EventKind | None
    starts_at: datetime
    ends_at: datetime
    comment: str = ""
    created_by: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "starts_at", utc(self.starts_at))
        object.__setattr__(self, "ends_at", utc(self.ends_at))

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, event: Event) -> bool:
        """Does this silence cover ``event`` (ignoring time)?"""
        if event.target != self.target:
            return False
        if self.pair is not None and event.pair != self.pair:
            return False
        return self.kind is None or event.kind is self.kind


def by_check(batch: Sequence[Delivery]) -> list[list[Delivery]]:
    """``batch`` cut into runs of consecutive deliveries of one check (a digest's unit)."""
    runs: list[list[Delivery]] = []
    for delivery in batch:
        if runs and runs[-1][-1].check_id == delivery.check_id:
            runs[-1].append(delivery)
        else:
            runs.append([delivery])
    return runs
