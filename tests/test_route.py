"""The router: which rules match which events, deduplication per (event, sink), cooldowns."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.models import Event, EventKind, NewDelivery, Reading, Silence
from monitor.route import OUTAGE_KINDS, Route, cooldown_key, route, routes_from_settings
from monitor.settings import ActiveWindow, RuleConfig

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
    reminder: int = 0,
) -> Event:
    new = None if pair is None else Reading(Decimal(rate), Decimal(0))
    return Event(kind, target, pair, None, new, NOW, rule=rule, reminder=reminder)


def rt(
    rule: str = "r",
    *sinks: str,
    kinds: Sequence[EventKind] = tuple(EventKind),
    targets: Sequence[str] = (),
    pairs: Sequence[str] = (),
    cooldown: float = 0,
    threshold: bool = False,
    owns: Sequence[EventKind] = (),
    mute: ActiveWindow | None = None,
) -> Route:
    return Route(
        rule=rule,
        kinds=frozenset(kinds),
        targets=frozenset(targets),
        pairs=frozenset(pairs),
        sinks=sinks or ("slack",),
        cooldown=cooldown,
        threshold=threshold,
        owns=frozenset(owns),
        mute=mute,
    )


def go(
    events: Sequence[Event],
    routes: Sequence[Route],
    *,
    now: datetime = NOW,
    last_routed: dict[str, datetime] | None = None,
    silences: Sequence[Silence] = (),
) -> tuple[list[tuple[str, str]], dict[str, datetime]]:
    """Route; return the delivered ``(event_id, sink)`` pairs (the easiest shape to compare) and
    the mapping. Silenced rows are left out (``silenced`` returns them)."""
    deliveries, routed = route(
        events,
        routes,
        check_id="check-1",
        now=now,
        last_routed=last_routed or {},
        silences=silences,
    )
    return [(d.event.event_id, d.sink) for d in deliveries if d.silenced_by is None], routed


def silenced(
    events: Sequence[Event],
    routes: Sequence[Route],
    *,
    now: datetime = NOW,
    silences: Sequence[Silence] = (),
) -> list[tuple[str, str, str]]:
    """The silenced rows as ``(event_id, sink, silenced_by)``."""
    deliveries, _ = route(
        events, routes, check_id="check-1", now=now, last_routed={}, silences=silences
    )
    return [(d.event.event_id, d.sink, d.silenced_by) for d in deliveries if d.silenced_by]


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


def test_threshold_cleared_follows_the_threshold_rules() -> None:
    own = rt("high", "a", kinds=[K.THRESHOLD, K.THRESHOLD_CLEARED], threshold=True)
    catch_all = rt("all", "b")
    assert sinks_of([ev(K.THRESHOLD_CLEARED, rule="high")], [own, catch_all]) == ["a", "b"]
    assert sinks_of([ev(K.THRESHOLD_CLEARED, rule="low")], [own, catch_all]) == ["b"]


def test_a_reminder_goes_only_to_the_rule_that_asked_for_it() -> None:
    routes = [rt("all", "a"), rt("outages", "b", kinds=[K.SOURCE_DOWN])]
    assert sinks_of([ev(K.SOURCE_DOWN, None, rule="outages", reminder=1)], routes) == ["b"]
    assert sinks_of([ev(K.THRESHOLD, rule="outages", reminder=2)], routes) == []


def test_a_rule_with_for_routes_its_own_outage_events_not_the_targets() -> None:
    pager = rt("pager", "p", kinds=[K.SOURCE_DOWN, K.SOURCE_RECOVERED], owns=OUTAGE_KINDS)
    everything = rt("all", "a")
    target_down, pagers_down = ev(K.SOURCE_DOWN, None), ev(K.SOURCE_DOWN, None, rule="pager")
    assert sinks_of([target_down], [pager, everything]) == ["a"]
    assert sinks_of([pagers_down], [pager, everything]) == ["p"]
    recovered = ev(K.SOURCE_RECOVERED, None, rule="pager")
    assert sinks_of([recovered], [pager, everything]) == ["p"]


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


def test_reminders_neither_wait_for_nor_start_a_cooldown() -> None:
    routes = [rt("r", cooldown=3600)]
    reminder = ev(K.SOURCE_DOWN, None, rule="r", reminder=1)
    ids, routed = go([reminder], routes, last_routed={"r|*": NOW})
    assert len(ids) == 1
    assert routed == {"r|*": NOW}


# --- silences and mute windows ---------------------------------------------------------------

ALWAYS = ActiveWindow()
NIGHT = ActiveWindow(hours="22:00-07:00", timezone="UTC")  # NOW is 12:00 UTC


def silence(
    sid: str = "s1",
    *,
    target: str = "tca",
    pair: str | None = None,
    kind: EventKind | None = None,
    start: float = -60,
    end: float = 3600,
) -> Silence:
    return Silence(
        sid,
        target,
        pair,
        kind,
        NOW + timedelta(seconds=start),
        NOW + timedelta(seconds=end),
    )


def test_a_silenced_event_is_recorded_for_every_sink_and_sent_to_none() -> None:
    event = ev()
    routes = [rt("r", "a", "b")]
    assert go([event], routes, silences=[silence()]) == ([], {})
    assert silenced([event], routes, silences=[silence()]) == [
        (event.event_id, "a", "s1"),
        (event.event_id, "b", "s1"),
    ]


def test_silences_match_target_pair_and_kind_and_only_while_active() -> None:
    routes = [rt("r", "a")]
    tmt, kgs, down = ev(), ev(pair="KGS/USD"), ev(K.SOURCE_DOWN, None)
    assert sinks_of([tmt], routes) == ["a"]
    by_pair = [silence(pair="TMT/USD")]
    assert [s for _, s in go([tmt, kgs, down], routes, silences=by_pair)[0]] == ["a", "a"]
    assert go([down], routes, silences=by_pair)[0]  # a pair silence never hides an outage
    assert go([tmt], routes, silences=[silence(kind=K.CHANGE_PCT_CHANGED)])[0]
    assert go([tmt], routes, silences=[silence(target="other")])[0]
    assert go([tmt], routes, silences=[silence(start=60)])[0]  # not started yet
    assert go([tmt], routes, silences=[silence(end=0)])[0]  # ended exactly now
    assert not go([tmt], routes, silences=[silence(end=1)])[0]


def test_a_muted_rule_records_instead_of_sending_unless_another_rule_sends() -> None:
    event = ev()
    quiet = rt("quiet", "a", "b", mute=ALWAYS)
    loud = rt("loud", "b")
    assert go([event], [quiet, loud])[0] == [(event.event_id, "b")]
    assert silenced([event], [quiet, loud]) == [(event.event_id, "a", "mute:quiet")]
    assert silenced([event], [rt("night", "a", mute=NIGHT)]) == []  # outside its window


def test_a_silenced_or_muted_route_starts_no_cooldown() -> None:
    routes = [rt("r", cooldown=600, mute=ALWAYS)]
    assert go([ev()], routes) == ([], {})
    assert go([ev()], [rt("r", cooldown=600)], silences=[silence()]) == ([], {})


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


def test_a_rule_with_for_owns_the_outage_kinds_it_routes() -> None:
    rules = [
        RuleConfig(sinks=["p"], events=[K.SOURCE_DOWN, K.SOURCE_RECOVERED], **{"for": "10m"}),
        RuleConfig(sinks=["p"], events=[K.SOURCE_DOWN], repeat_interval="1h"),
        RuleConfig(sinks=["p"], mute={"hours": "22:00-07:00"}),
    ]
    pager, reminding, quiet = routes_from_settings(rules, ["pager", "reminding", "quiet"])
    assert pager.owns == frozenset({K.SOURCE_DOWN, K.SOURCE_RECOVERED})
    assert reminding.owns == frozenset()  # reminders only: the target's own event announces it
    assert quiet.mute == ActiveWindow(hours="22:00-07:00")


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
    reminder=st.sampled_from([0, 0, 0, 1]),
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
    owns=st.sampled_from([frozenset(), OUTAGE_KINDS]),
    mute=st.sampled_from([None, None, ALWAYS]),
)
last_routed_st = st.dictionaries(
    st.builds(cooldown_key, st.sampled_from(RULES), st.sampled_from((None, *PAIRS))),
    st.integers(0, 400).map(lambda s: NOW - timedelta(seconds=s)),
)
silences_st = st.lists(
    st.builds(
        silence,
        st.sampled_from(["s1", "s2"]),
        target=st.sampled_from(TARGETS),
        pair=st.sampled_from((None, *PAIRS)),
        kind=st.sampled_from((None, K.RATE_CHANGED, K.SOURCE_DOWN)),
        start=st.sampled_from([-60, 60]),
    ),
    max_size=2,
)


def _matches(e: Event, r: Route) -> bool:
    """An independent statement of the matching rules."""
    if e.kind not in r.kinds or (r.targets and e.target not in r.targets):
        return False
    if e.pair is not None and r.pairs and e.pair not in r.pairs:
        return False
    if e.reminder:
        return e.rule == r.rule
    if e.kind in OUTAGE_KINDS:
        return e.rule == r.rule if e.rule is not None else e.kind not in r.owns
    return not (e.kind in (K.THRESHOLD, K.THRESHOLD_CLEARED) and r.threshold and e.rule != r.rule)


def _expected(
    events: Sequence[Event],
    routes: Sequence[Route],
    last_routed: dict[str, datetime],
    silences: Sequence[Silence] = (),
) -> set[tuple[str, str]]:
    """Every sink of every matching, unheld route that is not silenced or muted."""
    out: set[tuple[str, str]] = set()
    for e in events:
        if any(s.active(NOW) and s.matches(e) for s in silences):
            continue
        for r in routes:
            held_since = last_routed.get(f"{r.rule}|{e.pair or '*'}")
            held = (
                not e.reminder
                and held_since is not None
                and (NOW - held_since).total_seconds() < r.cooldown
            )
            if _matches(e, r) and not held and r.mute is None:
                out |= {(e.event_id, s) for s in r.sinks}
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(events_st, max_size=8),
    st.lists(routes_st, max_size=5),
    last_routed_st,
    silences_st,
)
def test_prop_route_delivers_each_matching_event_sink_pair_exactly_once(
    events: list[Event],
    routes: list[Route],
    last_routed: dict[str, datetime],
    silences: list[Silence],
) -> None:
    deliveries, routed = route(
        events, routes, check_id="c", now=NOW, last_routed=last_routed, silences=silences
    )
    rows = [(d.event.event_id, d.sink) for d in deliveries]
    assert len(rows) == len(set(rows)), "an (event, sink) pair was produced twice"
    sent = {(d.event.event_id, d.sink) for d in deliveries if d.silenced_by is None}
    assert sent == _expected(events, routes, last_routed, silences)
    # what is not sent but would have been without silences and mutes is recorded as silenced
    unmuted = [replace(r, mute=None) for r in routes]
    assert set(rows) == _expected(events, unmuted, last_routed)
    longest = max((r.cooldown for r in routes), default=0.0)
    assert all((NOW - t).total_seconds() < longest for t in routed.values())
    # the same check routed again with the returned mapping: exactly the unheld routes fire again
    again, _ = go(events, routes, last_routed=routed, silences=silences)
    assert set(again) == _expected(events, routes, routed, silences)
