"""Message rendering: the lines of a message, their template fields, titles and one-line bodies.

Every sink renders through this module, so that a change reads the same in a terminal, a Slack
channel and a mailbox.

**Lines.** A message carries one *line* per pair per check, whatever kinds fired: a move's
``rate_changed``, ``change_pct_changed`` and ``threshold`` events (separate outbox rows, routed
separately) read as one line, ``TMT/USD ▼ 0.28575 → 0.28550 (-0.09%), change 0% → -0.14%``.
An event without a pair (``source_down`` ...) is a line of its own. :func:`lines` groups a batch;
every other function takes a :class:`Line` or a single :class:`~monitor.models.Delivery`.

**Templates.** A sink may override the title and the body per ``[sinks.NAME]`` with
``title_template`` / ``body_template``, written in :class:`string.Template` syntax (``$pair``,
``${new_rate}``) and filled with :meth:`~string.Template.safe_substitute`, so an unknown ``$name``
stays as written instead of failing a delivery. The body template is filled once per line.

Template fields (every value is a string; an absent value reads ``n/a``)
------------------------------------------------------------------------

==================  ==============================================================================
``target``          the target's name (``timesca``)
``pair``            the pair (``TMT/USD``); ``n/a`` for target-level events (``source_down`` ...)
``kind``            the line's first event kind (``rate_changed``)
``kinds``           every kind on the line, comma-separated (``rate_changed, change_pct_changed``)
``old_rate``        the previous rate, as the page wrote it (``0.28575``)
``new_rate``        the new rate
``old_change_pct``  the page's previous change percentage, with ``%`` (``0%``)
``new_change_pct``  the page's new change percentage (``-0.14%``)
``direction``       ``▲`` (up), ``▼`` (down) or ``•`` (unchanged / not applicable): the rate's move,
                    or the page percentage's move when the rate did not move
``change``          the signed rate difference new − old (``+0.00040``, ``-0.00040``, ``0``)
``rate_move``       the rate's move relative to the old rate (``-0.09%``)
``move``            what the pair did (``0.28575 → 0.28550 (-0.09%), change 0% → -0.14%``)
``notes``           what the rules said (``rule tmt-high: rate above 0.2870``), or ``n/a``
``summary``         the default description: ``$move · $notes`` for a pair, the outage sentence
                    for a target (``is back after 12 min (7 failed checks)``)
``headline``        the short form the default title uses (``TMT/USD ▼ 0.28550 (-0.09%)``,
                    ``is back after 12 min``)
``page_date``       the date the page printed (``2025-05-16``)
``observed_at``     when the check saw it, ISO 8601 UTC to the second (``2025-05-16T09:30:00Z``)
``source_url``      the page's URL
``dedup_id``        the first 8 characters of the line's first delivery's dedup key
``dedup_ids``       every delivery's short id on the line, space-separated
``detail``          the events' short human sentences (the level crossed, the fetch error)
``rule``            the rules named by the line's events, comma-separated
``duration``        how long the condition lasted (``12 min``): outages, recoveries, reminders
``failed_checks``   an outage's failed checks (``7``)
``reminder``        ``0``, or N for the N-th reminder of a condition still going on
``count``           how many events the message carries (a line: its events)
``lines``           how many lines the message carries
``pairs``           the distinct pairs of the message, comma-separated
``subjects``        what a digest's default title lists (``TMT/USD ▼, KZT/USD ▲ (+1 more)``)
==================  ==============================================================================

Titles: one line is titled ``$target: $headline`` (a pair) or ``$target $headline`` (an outage);
several lines are titled ``$target: $subjects``. A sink's ``title_template`` is filled with the
first line's fields plus the message's ``count``, ``lines``, ``pairs`` and ``subjects``. A test
alert (``ticker-monitor test-sink``) has ``[test]`` before its title and each of its lines.

All scraped text (target names, pair labels, details, URLs) goes through :func:`sanitize`: control
characters are removed, line breaks become spaces, length is bounded. Numbers the page printed are
never rounded (:func:`number` is the one place they get their text); only ``rate_move``, a
computed ratio, is rounded (to 0.01%, or two significant digits below that). A rule's sentence
(``detail``) names the rule's own levels (and ``min_move_pct``'s reference rate), not the page's
current numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from string import Template
from typing import Literal

from monitor.models import PAIR_KINDS, Delivery, Event, EventKind, Reading

__all__ = [
    "FIELDS",
    "NA",
    "PAIR_BODY",
    "PAIR_KINDS",
    "TARGET_BODY",
    "Line",
    "digest_title",
    "duration",
    "fields",
    "iso_utc",
    "line",
    "lines",
    "number",
    "percent",
    "plain",
    "render",
    "sanitize",
    "title",
]

#: what an absent value reads in a message
NA = "n/a"
UP, DOWN, FLAT = "▲", "▼", "•"
TEST_MARK = "[test] "

#: every field name a template may use (see the module docstring)
FIELDS: tuple[str, ...] = (
    "target",
    "pair",
    "kind",
    "kinds",
    "old_rate",
    "new_rate",
    "old_change_pct",
    "new_change_pct",
    "direction",
    "change",
    "rate_move",
    "move",
    "notes",
    "summary",
    "headline",
    "page_date",
    "observed_at",
    "source_url",
    "dedup_id",
    "dedup_ids",
    "detail",
    "rule",
    "duration",
    "failed_checks",
    "reminder",
    "count",
    "lines",
    "pairs",
    "subjects",
)

#: sanitize limits for each kind of scraped text
NAME_LIMIT = 80
DETAIL_LIMIT = 300
URL_LIMIT = 300
TITLE_LIMIT = 200
LINE_LIMIT = 1000
#: a digest's default title names this many lines, then says how many more
SUBJECTS_SHOWN = 2

#: the default one-line body of a pair line / of a target-level line
PAIR_BODY = "$target $pair $direction $summary · page date $page_date · id $dedup_id"
TARGET_BODY = "$target $summary · id $dedup_id"
#: the default title of a message of one pair line / one target line / several lines
PAIR_TITLE = "$target: $headline"
TARGET_TITLE = "$target $headline"
DIGEST_TITLE = "$subjects"

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


# --- numbers and durations -------------------------------------------------------------------


def plain(value: Decimal) -> str:
    """An exact decimal string without exponent: ``Decimal('8E-8')`` -> ``0.00000008``."""
    return format(value, "f")


def number(reading: Reading | None, which: Literal["rate", "change_pct"]) -> str | None:
    """How one of the page's numbers reads in a message (None: the page showed none).

    The one place a rate or a percentage the page printed gets its text: messages show the page's
    own decimals, never rounded, never in exponent form.
    """
    if reading is None:
        return None
    value = reading.rate if which == "rate" else reading.change_pct
    return None if value is None else plain(value)


def _rate(reading: Reading | None) -> str:
    return number(reading, "rate") or NA


def _pct(reading: Reading | None) -> str:
    text = number(reading, "change_pct")
    return NA if text is None else f"{text}%"


def percent(value: Decimal | None) -> str:
    """``Decimal('-0.14')`` -> ``-0.14%``; ``None`` -> ``n/a``."""
    return NA if value is None else f"{plain(value)}%"


def _difference(old: Decimal, new: Decimal) -> str:
    with localcontext() as ctx:
        ctx.prec = 100  # exact for any rate a page prints
        diff = new - old
    return "0" if diff == 0 else f"{'+' if diff > 0 else ''}{plain(diff)}"


def _relative(old: Decimal, new: Decimal) -> str:
    """The move from ``old`` to ``new`` in percent of ``old``: ``-0.09%``, ``+0.0035%``."""
    if old == 0:
        return NA
    with localcontext() as ctx:
        ctx.prec = 60
        move = (new - old) / abs(old) * 100
        if move == 0:
            return "0%"
        shown = move.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
        if shown == 0:  # below 0.01%: two significant digits
            shown = move.quantize(Decimal(1).scaleb(move.adjusted() - 1), ROUND_HALF_EVEN)
    return f"{'+' if move > 0 else '-'}{plain(abs(shown).normalize())}%"


def duration(span: timedelta | None) -> str | None:
    """``12 min``, ``2 h 5 min``, ``3 d 4 h``, ``45 s``; None for an unknown or zero span."""
    if span is None or span.total_seconds() < 1:
        return None
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def iso_utc(event: Event) -> str:
    """``observed_at`` as ``2025-05-16T09:30:00Z``."""
    return event.observed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- lines -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a message: one pair's events of one check, or one target-level event.

    Its fields are worked out once, the first time any is asked for (a Slack message asks four
    times per line: title, section, context, fallback text), and kept with the line.
    """

    deliveries: tuple[Delivery, ...]
    _fields: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.deliveries:
            raise ValueError("a line holds at least one delivery")

    @property
    def raw(self) -> Mapping[str, str]:
        """The unescaped, sanitized fields (``_subject`` included), computed once."""
        if not self._fields:
            self._fields.update(_raw(self))
        return self._fields

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(d.event for d in self.deliveries)

    @property
    def first(self) -> Event:
        return self.deliveries[0].event

    @property
    def is_pair(self) -> bool:
        return self.first.pair is not None and self.first.kind in PAIR_KINDS

    @property
    def readings(self) -> tuple[Reading | None, Reading | None]:
        """The pair's old and new reading (the first event that has each)."""
        old = next((e.old for e in self.events if e.old is not None), None)
        new = next((e.new for e in self.events if e.new is not None), None)
        return old, new

    @property
    def short_ids(self) -> list[str]:
        return [d.short_id for d in self.deliveries]

    @property
    def test(self) -> bool:
        return any(e.test for e in self.events)


