"""Routing: which sinks hear of which events, like Alertmanager's routes. Pure: no I/O, no clock.

Each configured rule becomes a ``Route``. A route *matches* an event when all of these hold:

- ``event.kind`` is in ``route.kinds``;
- ``route.targets`` is empty or names ``event.target``;
- ``route.pairs`` is empty or names ``event.pair`` -- an event without a pair (``source_down``,
  ``source_recovered``, ``parse_failed``, ``parse_recovered``) matches any pairs filter, because
  an outage of the source concerns every pair on it;
- a *reminder* (``event.reminder > 0``) matches only the rule that asked for it (``event.rule``);
- an outage event (the four kinds above) raised for one rule (``event.rule`` set: a rule with
  ``for``) matches only that rule; the target's own outage events (``event.rule`` None) match the
  rules that do not confirm that kind themselves (``route.owns``);
- for a ``threshold`` or ``threshold_cleared`` event: a route that defines a threshold itself
  (``route.threshold``) matches only the events its own threshold raised (``event.rule ==
  route.rule``); a route without a threshold whose kinds include the kind matches every such event.

Every matching route fires (there is no "first match stops"). Each (event, sink) pair is produced
at most once: the first route naming the sink wins. Output order: events in input order, and per
event the sinks in route order, then in each route's own order.

Silences and mute windows (both data: the silences come from the store, the windows from the rules,
judged at ``now``) do not drop anything: a silenced (event, sink) is still produced, with
``silenced_by`` set (the silence's id, or ``mute:RULE``), and the store records it as ``silenced``
instead of delivering it. An event that an active silence matches is silenced for every sink. A
route inside its ``mute`` window silences what it would send, unless another matching route that is
not muted sends the same event to the same sink.

Cooldown (per route, in seconds): the key is ``rule|pair`` (``rule|*`` for events without a pair),
looked up in ``last_routed``, which belongs to *one* target (``TargetState.last_routed``); call
``route`` with one target's events. A route whose key was routed less than ``cooldown`` seconds
before ``now`` skips the event (other routes still may route it). The cooldown is judged against
the mapping as it was *before* this check: all the events of one check for one (rule, pair) --
say ``rate_changed`` and ``change_pct_changed`` of the same move -- go out together. A route with
a cooldown that matched an event and was not cooling down sets its key to ``now`` (even when
every one of its sinks was already claimed by an earlier route: those sinks did hear of it) --
unless the event was silenced or muted for it (nobody heard of it). Reminders neither wait for nor
start a cooldown: ``repeat_interval`` paces them. The returned mapping is new; it keeps only keys
that can still hold something back, i.e. those younger than their rule's cooldown, so it stays
bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from monitor.models import Event, EventKind, NewDelivery, Silence, utc

if TYPE_CHECKING:
    from monitor.config_types import ActiveWindow
    from monitor.settings import RuleConfig

#: the outage kinds, and what a rule that confirms one with ``for`` handles itself
_OUTAGES = {
    EventKind.SOURCE_DOWN: (EventKind.SOURCE_DOWN, EventKind.SOURCE_RECOVERED),
    EventKind.PARSE_FAILED: (EventKind.PARSE_FAILED, EventKind.PARSE_RECOVERED),
}
OUTAGE_KINDS = frozenset(k for pair in _OUTAGES.values() for k in pair)
_THRESHOLD_KINDS = frozenset({EventKind.THRESHOLD, EventKind.THRESHOLD_CLEARED})

__all__ = ["Route", "cooldown_key", "route", "routes_from_settings"]


@dataclass(frozen=True, slots=True)
class Route:
    """One rule, ready to match events."""

    rule: str
    kinds: frozenset[EventKind]
    #: target names; empty means every target
    targets: frozenset[str]
    #: pairs; empty means every pair (and events without a pair always match)
    pairs: frozenset[str]
    sinks: tuple[str, ...]
    #: seconds; 0 means no cooldown
    cooldown: float
    #: this rule defines a threshold: it routes only its own threshold events
    threshold: bool
    #: outage kinds this rule raises itself (it has ``for``): it ignores the target's own ones
    owns: frozenset[EventKind] = frozenset()
    #: when the rule's alerts are recorded as silenced instead of sent
    mute: ActiveWindow | None = None

    def matches(self, event: Event) -> bool:
        if event.kind not in self.kinds:
            return False
        if self.targets and event.target not in self.targets:
            return False
        if self.pairs and event.pair is not None and event.pair not in self.pairs:
            return False
        if event.reminder:
            return event.rule == self.rule
        if event.kind in OUTAGE_KINDS:
            return event.rule == self.rule if event.rule else event.kind not in self.owns
        return not (event.kind in _THRESHOLD_KINDS and self.threshold and event.rule != self.rule)

    def muted(self, now: datetime) -> bool:
        return self.mute is not None and self.mute.contains(now)


def routes_from_settings(rules: Sequence[RuleConfig], names: Sequence[str]) -> tuple[Route, ...]:
    """One ``Route`` per rule, in order; ``names[i]`` is rule ``i``'s ``Settings.rule_name(i)``."""
    if len(rules) != len(names):
        raise ValueError(f"{len(rules)} rules but {len(names)} names")
    return tuple(
        Route(
            rule=name,
            kinds=rule.kinds,
            targets=frozenset(rule.targets),
            pairs=frozenset(rule.pairs),
            sinks=tuple(dict.fromkeys(rule.sinks)),
            cooldown=rule.cooldown,
            threshold=rule.has_threshold,
            owns=frozenset(k for kind in rule.conditions for k in _OUTAGES[kind] if rule.hold > 0),
            mute=rule.mute,
        )
        for rule, name in zip(rules, names, strict=True)
    )


