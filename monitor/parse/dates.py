"""The page's date line: ``16 May 2025``, ``Friday, 16 May 2025``, ``May 16, 2025``, ``2025-05-16``."""

from __future__ import annotations

import re
from datetime import date
from typing import Final

from monitor.parse.items import normalise

__all__ = ["read_date"]

_MONTHS: Final = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for name in names
}
_DATE: Final = re.compile(
    r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]{0,6}\.?,? )?"
    r"(?:(?P<d1>\d{1,2})(?:st|nd|rd|th)? (?P<m1>[a-z]{3,9})\.?,? (?P<y1>\d{4})"
    r"|(?P<m2>[a-z]{3,9})\.? (?P<d2>\d{1,2})(?:st|nd|rd|th)?,? (?P<y2>\d{4})"
    r"|(?P<y3>\d{4})-(?P<m3>\d{2})-(?P<d3>\d{2}))",
    re.IGNORECASE,
)


def read_date(line: str) -> date | None:
    """``16 May 2025`` (and a few other spellings) as a date; None for anything else."""
    if len(line) > 64:
        return None
    match = _DATE.fullmatch(normalise(line))
    if match is None:
        return None
    if match["y3"] is not None:
        year, month, day = int(match["y3"]), int(match["m3"]), int(match["d3"])
    else:
        name = (match["m1"] or match["m2"]).lower()
        if name not in _MONTHS:
            return None
        year, month, day = (
            int(match["y1"] or match["y2"]),
            _MONTHS[name],
            int(match["d1"] or match["d2"]),
        )
    try:
        return date(year, month, day)
    except ValueError:
        return None
