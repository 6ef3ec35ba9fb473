"""Message rendering: the template fields of one delivery, the default titles and one-line bodies.

Every sink renders through this module, so that a change reads the same in a terminal, a Slack
channel and a mailbox. A sink may override the title and the body per ``[sinks.NAME]`` with
``title_template`` / ``body_template``, written in :class:`string.Template` syntax (``$pair``,
``${new_rate}``) and filled with :meth:`~string.Template.safe_substitute`, so an unknown ``$name``
stays as written instead of failing a delivery.

Template fields (every value is a string; an absent value reads ``n/a``)
------------------------------------------------------------------------

==================  ==============================================================================
``target``          the target's name (``timesca``)
``pair``            the pair (``TMT/USD``); ``n/a`` for target-level events (``source_down`` ...)
``kind``            the event kind (``change_pct_changed``)
``old_rate``        the previous rate, an exact decimal string (``0.28575``)
``new_rate``        the new rate
``old_change_pct``  the page's previous change percentage, with ``%`` (``0%``)
``new_change_pct``  the page's new change percentage (``-0.14%``)
``direction``       ``▲`` (up), ``▼`` (down) or ``•`` (unchanged / not applicable): the rate's move,
                    or the page percentage's move when the rate did not move
``change``          the signed rate difference new − old (``+0.00040``, ``-0.00040``, ``0``)
``page_date``       the date the page printed (``2025-05-16``)
``observed_at``     when the check saw it, ISO 8601 UTC to the second (``2025-05-16T09:30:00Z``)
``source_url``      the page's URL
``dedup_id``        the first 8 characters of the delivery's dedup key: duplicates share it
``detail``          the event's short human sentence (the threshold crossed, the fetch error)
``rule``            the rule whose threshold fired (threshold events)
``summary``         the default one-phrase description of the change (``change % 0% → -0.14% ...``)
``count``           how many events the message carries (1, or more in a digest)
``pairs``           the distinct pairs of the message, comma-separated
==================  ==============================================================================

For a digest (several events in one message) the title template is filled with the *first* event's
fields plus ``count`` and ``pairs``; the body template is applied to each event, one line each.

All scraped text (target names, pair labels, details, URLs) goes through :func:`sanitize`: control
characters are removed, line breaks become spaces, length is bounded. Numbers are never rounded:
they are the page's own decimals, written without exponent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from decimal import Decimal, localcontext
from string import Template

from monitor.models import Delivery, Event, EventKind

#: what an absent value reads in a message
NA = "n/a"
UP, DOWN, FLAT = "▲", "▼", "•"

#: every field name a template may use (see the module docstring)
FIELDS: tuple[str, ...] = (
    "target",
    "pair",
    "kind",
    "old_rate",
    "new_rate",
    "old_change_pct",
    "new_change_pct",
    "direction",
    "change",
    "page_date",
    "observed_at",
    "source_url",
    "dedup_id",
    "detail",
    "rule",
    "summary",
    "count",
    "pairs",
)

#: sanitize limits for each kind of scraped text
NAME_LIMIT = 80
DETAIL_LIMIT = 300
URL_LIMIT = 300
TITLE_LIMIT = 200
LINE_LIMIT = 1000

PAIR_KINDS = frozenset(
    {
        EventKind.RATE_CHANGED,
        EventKind.CHANGE_PCT_CHANGED,
        EventKind.THRESHOLD,
        EventKind.PAIR_ADDED,
        EventKind.PAIR_REMOVED,
    }
)

#: the default title of one event, per kind (the same template syntax a user override uses)
DEFAULT_TITLES: Mapping[EventKind, str] = {
    EventKind.RATE_CHANGED: "$pair $direction $old_rate → $new_rate ($new_change_pct)",
    EventKind.CHANGE_PCT_CHANGED: "$pair change % $old_change_pct → $new_change_pct ($new_rate)",
    EventKind.THRESHOLD: "$pair $direction $new_change_pct ($new_rate): rule $rule",
    EventKind.PAIR_ADDED: "$pair added ($new_rate)",
    EventKind.PAIR_REMOVED: "$pair removed",
    EventKind.SOURCE_DOWN: "$target: source down",
    EventKind.SOURCE_RECOVERED: "$target: source recovered",
    EventKind.PARSE_FAILED: "$target: no ticker found on the page",
    EventKind.PARSE_RECOVERED: "$target: ticker found again",
}

#: the ``summary`` field: what changed, in one phrase, per kind
SUMMARIES: Mapping[EventKind, str] = {
    EventKind.RATE_CHANGED: "rate $old_rate → $new_rate ($change), change % $new_change_pct",
    EventKind.CHANGE_PCT_CHANGED: "change % $old_change_pct → $new_change_pct, rate $new_rate",
    EventKind.THRESHOLD: "rule $rule: $detail; rate $new_rate, change % $new_change_pct",
    EventKind.PAIR_ADDED: "added: rate $new_rate, change % $new_change_pct",
    EventKind.PAIR_REMOVED: "removed (last rate $old_rate, change % $old_change_pct)",
    EventKind.SOURCE_DOWN: "source down: $detail",
    EventKind.SOURCE_RECOVERED: "source recovered: $detail",
    EventKind.PARSE_FAILED: "no ticker found on the page: $detail",
    EventKind.PARSE_RECOVERED: "ticker found again: $detail",
}

#: the default one-line body of a pair-level event / of a target-level event
PAIR_BODY = "$target $pair $direction $summary · page date $page_date · id $dedup_id"
TARGET_BODY = "$target $summary · id $dedup_id"

# Line-like separators become one space; other C0/C1 controls and bidi overrides are dropped.
_BREAKS = re.compile(r"[\s\x1c-\x1f\x85\u2028\u2029]+")
_DROP: dict[int, None] = dict.fromkeys((*range(0x00, 0x20), *range(0x7F, 0xA0)))
_DROP.update(dict.fromkeys((0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))))

Escape = Callable[[str], str]


def _same(text: str) -> str:
    return text


def sanitize(text: str, limit: int = TITLE_LIMIT) -> str:
    """Make scraped text safe for a single-line context.

    Whitespace runs and line-like characters (CR, LF, TAB, U+2028 ...) become one space, other
    control characters and bidi overrides are removed, and the result is cut to ``limit``
    characters (the last one then being ``…``).
    """
    text = _BREAKS.sub(" ", text).translate(_DROP).strip()
    if len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text


def plain(value: Decimal) -> str:
    """An exact decimal string without exponent: ``Decimal('8E-8')`` -> ``0.00000008``."""
    return format(value, "f")


def percent(value: Decimal | None) -> str:
    """``Decimal('-0.14')`` -> ``-0.14%``; ``None`` -> ``n/a``."""
    return NA if value is None else f"{plain(value)}%"


def _direction(event: Event) -> str:
    old, new = event.old, event.new
    if old is None or new is None:
        return FLAT
    if old.rate is not None and new.rate is not None and old.rate != new.rate:
        return UP if new.rate > old.rate else DOWN
    if old.change_pct is not None and new.change_pct is not None:
        if new.change_pct > old.change_pct:
            return UP
        if new.change_pct < old.change_pct:
            return DOWN
    return FLAT


def _change(event: Event) -> str:
    old = event.old.rate if event.old else None
    new = event.new.rate if event.new else None
    if old is None or new is None:
        return NA
    with localcontext() as ctx:
        ctx.prec = 100  # exact for any rate a page prints
        diff = new - old
    return "0" if diff == 0 else f"{'+' if diff > 0 else ''}{plain(diff)}"


def iso_utc(event: Event) -> str:
    """``observed_at`` as ``2025-05-16T09:30:00Z``."""
    return event.observed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fields(delivery: Delivery, *, escape: Escape = _same) -> dict[str, str]:
    """The template fields of one delivery (see the module docstring), each passed through
    ``escape`` (for example Slack's or HTML's) after sanitizing."""
    ev = delivery.event
    old, new = ev.old, ev.new
    raw = {
        "target": sanitize(ev.target, NAME_LIMIT) or NA,
        "pair": sanitize(ev.pair, NAME_LIMIT) if ev.pair else NA,
        "kind": ev.kind.value,
        "old_rate": plain(old.rate) if old and old.rate is not None else NA,
        "new_rate": plain(new.rate) if new and new.rate is not None else NA,
        "old_change_pct": percent(old.change_pct if old else None),
        "new_change_pct": percent(new.change_pct if new else None),
        "direction": _direction(ev),
        "change": _change(ev),
        "page_date": ev.page_date.isoformat() if ev.page_date else NA,
        "observed_at": iso_utc(ev),
        "source_url": sanitize(ev.source_url, URL_LIMIT) or NA,
        "dedup_id": delivery.short_id,
        "detail": sanitize(ev.detail, DETAIL_LIMIT) or NA,
        "rule": sanitize(ev.rule, NAME_LIMIT) if ev.rule else NA,
        "count": "1",
    }
    raw["pairs"] = raw["pair"]
    raw["summary"] = Template(SUMMARIES[ev.kind]).safe_substitute(raw)
    return {key: escape(value) for key, value in raw.items()}


def _fill(template: str, values: Mapping[str, str], limit: int) -> str:
    return sanitize(Template(template).safe_substitute(values), limit)


def render(
    delivery: Delivery, template: str, *, escape: Escape = _same, limit: int = LINE_LIMIT
) -> str:
    """Fill any template with one delivery's fields; the result is one sanitized line."""
    return _fill(template, fields(delivery, escape=escape), limit)