def cooldown_key(rule: str, pair: str | None) -> str:
    """The ``last_routed`` key of one rule and pair: ``rule|pair``, or ``rule|*`` without a pair."""
    return f"{rule}|{pair or '*'}"


def route(
    events: Sequence[Event],
    routes: Sequence[Route],
    *,
    check_id: str,
    now: datetime,
    last_routed: Mapping[str, datetime],
    silences: Sequence[Silence] = (),
) -> tuple[list[NewDelivery], dict[str, datetime]]:
    """The outbox rows for one check's events, and the target's updated ``last_routed``.

    ``silences`` may hold inactive ones (they are judged at ``now``).
    """
    now = utc(now)
    active = [s for s in silences if s.active(now)]
    muted = [r.muted(now) for r in routes]
    deliveries: list[NewDelivery] = []
    sent: set[tuple[str, str]] = set()  # (event id, sink) produced, sent or silenced
    routed: dict[str, datetime] = {}
    for event in events:
        silence = next((s.id for s in active if s.matches(event)), None)
        held: dict[str, tuple[str, str]] = {}  # sink -> (why, rule), unless another route sends
        for r, is_muted in zip(routes, muted, strict=True):
            if not r.matches(event):
                continue
            why = silence or (f"mute:{r.rule}" if is_muted else None)
            if r.cooldown > 0 and not event.reminder:
                key = cooldown_key(r.rule, event.pair)
                last = last_routed.get(key)
                if last is not None and now - last < timedelta(seconds=r.cooldown):
                    continue
                if why is None:
                    routed[key] = now
            for sink in r.sinks:
                if (event.event_id, sink) in sent:
                    continue
                if why is not None:
                    held.setdefault(sink, (why, r.rule))
                    continue
                sent.add((event.event_id, sink))
                held.pop(sink, None)
                deliveries.append(NewDelivery(event, sink, check_id, rule=r.rule))
        for sink, (why, rule) in held.items():
            sent.add((event.event_id, sink))
            deliveries.append(NewDelivery(event, sink, check_id, silenced_by=why, rule=rule))
    return deliveries, _prune({**last_routed, **routed}, routes, now)


def _prune(
    last_routed: Mapping[str, datetime], routes: Sequence[Route], now: datetime
) -> dict[str, datetime]:
    """Keep the keys still younger than their rule's (longest) cooldown; drop the rest."""
    cooldowns: dict[str, float] = {}
    for r in routes:
        cooldowns[r.rule] = max(cooldowns.get(r.rule, 0.0), r.cooldown)
    kept: dict[str, datetime] = {}
    for key, at in last_routed.items():
        cooldown = cooldowns.get(key.split("|", 1)[0], 0.0)
        if cooldown > 0 and now - at < timedelta(seconds=cooldown):
            kept[key] = at
    return kept
