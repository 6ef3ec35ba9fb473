"""The detector: snapshot comparison, the per-target state machine, thresholds, jump checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detect import (
    FetchFailed,
    Observed,
    Outcome,
    ParseFailed,
    Policy,
    Threshold,
    detect,
    implausible_pairs,
    step,
    thresholds_from_rules,
)
from monitor.models import Event, EventKind, Quote, Reading, Snapshot, TargetState
from monitor.settings import RuleConfig

NOW = datetime(2025, 5, 16, 12, 0, tzinfo=UTC)
DAY = date(2025, 5, 16)
K = EventKind


# --- builders --------------------------------------------------------------------------------


def q(pair: str, rate: str | Decimal, pct: str | Decimal | None = "0") -> Quote:
    base, quote = pair.split("/")
    return Quote(pair, base, quote, Decimal(rate), None if pct is None else Decimal(pct))


def snap(*quotes: Quote, page_date: date | None = DAY) -> Snapshot:
    return Snapshot(quotes=quotes, page_date=page_date)


def kp(events: Sequence[Event]) -> list[tuple[EventKind, str | None]]:
    """Events as (kind, pair), the shape most assertions read best in."""
    return [(e.kind, e.pair) for e in events]


def at(minutes: float) -> datetime:
    return NOW + timedelta(minutes=minutes)


def run(
    outcomes: Sequence[Outcome],
    *,
    policy: Policy = Policy(),  # noqa: B008 -- Policy is a frozen dataclass, safe to share
    state: TargetState | None = None,
    minutes_apart: float = 1,
) -> tuple[TargetState, list[list[Event]]]:
    """Feed outcomes to ``step`` one minute apart; return the final state and each step's events."""
    state = state or TargetState()
    per_step: list[list[Event]] = []
    for i, outcome in enumerate(outcomes):
        state, events = step(state, outcome, at(i * minutes_apart), target="tca", policy=policy)
        per_step.append(events)
    return state, per_step


def obs(*quotes: Quote) -> Observed:
    return Observed(snap(*quotes))


TICKER = snap(
    q("KGS/USD", "0.01144", "0"),
    q("KZT/USD", "0.00196", "-0"),
    q("TJS/USD", "0.09650", "0"),
    q("UZS/USD", "0.00008", "0"),
    q("TMT/USD", "0.28575", "-0.14"),
)


# --- detect ----------------------------------------------------------------------------------


def test_first_observation_is_a_baseline_not_an_alert() -> None:
    assert detect(None, TICKER, NOW) == []


def test_identical_snapshots_give_no_events() -> None:
    assert detect(TICKER, TICKER, NOW) == []


def test_rate_change_carries_old_and_new_readings() -> None:
    events = detect(snap(q("TMT/USD", "0.28575", "0")), snap(q("TMT/USD", "0.2858", "0")), NOW)
    assert kp(events) == [(K.RATE_CHANGED, "TMT/USD")]
    assert events[0].old == Reading(Decimal("0.28575"), Decimal(0))
    assert events[0].new == Reading(Decimal("0.2858"), Decimal(0))


def test_trailing_zeros_are_not_a_change() -> None:
    assert (
        detect(snap(q("KGS/USD", "0.0100", "0.10")), snap(q("KGS/USD", "0.01", "0.1")), NOW) == []
    )


def test_minus_zero_percent_is_not_a_change() -> None:
    assert (
        detect(snap(q("KZT/USD", "0.00196", "0")), snap(q("KZT/USD", "0.00196", "-0")), NOW) == []
    )


def test_percentage_change_alone_is_change_pct_changed() -> None:
    events = detect(snap(q("TMT/USD", "0.28575", "0")), snap(q("TMT/USD", "0.28575", "-0.14")), NOW)
    assert kp(events) == [(K.CHANGE_PCT_CHANGED, "TMT/USD")]
    assert events[0].new == Reading(Decimal("0.28575"), Decimal("-0.14"))


@pytest.mark.parametrize(("before", "after"), [(None, "0"), ("0", None), (None, "-0.14")])
def test_percentage_appearing_or_vanishing_is_a_change(
    before: str | None, after: str | None
) -> None:
    events = detect(
        snap(q("TMT/USD", "0.28575", before)), snap(q("TMT/USD", "0.28575", after)), NOW
    )
    assert kp(events) == [(K.CHANGE_PCT_CHANGED, "TMT/USD")]


