"""Message rendering: fields, default titles and lines, user templates, sanitizing."""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from string import Template

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import render
from monitor.models import EventKind, Reading
from monitor.sinks.slack import escape as escape_slack
from tests.receivers import delivery


def test_default_title_and_line_of_a_change_pct_event() -> None:
    d = delivery()
    assert render.title(d) == "timesca: TMT/USD ▼ 0.28575, change -0.14%"
    assert render.line(d) == (
        f"timesca TMT/USD ▼ 0.28575, change 0% → -0.14% · page date 2025-05-16 · id {d.short_id}"
    )
    assert len(d.short_id) == 8


def test_fields_are_exact_and_documented() -> None:
    d = delivery(kind=EventKind.RATE_CHANGED, old=("0.28535", "0"), new=("0.28575", "0.14"))
    f = render.fields(d)
    assert set(f) == set(render.FIELDS)
    assert f["old_rate"] == "0.28535"
    assert f["new_rate"] == "0.28575"
    assert f["change"] == "+0.00040"
    assert f["direction"] == render.UP
    assert f["new_change_pct"] == "0.14%"
    assert f["observed_at"] == "2025-05-16T09:30:00Z"
    assert f["page_date"] == "2025-05-16"
    assert f["dedup_id"] == d.short_id
    assert f["rule"] == "n/a"
    assert f["rate_move"] == "+0.14%"
    assert f["move"] == "0.28535 → 0.28575 (+0.14%), change 0% → 0.14%"


@pytest.mark.parametrize(
    ("old", "new", "direction", "change"),
    [
        (("0.5", "0"), ("0.4", "0"), render.DOWN, "-0.1"),
        (("0.5", "0"), ("0.5", "0.1"), render.UP, "0"),  # rate flat: the page % moved up
        (("0.5", "-0"), ("0.5", "0"), render.FLAT, "0"),  # -0% vs 0% is no move
        (None, ("0.5", "0"), render.FLAT, "n/a"),
    ],
)
def test_direction_and_change(
    old: tuple[str, str] | None, new: tuple[str, str], direction: str, change: str
) -> None:
    f = render.fields(delivery(kind=EventKind.RATE_CHANGED, old=old, new=new))
    assert (f["direction"], f["change"]) == (direction, change)


def test_tiny_rates_have_no_exponent() -> None:
    d = delivery(kind=EventKind.RATE_CHANGED, old=("0.00000008", "0"), new=("0.00000009", "-0"))
    f = render.fields(d)
    assert (f["old_rate"], f["new_rate"], f["change"]) == (
        "0.00000008",
        "0.00000009",
        "+0.00000001",
    )
    assert f["new_change_pct"] == "-0%"  # the page's sign is kept for display


def test_every_kind_has_a_readable_default() -> None:
    for kind in EventKind:
        pair = "TMT/USD" if kind in render.PAIR_KINDS else None
        d = delivery(kind=kind, pair=pair, detail="3 failed checks", rule="big")
        assert render.title(d)
        line = render.line(d)
        assert "$" not in line
        assert d.short_id in line


def test_user_templates_use_safe_substitute() -> None:
    d = delivery()
    assert render.title(d, "$pair is at ${new_rate} ($new_change_pct)") == (
        "TMT/USD is at 0.28575 (-0.14%)"
    )
    # an unknown name stays as written instead of failing the delivery
    assert render.line(d, "$pair $nonsense $") == "TMT/USD $nonsense $"


def test_sanitize_strips_controls_and_bounds_length() -> None:
    assert render.sanitize("TMT/USD\r\nBcc: x@y\t\x1b[31m\u202e") == "TMT/USD Bcc: x@y [31m"
    assert render.sanitize("a\u2028b\x85c") == "a b c"
    long = render.sanitize("x" * 500, 50)
    assert len(long) == 50
    assert long.endswith("…")


def test_scraped_text_is_sanitized_in_every_field() -> None:
    d = delivery(pair="TMT/USD\r\nBcc: evil@example.com", detail="line1\nline2", target="t\x00x")
    f = render.fields(d)
    assert f["pair"] == "TMT/USD Bcc: evil@example.com"
    assert f["detail"] == "line1 line2"
    assert f["target"] == "tx"
    assert "\n" not in render.title(d)
    assert "\n" not in render.line(d)


def test_escape_applies_to_field_values_not_to_the_template() -> None:
    d = delivery(pair="<b>&</b>")
    assert render.render(d, "<i>$pair</i>", escape=html.escape) == "<i>&lt;b&gt;&amp;&lt;/b&gt;</i>"