def lines(batch: Sequence[Delivery]) -> list[Line]:
    """The lines of a message carrying ``batch``, in order of first appearance."""
    grouped: dict[tuple[str, str, str], list[Delivery]] = {}
    for delivery in batch:
        grouped.setdefault(delivery.line_key, []).append(delivery)
    return [Line(tuple(rows)) for rows in grouped.values()]


def _as_line(item: Delivery | Line) -> Line:
    return item if isinstance(item, Line) else Line((item,))


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _rates(old: Reading | None, new: Reading | None) -> tuple[Decimal, Decimal] | None:
    """The old and the new rate, when both are known."""
    if old is None or new is None or old.rate is None or new.rate is None:
        return None
    return old.rate, new.rate


def _moved(old: Decimal | None, new: Decimal | None) -> bool:
    return (old is None) != (new is None) or (old is not None and new is not None and old != new)


def _direction(old: Reading | None, new: Reading | None) -> str:
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


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _note(event: Event) -> str:
    """What one rule said about a pair: ``rule tmt-high: rate above 0.2870 (for 2 min)``."""
    rule = f"rule {sanitize(event.rule, NAME_LIMIT)}" if event.rule else "rule"
    detail = sanitize(event.detail, DETAIL_LIMIT)
    lasted = duration(event.duration)
    if event.kind is EventKind.THRESHOLD_CLEARED:
        return f"{rule} cleared: {detail}" + (f" (after {lasted})" if lasted else "")
    if event.reminder:
        rule += f", reminder {event.reminder}"
    return f"{rule}: {detail}" + (f" (for {lasted})" if lasted else "")