def test_rate_and_percentage_changing_together_give_two_events_rate_first() -> None:
    events = detect(snap(q("TMT/USD", "0.28575", "0")), snap(q("TMT/USD", "0.2858", "0.02")), NOW)
    assert kp(events) == [(K.RATE_CHANGED, "TMT/USD"), (K.CHANGE_PCT_CHANGED, "TMT/USD")]
    assert len({e.event_id for e in events}) == 2


def test_added_pair_has_no_old_and_removed_pair_has_no_new() -> None:
    events = detect(snap(q("KGS/USD", "1")), snap(q("TMT/USD", "2")), NOW)
    assert kp(events) == [(K.PAIR_ADDED, "TMT/USD"), (K.PAIR_REMOVED, "KGS/USD")]
    added, removed = events
    assert added.old is None
    assert added.new == Reading(Decimal(2), Decimal(0))
    assert removed.old == Reading(Decimal(1), Decimal(0))
    assert removed.new is None


def test_order_follows_current_page_then_removed_pairs_in_previous_order() -> None:
    previous = snap(q("A/USD", "1"), q("B/USD", "1"), q("C/USD", "1"), q("D/USD", "1"))
    current = snap(q("E/USD", "1"), q("C/USD", "2", "1"), q("A/USD", "2"))
    assert kp(detect(previous, current, NOW)) == [
        (K.PAIR_ADDED, "E/USD"),
        (K.RATE_CHANGED, "C/USD"),
        (K.CHANGE_PCT_CHANGED, "C/USD"),
        (K.RATE_CHANGED, "A/USD"),
        (K.PAIR_REMOVED, "B/USD"),
        (K.PAIR_REMOVED, "D/USD"),
    ]


def test_events_carry_target_url_time_and_current_page_date() -> None:
    previous = snap(q("TMT/USD", "1"), page_date=date(2025, 5, 15))
    (event,) = detect(previous, snap(q("TMT/USD", "2")), NOW, target="tca", source_url="https://x/")
    assert (event.target, event.source_url, event.observed_at) == ("tca", "https://x/", NOW)
    assert event.page_date == DAY
    assert event.rule is None


def test_repeated_pair_in_a_snapshot_reads_first_wins() -> None:
    current = snap(q("TMT/USD", "1"), q("TMT/USD", "9"))
    assert detect(snap(q("TMT/USD", "1")), current, NOW) == []


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        detect(TICKER, snap(), datetime(2025, 5, 16))  # noqa: DTZ001 -- the naive time is the point


# --- implausible_pairs -----------------------------------------------------------------------


def test_no_jump_limit_or_no_previous_snapshot_flags_nothing() -> None:
    big = snap(q("TMT/USD", "100"))
    assert implausible_pairs(snap(q("TMT/USD", "1")), big, None) == ()
    assert implausible_pairs(None, big, Decimal(20)) == ()


def test_jump_must_exceed_the_limit_strictly() -> None:
    previous = snap(q("A/USD", "100"), q("B/USD", "100"), q("C/USD", "100"), q("D/USD", "100"))
    current = snap(q("A/USD", "120"), q("B/USD", "120.01"), q("C/USD", "79.99"), q("D/USD", "80"))
    assert implausible_pairs(previous, current, Decimal(20)) == ("B/USD", "C/USD")


def test_jump_from_zero_is_implausible_unless_still_zero() -> None:
    previous = snap(q("A/USD", "0"), q("B/USD", "0.000"))
    current = snap(q("A/USD", "0.00001"), q("B/USD", "0"), q("NEW/USD", "5"))
    assert implausible_pairs(previous, current, Decimal(20)) == ("A/USD",)


# --- thresholds_from_rules and Policy --------------------------------------------------------