def test_digest_title_names_two_lines_and_counts_the_rest() -> None:
    batch = [
        delivery(kind=EventKind.RATE_CHANGED, pair=p, old=("1", "0"), new=(r, "0"), row=i)
        for i, (p, r) in enumerate([("TMT/USD", "0.9"), ("KZT/USD", "1.1"), ("UZS/USD", "1.2")])
    ]
    assert render.digest_title(batch) == "timesca: TMT/USD ▼, KZT/USD ▲ (+1 more)"
    assert render.digest_title(batch[:2]) == "timesca: TMT/USD ▼, KZT/USD ▲"
    assert (
        render.digest_title(batch[:1]) == render.title(batch[0]) == "timesca: TMT/USD ▼ 0.9 (-10%)"
    )
    assert render.digest_title(batch, "$count on $target: $pairs") == (
        "3 on timesca: TMT/USD, KZT/USD, UZS/USD"
    )
    recovered = delivery(
        kind=EventKind.SOURCE_RECOVERED, pair=None, old=None, new=None, since_minutes=12
    )
    assert render.digest_title([recovered, *batch]) == (
        "timesca is back after 12 min, TMT/USD ▼ (+2 more)"
    )
    other = delivery(kind=EventKind.RATE_CHANGED, target="24kg", pair="KGS/USD", row=9)
    assert render.digest_title([batch[0], other]) == "timesca: TMT/USD ▼; 24kg: KGS/USD ▼"
    with pytest.raises(ValueError, match="empty batch"):
        render.digest_title([])


def test_one_line_per_pair_per_check_whatever_kinds_fired() -> None:
    move = {"old": ("0.28575", "0"), "new": ("0.28550", "-0.14")}
    rate = delivery(kind=EventKind.RATE_CHANGED, row=1, **move)
    pct = delivery(kind=EventKind.CHANGE_PCT_CHANGED, row=2, **move)
    low = delivery(
        kind=EventKind.THRESHOLD, rule="tmt-low", detail="rate below 0.2856", row=3, **move
    )
    kzt = delivery(
        kind=EventKind.RATE_CHANGED,
        pair="KZT/USD",
        old=("0.00196", "0"),
        new=("0.00195", "0"),
        row=4,
    )
    down = delivery(
        kind=EventKind.SOURCE_DOWN, pair=None, old=None, new=None, detail="HTTP 503", row=5
    )
    groups = render.lines([rate, kzt, pct, low, down])
    assert [len(g.deliveries) for g in groups] == [3, 1, 1]
    assert [render.line(g) for g in groups] == [
        "timesca TMT/USD ▼ 0.28575 → 0.28550 (-0.09%), change 0% → -0.14% · rule tmt-low: "
        f"rate below 0.2856 · page date 2025-05-16 · id {rate.short_id}",
        "timesca KZT/USD ▼ 0.00196 → 0.00195 (-0.51%), change 0% · page date 2025-05-16 "
        f"· id {kzt.short_id}",
        f"timesca is down: HTTP 503 · id {down.short_id}",
    ]
    f = render.fields(groups[0])
    assert f["kinds"] == "rate_changed, change_pct_changed, threshold"
    assert f["dedup_ids"] == f"{rate.short_id} {pct.short_id} {low.short_id}"
    assert (f["count"], f["rule"]) == ("3", "tmt-low")
    assert render.title(groups[0]) == (
        "timesca: TMT/USD ▼ 0.28550 (-0.09%) · rule tmt-low: rate below 0.2856"
    )
    # the same pair in another check is another line
    again = replace(rate, check_id="check-2")
    assert len(render.lines([rate, again])) == 2


def test_a_line_template_is_filled_once_per_line() -> None:
    rate = delivery(kind=EventKind.RATE_CHANGED, row=1, old=("1", "0"), new=("2", "5"))
    pct = delivery(kind=EventKind.CHANGE_PCT_CHANGED, row=2, old=("1", "0"), new=("2", "5"))
    (ln,) = render.lines([rate, pct])
    assert render.line(ln, "$pair $old_rate→$new_rate [$kinds]") == (
        "TMT/USD 1→2 [rate_changed, change_pct_changed]"
    )


@pytest.mark.parametrize(
    ("kind", "extra", "title", "body"),
    [
        (EventKind.SOURCE_DOWN, {}, "timesca is down", "timesca is down: HTTP 503"),
        (
            EventKind.SOURCE_DOWN,
            {"since_minutes": 10, "failed_checks": 3},
            "timesca is down",
            "timesca is down for 10 min (3 failed checks): HTTP 503",
        ),
        (
            EventKind.SOURCE_DOWN,
            {"since_minutes": 70, "failed_checks": 14, "reminder": 1, "rule": "outages"},
            "timesca is still down after 1 h 10 min",
            "timesca is still down after 1 h 10 min (14 failed checks, reminder 1, rule outages): "
            "HTTP 503",
        ),
        (
            EventKind.SOURCE_RECOVERED,
            {"since_minutes": 12, "failed_checks": 7},
            "timesca is back after 12 min",
            "timesca is back after 12 min (7 failed checks)",
        ),
        (
            EventKind.SOURCE_RECOVERED,
            {"failed_checks": 1},
            "timesca is back",
            "timesca is back (1 failed check)",
        ),
        (
            EventKind.PARSE_FAILED,
            {},
            "timesca shows no ticker",
            "timesca shows no ticker: HTTP 503",
        ),
        (
            EventKind.PARSE_RECOVERED,
            {"since_minutes": 40},
            "timesca shows its ticker again after 40 min",
            "timesca shows its ticker again after 40 min",
        ),
    ],
)
def test_outage_titles_and_lines_say_how_long(
    kind: EventKind, extra: dict[str, object], title: str, body: str
) -> None:
    d = delivery(kind=kind, pair=None, old=None, new=None, detail="HTTP 503", **extra)  # type: ignore[arg-type]
    assert render.title(d) == title
    assert render.line(d) == f"{body} · id {d.short_id}"