def _outage(event: Event) -> tuple[str, str]:
    """An outage event's ``(headline, summary)``, both without the target's name:
    ``is down`` / ``is down for 10 min (3 failed checks): HTTP 503 ...``."""
    lasted = duration(event.duration)
    kind, again = event.kind, event.reminder > 0
    after = f" after {lasted}" if lasted else ""
    if kind is EventKind.SOURCE_DOWN:
        headline = f"is still down{after}" if again else "is down"
        phrase = headline if again or not lasted else f"is down for {lasted}"
    elif kind is EventKind.SOURCE_RECOVERED:
        headline = phrase = f"is back{after}"
    elif kind is EventKind.PARSE_FAILED:
        headline = f"still shows no ticker{after}" if again else "shows no ticker"
        phrase = headline if again or not lasted else f"shows no ticker for {lasted}"
    elif kind is EventKind.PARSE_RECOVERED:
        headline = phrase = f"shows its ticker again{after}"
    else:  # a pair kind without a pair: say what it is
        headline = phrase = kind.value.replace("_", " ")
    extras = []
    if event.failed_checks:
        extras.append(_plural(event.failed_checks, "failed check"))
    if again:
        extras.append(f"reminder {event.reminder}")
    if event.rule:
        extras.append(f"rule {sanitize(event.rule, NAME_LIMIT)}")
    summary = phrase + (f" ({', '.join(extras)})" if extras else "")
    detail = sanitize(event.detail, DETAIL_LIMIT)
    if detail and kind in (EventKind.SOURCE_DOWN, EventKind.PARSE_FAILED):
        summary += f": {detail}"
    return headline, summary


