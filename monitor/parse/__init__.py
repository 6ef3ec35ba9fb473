"""The ticker parser: page bytes or text in, a :class:`~monitor.models.Snapshot` out.

``parse(page, *, selector=None, grammar=None, charset=None)`` is pure and deterministic: no I/O, no
logging, no clock, nothing kept between calls. It raises only :class:`~monitor.errors.ParseError` --
no ticker on the page, a selector that matches nothing, a selector that is not valid CSS, a
selector for a page that is not HTML -- and every other input, however broken, yields a snapshot.
``parse_page`` is the same with the warnings for the log (:class:`ParseResult`); ``explain`` says,
block by block, what was read and why the rest was not. ``docs/parser.md`` is the user's guide.

How a page is read
==================

1. **Encoding** (:mod:`monitor.charset`): a byte-order mark, else the ``charset`` the HTTP header
   declared (the ``charset`` argument), else a ``<meta charset>`` in the first 1024 bytes, else
   UTF-8 -- the WHATWG order, with its labels (``latin-1`` and ``ascii`` mean windows-1252).
2. **HTML or text.** A page with a tag of a well-known HTML element anywhere (``<html``,
   ``<body``, ``<div``, ``<ul``, ``<li``, ``<span``, ``<p``, ``<!DOCTYPE`` ...) is HTML; anything
   else is plain text, read line by line. ``1 < 2`` in prose is not a tag.
3. **Blocks of HTML** (:mod:`.html`). The page is parsed by Lexbor and walked into blocks of
   text: block elements (``li``, ``div``, ``p``, ``br``, ``tr``, ``h1``-``h6``, ``section``,
   ``marquee``, ``table`` ...) end a block, inline ones (``span``, ``b``, ``a``, ``em`` ...) do
   not, so ``<li>TMT/USD = <span>0.28575</span> <span>-0.14%</span></li>`` is one block, and so is
   a ``<div>`` holding a whole marquee of ``<span>`` items. A table row is one block, its cells
   joined by a space (``<td>KGS/USD</td><td>0.01144</td>`` reads ``KGS/USD 0.01144``); a ``dt``
   and its ``dd`` are one block. Entities are decoded. ``head``, ``script``, ``style``,
   ``noscript``, ``template``, ``svg``, ``math``, ``iframe``, ``object``, ``textarea``,
   ``select`` and comments are ignored whole: they may hold decoy tickers. ``pre`` keeps its line
   breaks. With a CSS ``selector``, only blocks inside the matched elements (all of them, in
   document order; a match inside another counts once) can hold quotes.
4. **Items** (:mod:`.items`). A block is normalised (zero-width characters dropped, whitespace
   runs made one space) and read by the item grammar *as a whole*: a run of items and separators
   (``KGS/USD = 0.01144 0% | KZT/USD 0.00196 -0%``, ``KGS/USD: 0.01144 (0%)``, ``USD/UZS
   12,850.50 +0.12%``) is read; ``the KGS/USD = 0.01 rate was mentioned`` is prose, and so is
   ``• Via Azerbaijan: ...``. Numbers are ``Decimal`` exactly as written (``0.09650`` keeps its
   zero, ``-0%`` is ``Decimal("-0")``) and each quote keeps the page's text of them
   (``+0.12``, ``12,850.50``) for display. A per-target :class:`Grammar` pattern is searched in
   each block instead, every match an item.
5. **Marquee repeats** (:mod:`.assemble`). One quote per pair, in order of first appearance. The
   items are cut into blocks, a new block starting where a pair repeats; the values come from
   the first block that holds every pair (else from each pair's first item). Pairs whose items
   disagree (another rate or change, compared as numbers, so ``0%`` and ``-0%`` agree) are named
   in ``Snapshot.conflicts``, once each, in order.
6. **Date line** (:mod:`.dates`). The first non-blank block after the first run of items (in HTML
   that is the next block's text, even outside the selected elements) is the page's date if it
   reads ``16 May 2025``, ``Friday, 16 May 2025``, ``May 16, 2025``, ``16 Sept 2024`` or
   ``2025-05-16``. Anything else there, a date elsewhere, or an impossible one such as ``31
   February 2025`` leaves ``page_date`` ``None``.

Speed
=====

Lexbor builds a DOM at 15-25 µs per KB, so a 200 KB page is not parsed whole when it need not be.
With the default grammar, the raw bytes are first scanned (one regular expression anchored on
``/``, in C) for the signature of an item: ``/`` followed, past spaces, entities and tags, by a
code, then (past more of them and an optional ``=`` or ``:``) a digit, and preceded, read
backwards past tags, by a code. Only the page up to 2 KB past the *last* such hit is parsed: no
item can lie beyond. That cut is trusted only if the walk then sees two non-blank blocks after the
last quote (neither that quote nor the date line can have been cut short); else 32 KB more are
tried, then the whole page. The whole page is also read when the scan finds nothing, when the page
writes ``=``, ``:`` or ``/`` as an entity past the hit, when a selector might match differently
on a cut page (``:last-child``, ``:empty``, ``:has`` ...) and with a per-target grammar. During
the walk, a container (``div``, ``ul``, ``table`` ...) whose text, joined by Lexbor in C, holds no
``/`` (with a pattern: no digit) is passed over whole, its blocks read only if the date line is
wanted from it; with a selector, so is every block that neither lies in nor holds a matched
element. A block holding only inline elements is joined by Lexbor instead of a walk. Identical
blocks are read once. ``bench/parse.py`` measures it against the time of the whole DOM.

Bounds
======

Work stays bounded on any input. HTML is read up to its first ``MAX_HTML_BYTES`` (8 MiB) and up
to where block elements nest more than ``MAX_DEPTH`` (1000) deep: Lexbor's tree building costs
O(depth) per block start tag, so 100,000 nested ``<div>`` would take half a minute (browsers cap
nesting too). Pages with under 8,000 start tags are not checked: they cannot cost more than
~0.2 s. Blocks longer than ``MAX_LINE`` (8192) characters are never read. Text pages are read in
1 MiB chunks, blank and irrelevant lines skipped by C iterators. The module's regular expressions
have bounded repetition and cannot backtrack catastrophically; a per-target pattern is the user's
own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from monitor.charset import to_utf8
from monitor.errors import ParseError
from monitor.models import Snapshot
from monitor.parse.assemble import Entry, ParseResult, assemble
from monitor.parse.html import (
    MAX_DEPTH,
    MAX_HTML_BYTES,
    blocks,
    check_selector,
    is_html,
    item_hits,
    read_html,
)
from monitor.parse.items import DEFAULT_GRAMMAR, MAX_LINE, Grammar, diagnose, shown
from monitor.parse.slice import Slice, learn, read_slice
from monitor.parse.text import text_blocks

__all__ = [
    "MAX_DEPTH",
    "MAX_HTML_BYTES",
    "MAX_LINE",
    "Candidate",
    "Explanation",
    "Grammar",
    "ParseResult",
    "Reread",
    "Slice",
    "check_selector",
    "explain",
    "parse",
    "parse_page",
    "reread",
]


def parse(
    page: bytes | str,
    *,
    selector: str | None = None,
    grammar: Grammar | None = None,
    charset: str | None = None,
) -> Snapshot:
    """Read the ticker on ``page``: its distinct quotes, repeat conflicts and date line.

    ``page`` is the body as fetched (``bytes``) or text. ``selector`` (CSS) limits the quotes to
    the matched elements of an HTML page. ``grammar`` replaces the default item grammar.
    ``charset`` is the encoding label the HTTP ``Content-Type`` header declared, if any.

    Raises ``ParseError`` when no ticker is found, when the selector matches nothing or is not
    valid CSS, or when a selector is given for a page that is not HTML. Nothing else is raised.
    """
    return parse_page(page, selector=selector, grammar=grammar, charset=charset).snapshot


def parse_page(
    page: bytes | str,
    *,
    selector: str | None = None,
    grammar: Grammar | None = None,
    charset: str | None = None,
) -> ParseResult:
    """:func:`parse`, with the warnings a caller should log (see :class:`ParseResult`)."""
    grammar = DEFAULT_GRAMMAR if grammar is None else grammar
    raw, text = _decoded(page, charset, selector)
    if text is not None:
        result = assemble(text_blocks(text, grammar), grammar, truncated=False)
        if result is None:
            how = "" if grammar.pattern is None else " (no line matches the target's pattern)"
            raise ParseError(f"no ticker found{how}")
        return result
    return read_html(raw, selector, grammar)


@dataclass(frozen=True, slots=True)
class Reread:
    """What :func:`reread` gave: the page's result, the slice to give it next time (None: none
    found) and how it was read: ``same`` (the slice's bytes and the rest of the page are as
    they were: nothing was parsed), ``slice`` or ``whole``."""

    result: ParseResult
    slice: Slice | None
    how: str


def reread(
    page: bytes,
    *,
    grammar: Grammar | None = None,
    charset: str | None = None,
    hint: Slice | None = None,
    learning: bool = True,
) -> Reread:
    """:func:`parse_page` of a page (without a selector) read before: from its remembered slice
    ``hint`` when the page is as that slice needs (``monitor.parse.slice``), else whole, learning
    its slice for the next time (with ``learning``: it costs about two whole reads). Raises
    ``ParseError`` as :func:`parse_page` does."""
    grammar = DEFAULT_GRAMMAR if grammar is None else grammar
    if hint is not None:
        # a page that passes its slice's checks is HTML: the slice holds its tags
        found = read_slice(to_utf8(bytes(page), charset), hint, grammar)
        if found is not None:
            result, memo = found
            return Reread(result, memo, "same" if memo is hint else "slice")
    raw, text = _decoded(page, charset, None)
    if text is not None:
        return Reread(parse_page(page, grammar=grammar, charset=charset), None, "whole")
    hits = item_hits(raw)
    result = read_html(raw, None, grammar, hits=hits)
    return Reread(result, learn(raw, result, grammar, hits) if learning else None, "whole")


def _decoded(
    page: bytes | str, charset: str | None, selector: str | None
) -> tuple[bytes, str | None]:
    """The page as UTF-8 bytes, and as text when it is not HTML (else None).

    A selector for a text page is a ParseError (an invalid one says so first).
    """
    if isinstance(page, str):
        raw, text = (page.encode("utf-8", "replace"), None) if is_html(page) else (b"", page)
    else:
        raw = to_utf8(bytes(page), charset)
        raw, text = (raw, None) if is_html(raw) else (b"", raw.decode("utf-8", "replace"))
    if text is not None and selector is not None:
        try:
            check_selector(selector)
        except ValueError as exc:
            raise ParseError(str(exc)) from None
        raise ParseError(f"selector {selector!r} given, but the page is not HTML")
    return raw, text


# --- explanations ----------------------------------------------------------------------------

#: What an explanation shows of a block's text.
_SHOWN: Final = 120
_DIGIT: Final = re.compile("[0-9]")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One distinct block that could have held a quote, and its verdict.

    ``verdict`` is ``quote``, ``no pair``, ``no rate``, ``prose``, ``pattern mismatch`` or ``too
    long``; ``detail`` says what was read or why not; ``count`` is how often the block occurs.
    """

    text: str
    count: int
    verdict: str
    detail: str

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "count": self.count,
            "verdict": self.verdict,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """The candidate blocks of a page in document order (the first ``limit`` of ``total``).

    A candidate is a block the grammar tries: with the default grammar one that holds a digit and
    a ``/`` (a ``BASE/QUOTE`` pair needs it), with a pattern one that holds a digit. ``others``
    counts the distinct blocks that hold a digit but were not tried (no ``/``), ``examples`` shows
    the first few of them: a site that writes ``USD 69.74`` needs a pattern.
    """

    kind: str  # "HTML", "text" or "JSON"
    candidates: tuple[Candidate, ...]
    total: int
    others: int = 0
    examples: tuple[str, ...] = ()


