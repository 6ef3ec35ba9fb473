"""The sample delivery that ``ticker-monitor test-sink NAME`` sends."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from monitor.models import Delivery, Event, EventKind, Reading, dedup_key


def sample_delivery(sink_name: str, now: datetime) -> Delivery:
    """A realistic delivery for ``ticker-monitor test-sink NAME``: TMT/USD 0% → -0.14%."""
    event = Event(
        kind=EventKind.CHANGE_PCT_CHANGED,
        target="timesca",
        pair="TMT/USD",
        old=Reading(Decimal("0.28575"), Decimal("0")),
        new=Reading(Decimal("0.28575"), Decimal("-0.14")),
        observed_at=now,
        page_date=now.date(),
        source_url="https://timesca.com/",
        detail="sample alert sent by 'ticker-monitor test-sink'",
    )
    return Delivery(
        id=0,
        dedup_key=dedup_key(event, sink_name),
        sink=sink_name,
        event=event,
        check_id="test-sink",
        created_at=now,
    )
