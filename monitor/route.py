"""Routing: which sinks hear of which events, like Alertmanager's routes. Pure: no I/O, no clock.

Each configured rule becomes a ``Route``. A route *matches* an event when all of these hold:

- ``event.kind`` is in ``route.kinds``;
- ``route.targets`` is empty or names ``event.target``;
- ``route.pairs`` is empty or names ``event.pair`` -- an event without a pair (``source_down``,
  ``source_recovered``, ``parse_failed``, ``parse_recovered``) matches any pairs filter, because
  an outage of the source concerns every pair on it;
- for a ``threshold`` event: a route that defines a threshold itself (``route.threshold``)
  matches only the events its own threshold raised (``event.rule == route.rule``); a route
  without a threshold whose kinds include ``threshold`` matches every threshold event.

Every matching route fires (there is no "first match stops"). Each (event, sink) pair is produced
at most once: the first route naming the sink wins. Output order: events in input order, and per
event the sinks in route order, then in each route's own order.

Cooldown (per route, in seconds): the key is ``rule|pair`` (``rule|*`` for events without a pair),
looked up in ``last_routed``, which belongs to *one* target (``TargetState.last_routed``); call
``route`` with one target's events. A route whose key was routed less than ``cooldown`` seconds
before ``now`` skips the event (other routes still may route it). The cooldown is judged against
the mapping as it was *before* this check: all the events of one check for one (rule, pair) --
say ``rate_changed`` and ``change_pct_changed`` of the same move -- go out together. A route with
a cooldown that matched an event and was not cooling down sets its key to ``now`` (even when
every one of its sinks was already claimed by an earlier route: those sinks did hear of it).
The returned mapping is new; it keeps only keys that can still hold something back, i.e. those
younger than their rule's cooldown, so it stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from monitor.models import Event, EventKind, NewDelivery, utc

if TYPE_CHECKING:
    from monitor.settings import RuleConfig

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

    def matches(self, event: Event) -> bool:
        if event.kind not in self.kinds:
            return False
        if self.targets and event.target not in self.targets:
            return False
        if self.pairs and event.pair is not None and event.pair not in self.pairs:
            return False
        return not (
            event.kind is EventKind.THRESHOLD and self.threshold and event.rule != self.rule
        )


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
) -> tuple[list[NewDelivery], dict[str, datetime]]:
    """The outbox rows for one check's events, and the target's updated ``last_routed``."""
    now = utc(now)
    deliveries: list[NewDelivery] = []
    claimed: set[tuple[str, str]] = set()
    routed: dict[str, datetime] = {}
    for event in events:
        for r in routes:
            if not r.matches(event):
                continue
            if r.cooldown > 0:
                key = cooldown_key(r.rule, event.pair)
                last = last_routed.get(key)
                if last is not None and now - last < timedelta(seconds=r.cooldown):
                    continue
                routed[key] = now
            for sink in r.sinks:
                if (event.event_id, sink) in claimed:
                    continue
                claimed.add((event.event_id, sink))
                deliveries.append(NewDelivery(event=event, sink=sink, check_id=check_id))
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