def test_threshold_notes_say_reminders_durations_and_clears() -> None:
    common = {"rule": "tmt-high", "old": ("0.2871", "0"), "new": ("0.2871", "0")}
    fired = delivery(
        kind=EventKind.THRESHOLD, detail="rate above 0.2870", since_minutes=2, **common
    )  # type: ignore[arg-type]
    again = delivery(
        kind=EventKind.THRESHOLD,
        detail="rate above 0.2870",
        since_minutes=125,
        reminder=2,
        **common,
    )  # type: ignore[arg-type]
    cleared = delivery(
        kind=EventKind.THRESHOLD_CLEARED,
        detail="rate back at or below 0.2860",
        since_minutes=35,
        **common,
    )  # type: ignore[arg-type]
    assert render.fields(fired)["notes"] == "rule tmt-high: rate above 0.2870 (for 2 min)"
    assert render.fields(again)["notes"] == (
        "rule tmt-high, reminder 2: rate above 0.2870 (for 2 h 5 min)"
    )
    assert render.fields(cleared)["notes"] == (
        "rule tmt-high cleared: rate back at or below 0.2860 (after 35 min)"
    )
    assert render.title(again) == (
        "timesca: TMT/USD 0.2871 · rule tmt-high, reminder 2: rate above 0.2870 (for 2 h 5 min)"
    )


def test_a_test_alert_says_so_in_its_title_and_every_line() -> None:
    d = delivery(test=True)
    assert render.title(d).startswith("[test] timesca: TMT/USD")
    assert render.line(d).startswith("[test] timesca TMT/USD")
    assert render.line(d, "$pair").startswith("[test] ")
    assert render.digest_title([d, delivery(pair="KZT/USD", row=2)]).startswith("[test] ")


@pytest.mark.parametrize(
    ("old", "new", "move"),
    [
        ("0.28575", "0.28550", "-0.09%"),
        ("1", "1.5", "+50%"),
        ("100.00", "100.0035", "+0.0035%"),  # below 0.01%: two significant digits
        ("0.00008", "0.00009", "+12.5%"),
        ("0", "1", "n/a"),
        ("2", "2.00", "0%"),
    ],
)
def test_rate_move_is_the_one_rounded_number(old: str, new: str, move: str) -> None:
    d = delivery(kind=EventKind.RATE_CHANGED, old=(old, "0"), new=(new, "0"))
    assert render.fields(d)["rate_move"] == move


def test_page_numbers_are_never_rounded_and_go_through_one_helper() -> None:
    reading = Reading(Decimal("0.000000080"), Decimal("-0"))
    assert render.number(reading, "rate") == "0.000000080"
    assert render.number(reading, "change_pct") == "-0"
    assert render.number(Reading(Decimal(1)), "change_pct") is None
    assert render.number(None, "rate") is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, None),
        (45, "45 s"),
        (720, "12 min"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (273600, "3 d 4 h"),
    ],
)
def test_durations_read_like_a_person_writes_them(seconds: float, text: str | None) -> None:
    assert render.duration(timedelta(seconds=seconds)) == text
    assert render.duration(None) is None


_TEMPLATE = st.lists(
    st.one_of(
        st.sampled_from([f"${name}" for name in render.FIELDS] + ["$_subject", "$nope", "$$"]),
        st.text(alphabet="ab <&>·", max_size=4),
    ),
    max_size=8,
).map("".join)
_ESCAPES = st.sampled_from([lambda text: text, html.escape, escape_slack])


@settings(max_examples=150, deadline=None)
@given(
    template=_TEMPLATE,
    escape=_ESCAPES,
    detail=st.text(alphabet="x<&>$ ", max_size=6),
    pairs=st.integers(1, 4),
)
def test_a_template_reads_the_fields_a_whole_dict_would_give(
    template: str, escape: render.Escape, detail: str, pairs: int
) -> None:
    """Lines fill templates from fields computed once and escaped when looked up: the text is
    what filling the template from the whole escaped ``fields()`` dict gives."""
    batch = [
        delivery(kind=EventKind.THRESHOLD, pair=f"P{i}/USD", detail=detail, row=i)
        for i in range(pairs)
    ]
    groups = render.lines(batch)
    for ln in groups:
        whole = Template(template).safe_substitute(render.fields(ln, escape=escape))
        assert render.render(ln, template, escape=escape) == render.sanitize(whole, 1000)
    # a digest's title from the lines equals the title from the deliveries
    assert render.digest_title(groups, template or None, escape=escape) == render.digest_title(
        batch, template or None, escape=escape
    )
