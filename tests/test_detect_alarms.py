"""The detector's alarms: ``clear_at`` hysteresis, ``for`` confirmation, reminders, send_resolved,
and rules that confirm or remind of outages on their own. Time is an injected clock (each check's
``now``); nothing sleeps."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.detect import (
    FetchFailed,
    Observed,
    OutageRule,
    Outcome,
    ParseFailed,
    Policy,
    Threshold,
    outage_rules_from_rules,
    policy_for,
    step,
)
from monitor.models import Event, EventKind, Quote, Snapshot, TargetState
from monitor.settings import RuleConfig, TargetConfig

T0 = datetime(2025, 5, 16, 12, 0, tzinfo=UTC)
K = EventKind
PROPERTY = settings(max_examples=150, deadline=None)


def tmt(rate: str | Decimal, pct: str | Decimal | None = "0") -> Observed:
    quote = Quote("TMT/USD", "TMT", "USD", Decimal(rate), None if pct is None else Decimal(pct))
    return Observed(Snapshot((quote,), date(2025, 5, 16)))


def run(
    outcomes: Sequence[Outcome], policy: Policy, *, seconds: Sequence[float] | float = 60
) -> tuple[TargetState, list[list[Event]]]:
    """Feed outcomes to ``step`` at T0 + the given offsets (or that many seconds apart)."""
    if isinstance(seconds, int | float):
        times = [T0 + timedelta(seconds=seconds * i) for i in range(len(outcomes))]
    else:
        times = [T0 + timedelta(seconds=s) for s in seconds]
    state = TargetState()
    per_check = []
    for outcome, now in zip(outcomes, times, strict=True):
        state, events = step(state, outcome, now, target="tca", policy=policy)
        per_check.append(events)
    return state, per_check


def of(per_check: list[list[Event]], kind: EventKind, *, reminder: bool | None = None) -> list[int]:
    """The checks that raised an event of ``kind`` (reminders only / no reminders, if told)."""
    return [
        i
        for i, events in enumerate(per_check)
        if any(
            e.kind is kind and (reminder is None or bool(e.reminder) == reminder) for e in events
        )
    ]


def high(**changes: object) -> Threshold:
    fields: dict[str, object] = {"rule": "high", "above": Decimal("0.2870")}
    fields.update(changes)
    return Threshold(**fields)  # type: ignore[arg-type]


# --- clear_at ----------------------------------------------------------------------------------


def test_clear_at_re_arms_only_below_it_and_send_resolved_says_so() -> None:
    policy = Policy(thresholds=(high(clear_at=Decimal("0.2860"), send_resolved=True),))
    rates = ["0.2850", "0.2875", "0.2865", "0.2875", "0.2860", "0.2871"]
    _, per_check = run([tmt(r) for r in rates], policy)
    assert of(per_check, K.THRESHOLD) == [1, 5]  # 0.2865 is not back to 0.2860: no second alert
    assert of(per_check, K.THRESHOLD_CLEARED) == [4]
    cleared = per_check[4][-1]
    assert (cleared.rule, cleared.detail) == ("high", "rate back at or below 0.2860")
    assert cleared.since == T0 + timedelta(minutes=1)  # the band was entered at check 1
    assert cleared.duration == timedelta(minutes=3)


def test_without_clear_at_it_re_arms_on_leaving_the_band_as_before() -> None:
    _, per_check = run(
        [tmt(r) for r in ["0.2850", "0.2875", "0.2865", "0.2875"]], Policy(thresholds=(high(),))
    )
    assert of(per_check, K.THRESHOLD) == [1, 3]
    assert of(per_check, K.THRESHOLD_CLEARED) == []  # send_resolved is off


def test_below_and_abs_change_clear_at() -> None:
    low = Threshold("low", below=Decimal("0.2856"), clear_at=Decimal("0.2866"), send_resolved=True)
    big = Threshold(
        "big", min_abs_change_pct=Decimal(1), clear_at=Decimal("0.8"), send_resolved=True
    )
    _, per_check = run(
        [tmt(r) for r in ["0.2860", "0.2850", "0.2860", "0.2855", "0.2866"]],
        Policy(thresholds=(low,)),
    )
    assert of(per_check, K.THRESHOLD) == [1]
    assert of(per_check, K.THRESHOLD_CLEARED) == [4]
    _, per_check = run(
        [tmt("1", p) for p in ["0", "-1.2", "0.9", "1.1", "0.79", "1"]], Policy(thresholds=(big,))
    )
    assert of(per_check, K.THRESHOLD) == [1, 5]
    assert of(per_check, K.THRESHOLD_CLEARED) == [4]
    assert per_check[4][-1].detail == "change back within ±0.8%"


def test_an_absorbed_first_observation_sends_no_cleared_and_no_reminder() -> None:
    policy = Policy(
        thresholds=(high(send_resolved=True, repeat=60),),
    )
    _, per_check = run([tmt(r) for r in ["0.2875", "0.2875", "0.2875", "0.2850"]], policy)
    assert [e.kind for events in per_check for e in events] == [K.RATE_CHANGED]


# --- for -------------------------------------------------------------------------------------


def test_for_fires_once_the_band_held_on_every_check_for_that_long() -> None:
    policy = Policy(thresholds=(high(hold=120),))
    rates = ["0.2850", "0.2875", "0.2876", "0.2877", "0.2878"]
    _, per_check = run([tmt(r) for r in rates], policy)  # a check a minute
    assert of(per_check, K.THRESHOLD) == [3]  # beyond since check 1, for 2 minutes at check 3
    fired = per_check[3][-1]
    assert fired.since == T0 + timedelta(minutes=1)
    assert fired.detail == "rate above 0.2870"


def test_a_flap_inside_the_window_sends_nothing() -> None:
    policy = Policy(thresholds=(high(hold=120, send_resolved=True),))
    rates = ["0.2850", "0.2875", "0.2869", "0.2875", "0.2876", "0.2869"]
    state, per_check = run([tmt(r) for r in rates], policy)
    assert all(
        events == [] or all(e.kind is not K.THRESHOLD for e in events) for events in per_check
    )
    assert of(per_check, K.THRESHOLD_CLEARED) == []
    assert state.alarms == {}  # cancelled, armed again


def test_for_on_min_move_needs_the_move_to_hold() -> None:
    move = Threshold("move", min_move_pct=Decimal(1), hold=60)
    rates = ["1", "1.02", "1.001", "1.02", "1.03", "1.03"]
    state, per_check = run([tmt(r) for r in rates], Policy(thresholds=(move,)))
    assert of(per_check, K.THRESHOLD) == [4]  # 1.02 held from check 3 to check 4
    assert state.last_alerted == {"move|TMT/USD": Decimal("1.03")}


# --- reminders --------------------------------------------------------------------------------


def test_reminders_come_every_repeat_interval_until_the_band_clears() -> None:
    policy = Policy(thresholds=(high(repeat=300, clear_at=Decimal("0.2860")),))
    rates = ["0.2850"] + ["0.2875"] * 12 + ["0.2865", "0.2850", "0.2850"] + ["0.2875"] * 3
    _, per_check = run([tmt(r) for r in rates], policy, seconds=60)
    assert of(per_check, K.THRESHOLD, reminder=False) == [1, 16]
    assert of(per_check, K.THRESHOLD, reminder=True) == [6, 11]
    reminders = [e for events in per_check for e in events if e.reminder]
    assert [e.reminder for e in reminders] == [1, 2]
    assert [e.duration for e in reminders] == [timedelta(minutes=5), timedelta(minutes=10)]
    # 0.2865 is inside the hysteresis band, not beyond the level: the reminder would say so
    _, per_check = run([tmt("0.2850"), tmt("0.2875"), tmt("0.2865")], policy, seconds=300)
    (reminder,) = [e for events in per_check for e in events if e.reminder]
    assert reminder.detail == "rate not yet back at or below 0.2860"


def test_reminder_ids_differ_so_the_outbox_keeps_each() -> None:
    policy = Policy(thresholds=(high(repeat=60),))
    _, per_check = run([tmt("0.2850")] + [tmt("0.2875")] * 4, policy)
    ids = [e.event_id for events in per_check for e in events if e.kind is K.THRESHOLD]
    assert len(ids) == len(set(ids)) == 4


def test_no_threshold_reminders_on_failed_checks() -> None:
    policy = Policy(down_after=100, thresholds=(high(repeat=60),))
    outcomes: list[Outcome] = [tmt("0.2850"), tmt("0.2875"), FetchFailed("x"), FetchFailed("x")]
    _, per_check = run([*outcomes, tmt("0.2875")], policy)
    assert of(per_check, K.THRESHOLD, reminder=True) == [4]  # the next observation, 3 min in


# --- outage rules -----------------------------------------------------------------------------

PAGER = OutageRule("pager", frozenset({K.SOURCE_DOWN}), hold=600)
REMIND = OutageRule("remind", frozenset({K.SOURCE_DOWN, K.PARSE_FAILED}), repeat=900)


def test_a_rule_with_for_sends_its_own_down_and_recovered() -> None:
    fail = FetchFailed("HTTP 503")
    outcomes: list[Outcome] = [tmt("1"), *[fail] * 12, tmt("1")]
    _, per_check = run(outcomes, Policy(outage_rules=(PAGER,)))  # a check a minute
    target_down = [e for e in per_check[3] if e.kind is K.SOURCE_DOWN]
    assert [(e.rule, e.failed_checks) for e in target_down] == [(None, 3)]  # the target's own
    pager = [e for events in per_check for e in events if e.rule == "pager"]
    assert [(e.kind, next(i for i, x in enumerate(per_check) if e in x)) for e in pager] == [
        (K.SOURCE_DOWN, 11),  # failing since check 1: 10 minutes at check 11
        (K.SOURCE_RECOVERED, 13),
    ]
    down, recovered = pager
    assert (down.since, down.failed_checks, down.detail) == (
        T0 + timedelta(minutes=1),
        11,
        "HTTP 503",
    )
    assert recovered.duration == timedelta(minutes=12)
    assert recovered.failed_checks == 12
    # the target's own recovery carries the outage's duration too
    (target_back,) = [e for e in per_check[13] if e.kind is K.SOURCE_RECOVERED and e.rule is None]
    assert (target_back.since, target_back.failed_checks) == (T0 + timedelta(minutes=1), 12)


def test_an_outage_shorter_than_for_sends_the_rule_nothing() -> None:
    fail = FetchFailed("x")
    _, per_check = run([tmt("1"), *[fail] * 5, tmt("1")], Policy(outage_rules=(PAGER,)))
    assert [e for events in per_check for e in events if e.rule == "pager"] == []
    assert of(per_check, K.SOURCE_DOWN) == [3]  # the target itself was down


def test_outage_reminders_every_repeat_interval_until_it_answers() -> None:
    fail = FetchFailed("timeout")
    outcomes: list[Outcome] = [tmt("1"), *[fail] * 40, tmt("1"), fail, fail, fail]
    _, per_check = run(outcomes, Policy(outage_rules=(REMIND,)))
    reminders = [
        (i, e.reminder) for i, events in enumerate(per_check) for e in events if e.reminder
    ]
    # down at check 3 (the third failure); reminders 15 and 30 minutes after that
    assert reminders == [(18, 1), (33, 2)]
    assert all(e.rule == "remind" for events in per_check for e in events if e.reminder)
    # the next outage starts a new count
    assert of(per_check, K.SOURCE_DOWN, reminder=False) == [3, 44]


def test_parse_failure_reminders() -> None:
    broken = ParseFailed("no ticker")
    _, per_check = run([tmt("1"), *[broken] * 20, tmt("1")], Policy(outage_rules=(REMIND,)))
    reminders = [
        (i, e.kind, e.reminder) for i, ev in enumerate(per_check) for e in ev if e.reminder
    ]
    assert reminders == [(16, K.PARSE_FAILED, 1)]
    (back,) = [e for e in per_check[21] if e.kind is K.PARSE_RECOVERED]
    assert (back.duration, back.failed_checks) == (timedelta(minutes=20), 20)
    (reminder,) = [e for e in per_check[16] if e.reminder]
    assert (reminder.duration, reminder.failed_checks) == (timedelta(minutes=15), 16)


def test_outage_rules_and_policies_come_from_the_configuration() -> None:
    rules = [
        RuleConfig(sinks=["p"], events=[K.SOURCE_DOWN, K.SOURCE_RECOVERED], **{"for": "10m"}),
        RuleConfig(sinks=["p"], repeat_interval="1h"),  # every kind: both outage kinds
        RuleConfig(sinks=["p"], targets=["other"], events=[K.SOURCE_DOWN], repeat_interval="1h"),
        RuleConfig(sinks=["p"], events=[K.SOURCE_DOWN]),  # neither for nor a reminder
    ]
    names = ["pager", "remind", "elsewhere", "plain"]
    assert outage_rules_from_rules(rules, names) == (
        OutageRule("pager", frozenset({K.SOURCE_DOWN}), hold=600.0),
        OutageRule("remind", frozenset({K.SOURCE_DOWN, K.PARSE_FAILED}), repeat=3600.0),
        OutageRule("elsewhere", frozenset({K.SOURCE_DOWN}), frozenset({"other"}), repeat=3600.0),
    )
    target = TargetConfig(name="tca", url="https://example.org/", down_after_time="30m")
    policy = policy_for(target, rules, names)
    assert (policy.down_after, policy.down_after_seconds) == (3, 1800.0)
    assert [o.rule for o in policy.outage_rules] == ["pager", "remind"]


# --- properties --------------------------------------------------------------------------------

LEVEL, CLEAR = Decimal("0.2870"), Decimal("0.2860")
#: rates around both levels, failures in between
walk_items = st.one_of(
    st.integers(2850, 2880).map(lambda n: Decimal(n).scaleb(-4)),
    st.sampled_from(["fetch", "parse"]),
)


@dataclass
class Model:
    """An independent statement of hysteresis: armed until beyond LEVEL, then firing until back
    at or below CLEAR."""

    firing: bool = False
    notified: bool = False


@PROPERTY
@given(st.lists(walk_items, min_size=1, max_size=40), st.booleans())
def test_prop_clear_at_fires_once_per_excursion_beyond_the_level_and_back(
    walk: list[Decimal | str], eager: bool
) -> None:
    threshold = high(clear_at=CLEAR, send_resolved=True, on_first_observation=eager)
    outcomes: list[Outcome] = []
    fires, clears = [], []
    model, seen = Model(), False
    for i, item in enumerate(walk):
        if item == "fetch":
            outcomes.append(FetchFailed("x"))
            continue
        if item == "parse":
            outcomes.append(ParseFailed("p"))
            continue
        assert isinstance(item, Decimal)
        outcomes.append(tmt(item))
        if not model.firing and item > LEVEL:
            model.firing, model.notified = True, seen or eager
            if model.notified:
                fires.append(i)
        elif model.firing and item <= CLEAR:
            if model.notified:
                clears.append(i)
            model = Model()
        seen = True
    _, per_check = run(outcomes, Policy(down_after=1000, thresholds=(threshold,)))
    assert of(per_check, K.THRESHOLD) == fires
    assert of(per_check, K.THRESHOLD_CLEARED) == clears
    # between two alerts the rate went back past clear_at
    rates = [w for w in walk if isinstance(w, Decimal)]
    for a, b in itertools.pairwise(fires):
        between = [w for w in walk[a + 1 : b] if isinstance(w, Decimal)]
        assert any(r <= CLEAR for r in between), (rates, fires)


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.integers(2865, 2875).map(lambda n: Decimal(n).scaleb(-4)),
            st.integers(10, 200),  # seconds since the previous check: the injected clock
        ),
        min_size=1,
        max_size=40,
    ),
    st.sampled_from([0, 60, 150, 600]),
)
def test_prop_for_never_fires_on_a_path_that_leaves_the_band_inside_the_window(
    path: list[tuple[Decimal, int]], hold: int
) -> None:
    times, now = [], 0
    for _, gap in path:
        now += gap
        times.append(now)
    rates = [rate for rate, _ in path]
    _, per_check = run(
        [tmt(r) for r in rates], Policy(thresholds=(high(hold=hold),)), seconds=times
    )
    fires = of(per_check, K.THRESHOLD)
    for i in fires:
        # every check from the start of this run beyond the level up to the fire was beyond,
        # and that run lasted at least `hold`
        start = i
        while start > 0 and rates[start - 1] > LEVEL:
            start -= 1
        assert all(r > LEVEL for r in rates[start : i + 1])
        assert times[i] - times[start] >= hold
        assert start > 0  # never on a first observation (a silent baseline)
    # and it does fire, once per run that held long enough
    expected, start = [], None
    for i, rate in enumerate(rates):
        if rate <= LEVEL:
            start = None
            continue
        if start is None:
            start = i if i > 0 else -1  # a first observation beyond the level is absorbed
            fired = start == -1
        if not fired and times[i] - times[start] >= hold:
            expected.append(i)
            fired = True
    assert fires == expected


@PROPERTY
@given(
    st.lists(st.integers(20, 240), min_size=2, max_size=60),  # seconds between checks
    st.integers(1, 60).map(lambda n: n * 30),  # repeat_interval
    st.integers(0, 70),  # the check at which the band clears (past the end: never)
)
def test_prop_reminders_come_at_repeat_interval_within_one_check_and_stop_when_it_clears(
    gaps: list[int], repeat: int, clears_at: int
) -> None:
    times, now = [0], 0
    for gap in gaps:
        now += gap
        times.append(now)
    rates = ["0.2850"] + ["0.2875" if i < clears_at else "0.2850" for i in range(1, len(times))]
    policy = Policy(thresholds=(high(repeat=repeat),))
    _, per_check = run([tmt(r) for r in rates], policy, seconds=times)
    fired = times[1] if clears_at > 1 else None
    reminders = [(i, e.reminder) for i, ev in enumerate(per_check) for e in ev if e.reminder]
    if fired is None:
        assert reminders == []
        return
    last = -1
    for i, n in reminders:
        assert i < clears_at  # none once it cleared
        due = fired + n * repeat
        assert times[i] >= due  # never early
        assert times[i - 1] < due  # the first check at or after it is due: at most one check late
        assert n > last
        last = n
    # none is missing: the last check in the band had no reminder due after the last one sent
    in_band = [t for i, t in enumerate(times) if 1 <= i < clears_at]
    expected_count = int((in_band[-1] - fired) // repeat)
    assert last == expected_count or (expected_count == 0 and last == -1)
