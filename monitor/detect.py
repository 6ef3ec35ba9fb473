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
    ``Policy.down_after``, ``T`` is ``Policy.down_after_seconds`` (the target's ``down_for``):

    ===============  ==========================================  ==============================
    outcome          events, in this order                       new state
    ===============  ==========================================  ==============================
    ``Observed(s)``  ``source_recovered`` if down;               snapshot = s, n = 0,
                     ``parse_recovered`` if parse_failing;       down = parse_failing = False,
                     the rules' own outage events;               last_success_at = now,
                     ``detect(state.snapshot, s)``;              alarms, last_alerted rebuilt
                     threshold events
    ``FetchFailed``  ``source_down`` (detail = reason), once,    n + 1; down = True once fired;
                     when not down and (n + 1 >= N or no         failing_since = now at n = 0;
                     ``Observed`` for T seconds); the rules'     everything else kept
                     own outage events
    ``ParseFailed``  ``source_recovered`` if down;               n = 0, down = False,
                     ``parse_failed`` (detail = reason) unless   parse_failing = True;
                     already parse_failing; the rules' own       snapshot, thresholds kept
                     outage events
    ===============  ==========================================  ==============================

    A 304 Not Modified is ``Observed(previous snapshot)``: nothing changed, nothing fires. Because
    failures keep the last good snapshot, a change made while the source was down or unparsable is
    alerted exactly once, against that snapshot, at the first good check after. A parse failure
    counts as an answer from the source (it resets ``n`` and ends an outage) but not as a success
    for ``T``: ``last_success_at`` is the time of the last good observation. With ``T`` set but no
    success ever recorded, only the count ``N`` applies.

    ``source_down`` and ``source_recovered`` carry ``since`` (the outage's first failed check) and
    ``failed_checks``; ``parse_recovered`` carries ``since`` (the first page without a ticker) and
    ``failed_checks`` (the checks that found none, ``parse_failed_checks``).

Threshold semantics (the question users of other tools keep asking, answered here):

- ``min_abs_change_pct``, ``above`` and ``below`` look at the *current check only*: the page's own
  change percentage (``abs(change_pct) >= X``), the rate strictly above or strictly below a level.
  Each (rule, pair, condition) is an *alarm* (``TargetState.alarms``, keys ``rule|pair|condition``
  with condition ``abs_change``, ``above`` or ``below``): armed, then *pending* from the first
  check beyond the level, *firing* once it has been beyond on every check for the rule's ``for``
  (at once without ``for``; back inside first cancels it silently), and armed again when the value
  is back past ``clear_at``: ``rate <= clear_at`` for ``above``, ``rate >= clear_at`` for
  ``below``, ``abs(change_pct) < clear_at`` for ``min_abs_change_pct``. Without ``clear_at`` it
  is the level itself (re-arm on leaving the band). Firing sends one ``threshold`` event; staying
  in is silent, but for a reminder every ``repeat_interval`` after it fired (a ``threshold``
  event with ``reminder`` N, checked on observed checks only); re-arming sends
  ``threshold_cleared`` when the rule has ``send_resolved``.
- ``min_move_pct`` compares with the *last alerted rate*, not with the previous check: it fires when
  ``abs(rate - ref) / abs(ref) * 100 >= X`` (held for ``for``, key ``rule|pair|move`` while
  pending) and then moves ``ref`` to the current rate. Otherwise ``ref`` stays, so a slow drift of
  many small steps accumulates and alerts once it adds up to X. ``ref`` lives in
  ``TargetState.last_alerted`` under ``rule|pair``; the first observation of the pair sets it
  silently (a move needs a starting point), and so does a reference of zero.
- First observation of a pair (no previous snapshot, or the pair was not in it): a condition already
  beyond its level fires only with ``on_first_observation``; otherwise it is absorbed as firing
  silently (no reminder, no ``threshold_cleared``) and stays silent until it clears and re-enters.
- Several conditions of one rule firing for one pair in one check make *one* ``threshold`` event
  whose detail joins theirs with ``"; "`` (one alert per rule, pair and check, one event id); the
  same for reminders and for ``threshold_cleared``.
- The alarm and reference state of a pair is dropped when the pair leaves the page (or its rule is
  no longer configured), so it stays bounded; the pair's return is a first observation again.

Outage rules (``OutageRule``: a rule routing ``source_down`` or ``parse_failed`` with ``for`` or
``repeat_interval``) get an alarm of their own, key ``rule|*|source_down`` / ``rule|*|parse_failed``,
for the condition "the target is down" (timed from ``failing_since``) or "the page has no ticker"
(from ``parse_failing_since``):

- With ``for``, the rule's own ``source_down`` (``rule`` set) fires at the first failed check at
  which the target is down and has been failing for ``for``; its own ``source_recovered`` follows
  when the outage ends, only if it fired. A flap shorter than ``for`` sends the rule nothing.
- With ``repeat_interval``, reminder N (the same kind, ``rule`` and ``reminder`` set) comes at the
  first check at least N intervals after the alarm fired, until the condition ends.

``implausible_pairs`` names pairs whose rate jumped more than ``max_jump_pct`` in one check; the
daemon re-fetches to confirm those before it alerts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, assert_never

from monitor.models import Alarm, Event, EventKind, Quote, Reading, Snapshot, TargetState, utc

if TYPE_CHECKING:
    from monitor.settings import RuleConfig, TargetConfig

__all__ = [
    "FetchFailed",
    "Observed",
    "OutageRule",
    "Outcome",
    "ParseFailed",
    "Policy",
    "Threshold",
    "detect",
    "implausible_pairs",
    "outage_rules_from_rules",
    "policy_for",
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
        return _pair_event(
            kind, pair, old, new, now=now, current=current, target=target, source_url=source_url
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


def _pair_event(
    kind: EventKind,
    pair: str,
    old: Quote | None,
    new: Quote | None,
    *,
    now: datetime,
    current: Snapshot,
    target: str,
    source_url: str,
    **facts: object,
) -> Event:
    """An event about one pair of the current snapshot (``facts``: rule, detail, since, ...)."""
    return Event(
        kind=kind,
        target=target,
        pair=pair,
        old=Reading.of(old),
        new=Reading.of(new),
        observed_at=now,
        page_date=current.page_date,
        source_url=source_url,
        **facts,  # type: ignore[arg-type]  # the optional Event fields, by name
    )


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
    #: where a band re-arms (its own level when None; used only when the rule has one band)
    clear_at: Decimal | None = None
    #: seconds the condition must hold on every check before it fires (``for``)
    hold: float = 0.0
    #: seconds between reminders of a band still firing; 0: none
    repeat: float = 0.0
    #: send ``threshold_cleared`` when a fired band re-arms
    send_resolved: bool = False

    def watches(self, target: str, pair: str) -> bool:
        return (not self.targets or target in self.targets) and (
            not self.pairs or pair in self.pairs
        )

    def clear_level(self, level: Decimal) -> Decimal:
        bands = [v for v in (self.min_abs_change_pct, self.above, self.below) if v is not None]
        return self.clear_at if self.clear_at is not None and len(bands) == 1 else level


@dataclass(frozen=True, slots=True)
class OutageRule:
    """A rule that confirms (``for``) or reminds of (``repeat_interval``) an outage on its own."""

    rule: str
    #: ``source_down`` and/or ``parse_failed``: the outage kinds the rule routes
    kinds: frozenset[EventKind]
    targets: frozenset[str] = frozenset()
    hold: float = 0.0
    repeat: float = 0.0

    def watches(self, target: str) -> bool:
        return not self.targets or target in self.targets


@dataclass(frozen=True, slots=True)
class Policy:
    """How ``step`` judges one target: when a source counts as down, and which rules watch it."""

    #: consecutive failed checks before ``source_down``
    down_after: int = 3
    #: or: no good observation for this many seconds (and at least one failed check)
    down_after_seconds: float | None = None
    thresholds: tuple[Threshold, ...] = ()
    outage_rules: tuple[OutageRule, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.down_after < 1:
            raise ValueError("down_after must be at least 1")
        if self.down_after_seconds is not None and self.down_after_seconds < 0:
            raise ValueError("down_after_seconds cannot be negative")


def _named(rules: Sequence[RuleConfig], names: Sequence[str]) -> Iterator[tuple[RuleConfig, str]]:
    if len(rules) != len(names):
        raise ValueError(f"{len(rules)} rules but {len(names)} names")
    return zip(rules, names, strict=True)


def thresholds_from_rules(
    rules: Sequence[RuleConfig], names: Sequence[str]
) -> tuple[Threshold, ...]:
    """One ``Threshold`` per rule that defines one; ``names[i]`` is rule ``i``'s name."""
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
            clear_at=rule.clear_at,
            hold=rule.hold,
            repeat=rule.repeat_interval,
            send_resolved=rule.send_resolved,
        )
        for rule, name in _named(rules, names)
        if rule.has_threshold
    )


def outage_rules_from_rules(
    rules: Sequence[RuleConfig], names: Sequence[str]
) -> tuple[OutageRule, ...]:
    """One ``OutageRule`` per rule routing an outage kind with ``for`` or ``repeat_interval``."""
    return tuple(
        OutageRule(
            rule=name,
            kinds=rule.conditions,
            targets=frozenset(rule.targets),
            hold=rule.hold,
            repeat=rule.repeat_interval,
        )
        for rule, name in _named(rules, names)
        if rule.conditions and (rule.hold > 0 or rule.repeat_interval > 0)
    )


def policy_for(target: TargetConfig, rules: Sequence[RuleConfig], names: Sequence[str]) -> Policy:
    """The ``Policy`` of one configured target under the configured rules."""
    return Policy(
        down_after=target.down_after,
        down_after_seconds=target.down_for,
        thresholds=tuple(
            t
            for t in thresholds_from_rules(rules, names)
            if not t.targets or target.name in t.targets
        ),
        outage_rules=tuple(
            o for o in outage_rules_from_rules(rules, names) if o.watches(target.name)
        ),
    )


# --- alarms ----------------------------------------------------------------------------------

_FIRE, _CLEAR = "fire", "clear"


def _elapsed(since: datetime, now: datetime) -> float:
    return (now - since).total_seconds()


def _advance(
    alarm: Alarm | None,
    *,
    beyond: bool,
    cleared: bool,
    now: datetime,
    hold: float,
    absorb: bool = False,
) -> tuple[Alarm | None, str]:
    """One check of one alarm: its next state (None: armed) and ``_FIRE``, ``_CLEAR`` or ``""``.

    ``beyond``: the firing condition holds now; ``cleared``: the value is back past the re-arm
    level. ``absorb``: a first observation, already beyond, fires silently.
    """
    if alarm is not None and alarm.firing:
        return (None, _CLEAR) if cleared else (alarm, "")
    if not beyond:
        return None, ""  # armed, or a pending alarm cancelled: the condition did not hold
    since = alarm.since if alarm is not None and alarm.since is not None else now
    if absorb and alarm is None:
        return Alarm(since=now, fired_at=now), ""
    if _elapsed(since, now) >= hold:
        return Alarm(since=since, fired_at=now, notified=True), _FIRE
    return Alarm(since=since), ""


def _remind(alarm: Alarm, now: datetime, repeat: float) -> Alarm | None:
    """The alarm with one more reminder if one is due now (reminder N is due N * repeat after it
    fired; a long gap between checks skips to the latest), else None."""
    if repeat <= 0 or not alarm.notified or alarm.fired_at is None:
        return None
    due = int(_elapsed(alarm.fired_at, now) // repeat)
    return replace(alarm, reminders=due) if due > alarm.reminders else None


def _bands(threshold: Threshold, quote: Quote) -> Iterator[tuple[str, bool, bool, str, str, str]]:
    """Per band condition the threshold defines: ``(condition, beyond, cleared, fire detail,
    still-in-band detail, cleared detail)``. The details name the rule's levels only: the page's
    own numbers reach a message through its readings (``monitor.render.number``)."""
    rate, pct = quote.rate, quote.change_pct
    if (level := threshold.min_abs_change_pct) is not None:
        clear = threshold.clear_level(level)
        beyond = pct is not None and abs(pct) >= level
        cleared = pct is None or abs(pct) < clear  # no percentage on the page: outside
        yield (
            ABS_CHANGE,
            beyond,
            cleared and not beyond,
            f"change reached ±{_fmt(level)}%",
            f"change not yet back within ±{_fmt(clear)}%",
            f"change back within ±{_fmt(clear)}%",
        )
    if (level := threshold.above) is not None:
        clear = threshold.clear_level(level)
        yield (
            ABOVE,
            rate > level,
            rate <= clear and not rate > level,
            f"rate above {_fmt(level)}",
            f"rate not yet back at or below {_fmt(clear)}",
            f"rate back at or below {_fmt(clear)}",
        )
    if (level := threshold.below) is not None:
        clear = threshold.clear_level(level)
        yield (
            BELOW,
            rate < level,
            rate >= clear and not rate < level,
            f"rate below {_fmt(level)}",
            f"rate not yet back at or above {_fmt(clear)}",
            f"rate back at or above {_fmt(clear)}",
        )


@dataclass(slots=True)
class _Found:
    """What one threshold found for one pair in one check: details and since, per event to make."""

    fired: list[str] = field(default_factory=list)
    fired_since: list[datetime] = field(default_factory=list)
    reminded: list[str] = field(default_factory=list)
    reminded_since: list[datetime] = field(default_factory=list)
    reminder: int = 0
    cleared: list[str] = field(default_factory=list)
    cleared_since: list[datetime] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _ThresholdResult:
    events: list[Event]
    alarms: dict[str, Alarm]
    last_alerted: dict[str, Decimal]


def _threshold_pair(
    threshold: Threshold,
    *,
    quote: Quote,
    old: Quote | None,
    state: TargetState,
    now: datetime,
    alarms: dict[str, Alarm],
    last_alerted: dict[str, Decimal],
) -> _Found:
    """Evaluate one threshold on one pair; write its alarms and reference into the dicts."""
    pair = quote.pair
    found = _Found()
    absorb = old is None and not threshold.on_first_observation
    for condition, beyond, cleared, detail, holding, cleared_detail in _bands(threshold, quote):
        key = f"{threshold.rule}|{pair}|{condition}"
        prev = state.alarms.get(key)
        alarm, what = _advance(
            prev, beyond=beyond, cleared=cleared, now=now, hold=threshold.hold, absorb=absorb
        )
        if what == _FIRE and alarm is not None:
            found.fired.append(detail)
            found.fired_since.append(alarm.since or now)
        elif what == _CLEAR and prev is not None and prev.notified and threshold.send_resolved:
            found.cleared.append(cleared_detail)
            found.cleared_since.append(prev.since or prev.fired_at or now)
        elif alarm is not None and alarm.firing and (nxt := _remind(alarm, now, threshold.repeat)):
            alarm = nxt
            found.reminded.append(detail if beyond else holding)
            found.reminded_since.append(alarm.since or alarm.fired_at or now)
            found.reminder = max(found.reminder, nxt.reminders)
        if alarm is not None:
            alarms[key] = alarm
    if threshold.min_move_pct is not None:
        key = f"{threshold.rule}|{pair}"
        pending_key = f"{key}|move"
        ref = state.last_alerted.get(key)
        if ref is None or ref == 0:
            ref = quote.rate  # a move needs a (non-zero) starting point: set it silently
        elif abs(quote.rate - ref) * 100 >= threshold.min_move_pct * abs(ref):
            prev = state.alarms.get(pending_key)
            since = prev.since if prev is not None and prev.since is not None else now
            if _elapsed(since, now) >= threshold.hold:
                moved = (quote.rate - ref) / abs(ref) * 100
                found.fired.append(f"moved {moved:+.2f}% since last alert at {_fmt(ref)}")
                found.fired_since.append(since)
                ref = quote.rate
            else:
                alarms[pending_key] = Alarm(since=since)
        last_alerted[key] = ref
    return found


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
    alarms: dict[str, Alarm] = {}
    last_alerted: dict[str, Decimal] = {}
    for threshold in thresholds:
        for pair, quote in after.items():
            if not threshold.watches(target, pair):
                continue
            old = before.get(pair)
            found = _threshold_pair(
                threshold,
                quote=quote,
                old=old,
                state=state,
                now=now,
                alarms=alarms,
                last_alerted=last_alerted,
            )
            made = (
                (EventKind.THRESHOLD, found.fired, found.fired_since, 0),
                (EventKind.THRESHOLD, found.reminded, found.reminded_since, found.reminder),
                (EventKind.THRESHOLD_CLEARED, found.cleared, found.cleared_since, 0),
            )
            events += [
                _pair_event(
                    kind,
                    pair,
                    old,
                    quote,
                    now=now,
                    current=current,
                    target=target,
                    source_url=source_url,
                    rule=threshold.rule,
                    detail="; ".join(details),
                    since=min(since),
                    reminder=reminder,
                )
                for kind, details, since, reminder in made
                if details
            ]
    return _ThresholdResult(events, alarms, last_alerted)


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

#: what ends each outage kind, and which outcome keeps it going
_RECOVERY = {
    EventKind.SOURCE_DOWN: EventKind.SOURCE_RECOVERED,
    EventKind.PARSE_FAILED: EventKind.PARSE_RECOVERED,
}


def _status_event(
    kind: EventKind,
    now: datetime,
    *,
    target: str,
    source_url: str,
    detail: str = "",
    snapshot: Snapshot | None = None,
    since: datetime | None = None,
    failed_checks: int | None = None,
    rule: str | None = None,
    reminder: int = 0,
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
        rule=rule,
        detail=detail,
        since=since,
        failed_checks=failed_checks,
        reminder=reminder,
    )


def _recovered_detail(state: TargetState) -> str:
    n = state.consecutive_failures
    return f"answered again after {n} failed check{'s' if n != 1 else ''}"


def _is_outage_key(key: str) -> bool:
    return key.endswith(("|*|source_down", "|*|parse_failed"))


@dataclass(frozen=True, slots=True)
class _Check:
    """One check's facts that the outage rules read."""

    before: TargetState
    after: TargetState
    outcome: Outcome
    now: datetime
    target: str
    source_url: str
    snapshot: Snapshot | None

    def event(self, kind: EventKind, orule: OutageRule, **facts: object) -> Event:
        return Event(
            kind=kind,
            target=self.target,
            pair=None,
            old=None,
            new=None,
            observed_at=self.now,
            page_date=self.snapshot.page_date if self.snapshot is not None else None,
            source_url=self.source_url,
            rule=orule.rule,
            **facts,  # type: ignore[arg-type]  # detail, since, failed_checks, reminder
        )


def _outage_alarm(
    check: _Check, orule: OutageRule, kind: EventKind
) -> tuple[Alarm | None, Event | None]:
    """One outage rule's alarm for one kind after a check, and the event it raises, if any."""
    prev = check.before.alarms.get(f"{orule.rule}|*|{kind.value}")
    after, outcome, now = check.after, check.outcome, check.now
    if kind is EventKind.SOURCE_DOWN:
        holds, since, live = after.down, after.failing_since, isinstance(outcome, FetchFailed)
        failed: int | None = after.consecutive_failures
    else:
        holds, since = after.parse_failing, after.parse_failing_since
        live, failed = isinstance(outcome, ParseFailed), after.parse_failed_checks
    if not holds:
        return None, _outage_over(check, orule, kind, prev)
    if not live:  # e.g. a fetch failure while the page had no ticker: no news of it
        return prev, None
    reason = outcome.reason if isinstance(outcome, FetchFailed | ParseFailed) else ""
    facts: dict[str, object] = {"detail": reason, "failed_checks": failed}
    if prev is not None and prev.firing:  # still going on: a reminder when one is due
        nxt = _remind(prev, now, orule.repeat)
        if nxt is not None:
            facts |= {"since": prev.since, "reminder": nxt.reminders}
        return nxt or prev, None if nxt is None else check.event(kind, orule, **facts)
    start = since or now
    if orule.hold > 0 and _elapsed(start, now) < orule.hold:
        return Alarm(since=start), None  # pending: the outage has not lasted `for` yet
    # Without `for`, the target's own event announced it and this alarm only times reminders.
    event = check.event(kind, orule, since=start, **facts) if orule.hold > 0 else None
    return Alarm(since=start, fired_at=now, notified=True), event


def _outage_over(
    check: _Check, orule: OutageRule, kind: EventKind, prev: Alarm | None
) -> Event | None:
    """The rule's own recovery when an outage it announced (after its ``for``) is over."""
    if prev is None or not (prev.firing and prev.notified and orule.hold > 0):
        return None
    if kind is EventKind.SOURCE_DOWN:
        n = check.before.consecutive_failures
        facts: dict[str, object] = {"detail": _recovered_detail(check.before), "failed_checks": n}
    else:
        n = check.before.parse_failed_checks
        facts = {"detail": "ticker found again", "failed_checks": n or None}
    return check.event(_RECOVERY[kind], orule, since=prev.since, **facts)


def _outage_alarms(
    check: _Check, rules: Sequence[OutageRule]
) -> tuple[list[Event], dict[str, Alarm]]:
    """The outage rules' own events and alarms after one check (see the module docstring)."""
    events: list[Event] = []
    alarms: dict[str, Alarm] = {}
    for orule in rules:
        if not orule.watches(check.target):
            continue
        for kind in (EventKind.SOURCE_DOWN, EventKind.PARSE_FAILED):
            if kind not in orule.kinds:
                continue
            alarm, event = _outage_alarm(check, orule, kind)
            if alarm is not None:
                alarms[f"{orule.rule}|*|{kind.value}"] = alarm
            if event is not None:
                events.append(event)
    return events, alarms


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
    kept = {k: v for k, v in state.alarms.items() if not _is_outage_key(k)}
    snapshot: Snapshot | None = None
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
                    since=state.failing_since,
                    failed_checks=state.consecutive_failures,
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
                    since=state.parse_failing_since,
                    failed_checks=state.parse_failed_checks or None,
                )
            )
        changes = detect(state.snapshot, snapshot, now, target=target, source_url=source_url)
        result = _evaluate_thresholds(
            state,
            snapshot,
            now,
            target=target,
            source_url=source_url,
            thresholds=policy.thresholds,
        )
        new_state = replace(
            state,
            snapshot=snapshot,
            consecutive_failures=0,
            down=False,
            parse_failing=False,
            last_success_at=now,
            alarms=result.alarms,
            last_alerted=result.last_alerted,
            failing_since=None,
            parse_failing_since=None,
            parse_failed_checks=0,
        )
        tail = changes + result.events
    elif isinstance(outcome, FetchFailed):
        failures = state.consecutive_failures + 1
        failing_since = now if state.consecutive_failures == 0 else (state.failing_since or now)
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
                    since=failing_since,
                    failed_checks=failures,
                )
            )
        new_state = replace(
            state, consecutive_failures=failures, down=down, failing_since=failing_since
        )
        tail = []
    elif isinstance(outcome, ParseFailed):
        if state.down:
            events.append(
                _status_event(
                    EventKind.SOURCE_RECOVERED,
                    now,
                    target=target,
                    source_url=source_url,
                    detail=_recovered_detail(state),
                    since=state.failing_since,
                    failed_checks=state.consecutive_failures,
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
                    since=now,
                )
            )
        new_state = replace(
            state,
            consecutive_failures=0,
            down=False,
            parse_failing=True,
            failing_since=None,
            parse_failing_since=state.parse_failing_since if state.parse_failing else now,
            parse_failed_checks=(state.parse_failed_checks if state.parse_failing else 0) + 1,
        )
        tail = []
    else:
        assert_never(outcome)
    check = _Check(state, new_state, outcome, now, target, source_url, snapshot)
    outage_events, outage_alarms = _outage_alarms(check, policy.outage_rules)
    alarms: Mapping[str, Alarm] = {
        **(new_state.alarms if isinstance(outcome, Observed) else kept),
        **outage_alarms,
    }
    return replace(new_state, alarms=alarms), events + outage_events + tail


def _silent_too_long(state: TargetState, now: datetime, policy: Policy) -> bool:
    if policy.down_after_seconds is None or state.last_success_at is None:
        return False
    return (now - state.last_success_at).total_seconds() >= policy.down_after_seconds