def title(delivery: Delivery, template: str | None = None, *, escape: Escape = _same) -> str:
    """The title of one event: ``TMT/USD change % 0% → -0.14% (0.28575)``."""
    chosen = template or DEFAULT_TITLES[delivery.event.kind]
    return _fill(chosen, fields(delivery, escape=escape), TITLE_LIMIT)


def line(delivery: Delivery, template: str | None = None, *, escape: Escape = _same) -> str:
    """The one-line body of one event, readable in a terminal."""
    if not template:
        template = PAIR_BODY if delivery.event.kind in PAIR_KINDS else TARGET_BODY
    return _fill(template, fields(delivery, escape=escape), LINE_LIMIT)


def digest_title(
    batch: Sequence[Delivery], template: str | None = None, *, escape: Escape = _same
) -> str:
    """The title of a message carrying ``batch``: one event's title, or ``timesca: 3 changes``."""
    if not batch:
        raise ValueError("an empty batch has no title")
    if len(batch) == 1:
        return title(batch[0], template, escape=escape)
    values = fields(batch[0], escape=escape)
    pairs = [values["pair"]]
    for delivery in batch[1:]:
        pair = fields(delivery, escape=escape)["pair"]
        if pair not in pairs:
            pairs.append(pair)
    values["count"] = str(len(batch))
    values["pairs"] = ", ".join(p for p in pairs if p != escape(NA)) or escape(NA)
    if template:
        return _fill(template, values, TITLE_LIMIT)
    noun = "changes" if all(d.event.kind in PAIR_KINDS for d in batch) else "events"
    targets = {d.event.target for d in batch}
    prefix = f"{values['target']}: " if len(targets) == 1 else ""
    return sanitize(f"{prefix}{len(batch)} {noun}", TITLE_LIMIT)