def test_thresholds_come_only_from_rules_that_define_one() -> None:
    rules = [
        RuleConfig(sinks=["slack"]),
        RuleConfig(
            sinks=["slack"],
            targets=["tca"],
            pairs=["TMT/USD"],
            min_abs_change_pct=Decimal("0.1"),
            above=Decimal("0.29"),
            below=Decimal("0.28"),
            min_move_pct=Decimal(1),
            on_first_observation=True,
        ),
        RuleConfig(sinks=["mail"], above=Decimal(1)),
    ]
    assert thresholds_from_rules(rules, ["all", "tmt", "rule-3"]) == (
        Threshold(
            rule="tmt",
            targets=frozenset({"tca"}),
            pairs=frozenset({"TMT/USD"}),
            min_abs_change_pct=Decimal("0.1"),
            above=Decimal("0.29"),
            below=Decimal("0.28"),
            min_move_pct=Decimal(1),
            on_first_observation=True,
        ),
        Threshold(rule="rule-3", above=Decimal(1)),
    )


def test_thresholds_need_one_name_per_rule() -> None:
    with pytest.raises(ValueError, match="1 rules but 0 names"):
        thresholds_from_rules([RuleConfig(sinks=["s"])], [])


@pytest.mark.parametrize(
    ("down_after", "seconds"), [(0, None), (1, -1.0)], ids=["no-checks", "negative"]
)
def test_policy_refuses_nonsense(down_after: int, seconds: float | None) -> None:
    with pytest.raises(ValueError, match="down_after"):
        Policy(down_after=down_after, down_after_seconds=seconds)


# --- step: observations and outages ----------------------------------------------------------


def test_first_observation_sets_the_baseline_silently() -> None:
    state, events = step(TargetState(), Observed(TICKER), NOW, target="tca")
    assert events == []
    assert state == TargetState(snapshot=TICKER, last_success_at=NOW)


def test_observation_reports_changes_against_the_stored_snapshot() -> None:
    _, per_step = run([obs(q("TMT/USD", "0.28575")), obs(q("TMT/USD", "0.2858"))])
    assert kp(per_step[1]) == [(K.RATE_CHANGED, "TMT/USD")]
    assert per_step[1][0].target == "tca"


def test_not_modified_is_the_same_snapshot_and_stays_silent() -> None:
    state, _ = step(TargetState(), Observed(TICKER), NOW, target="tca")
    assert step(state, Observed(state.snapshot or TICKER), at(1), target="tca")[1] == []


def test_source_is_down_after_n_consecutive_failures_once() -> None:
    fail = FetchFailed("connect timeout")
    state, per_step = run([obs(q("A/USD", "1")), fail, fail, fail, fail, fail])
    assert [kp(e) for e in per_step] == [[], [], [], [(K.SOURCE_DOWN, None)], [], []]
    down = per_step[3][0]
    assert (down.detail, down.old, down.new, down.pair) == ("connect timeout", None, None, None)
    assert state.down
    assert state.consecutive_failures == 5
    assert state.snapshot == snap(q("A/USD", "1"))


def test_down_after_one_failure_when_configured_so() -> None:
    _, per_step = run([FetchFailed("boom")], policy=Policy(down_after=1))
    assert kp(per_step[0]) == [(K.SOURCE_DOWN, None)]


def test_source_is_down_when_no_success_for_down_after_seconds() -> None:
    policy = Policy(down_after=10, down_after_seconds=600)
    fail = FetchFailed("503")
    # one check every 5 minutes: the failure at 10 minutes after the last success trips it
    _, per_step = run([obs(q("A/USD", "1")), fail, fail, fail], policy=policy, minutes_apart=5)
    assert [kp(e) for e in per_step] == [[], [], [(K.SOURCE_DOWN, None)], []]


def test_down_after_seconds_without_any_success_falls_back_to_the_count() -> None:
    policy = Policy(down_after=3, down_after_seconds=1)
    _, per_step = run([FetchFailed("x")] * 3, policy=policy, minutes_apart=60)
    assert [kp(e) for e in per_step] == [[], [], [(K.SOURCE_DOWN, None)]]


def test_failures_below_the_limit_reset_silently_on_success() -> None:
    fail = FetchFailed("x")
    a = obs(q("A/USD", "1"))
    state, per_step = run([a, fail, fail, a, fail, fail, a])
    assert all(events == [] for events in per_step)
    assert state.consecutive_failures == 0


