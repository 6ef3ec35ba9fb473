"""From the blocks of a page to what it shows: its quotes, repeat conflicts, date line, warnings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final

from monitor.models import Quote, Snapshot
from monitor.parse.dates import read_date
from monitor.parse.items import Grammar, leftover, read_block

__all__ = ["Entry", "ParseResult", "assemble", "dedup"]

Entry = tuple[object, bool]
"""A block's text (or a passed-over HTML element, read only if needed) and whether it is selected."""

#: At most this many warnings about one page (then one saying how many more there were).
MAX_WARNINGS: Final = 5


@dataclass(frozen=True, slots=True)
class ParseResult:
    """What reading a page gave: its snapshot and warnings for the log.

    ``warnings`` are one-line sentences: a pattern that left items of a block unread, elements
    of a JSON feed that were not quotes. (Disagreeing marquee repeats are in
    ``snapshot.conflicts``.)
    """

    snapshot: Snapshot
    warnings: tuple[str, ...] = ()


def assemble(
    entries: Iterable[Entry],
    grammar: Grammar,
    *,
    truncated: bool,
    first_line: Callable[[object], str | None] = lambda _: None,
    known: dict[str, tuple[Quote, ...]] | None = None,
    previous: Mapping[str, tuple[Quote, ...]] | None = None,
) -> ParseResult | None:
    """The result of a page's blocks; None when there are no quotes, or when the page was cut
    (``truncated``) and fewer than two non-blank blocks follow the last quote.

    ``first_line`` reads the first non-blank line of a passed-over element (for the date line).
    ``known`` (filled here) gets each distinct block text read and its quotes; ``previous`` is
    another read's ``known``, consulted before reading a block: ``read_block`` is pure, so this is
    exact for the same grammar -- without a ``pattern``, whose warnings come only from a read.
    """
    items: list[Quote] = []
    if known is None:  # the marquee repeats each block: read it once
        known = {}
    unread: list[str] = []
    in_first_run = False
    page_date: date | None = None
    after_last = 0  # non-blank blocks seen after the latest quote
    for payload, chosen in entries:
        quotes: tuple[Quote, ...] = ()
        if isinstance(payload, str):
            if not payload or payload.isspace():
                continue
            if chosen:
                quotes = known.get(payload) or _read(payload, grammar, known, previous, unread)
        if quotes:
            items.extend(quotes)
            after_last = 0
            in_first_run = in_first_run or len(items) == len(quotes)
            continue
        after_last += 1
        if in_first_run:
            in_first_run = False
            line = payload if isinstance(payload, str) else first_line(payload)
            page_date = None if line is None else read_date(line)
    if not items or (truncated and after_last < 2):
        return None
    quotes_, conflicts = dedup(items)
    if len(unread) > MAX_WARNINGS:
        unread[MAX_WARNINGS:] = [f"... and {len(unread) - MAX_WARNINGS} more such blocks"]
    snapshot = Snapshot(quotes=quotes_, page_date=page_date, conflicts=conflicts)
    return ParseResult(snapshot, tuple(unread))


def _read(
    payload: str,
    grammar: Grammar,
    known: dict[str, tuple[Quote, ...]],
    previous: Mapping[str, tuple[Quote, ...]] | None,
    unread: list[str],
) -> tuple[Quote, ...]:
    """The quotes of a block not read yet in this page (noted in ``known``), and a warning in
    ``unread`` when a pattern left some of it unread."""
    if payload in known:  # a block of no quotes
        return known[payload]
    if previous is not None and payload in previous:
        quotes = known[payload] = previous[payload]
        return quotes
    quotes = known[payload] = read_block(payload, grammar)
    if quotes and grammar.pattern is not None:
        left = leftover(payload, grammar.pattern)
        if left is not None:
            unread.append(
                f"the pattern read {len(quotes)} item(s) of a block but left "
                f"{left!r} unread: {payload.strip()[:80]!r}"
            )
    return quotes


def dedup(items: Sequence[Quote]) -> tuple[tuple[Quote, ...], tuple[str, ...]]:
    """One quote per pair in order of first appearance, from the first complete block.

    A block ends where a pair repeats; it is complete when it holds every pair of the page. When
    no block is, each pair's first quote is used. Also returns the pairs whose quotes disagree
    (compared as numbers: ``0%`` and ``-0%``, ``0.0965`` and ``0.09650`` agree).
    """
    # a repeated block yields the very same Quote objects: compare each distinct object once
    distinct = {id(quote): quote for quote in items}
    first: dict[str, Quote] = {}
    values: dict[str, set[tuple[Decimal, Decimal | None]]] = {}
    for quote in distinct.values():
        first.setdefault(quote.pair, quote)
        values.setdefault(quote.pair, set()).add((quote.rate, quote.change_pct))
    chosen = first
    block: dict[str, Quote] = {}
    for quote in items:
        if quote.pair in block:
            block = {}
        block[quote.pair] = quote
        if len(block) == len(first):
            chosen = block
            break
    quotes = tuple(chosen[pair] for pair in first)
    conflicts = tuple(pair for pair, seen in values.items() if len(seen) > 1)
    return quotes, conflicts
