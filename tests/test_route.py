"""The router: which rules match which events, deduplication per (event, sink), cooldowns."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.models import Event, EventKind, NewDelivery, Reading
from monitor.route import Route, cooldown_key, route, routes_from_settings
from monitor.settings import RuleConfig

NOW = datetime(2025, 5, 16, 12, 0, tzinfo=UTC)
K = EventKind
ALL_KINDS = frozenset(EventKind)


# --- builders --------------------------------------------------------------------------------


def ev(
    kind: EventKind = K.RATE_CHANGED,
    pair: str | None = "TMT/USD",
    *,
    target: str = "tca",
    rule: str | None = None,
    rate: str = "0.2858",
) -> Event:
    new = None if pair is None else Reading(Decimal(rate), Decimal(0))
    return Event(kind, target, pair, None, new, NOW, rule=rule)


def rt(
    rule: str = "r",
    *sinks: str,
    kinds: Sequence[EventKind] = tuple(EventKind),
    targets: Sequence[str] = (),
    pairs: Sequence[str] = (),
    cooldown: float = 0,
    threshold: bool = False,
) -> Route:
    return Route(
        rule=rule,
        kinds=frozenset(kinds),
        targets=frozenset(targets),
        pairs=frozenset(pairs),
        sinks=sinks or ("slack",),
        cooldown=cooldown,
        threshold=threshold,
    )


def go(
    events: Sequence[Event],
    routes: Sequence[Route],
    *,
    now: datetime = NOW,
    last_routed: dict[str, datetime] | None = None,
) -> tuple[list[tuple[str, str]], dict[str, datetime]]:
    """Route; return ``(event_id, sink)`` pairs (the easiest shape to compare) and the mapping."""
    deliveries, routed = route(
        events, routes, check_id="check-1", now=now, last_routed=last_routed or {}
    )
    return [(d.event.event_id, d.sink) for d in deliveries], routed


def sinks_of(
    events: Sequence[Event],
    routes: Sequence[Route],
    *,
    last_routed: dict[str, datetime] | None = None,
) -> list[str]:
    return [sink for _, sink in go(events, routes, last_routed=last_routed)[0]]


# --- matching --------------------------------------------------------------------------------


def test_route_matches_on_kind() -> None:
    routes = [rt("r", kinds=[K.PAIR_ADDED])]
    assert sinks_of([ev(K.RATE_CHANGED)], routes) == []
    assert sinks_of([ev(K.PAIR_ADDED)], routes) == ["slack"]


def test_route_matches_on_target() -> None:
    routes = [rt("r", targets=["tca"])]
    assert sinks_of([ev(target="other")], routes) == []
    assert sinks_of([ev(target="tca")], routes) == ["slack"]


def test_route_matches_on_pair() -> None:
    routes = [rt("r", pairs=["KGS/USD"])]
    assert sinks_of([ev(pair="TMT/USD")], routes) == []
    assert sinks_of([ev(pair="KGS/USD")], routes) == ["slack"]


@pytest.mark.parametrize(
    "kind", [K.SOURCE_DOWN, K.SOURCE_RECOVERED, K.PARSE_FAILED, K.PARSE_RECOVERED]
)
def test_events_without_a_pair_match_any_pairs_filter(kind: EventKind) -> None:
    assert sinks_of([ev(kind, None)], [rt("r", pairs=["KGS/USD"])]) == ["slack"]


def test_threshold_rule_routes_only_its_own_threshold_events() -> None:
    routes = [rt("high", "a", kinds=[K.THRESHOLD], threshold=True)]
    assert sinks_of([ev(K.THRESHOLD, rule="low")], routes) == []
    assert sinks_of([ev(K.THRESHOLD, rule="high")], routes) == ["a"]


def test_threshold_rule_with_other_kinds_routes_those_normally() -> None:
    routes = [rt("high", "a", kinds=[K.THRESHOLD, K.RATE_CHANGED], threshold=True)]
    assert sinks_of([ev(K.RATE_CHANGED), ev(K.THRESHOLD, rule="low")], routes) == ["a"]


def test_plain_rule_listing_threshold_routes_every_threshold_event() -> None:
    routes = [rt("all-thresholds", "a", kinds=[K.THRESHOLD])]
    assert sinks_of([ev(K.THRESHOLD, rule="low"), ev(K.THRESHOLD, rule="high")], routes) == [
        "a",
        "a",
    ]


# --- fan-out, deduplication, order -----------------------------------------------------------


def test_every_matching_rule_fires() -> None:
    routes = [rt("changes", "slack"), rt("tmt", "mail", pairs=["TMT/USD"])]
    assert sinks_of([ev()], routes) == ["slack", "mail"]


def test_each_event_and_sink_is_delivered_once_first_rule_wins() -> None:
    routes = [rt("one", "slack", "mail"), rt("two", "mail", "webhook", "slack")]
    assert sinks_of([ev()], routes) == ["slack", "mail", "webhook"]


def test_order_is_events_first_then_sinks_in_rule_order() -> None:
    a, b = ev(pair="KGS/USD"), ev(pair="TMT/USD")
    routes = [rt("one", "s1"), rt("two", "s2", "s3")]
    ids, _ = go([a, b], routes)
    assert ids == [
        (a.event_id, "s1"),
        (a.event_id, "s2"),
        (a.event_id, "s3"),
        (b.event_id, "s1"),
        (b.event_id, "s2"),
        (b.event_id, "s3"),
    ]


def test_deliveries_carry_the_event_sink_and_check_id() -> None:
    event = ev()
    deliveries, _ = route([event], [rt("r", "a", "b")], check_id="c-42", now=NOW, last_routed={})
    assert deliveries == [NewDelivery(event, "a", "c-42"), NewDelivery(event, "b", "c-42")]
    assert deliveries[0].dedup_key != deliveries[1].dedup_key


def test_no_routes_or_no_events_route_nothing() -> None:
    assert go([ev()], []) == ([], {})
    assert go([], [rt("r", cooldown=60)], last_routed={"r|*": NOW}) == ([], {"r|*": NOW})


# --- cooldown --------------------------------------------------------------------------------


def test_cooldown_holds_back_the_same_rule_and_pair() -> None:
    routes = [rt("r", cooldown=300)]
    ids, routed = go([ev()], routes)
    assert len(ids) == 1
    assert routed == {"r|TMT/USD": NOW}
    later = NOW + timedelta(seconds=299)
    assert go([ev(rate="0.3")], routes, now=later, last_routed=routed) == ([], routed)


def test_cooldown_ends_exactly_after_its_length() -> None:
    routes = [rt("r", cooldown=300)]
    later = NOW + timedelta(seconds=300)
    ids, routed = go([ev()], routes, now=later, last_routed={"r|TMT/USD": NOW})
    assert len(ids) == 1
    assert routed == {"r|TMT/USD": later}


def test_cooldown_is_per_pair_and_star_for_events_without_a_pair() -> None:
    routes = [rt("r", cooldown=300)]
    held = {"r|TMT/USD": NOW}
    assert sinks_of([ev(pair="KGS/USD")], routes, last_routed=held) == ["slack"]
    assert sinks_of([ev(K.SOURCE_DOWN, None)], routes, last_routed=held) == ["slack"]
    assert sinks_of([ev(K.SOURCE_DOWN, None)], routes, last_routed={"r|*": NOW}) == []
    assert cooldown_key("r", None) == "r|*"
    assert cooldown_key("r", "TMT/USD") == "r|TMT/USD"


def test_other_rules_still_route_during_a_cooldown() -> None:
    routes = [rt("slow", "slack", cooldown=3600), rt("fast", "mail", "slack")]
    assert sinks_of([ev()], routes, last_routed={"slow|TMT/USD": NOW}) == ["mail", "slack"]


def test_one_check_is_not_split_by_its_own_cooldown() -> None:
    routes = [rt("r", cooldown=300)]
    events = [ev(K.RATE_CHANGED), ev(K.CHANGE_PCT_CHANGED)]
    assert sinks_of(events, routes) == ["slack", "slack"]


def test_cooldown_starts_even_when_an_earlier_rule_claimed_the_sink() -> None:
    routes = [rt("first", "slack"), rt("second", "slack", cooldown=60)]
    ids, routed = go([ev()], routes)
    assert len(ids) == 1
    assert routed == {"second|TMT/USD": NOW}


def test_rule_without_cooldown_records_nothing() -> None:
    assert go([ev()], [rt("r")])[1] == {}


def test_returned_mapping_is_new_and_keeps_only_keys_that_still_hold_back() -> None:
    routes = [rt("r", cooldown=600), rt("r", "mail", pairs=["KGS/USD"], cooldown=60)]
    last_routed = {
        "r|TMT/USD": NOW - timedelta(seconds=599),  # still cooling under the longest cooldown
        "r|KGS/USD": NOW - timedelta(seconds=600),  # done: equal to the longest
        "gone|TMT/USD": NOW,  # the rule is no longer configured
    }
    before = dict(last_routed)
    _, routed = go([], routes, last_routed=last_routed)
    assert routed == {"r|TMT/USD": NOW - timedelta(seconds=599)}
    assert last_routed == before
    assert routed is not last_routed


# --- routes_from_settings --------------------------------------------------------------------


def test_routes_come_from_rules_in_order_with_their_names() -> None:
    rules = [
        RuleConfig(sinks=["slack", "mail", "slack"], targets=["tca"], cooldown="5m"),
        RuleConfig(sinks=["mail"], pairs=["TMT/USD"], above=Decimal("0.29")),
        RuleConfig(sinks=["hook"], events=[K.SOURCE_DOWN], min_move_pct=Decimal(1)),
    ]
    assert routes_from_settings(rules, ["everything", "rule-2", "outages"]) == (
        Route(
            rule="everything",
            kinds=ALL_KINDS,
            targets=frozenset({"tca"}),
            pairs=frozenset(),
            sinks=("slack", "mail"),
            cooldown=300.0,
            threshold=False,
        ),
        Route(
            rule="rule-2",
            kinds=frozenset({K.THRESHOLD}),
            targets=frozenset(),
            pairs=frozenset({"TMT/USD"}),
            sinks=("mail",),
            cooldown=0.0,
            threshold=True,
        ),
        Route(
            rule="outages",
            kinds=frozenset({K.SOURCE_DOWN}),
            targets=frozenset(),
            pairs=frozenset(),
            sinks=("hook",),
            cooldown=0.0,
            threshold=True,
        ),
    )


def test_routes_need_one_name_per_rule() -> None:
    with pytest.raises(ValueError, match="2 rules but 1 names"):
        routes_from_settings([RuleConfig(sinks=["a"]), RuleConfig(sinks=["b"])], ["x"])


# --- properties ------------------------------------------------------------------------------

TARGETS = ("tca", "other")
PAIRS = ("KGS/USD", "TMT/USD")
RULES = ("r1", "r2", "r3")
SINKS = ("slack", "mail", "hook")

# a few kind sets (drawing subsets of all nine kinds is slow and finds nothing more)
KIND_SETS = (
    ALL_KINDS,
    frozenset({K.THRESHOLD}),
    frozenset({K.THRESHOLD, K.RATE_CHANGED}),
    frozenset({K.RATE_CHANGED, K.CHANGE_PCT_CHANGED}),
    frozenset({K.SOURCE_DOWN, K.SOURCE_RECOVERED, K.PAIR_REMOVED}),
)
events_st = st.builds(
    ev,
    st.sampled_from(EventKind),
    st.sampled_from((None, *PAIRS)),
    target=st.sampled_from(TARGETS),
    rule=st.sampled_from((None, *RULES)),
    rate=st.sampled_from(["1", "2"]),
)
routes_st = st.builds(
    Route,
    rule=st.sampled_from(RULES),
    kinds=st.sampled_from(KIND_SETS),
    targets=st.frozensets(st.sampled_from(TARGETS)),
    pairs=st.frozensets(st.sampled_from(PAIRS)),
    sinks=st.lists(st.sampled_from(SINKS), min_size=1, max_size=4).map(tuple),
    cooldown=st.sampled_from([0.0, 60.0, 300.0]),
    threshold=st.booleans(),
)
last_routed_st = st.dictionaries(
    st.builds(cooldown_key, st.sampled_from(RULES), st.sampled_from((None, *PAIRS))),
    st.integers(0, 400).map(lambda s: NOW - timedelta(seconds=s)),
)


def _expected(
    events: Sequence[Event], routes: Sequence[Route], last_routed: dict[str, datetime]
) -> set[tuple[str, str]]:
    """An independent statement of the rules: every sink of every matching, unheld route."""
    out: set[tuple[str, str]] = set()
    for e in events:
        for r in routes:
            matches = (
                e.kind in r.kinds
                and (not r.targets or e.target in r.targets)
                and (e.pair is None or not r.pairs or e.pair in r.pairs)
                and not (e.kind is K.THRESHOLD and r.threshold and e.rule != r.rule)
            )
            held_since = last_routed.get(f"{r.rule}|{e.pair or '*'}")
            held = held_since is not None and (NOW - held_since).total_seconds() < r.cooldown
            if matches and not held:
                out |= {(e.event_id, s) for s in r.sinks}
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(events_st, max_size=8), st.lists(routes_st, max_size=5), last_routed_st)
def test_prop_route_delivers_each_matching_event_sink_pair_exactly_once(
    events: list[Event], routes: list[Route], last_routed: dict[str, datetime]
) -> None:
    ids, routed = go(events, routes, last_routed=last_routed)
    assert len(ids) == len(set(ids)), "an (event, sink) pair was produced twice"
    assert set(ids) == _expected(events, routes, last_routed)
    longest = max((r.cooldown for r in routes), default=0.0)
    assert all((NOW - t).total_seconds() < longest for t in routed.values())
    # the same check routed again with the returned mapping: exactly the unheld routes fire again
    again, _ = go(events, routes, last_routed=routed)
    assert set(again) == _expected(events, routes, routed)