def test_recovery_comes_first_then_the_change_made_meanwhile_once() -> None:
    fail = FetchFailed("x")
    outcomes: list[Outcome] = [
        obs(q("A/USD", "1")),
        fail,
        fail,
        fail,
        obs(q("A/USD", "2")),
        obs(q("A/USD", "2")),
    ]
    state, per_step = run(outcomes)
    assert kp(per_step[4]) == [(K.SOURCE_RECOVERED, None), (K.RATE_CHANGED, "A/USD")]
    assert per_step[4][0].detail == "answered again after 3 failed checks"
    assert per_step[4][0].page_date == DAY
    assert per_step[5] == []
    assert state.last_success_at == at(5)
    assert not state.down


def test_parse_failure_is_reported_once_and_keeps_the_last_good_snapshot() -> None:
    broken = ParseFailed("no ticker found")
    outcomes: list[Outcome] = [
        obs(q("A/USD", "1")),
        broken,
        broken,
        obs(q("A/USD", "2")),
        obs(q("A/USD", "2")),
    ]
    state, per_step = run(outcomes)
    assert [kp(e) for e in per_step] == [
        [],
        [(K.PARSE_FAILED, None)],
        [],
        [(K.PARSE_RECOVERED, None), (K.RATE_CHANGED, "A/USD")],
        [],
    ]
    assert per_step[1][0].detail == "no ticker found"
    assert not state.parse_failing


def test_parse_failure_while_down_means_the_source_answered() -> None:
    fail = FetchFailed("x")
    state, per_step = run([fail, fail, fail, ParseFailed("layout changed")])
    assert kp(per_step[3]) == [(K.SOURCE_RECOVERED, None), (K.PARSE_FAILED, None)]
    assert (state.down, state.parse_failing, state.consecutive_failures) == (False, True, 0)


def test_parse_failures_break_a_run_of_fetch_failures() -> None:
    fail = FetchFailed("x")
    state, per_step = run([fail, fail, ParseFailed("p"), fail, fail])
    assert [k for e in per_step for k, _ in kp(e)] == [K.PARSE_FAILED]
    assert state.consecutive_failures == 2


def test_parse_failure_does_not_count_as_a_success_for_down_after_seconds() -> None:
    policy = Policy(down_after=5, down_after_seconds=600)
    outcomes: list[Outcome] = [
        obs(q("A/USD", "1")),
        ParseFailed("p"),
        ParseFailed("p"),
        FetchFailed("x"),
    ]
    _, per_step = run(outcomes, policy=policy, minutes_apart=5)
    assert kp(per_step[3]) == [(K.SOURCE_DOWN, None)]


def test_down_and_parse_failing_both_recover_in_order() -> None:
    fail = FetchFailed("x")
    _, per_step = run(
        [obs(q("A/USD", "1")), ParseFailed("p"), fail, fail, fail, obs(q("A/USD", "1"))]
    )
    assert kp(per_step[5]) == [(K.SOURCE_RECOVERED, None), (K.PARSE_RECOVERED, None)]


def test_step_keeps_last_routed_for_the_router() -> None:
    routed = {"r|A/USD": NOW}
    for outcome in (obs(q("A/USD", "1")), FetchFailed("x"), ParseFailed("p")):
        state, _ = step(TargetState(last_routed=routed), outcome, NOW, target="t")
        assert state.last_routed == routed


# --- step: thresholds ------------------------------------------------------------------------

ABS = Threshold(rule="big", min_abs_change_pct=Decimal("0.1"))
ABOVE = Threshold(rule="high", above=Decimal("0.285"))
BELOW = Threshold(rule="low", below=Decimal("0.285"))


def tmt(rate: str, pct: str | None = "0") -> Observed:
    return obs(q("TMT/USD", rate, pct))


def fired(per_step: list[list[Event]]) -> list[int]:
    """Indices of the steps that raised a threshold event."""
    return [i for i, events in enumerate(per_step) if any(e.kind is K.THRESHOLD for e in events)]


def test_abs_change_fires_on_entering_with_a_readable_detail() -> None:
    _, per_step = run(
        [tmt("0.28575", "0"), tmt("0.28575", "-0.14")], policy=Policy(thresholds=(ABS,))
    )
    assert kp(per_step[1]) == [(K.CHANGE_PCT_CHANGED, "TMT/USD"), (K.THRESHOLD, "TMT/USD")]
    event = per_step[1][1]
    assert event.rule == "big"
    assert event.detail == "change reached ±0.1%"
    assert event.old == Reading(Decimal("0.28575"), Decimal(0))
    assert event.new == Reading(Decimal("0.28575"), Decimal("-0.14"))


