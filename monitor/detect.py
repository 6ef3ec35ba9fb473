"""Detection: from what one check saw to the events worth telling a human.

Everything here is pure: no I/O, no clock (``now`` is passed in, aware UTC), no logging. Rates and
percentages are compared as ``Decimal`` values, never floats, so ``0.0100`` equals ``0.01`` and
``-0%`` equals ``0%``. Snapshots carry finite decimals (the parser reads digits only).

``detect(previous, current, now)``
    Compares two snapshots. The first observation (``previous is None``) is a baseline: no
    events. Per pair present in both: ``rate_changed`` when the rate differs,
    ``change_pct_changed`` when the page's percentage differs (``None`` to a value, or back, is a
    change). A pair only in ``current`` is ``pair_added``; only in ``previous``,
    ``pair_removed``. Order: ``current``'s quote order (rate before percentage within a pair),
    then removed pairs in ``previous``'s order. A repeated pair is read first-wins, like the parser.

``step(state, outcome, now, target=..., policy=...)``
    The per-target state machine, one call per check. ``n`` is ``consecutive_failures``, ``N`` is
    ``Policy.down_after``, ``T`` is ``Policy.down_after_seconds``:

    ===============  ==========================================  ==============================
    outcome          events, in this order                       new state
    ===============  ==========================================  ==============================
    ``Observed(s)``  ``source_recovered`` if down;               snapshot = s, n = 0,
                     ``parse_recovered`` if parse_failing;       down = parse_failing = False,
                     ``detect(state.snapshot, s)``;              last_success_at = now,
                     threshold events                            inside, last_alerted rebuilt
    ``FetchFailed``  ``source_down`` (detail = reason), once,    n + 1; down = True once fired;
                     when not down and (n + 1 >= N or no         everything else kept
                     ``Observed`` for T seconds)
    ``ParseFailed``  ``source_recovered`` if down;               n = 0, down = False,
                     ``parse_failed`` (detail = reason) unless   parse_failing = True;
                     already parse_failing                       snapshot, thresholds kept
    ===============  ==========================================  ==============================

    A 304 Not Modified is ``Observed(previous snapshot)``: nothing changed, nothing fires. Because
    failures keep the last good snapshot, a change made while the source was down or unparsable is
    alerted exactly once, against that snapshot, at the first good check after. A parse failure
    counts as an answer from the source (it resets ``n`` and ends an outage) but not as a success
    for ``T``: ``last_success_at`` is the time of the last good observation. With ``T`` set but no
    success ever recorded, only the count ``N`` applies.

Threshold semantics (the question users of other tools keep asking, answered here):

- ``min_abs_change_pct``, ``above`` and ``below`` look at the *current check only*: the page's own
  change percentage (``abs(change_pct) >= X``), the rate strictly above or strictly below a level.
  Each (rule, pair, condition) fires once on *entering* its band and re-arms on *leaving* it
  (``abs(change_pct) < X``, ``rate <= above``, ``rate >= below``); staying inside is silent.
  The band state is ``TargetState.inside``, keys ``rule|pair|condition`` with condition one of
  ``abs_change``, ``above``, ``below``.
- ``min_move_pct`` compares with the *last alerted rate*, not with the previous check: it fires when
  ``abs(rate - ref) / abs(ref) * 100 >= X`` and then moves ``ref`` to the current rate. Otherwise
  ``ref`` stays, so a slow drift of many small steps accumulates and alerts once it adds up to X.
  ``ref`` lives in ``TargetState.last_alerted`` under ``rule|pair``; the first observation of the
  pair sets it silently (a move needs a starting point), and so does a reference of zero.
- First observation of a pair (no previous snapshot, or the pair was not in it): a condition already
  inside its band fires only with ``on_first_observation``; otherwise it is recorded as inside
  silently and stays silent until it leaves and re-enters.
- Several conditions of one rule firing for one pair in one check make *one* ``threshold`` event
  whose detail joins theirs with ``"; "`` (one alert per rule, pair and check, one event id).
- The band and reference state of a pair is dropped when the pair leaves the page (or its rule is
  no longer configured), so it stays bounded; the pair's return is a first observation again.

``implausible_pairs`` names pairs whose rate jumped more than ``max_jump_pct`` in one check; the
daemon re-fetches to confirm those before it alerts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, assert_never

from monitor.models import Event, EventKind, Quote, Reading, Snapshot, TargetState, utc

if TYPE_CHECKING:
    from monitor.settings import RuleConfig

__all__ = [
    "FetchFailed",
    "Observed",
    "Outcome",
    "ParseFailed",
    "Policy",
    "Threshold",
    "detect",
    "implausible_pairs",
    "step",
    "thresholds_from_rules",
]

ABS_CHANGE = "abs_change"
ABOVE = "above"
BELOW = "below"


# --- snapshots -------------------------------------------------------------------------------


def _index(snapshot: Snapshot | None) -> dict[str, Quote]:
    """The snapshot's quotes by pair, in page order; a repeated pair keeps its first quote."""
    out: dict[str, Quote] = {}
    if snapshot is not None:
        for quote in snapshot.quotes:
            out.setdefault(quote.pair, quote)
    return out