def _pair_texts(ln: Line, old: Reading | None, new: Reading | None) -> dict[str, str]:
    """A pair line's ``move``, ``notes``, ``summary``, ``headline`` and ``subjects``."""
    kinds = {e.kind for e in ln.events}
    pair = sanitize(ln.first.pair or "", NAME_LIMIT) or NA
    arrow = _direction(old, new)
    shown = f"{pair} {arrow}" if arrow != FLAT else pair
    rate_moved = old is not None and new is not None and _moved(old.rate, new.rate)
    pct_moved = old is not None and new is not None and _moved(old.change_pct, new.change_pct)
    if EventKind.PAIR_REMOVED in kinds or new is None:
        move = f"removed (last {_rate(old)}, change {_pct(old)})"
        headline, subject = f"{pair} removed", f"{pair} removed"
    elif EventKind.PAIR_ADDED in kinds or old is None:
        added = EventKind.PAIR_ADDED in kinds
        move = f"{'added at ' if added else ''}{_rate(new)}, change {_pct(new)}"
        headline = f"{pair} added at {_rate(new)}" if added else f"{pair} {_rate(new)}"
        subject = f"{pair} added" if added else pair
    else:
        assert old is not None  # noqa: S101 -- narrowed by the branches above
        rates = _rates(old, new)
        rate_move = NA if rates is None else _relative(*rates)
        rate = f"{_rate(old)} → {_rate(new)} ({rate_move})" if rate_moved else _rate(new)
        change = f"change {_pct(old)} → {_pct(new)}" if pct_moved else f"change {_pct(new)}"
        move = f"{rate}, {change}"
        headline = f"{shown} {_rate(new)}"
        if rate_moved:
            headline += f" ({rate_move})"
        elif pct_moved:
            headline += f", change {_pct(new)}"
        subject = shown
    notes = [
        _note(e) for e in ln.events if e.kind in (EventKind.THRESHOLD, EventKind.THRESHOLD_CLEARED)
    ]
    if notes:
        headline += f" · {notes[0]}"
    return {
        "move": move,
        "notes": " · ".join(notes) or NA,
        "summary": " · ".join([move, *notes]),
        "headline": headline,
        "_subject": subject,
    }


def _raw(ln: Line) -> dict[str, str]:
    """The unescaped, sanitized fields of one line."""
    ev = ln.first
    old, new = ln.readings
    pair = sanitize(ev.pair, NAME_LIMIT) if ev.pair else NA
    reminder = max(e.reminder for e in ln.events)
    lasted = next((d for e in ln.events if (d := duration(e.duration))), None)
    failed = next((e.failed_checks for e in ln.events if e.failed_checks is not None), None)
    rules = _unique([sanitize(e.rule, NAME_LIMIT) for e in ln.events if e.rule])
    rates = _rates(old, new)
    raw = {
        "target": sanitize(ev.target, NAME_LIMIT) or NA,
        "pair": pair,
        "kind": ev.kind.value,
        "kinds": ", ".join(_unique([e.kind.value for e in ln.events])),
        "old_rate": _rate(old),
        "new_rate": _rate(new),
        "old_change_pct": _pct(old),
        "new_change_pct": _pct(new),
        "direction": _direction(old, new),
        "change": NA if rates is None else _difference(*rates),
        "rate_move": NA if rates is None else _relative(*rates),
        "page_date": ev.page_date.isoformat() if ev.page_date else NA,
        "observed_at": iso_utc(ev),
        "source_url": sanitize(ev.source_url, URL_LIMIT) or NA,
        "dedup_id": ln.deliveries[0].short_id,
        "dedup_ids": " ".join(ln.short_ids),
        "detail": sanitize("; ".join(_unique([e.detail for e in ln.events])), DETAIL_LIMIT) or NA,
        "rule": ", ".join(rules) or NA,
        "duration": lasted or NA,
        "failed_checks": NA if failed is None else str(failed),
        "reminder": str(reminder),
        "count": str(len(ln.deliveries)),
        "lines": "1",
        "pairs": pair,
    }
    if ln.is_pair:
        raw |= _pair_texts(ln, old, new)
        raw["subjects"] = f"{raw['target']}: {raw['_subject']}"
    else:
        headline, summary = _outage(ev)
        raw |= {"move": NA, "notes": NA, "summary": summary, "headline": headline}
        raw |= {"_subject": headline, "subjects": f"{raw['target']} {headline}"}
    return raw