def test_band_is_silent_inside_re_arms_on_leaving_and_fires_again() -> None:
    pcts = ["0", "0.1", "0.2", "-0.3", "0.09", "0.1"]
    state, per_step = run([tmt("1", p) for p in pcts], policy=Policy(thresholds=(ABS,)))
    assert fired(per_step) == [1, 5]  # 0.1 reaches ±0.1 (>=); -0.3 is still inside; 0.09 re-arms
    assert set(state.alarms) == {"big|TMT/USD|abs_change"}


def test_no_percentage_on_the_page_is_outside_the_abs_change_band() -> None:
    state, per_step = run([tmt("1", "0"), tmt("1", None)], policy=Policy(thresholds=(ABS,)))
    assert fired(per_step) == []
    assert state.alarms == {}


def test_above_and_below_are_strict_and_say_so() -> None:
    policy = Policy(thresholds=(ABOVE, BELOW))
    rates = ["0.285", "0.29", "0.285", "0.28", "0.285", "0.2851"]
    _, per_step = run([tmt(r) for r in rates], policy=policy)
    details = [(i, e.rule, e.detail) for i, ev in enumerate(per_step) for e in ev if e.rule]
    assert details == [
        (1, "high", "rate above 0.285"),
        (3, "low", "rate below 0.285"),
        (5, "high", "rate above 0.285"),
    ]


def test_first_observation_inside_is_silent_until_it_leaves_and_comes_back() -> None:
    _, per_step = run(
        [tmt("0.29"), tmt("0.30"), tmt("0.28"), tmt("0.29")], policy=Policy(thresholds=(ABOVE,))
    )
    assert fired(per_step) == [3]


def test_first_observation_inside_fires_with_on_first_observation() -> None:
    eager = Threshold(rule="high", above=Decimal("0.285"), on_first_observation=True)
    _, per_step = run([tmt("0.29"), tmt("0.30")], policy=Policy(thresholds=(eager,)))
    assert fired(per_step) == [0]
    assert per_step[0][0].old is None


def test_pair_new_on_the_page_is_a_first_observation() -> None:
    policy = Policy(thresholds=(ABOVE,))
    _, per_step = run(
        [obs(q("A/USD", "1")), obs(q("A/USD", "1"), q("TMT/USD", "0.29"))], policy=policy
    )
    assert kp(per_step[1]) == [(K.PAIR_ADDED, "TMT/USD")]


def test_pair_that_left_the_page_forgets_its_threshold_state() -> None:
    move = Threshold(rule="move", min_move_pct=Decimal(1))
    policy = Policy(thresholds=(ABOVE, move))
    state, per_step = run([tmt("0.28"), tmt("0.29"), obs(q("A/USD", "0.1"))], policy=policy)
    assert fired(per_step) == [1]
    assert (state.alarms, state.last_alerted) == ({}, {"move|A/USD": Decimal("0.1")})
    # back on the page, still above the level: a first observation again, silent
    state, events = step(state, tmt("0.29"), at(10), target="tca", policy=policy)
    assert kp(events) == [(K.PAIR_ADDED, "TMT/USD"), (K.PAIR_REMOVED, "A/USD")]
    assert set(state.alarms) == {"high|TMT/USD|above"}
    assert not state.alarms["high|TMT/USD|above"].notified  # absorbed silently


def test_threshold_watches_only_its_targets_and_pairs() -> None:
    thresholds = (
        Threshold(rule="other-target", targets=frozenset({"elsewhere"}), above=Decimal(0)),
        Threshold(rule="other-pair", pairs=frozenset({"KGS/USD"}), above=Decimal(0)),
        Threshold(
            rule="mine", targets=frozenset({"tca"}), pairs=frozenset({"TMT/USD"}), above=Decimal(0)
        ),
    )
    _, per_step = run([tmt("-1"), tmt("1")], policy=Policy(thresholds=thresholds))
    assert [e.rule for e in per_step[1] if e.kind is K.THRESHOLD] == ["mine"]