def _differ(old: Decimal | None, new: Decimal | None) -> bool:
    """Numeric difference: ``0.0100`` and ``0.01`` are the same, so are ``0`` and ``-0``."""
    if old is None or new is None:
        return old is not new
    return old != new


def _fmt(value: Decimal) -> str:
    """A decimal as a person writes it: never in exponent notation (``0.00008``, not ``8E-5``)."""
    return format(value, "f")


def detect(
    previous: Snapshot | None,
    current: Snapshot,
    now: datetime,
    *,
    target: str = "",
    source_url: str = "",
) -> list[Event]:
    """The change events between two snapshots of one target; ``[]`` for the first observation."""
    if previous is None:
        return []
    now = utc(now)
    before = _index(previous)
    after = _index(current)

    def event(kind: EventKind, pair: str, old: Quote | None, new: Quote | None) -> Event:
        return Event(
            kind=kind,
            target=target,
            pair=pair,
            old=Reading.of(old),
            new=Reading.of(new),
            observed_at=now,
            page_date=current.page_date,
            source_url=source_url,
        )

    events: list[Event] = []
    for pair, quote in after.items():
        old = before.get(pair)
        if old is None:
            events.append(event(EventKind.PAIR_ADDED, pair, None, quote))
            continue
        if _differ(old.rate, quote.rate):
            events.append(event(EventKind.RATE_CHANGED, pair, old, quote))
        if _differ(old.change_pct, quote.change_pct):
            events.append(event(EventKind.CHANGE_PCT_CHANGED, pair, old, quote))
    for pair, old in before.items():
        if pair not in after:
            events.append(event(EventKind.PAIR_REMOVED, pair, old, None))
    return events


def implausible_pairs(
    previous: Snapshot | None, current: Snapshot, max_jump_pct: Decimal | None
) -> tuple[str, ...]:
    """Pairs whose rate moved more than ``max_jump_pct`` percent of the previous rate in one check.

    A previous rate of zero makes any non-zero rate implausible. ``None`` (no limit) or no
    previous snapshot gives ``()``. Order: ``current``'s quote order.
    """
    if previous is None or max_jump_pct is None:
        return ()
    before = _index(previous)
    out: list[str] = []
    for pair, quote in _index(current).items():
        old = before.get(pair)
        if old is None:
            continue
        if old.rate == 0:
            jumped = quote.rate != 0
        else:
            jumped = abs(quote.rate - old.rate) * 100 > max_jump_pct * abs(old.rate)
        if jumped:
            out.append(pair)
    return tuple(out)


# --- thresholds and policy -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    """One rule's threshold, built from a ``RuleConfig``; the module docstring has its semantics."""

    rule: str
    #: target names this threshold watches; empty means every target
    targets: frozenset[str] = frozenset()
    #: pairs this threshold watches; empty means every pair
    pairs: frozenset[str] = frozenset()
    min_abs_change_pct: Decimal | None = None
    above: Decimal | None = None
    below: Decimal | None = None
    min_move_pct: Decimal | None = None
    on_first_observation: bool = False

    def watches(self, target: str, pair: str) -> bool:
        return (not self.targets or target in self.targets) and (
            not self.pairs or pair in self.pairs
        )


