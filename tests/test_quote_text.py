"""Quotes and readings keep the page's own text of each number, for display only."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from monitor.models import Event, EventKind, Quote, Reading, Snapshot

PLUS = Quote("TJS/USD", "TJS", "USD", Decimal("0.09"), Decimal("0.09"), "0.09", "+0.09")
GROUPED = Quote(
    "USD/UZS", "USD", "UZS", Decimal("12850.50"), Decimal("-0.14"), "12,850.50", "−0.14"
)


def test_the_text_is_shown_and_the_value_compared() -> None:
    assert (PLUS.rate_as_written, PLUS.change_as_written) == ("0.09", "+0.09")
    assert (GROUPED.rate_as_written, GROUPED.change_as_written) == ("12,850.50", "−0.14")
    plain = Quote("TJS/USD", "TJS", "USD", Decimal("0.090"), Decimal("0.09"))
    assert plain == PLUS  # compared by value: 0.090 == 0.09, "+0.09" == "0.09"
    assert (plain.rate_as_written, plain.change_as_written) == ("0.090", "0.09")
    none = Quote("A/B", "A", "B", Decimal("8E-8"))
    assert (none.rate_as_written, none.change_as_written) == ("0.00000008", None)


def test_quote_json_keeps_the_texts_that_differ_from_the_decimal_string() -> None:
    assert PLUS.to_json() == {
        "pair": "TJS/USD",
        "base": "TJS",
        "quote": "USD",
        "rate": "0.09",
        "change_pct": "0.09",
        "change_text": "+0.09",
    }
    assert GROUPED.to_json()["rate_text"] == "12,850.50"
    for quote in (PLUS, GROUPED):
        again = Quote.from_json(quote.to_json())
        assert (again.rate_as_written, again.change_as_written) == (
            quote.rate_as_written,
            quote.change_as_written,
        )


def test_stored_json_without_texts_still_loads() -> None:
    old = {"pair": "KZT/USD", "base": "KZT", "quote": "USD", "rate": "0.00196", "change_pct": "-0"}
    quote = Quote.from_json(old)
    assert (quote.rate_as_written, quote.change_as_written) == ("0.00196", "-0")
    assert quote.to_json() == old
    snapshot = Snapshot.from_json({"page_date": None, "quotes": [old, PLUS.to_json()]})
    assert snapshot.quotes[1].change_as_written == "+0.09"
    assert Reading.from_json({"rate": "0.28575", "change_pct": None}) == Reading(Decimal("0.28575"))


def test_readings_carry_the_texts_of_their_quote() -> None:
    reading = Reading.of(GROUPED)
    assert reading is not None
    assert (reading.rate_as_written, reading.change_as_written) == ("12,850.50", "−0.14")
    assert reading == Reading(Decimal("12850.50"), Decimal("-0.14"))
    assert reading.values_json() == {"rate": "12850.50", "change_pct": "-0.14"}
    assert reading.to_json() == {
        "rate": "12850.50",
        "change_pct": "-0.14",
        "rate_text": "12,850.50",
        "change_text": "−0.14",
    }
    again = Reading.from_json(reading.to_json())
    assert again is not None
    assert (again.rate_as_written, again.change_as_written) == ("12,850.50", "−0.14")
    assert Reading(None).rate_as_written is None


def test_a_stored_event_shows_the_texts_after_a_restart() -> None:
    event = Event(
        kind=EventKind.CHANGE_PCT_CHANGED,
        target="timesca",
        pair="TJS/USD",
        old=Reading(Decimal("0.09"), Decimal("0")),
        new=Reading.of(PLUS),
        observed_at=datetime(2025, 5, 16, 10, tzinfo=UTC),
    )
    loaded = Event.from_json(event.to_json())
    assert loaded.new is not None
    assert loaded.new.change_as_written == "+0.09"
    assert loaded == event