def test_conditions_of_one_rule_firing_together_make_one_event() -> None:
    both = Threshold(rule="r", min_abs_change_pct=Decimal(1), above=Decimal(1))
    _, per_step = run([tmt("1", "0"), tmt("2", "5")], policy=Policy(thresholds=(both,)))
    (event,) = [e for e in per_step[1] if e.kind is K.THRESHOLD]
    assert event.detail == "change reached ±1%; rate above 1"


def test_threshold_events_follow_change_events_in_threshold_order() -> None:
    policy = Policy(thresholds=(ABOVE, ABS))
    _, per_step = run([tmt("0.28", "0"), tmt("0.29", "0.5")], policy=policy)
    assert [(e.kind, e.rule) for e in per_step[1]] == [
        (K.RATE_CHANGED, None),
        (K.CHANGE_PCT_CHANGED, None),
        (K.THRESHOLD, "high"),
        (K.THRESHOLD, "big"),
    ]
    assert len({e.event_id for e in per_step[1]}) == 4


def test_failures_keep_the_band_state() -> None:
    policy = Policy(thresholds=(ABOVE,))
    fail = FetchFailed("x")
    _, per_step = run(
        [tmt("0.28"), tmt("0.29"), fail, fail, fail, ParseFailed("p"), tmt("0.29")], policy=policy
    )
    assert fired(per_step) == [1]


MOVE = Threshold(rule="move", min_move_pct=Decimal(1))


def test_min_move_first_observation_only_sets_the_reference() -> None:
    eager = Threshold(rule="move", min_move_pct=Decimal(1), on_first_observation=True)
    state, per_step = run([tmt("0.28575")], policy=Policy(thresholds=(eager,)))
    assert per_step == [[]]
    assert state.last_alerted == {"move|TMT/USD": Decimal("0.28575")}


def test_min_move_fires_from_the_last_alerted_rate_with_a_signed_detail() -> None:
    rates = ["0.28575", "0.28927", "0.28927", "0.2863"]
    state, per_step = run([tmt(r) for r in rates], policy=Policy(thresholds=(MOVE,)))
    assert fired(per_step) == [1, 3]
    assert per_step[1][-1].detail == "moved +1.23% since last alert at 0.28575"
    assert per_step[3][-1].detail == "moved -1.03% since last alert at 0.28927"
    assert state.last_alerted == {"move|TMT/USD": Decimal("0.2863")}


def test_min_move_fires_at_exactly_the_percentage() -> None:
    _, per_step = run(
        [tmt("100"), tmt("100.99"), tmt("101"), tmt("99.99")], policy=Policy(thresholds=(MOVE,))
    )
    assert fired(per_step) == [2, 3]


def test_min_move_slow_drift_accumulates_until_it_alerts() -> None:
    # +0.4% per check: no single step reaches 1%, but the third one does from the reference
    rates = ["100", "100.4", "100.8", "101.2", "101.6", "102.0", "102.4"]
    state, per_step = run([tmt(r) for r in rates], policy=Policy(thresholds=(MOVE,)))
    assert fired(per_step) == [3, 6]
    assert state.last_alerted == {"move|TMT/USD": Decimal("102.4")}


def test_min_move_from_a_zero_reference_re_baselines_silently() -> None:
    state, per_step = run([tmt("0"), tmt("5"), tmt("5.1")], policy=Policy(thresholds=(MOVE,)))
    assert fired(per_step) == [2]
    assert state.last_alerted == {"move|TMT/USD": Decimal("5.1")}


def test_small_rates_are_written_without_exponents() -> None:
    low = Threshold(rule="low", below=Decimal("0.00009"))
    _, per_step = run([tmt("0.0001"), tmt("0.00008")], policy=Policy(thresholds=(low,)))
    assert per_step[1][-1].detail == "rate below 0.00009"


# --- properties ------------------------------------------------------------------------------

PROPERTY = settings(max_examples=100, deadline=None)
PAIRS = ("KGS/USD", "KZT/USD", "TJS/USD", "UZS/USD", "TMT/USD", "RUB/USD")