@dataclass(frozen=True, slots=True)
class Policy:
    """How ``step`` judges one target: when a source counts as down, and which thresholds apply."""

    #: consecutive failed checks before ``source_down``
    down_after: int = 3
    #: or: no good observation for this many seconds (and at least one failed check)
    down_after_seconds: float | None = None
    thresholds: tuple[Threshold, ...] = ()

    def __post_init__(self) -> None:
        if self.down_after < 1:
            raise ValueError("down_after must be at least 1")
        if self.down_after_seconds is not None and self.down_after_seconds < 0:
            raise ValueError("down_after_seconds cannot be negative")


def thresholds_from_rules(
    rules: Sequence[RuleConfig], names: Sequence[str]
) -> tuple[Threshold, ...]:
    """One ``Threshold`` per rule that defines one; ``names[i]`` is rule ``i``'s name."""
    if len(rules) != len(names):
        raise ValueError(f"{len(rules)} rules but {len(names)} names")
    return tuple(
        Threshold(
            rule=name,
            targets=frozenset(rule.targets),
            pairs=frozenset(rule.pairs),
            min_abs_change_pct=rule.min_abs_change_pct,
            above=rule.above,
            below=rule.below,
            min_move_pct=rule.min_move_pct,
            on_first_observation=rule.on_first_observation,
        )
        for rule, name in zip(rules, names, strict=True)
        if rule.has_threshold
    )


def _bands(threshold: Threshold, quote: Quote) -> Iterator[tuple[str, bool, str]]:
    """``(condition, inside now, detail)`` for each band condition the threshold defines."""
    pair, rate, pct = quote.pair, quote.rate, quote.change_pct
    if (level := threshold.min_abs_change_pct) is not None:
        if pct is None:
            yield ABS_CHANGE, False, ""  # no percentage on the page: outside the band
        else:
            detail = f"{pair} change {_fmt(pct)}% reached ±{_fmt(level)}%"
            yield ABS_CHANGE, abs(pct) >= level, detail
    if (level := threshold.above) is not None:
        yield ABOVE, rate > level, f"{pair} rate {_fmt(rate)} above {_fmt(level)}"
    if (level := threshold.below) is not None:
        yield BELOW, rate < level, f"{pair} rate {_fmt(rate)} below {_fmt(level)}"


@dataclass(frozen=True, slots=True)
class _ThresholdResult:
    events: list[Event]
    inside: frozenset[str]
    last_alerted: dict[str, Decimal]


def _evaluate_thresholds(
    state: TargetState,
    current: Snapshot,
    now: datetime,
    *,
    target: str,
    source_url: str,
    thresholds: Sequence[Threshold],
) -> _ThresholdResult:
    before = _index(state.snapshot)
    after = _index(current)
    events: list[Event] = []
    inside: set[str] = set()
    last_alerted: dict[str, Decimal] = {}
    for threshold in thresholds:
        for pair, quote in after.items():
            if not threshold.watches(target, pair):
                continue
            old = before.get(pair)
            may_fire = old is not None or threshold.on_first_observation
            details: list[str] = []
            for condition, inside_now, detail in _bands(threshold, quote):
                key = f"{threshold.rule}|{pair}|{condition}"
                if not inside_now:
                    continue  # leaving (or staying out): the key is not carried over, re-armed
                inside.add(key)
                if key not in state.inside and may_fire:
                    details.append(detail)
            if threshold.min_move_pct is not None:
                key = f"{threshold.rule}|{pair}"
                ref = state.last_alerted.get(key)
                if ref is None or ref == 0:
                    ref = quote.rate  # a move needs a (non-zero) starting point: set it silently
                elif abs(quote.rate - ref) * 100 >= threshold.min_move_pct * abs(ref):
                    moved = (quote.rate - ref) / abs(ref) * 100
                    details.append(f"{pair} moved {moved:+.2f}% since last alert at {_fmt(ref)}")
                    ref = quote.rate
                last_alerted[key] = ref
            if details:
                events.append(
                    Event(
                        kind=EventKind.THRESHOLD,
                        target=target,
                        pair=pair,
                        old=Reading.of(old),
                        new=Reading.of(quote),
                        observed_at=now,
                        page_date=current.page_date,
                        source_url=source_url,
                        rule=threshold.rule,
                        detail="; ".join(details),
                    )
                )
    return _ThresholdResult(events, frozenset(inside), last_alerted)


