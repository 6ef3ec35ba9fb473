"""A pair's history: the stored observations turned into the moments each pair's value changed.

The store keeps one observation row per *changed* snapshot of a target (every pair in it), so one
row may change one pair and repeat the others. :func:`changes` keeps, per (target, pair), only the
rows where that pair's rate or percentage differs from its previous row (``0.0100`` equals
``0.01``, ``-0%`` equals ``0%``, as the detector compares). The first row of each pair in the
window is its starting value. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from monitor.models import Quote, dec_str
from monitor.store import Observation


@dataclass(frozen=True, slots=True)
class Change:
    """A pair's value from ``at`` on, exactly as the page wrote it."""

    target: str
    pair: str
    at: datetime
    rate: Decimal
    change_pct: Decimal | None

    @classmethod
    def of(cls, target: str, at: datetime, quote: Quote) -> Change:
        return cls(target, quote.pair, at, quote.rate, quote.change_pct)

    def to_json(self) -> dict[str, str | None]:
        return {
            "time": self.at.isoformat(),
            "target": self.target,
            "pair": self.pair,
            "rate": dec_str(self.rate),
            "change_pct": None if self.change_pct is None else dec_str(self.change_pct),
        }


def changes(observations: Iterable[Observation], *, pair: str | None = None) -> list[Change]:
    """The changes of every pair (or of ``pair``) in time order; ties keep the page's order."""
    last: dict[tuple[str, str], tuple[Decimal, Decimal | None]] = {}
    out: list[Change] = []
    for obs in sorted(observations, key=lambda o: o.observed_at):
        for quote in obs.snapshot.quotes:
            if pair is not None and quote.pair != pair:
                continue
            key = (obs.target, quote.pair)
            value = (quote.rate, quote.change_pct)
            if last.get(key) == value:
                continue
            last[key] = value
            out.append(Change.of(obs.target, obs.observed_at, quote))
    return out


__all__ = ["Change", "changes"]