# a few values, so that equal and unequal readings both come up often, and any small decimal
common = st.sampled_from(["0", "-0", "0.00", "0.01", "0.0100", "0.28575", "-0.14", "1"]).map(
    Decimal
)
scaled = st.builds(
    lambda n, e: Decimal(n).scaleb(-e), st.integers(-(10**6), 10**6), st.integers(0, 6)
)
numbers = st.one_of(common, scaled)
# strategies are built once, here: building them inside a draw makes Hypothesis several times slower
maybe_numbers = st.one_of(st.none(), numbers)
pair_lists = st.lists(st.sampled_from(PAIRS), unique=True, max_size=len(PAIRS))
page_dates = st.one_of(st.none(), st.just(DAY))
extra_zeros = st.integers(0, 5)


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    quotes = tuple(q(pair, draw(numbers), draw(maybe_numbers)) for pair in draw(pair_lists))
    return Snapshot(quotes, draw(page_dates))


def rerender(value: Decimal, extra_zeros: int, flip_zero: bool) -> Decimal:
    """The same number written differently: more trailing zeros, none, or the other zero sign."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    out = (
        value.quantize(Decimal(1).scaleb(exponent - extra_zeros))
        if extra_zeros
        else value.normalize()
    )
    return out.copy_negate() if flip_zero and out == 0 else out


@PROPERTY
@given(snapshots())
def test_prop_same_snapshot_never_changes(s: Snapshot) -> None:
    assert detect(s, s, NOW) == []
    assert detect(None, s, NOW) == []


@PROPERTY
@given(snapshots(), st.data())
def test_prop_rewriting_numbers_is_not_a_change(s: Snapshot, data: st.DataObject) -> None:
    def again(value: Decimal) -> Decimal:
        return rerender(value, data.draw(extra_zeros), data.draw(st.booleans()))

    rewritten = Snapshot(
        tuple(
            Quote(
                x.pair,
                x.base,
                x.quote,
                again(x.rate),
                None if x.change_pct is None else again(x.change_pct),
            )
            for x in s.quotes
        ),
        s.page_date,
    )
    assert detect(s, rewritten, NOW) == []


def _numbers_differ(a: Decimal | None, b: Decimal | None) -> bool:
    # an independent oracle: Decimal.compare instead of ==
    if a is None or b is None:
        return (a is None) != (b is None)
    return a.compare(b) != 0


@PROPERTY
@given(snapshots(), snapshots())
def test_prop_every_difference_gives_exactly_its_events(
    previous: Snapshot, current: Snapshot
) -> None:
    before = {x.pair: x for x in previous.quotes}
    after = {x.pair: x for x in current.quotes}
    expected: list[tuple[EventKind, str, Quote | None, Quote | None]] = []
    for x in current.quotes:
        old = before.get(x.pair)
        if old is None:
            expected.append((K.PAIR_ADDED, x.pair, None, x))
            continue
        if _numbers_differ(old.rate, x.rate):
            expected.append((K.RATE_CHANGED, x.pair, old, x))
        if _numbers_differ(old.change_pct, x.change_pct):
            expected.append((K.CHANGE_PCT_CHANGED, x.pair, old, x))
    expected += [(K.PAIR_REMOVED, x.pair, x, None) for x in previous.quotes if x.pair not in after]
    events = detect(previous, current, NOW, target="t")
    assert [(e.kind, e.pair, e.old, e.new) for e in events] == [
        (kind, pair, Reading.of(old), Reading.of(new)) for kind, pair, old, new in expected
    ]
    assert all(e.page_date == current.page_date and e.target == "t" for e in events)


outcomes = st.one_of(
    snapshots().map(Observed),
    st.sampled_from(["timeout", "HTTP 503"]).map(FetchFailed),
    st.sampled_from(["no ticker found"]).map(ParseFailed),
)
policies = st.builds(
    Policy,
    down_after=st.integers(1, 4),
    down_after_seconds=st.one_of(st.none(), st.integers(0, 900).map(float)),
    thresholds=st.just((ABS, Threshold(rule="any", above=Decimal("0.5"), below=Decimal(0)), MOVE)),
)


def _walk(
    policy: Policy, steps: Sequence[tuple[Outcome, int]]
) -> list[tuple[TargetState, list[Event]]]:
    state, moment, out = TargetState(), NOW, []
    for outcome, gap in steps:
        moment += timedelta(seconds=gap)
        state, events = step(state, outcome, moment, target="tca", policy=policy)
        out.append((state, events))
    return out


@PROPERTY
@given(policies, st.lists(st.tuples(outcomes, st.integers(0, 600)), max_size=30))
def test_prop_step_is_deterministic_and_outages_alternate(
    policy: Policy, steps: list[tuple[Outcome, int]]
) -> None:
    walked = _walk(policy, steps)
    again = _walk(policy, steps)
    assert walked == again
    assert [[e.event_id for e in ev] for _, ev in walked] == [
        [e.event_id for e in ev] for _, ev in again
    ]
    down = parse_failing = False
    for (outcome, _), (state, events) in zip(steps, walked, strict=True):
        assert len({e.event_id for e in events}) == len(events)
        for e in events:
            if e.kind is K.SOURCE_DOWN:
                assert not down, "source_down twice without a recovery"
                assert isinstance(outcome, FetchFailed)
                down = True
            elif e.kind is K.SOURCE_RECOVERED:
                assert down
                down = False
            elif e.kind is K.PARSE_FAILED:
                assert not parse_failing
                parse_failing = True
            elif e.kind is K.PARSE_RECOVERED:
                assert parse_failing
                parse_failing = False
        assert (state.down, state.parse_failing) == (down, parse_failing)
        if isinstance(outcome, Observed):
            assert state.snapshot == outcome.snapshot


LEVEL = Decimal("0.1")
#: condition -> (its threshold, on first observation or not; whether a number is inside the band)
BANDS: dict[str, tuple[Callable[[bool], Threshold], Callable[[Decimal], bool]]] = {
    "abs_change": (
        lambda eager: Threshold("r", min_abs_change_pct=LEVEL, on_first_observation=eager),
        lambda x: abs(x) >= LEVEL,
    ),
    "above": (
        lambda eager: Threshold("r", above=LEVEL, on_first_observation=eager),
        lambda x: x > LEVEL,
    ),
    "below": (
        lambda eager: Threshold("r", below=LEVEL, on_first_observation=eager),
        lambda x: x < LEVEL,
    ),
}
levels = st.integers(-20, 20).map(lambda n: Decimal(n).scaleb(-2))  # -0.20 .. 0.20 around LEVEL


@PROPERTY
@given(
    st.sampled_from(sorted(BANDS)),
    st.booleans(),
    st.lists(st.one_of(levels, st.sampled_from(["fetch", "parse"])), min_size=1, max_size=25),
)
def test_prop_band_fires_once_per_entry(
    condition: str, eager: bool, walk: list[Decimal | str]
) -> None:
    make, inside = BANDS[condition]
    threshold = make(eager)
    steps: list[Outcome] = []
    expected: list[int] = []
    previous: Decimal | None = None
    for i, item in enumerate(walk):
        if item == "fetch":
            steps.append(FetchFailed("x"))
            continue
        if item == "parse":
            steps.append(ParseFailed("p"))
            continue
        assert isinstance(item, Decimal)
        # the level drives the watched number: the rate, or the page's change percentage
        steps.append(tmt("1", str(item)) if condition == "abs_change" else tmt(str(item)))
        if inside(item) and (eager if previous is None else not inside(previous)):
            expected.append(i)
        previous = item
    _, per_step = run(steps, policy=Policy(down_after=100, thresholds=(threshold,)))
    assert fired(per_step) == expected


@PROPERTY
@given(
    st.sampled_from([Decimal("0.5"), Decimal(1), Decimal(5)]),
    st.lists(
        st.integers(9_000, 11_000).map(lambda n: Decimal(n).scaleb(-4)), min_size=1, max_size=30
    ),
)
def test_prop_min_move_reference_is_the_last_alerted_rate(
    pct: Decimal, rates: list[Decimal]
) -> None:
    threshold = Threshold(rule="m", min_move_pct=pct)
    state, per_step = run([tmt(str(r)) for r in rates], policy=Policy(thresholds=(threshold,)))
    reference = rates[0]
    expected = []
    for i, rate in enumerate(rates[1:], start=1):
        if abs(rate - reference) / reference * 100 >= pct:
            expected.append(i)
            reference = rate
    assert fired(per_step) == expected
    alerts = [e for events in per_step for e in events if e.kind is K.THRESHOLD]
    last = alerts[-1].new.rate if alerts and alerts[-1].new else rates[0]
    assert state.last_alerted == {"m|TMT/USD": last} == {"m|TMT/USD": reference}