# --- the state machine -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Observed:
    """The page was fetched and parsed (a 304 is ``Observed(previous snapshot)``)."""

    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class FetchFailed:
    """The page could not be fetched; ``reason`` is a safe, human sentence."""

    reason: str


@dataclass(frozen=True, slots=True)
class ParseFailed:
    """The page was fetched but held no ticker; ``reason`` is a safe, human sentence."""

    reason: str


Outcome = Observed | FetchFailed | ParseFailed

_DEFAULT_POLICY = Policy()


def _status_event(
    kind: EventKind,
    now: datetime,
    *,
    target: str,
    source_url: str,
    detail: str = "",
    snapshot: Snapshot | None = None,
) -> Event:
    return Event(
        kind=kind,
        target=target,
        pair=None,
        old=None,
        new=None,
        observed_at=now,
        page_date=snapshot.page_date if snapshot is not None else None,
        source_url=source_url,
        detail=detail,
    )


def _recovered_detail(state: TargetState) -> str:
    n = state.consecutive_failures
    return f"answered again after {n} failed check{'s' if n != 1 else ''}"


def step(
    state: TargetState,
    outcome: Outcome,
    now: datetime,
    *,
    target: str,
    source_url: str = "",
    policy: Policy = _DEFAULT_POLICY,
) -> tuple[TargetState, list[Event]]:
    """Advance one target's state by one check's outcome; return the new state and its events.

    The table in the module docstring is the specification. ``state`` is never mutated.
    """
    now = utc(now)
    events: list[Event] = []
    if isinstance(outcome, Observed):
        snapshot = outcome.snapshot
        if state.down:
            events.append(
                _status_event(
                    EventKind.SOURCE_RECOVERED,
                    now,
                    target=target,
                    source_url=source_url,
                    detail=_recovered_detail(state),
                    snapshot=snapshot,
                )
            )
        if state.parse_failing:
            events.append(
                _status_event(
                    EventKind.PARSE_RECOVERED,
                    now,
                    target=target,
                    source_url=source_url,
                    detail="ticker found again",
                    snapshot=snapshot,
                )
            )
        events += detect(state.snapshot, snapshot, now, target=target, source_url=source_url)
        result = _evaluate_thresholds(
            state,
            snapshot,
            now,
            target=target,
            source_url=source_url,
            thresholds=policy.thresholds,
        )
        events += result.events
        return replace(
            state,
            snapshot=snapshot,
            consecutive_failures=0,
            down=False,
            parse_failing=False,
            last_success_at=now,
            inside=result.inside,
            last_alerted=result.last_alerted,
        ), events

    if isinstance(outcome, FetchFailed):
        failures = state.consecutive_failures + 1
        down = state.down
        if not down and (failures >= policy.down_after or _silent_too_long(state, now, policy)):
            down = True
            events.append(
                _status_event(
                    EventKind.SOURCE_DOWN,
                    now,
                    target=target,
                    source_url=source_url,
                    detail=outcome.reason,
                )
            )
        return replace(state, consecutive_failures=failures, down=down), events

    if isinstance(outcome, ParseFailed):
        if state.down:
            events.append(
                _status_event(
                    EventKind.SOURCE_RECOVERED,
                    now,
                    target=target,
                    source_url=source_url,
                    detail=_recovered_detail(state),
                )
            )
        if not state.parse_failing:
            events.append(
                _status_event(
                    EventKind.PARSE_FAILED,
                    now,
                    target=target,
                    source_url=source_url,
                    detail=outcome.reason,
                )
            )
        return replace(state, consecutive_failures=0, down=False, parse_failing=True), events

    assert_never(outcome)


def _silent_too_long(state: TargetState, now: datetime, policy: Policy) -> bool:
    if policy.down_after_seconds is None or state.last_success_at is None:
        return False
    return (now - state.last_success_at).total_seconds() >= policy.down_after_seconds
