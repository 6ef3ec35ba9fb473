"""Domain values: identities and JSON forms."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from monitor.models import Event, EventKind, Reading

NOW = datetime(2025, 5, 16, 9, 30, tzinfo=UTC)


def move(rate_text: str, change_text: str, rate: str = "12860") -> Event:
    return Event(
        kind=EventKind.RATE_CHANGED,
        target="t",
        pair="USD/UZS",
        old=Reading(Decimal("12850.50"), Decimal("0.12"), "12,850.50", "+0.12"),
        new=Reading(Decimal(rate), Decimal("0.2"), rate_text, change_text),
        observed_at=NOW,
    )


def test_an_event_id_depends_on_values_not_on_how_the_page_wrote_them() -> None:
    assert move("12,860", "+0.2").event_id == move("12 860", "0.2").event_id
    assert move("12,860", "+0.2").event_id != move("12,861", "+0.2", rate="12861").event_id


def test_the_page_text_survives_the_json_round_trip() -> None:
    event = move("12,860", "+0.2")
    data = event.to_json()
    assert data["new"]["rate_text"] == "12,860"
    back = Event.from_json(data)
    assert back.new is not None
    assert (back.new.rate_text, back.new.change_text) == ("12,860", "+0.2")
    assert back.event_id == event.event_id
