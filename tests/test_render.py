"""Message rendering: fields, default titles and lines, user templates, sanitizing."""

from __future__ import annotations

import html

import pytest

from monitor import render
from monitor.models import EventKind
from tests.receivers import delivery


def test_default_title_and_line_of_a_change_pct_event() -> None:
    d = delivery()
    assert render.title(d) == "TMT/USD change % 0% → -0.14% (0.28575)"
    assert render.line(d) == (
        "timesca TMT/USD ▼ change % 0% → -0.14%, rate 0.28575 · page date 2025-05-16 "
        f"· id {d.short_id}"
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


def test_digest_title() -> None:
    batch = [delivery(pair=p, row=i) for i, p in enumerate(["TMT/USD", "KZT/USD", "TMT/USD"])]
    assert render.digest_title(batch) == "timesca: 3 changes"
    assert render.digest_title(batch[:1]) == render.title(batch[0])
    assert render.digest_title(batch, "$count on $target: $pairs") == (
        "3 on timesca: TMT/USD, KZT/USD"
    )
    mixed = [*batch, delivery(kind=EventKind.SOURCE_DOWN, pair=None, new=None, old=None)]
    assert render.digest_title(mixed) == "timesca: 4 events"