def fields(item: Delivery | Line, *, escape: Escape = _same) -> dict[str, str]:
    """The template fields of one line (see the module docstring), each passed through
    ``escape`` (for example Slack's or HTML's) after sanitizing."""
    raw = _as_line(item).raw
    return {key: escape(value) for key, value in raw.items() if not key.startswith("_")}


class _Escaped(Mapping[str, str]):
    """A line's fields as a template sees them: escaped when looked up, so filling a template
    escapes only the fields it names."""

    __slots__ = ("_escape", "_over", "_raw")

    def __init__(
        self, raw: Mapping[str, str], escape: Escape, over: Mapping[str, str] | None = None
    ) -> None:
        self._raw, self._escape, self._over = raw, escape, over or {}

    def __getitem__(self, key: str) -> str:
        if key in self._over:
            return self._over[key]
        if key.startswith("_"):
            raise KeyError(key)
        return self._escape(self._raw[key])

    def __iter__(self) -> Iterator[str]:
        keys = dict.fromkeys(k for k in self._raw if not k.startswith("_"))
        return iter(keys | dict.fromkeys(self._over))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _fill(template: str, values: Mapping[str, str], limit: int) -> str:
    return sanitize(Template(template).safe_substitute(values), limit)


def _marked(ln: Line, text: str) -> str:
    return TEST_MARK + text if ln.test else text


def render(
    item: Delivery | Line, template: str, *, escape: Escape = _same, limit: int = LINE_LIMIT
) -> str:
    """Fill any template with one line's fields; the result is one sanitized line."""
    return _fill(template, _Escaped(_as_line(item).raw, escape), limit)


def title(item: Delivery | Line, template: str | None = None, *, escape: Escape = _same) -> str:
    """The title of a message of one line: ``timesca: TMT/USD ▼ 0.28550 (-0.09%)``."""
    ln = _as_line(item)
    chosen = template or (PAIR_TITLE if ln.is_pair else TARGET_TITLE)
    return _marked(ln, _fill(chosen, _Escaped(ln.raw, escape), TITLE_LIMIT))


def line(item: Delivery | Line, template: str | None = None, *, escape: Escape = _same) -> str:
    """The one-line body of one line, readable in a terminal."""
    ln = _as_line(item)
    chosen = template or (PAIR_BODY if ln.is_pair else TARGET_BODY)
    return _marked(ln, _fill(chosen, _Escaped(ln.raw, escape), LINE_LIMIT))


def _subjects(groups: Sequence[Line]) -> str:
    """``timesca: TMT/USD ▼, KZT/USD ▲ (+1 more)``; an outage leads its target's part."""
    by_target: dict[str, tuple[list[str], list[str]]] = {}
    for ln in groups:
        raw = ln.raw
        outages, pairs = by_target.setdefault(raw["target"], ([], []))
        (pairs if ln.is_pair else outages).append(raw["_subject"])
    parts: list[str] = []
    room = SUBJECTS_SHOWN
    for target, (outages, pairs) in by_target.items():
        shown = (outages + pairs)[:room]
        room -= len(shown)
        if not shown:
            continue
        if outages and shown[0] == outages[0]:
            parts.append(" ".join([target, ", ".join(shown)]))
        else:
            parts.append(f"{target}: {', '.join(shown)}")
    more = len(groups) - SUBJECTS_SHOWN
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def digest_title(
    batch: Sequence[Delivery] | Sequence[Line],
    template: str | None = None,
    *,
    escape: Escape = _same,
) -> str:
    """The title of a message carrying ``batch`` (deliveries, or the lines :func:`lines` made of
    them): its one line's title, or the subjects of its lines (``timesca: TMT/USD ▼, KZT/USD ▲
    (+1 more)``)."""
    if not batch:
        raise ValueError("an empty batch has no title")
    groups = [b for b in batch if isinstance(b, Line)] or lines(
        [b for b in batch if isinstance(b, Delivery)]
    )
    if len(groups) == 1 and template is None:
        return title(groups[0], escape=escape)
    pairs = _unique([ln.raw["pair"] for ln in groups])
    summary = {
        "count": str(sum(len(ln.deliveries) for ln in groups)),
        "lines": str(len(groups)),
        "pairs": escape(", ".join(p for p in pairs if p != NA) or NA),
        "subjects": escape(sanitize(_subjects(groups), TITLE_LIMIT)),
    }
    text = _fill(template or DIGEST_TITLE, _Escaped(groups[0].raw, escape, summary), TITLE_LIMIT)
    return TEST_MARK + text if any(ln.test for ln in groups) else text