def explain(
    page: bytes | str,
    *,
    selector: str | None = None,
    grammar: Grammar | None = None,
    charset: str | None = None,
    limit: int = 20,
) -> Explanation:
    """The blocks of ``page`` that the grammar tries, each with what it read as and why.

    Reads the whole page (no quick cut, nothing passed over) and, with a ``selector``, only the
    blocks in the matched elements. Raises ``ParseError`` as :func:`parse` does for a selector
    that is invalid, matches nothing or is given for a text page.
    """
    grammar = DEFAULT_GRAMMAR if grammar is None else grammar
    raw, text = _decoded(page, charset, selector)
    entries: list[Entry] | None = None
    if text is not None:
        kind, entries = "text", list(text_blocks(text, grammar, everything=True))
    else:
        kind, entries = "HTML", list(blocks(raw, selector))
    tried: dict[str, int] = {}
    others: dict[str, None] = {}
    for payload, chosen in entries:
        if chosen and isinstance(payload, str) and _DIGIT.search(payload):
            block = payload.strip()
            if grammar.pattern is not None or "/" in block:
                tried[block] = tried.get(block, 0) + 1
            else:
                others[block] = None
    listed = []
    for block, times in list(tried.items())[: max(0, limit)]:
        verdict, detail = diagnose(block, grammar)
        listed.append(Candidate(shown(block, _SHOWN), times, verdict, detail))
    examples = tuple(shown(block, _SHOWN) for block in list(others)[:3])
    return Explanation(kind, tuple(listed), len(tried), len(others), examples)
