"""The ticker parser: page bytes or text in, a :class:`~monitor.models.Snapshot` out.

``parse(page, *, selector=None, grammar=None)`` is pure and deterministic: no I/O, no logging, no
clock, nothing kept between calls. It raises only :class:`~monitor.errors.ParseError` -- no ticker
on the page, a selector that matches nothing, a selector that is not valid CSS, a selector for a
page that is not HTML -- and every other input, however broken, yields a snapshot.

How a page is read
==================

1. **Encoding.** ``bytes`` are UTF-8 unless a byte-order mark, or a ``<meta charset>`` in the
   first 1024 bytes, says otherwise (``latin-1`` and ``ascii`` mean windows-1252, as in browsers).
   Bytes that do not decode become U+FFFD.
2. **HTML or text.** A page with a tag of a well-known HTML element anywhere (``<html``,
   ``<body``, ``<div``, ``<ul``, ``<li``, ``<span``, ``<p``, ``<!DOCTYPE`` ...) is HTML; anything
   else is plain text, read line by line. ``1 < 2`` in prose is not a tag.
3. **Lines of HTML.** The page is parsed by selectolax's Lexbor backend (as a browser with
   scripting on would: ``<noscript>`` holds text) and the DOM walked iteratively, never
   recursively, into lines: block elements (``li``, ``div``, ``p``, ``br``, ``tr``, ``td``,
   ``h1``-``h6``, ``section``, ``header``, ``nav``, ``table`` ...) end a line, inline ones
   (``span``, ``b``, ``a``, ``em``, ``small``, ``sup`` ...) do not, so
   ``<li>TMT/USD = <span>0.28575</span> <span>-0.14%</span></li>`` is one line. Entities are
   decoded (``&minus;``, ``&nbsp;``, ``&#8722;``). ``head``, ``script``, ``style``, ``noscript``,
   ``template``, ``svg``, ``math``, ``iframe``, ``object``, ``textarea``, ``select`` and comments
   are ignored whole: they may hold decoy tickers. ``pre`` keeps its line breaks. With a CSS
   ``selector``, only lines inside the matched elements (all of them, in document order; a
   match inside another counts once) can be quotes.
4. **Items.** A line is normalised (zero-width characters dropped, each run of whitespace --
   NBSP, narrow NBSP, thin spaces, tabs -- made one space, ends stripped), then it must match the
   grammar *as a whole*: ``  • KGS/USD = 0.01144 0%`` is a quote; ``the KGS/USD = 0.01 rate was
   mentioned`` is prose, and so is ``  • Via Azerbaijan: ...``. The default grammar is
   ``[bullet] BASE/QUOTE = RATE [CHANGE%]``: codes of 2-10 capitals or digits with at least one
   letter, bullets ``• · ∙ ● ▪ ‣ ◦ * - – —``, a rate in ASCII digits with an optional fraction, a
   change with an optional sign (``+``, ``-``, ``−`` U+2212, ``–``). Numbers are ``Decimal``
   exactly as written: ``0.09650`` keeps its zero, ``-0%`` is ``Decimal("-0")``; no ``%`` (or no
   change at all) means ``change_pct`` is ``None`` -- a bare trailing number is not an item. A
   per-target :class:`Grammar` replaces this with a regular expression *searched* in each line.
5. **Marquee repeats.** One quote per pair, in order of first appearance. The items are cut into
   blocks, a new block starting where a pair repeats; the values come from the first block that
   holds every pair (else from each pair's first item). Pairs whose items disagree (another rate
   or change, compared as numbers, so ``0%`` and ``-0%`` agree) are named in
   ``Snapshot.conflicts``, once each, in order.
6. **Date line.** The first non-blank line after the first run of items (blank lines may come
   between; in HTML that is the next block's text, even outside the selected elements) is the
   page's date if it reads ``16 May 2025``, ``Friday, 16 May 2025``, ``May 16, 2025``, ``16 Sept
   2024`` or ``2025-05-16``. Anything else there, a date elsewhere, or an impossible one such as
   ``31 February 2025`` leaves ``page_date`` ``None``.

Speed
=====

Lexbor builds a DOM at 15-25 µs per KB on the target machine, so a 200 KB page cannot be parsed
whole within the 2 ms budget. With the default grammar, the raw bytes are first scanned (one
regular expression anchored on ``=``, in C) for the ticker's signature: ``=`` followed, past
spaces, entities and tags, by a digit, and preceded, read backwards past tags, by ``CODE/CODE``.
Only the page up to 2 KB past the *last* such hit is parsed: no item can lie beyond. That cut is
trusted only if the walk then sees two non-blank lines after the last quote (neither that quote
nor the date line can have been cut short); else 32 KB more are tried, then the whole page. The
whole page is also read when the scan finds nothing, when the page writes ``=`` or ``/`` as an
entity past the hit, when a selector might match differently on a cut page (``:last-child``,
``:empty``, ``:has`` ...) and with a per-target grammar. During the walk, a container (``div``,
``ul``, ``nav`` ...) whose text, joined by Lexbor in C, holds no ``=`` (with a pattern: no digit)
is passed over whole, its lines read only if the date line is wanted from it; with a selector, so
is every block that neither lies in nor holds a matched element. A block holding only inline
elements becomes one line by Lexbor's text join instead of a walk. Identical lines are matched
once. ``bench/parse.py`` measures it.

Bounds
======

Work stays bounded on any input. HTML is read up to its first ``MAX_HTML_BYTES`` (8 MiB) and up
to where block elements nest more than ``MAX_DEPTH`` (1000) deep: Lexbor's tree building costs
O(depth) per block start tag, so 100,000 nested ``<div>`` would take half a minute (browsers cap
nesting too). Pages with under 8,000 start tags are not checked: they cannot cost more than
~0.2 s. Lines longer than ``MAX_LINE`` (1024) characters are never items. Text pages are
read in 1 MiB chunks, blank and irrelevant lines skipped by C iterators. The module's regular
expressions have bounded repetition and cannot backtrack catastrophically; a per-target pattern
is the user's own.
"""

from __future__ import annotations

import codecs
import operator
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from itertools import compress, count, repeat
from typing import Final

from selectolax.lexbor import (
    LexborDocumentOptions,
    LexborHTMLParser,
    LexborNode,
    SelectolaxError,
    create_tag,
)

from monitor.errors import ParseError
from monitor.models import Quote, Snapshot

__all__ = ["MAX_DEPTH", "MAX_HTML_BYTES", "MAX_LINE", "Grammar", "parse"]

#: Lines longer than this are never ticker items.
MAX_LINE: Final = 1024
#: An HTML page is read up to this many bytes (of UTF-8).
MAX_HTML_BYTES: Final = 8 * 1024 * 1024
#: An HTML page is read up to the point where block elements nest deeper than this.
MAX_DEPTH: Final = 1000


@dataclass(frozen=True, slots=True)
class Grammar:
    """How one site writes its quotes. The default (no ``pattern``) reads ``KGS/USD = 0.01144 0%``.

    ``pattern`` is a regular expression *searched* in each normalised line (single spaces, ends
    stripped; anchor it with ``^...$`` to demand the whole line). Its named groups: ``rate``
    (required); ``base`` and ``quote``, or ``pair`` (``USD/KGS``, ``USD-KGS``: split at the first
    run of other characters; a single code is the base); optional ``change_pct`` (``-0.14%``,
    ``−0,14 %``). ``quote_currency`` supplies the quote when the page implies it (24.kg writes
    ``USD 69.74``, meaning som per dollar). ``decimal_separator`` is ``"."`` or ``","``; with
    ``","``, ``529,96`` reads ``Decimal("529.96")`` and ``.`` or a space may group thousands
    (``1.234,56``); with ``"."`` a pattern's numbers may group thousands with ``,`` or a space.
    The default grammar honours ``decimal_separator`` but takes no thousands separators.
    """

    pattern: re.Pattern[str] | None = None
    quote_currency: str | None = None
    decimal_separator: str = "."

    @classmethod
    def from_config(
        cls,
        *,
        pattern: str | None = None,
        quote_currency: str | None = None,
        decimal_separator: str = ".",
    ) -> Grammar:
        """Build a grammar from target settings; raise ``ValueError`` with a clear reason."""
        if decimal_separator not in (".", ","):
            raise ValueError("decimal_separator: expected '.' or ','")
        compiled = None
        if pattern is not None:
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern: invalid regular expression: {exc}") from None
            groups = set(compiled.groupindex)
            if "rate" not in groups:
                raise ValueError("pattern: needs a named group (?P<rate>...)")
            if "pair" not in groups and "base" not in groups:
                raise ValueError("pattern: needs a named group (?P<pair>...) or (?P<base>...)")
            if "pair" not in groups and "quote" not in groups and quote_currency is None:
                raise ValueError("pattern: needs (?P<quote>...) or the quote_currency setting")
        return cls(compiled, quote_currency, decimal_separator)


_DEFAULT_GRAMMAR: Final = Grammar()


def parse(
    page: bytes | str, *, selector: str | None = None, grammar: Grammar | None = None
) -> Snapshot:
    """Read the ticker on ``page``: its distinct quotes, repeat conflicts and date line.

    ``page`` is the body as fetched (``bytes``) or text. ``selector`` (CSS) limits the quotes to
    the matched elements of an HTML page. ``grammar`` replaces the default item grammar.

    Raises ``ParseError`` when no ticker is found, when the selector matches nothing or is not
    valid CSS, or when a selector is given for a page that is not HTML. Nothing else is raised.
    """
    grammar = _DEFAULT_GRAMMAR if grammar is None else grammar
    if isinstance(page, str):
        if not _is_html(page):
            return _parse_text(page, selector, grammar)
        raw = page.encode("utf-8", "replace")
    else:
        raw = _utf8(bytes(page))
        if not _is_html(raw):
            return _parse_text(raw.decode("utf-8", "replace"), selector, grammar)
    return _parse_html(raw, selector, grammar)


def _nothing(grammar: Grammar, selector: str | None) -> str:
    """The ParseError message for a page without quotes."""
    where = "" if selector is None else f" in the elements matched by {selector!r}"
    how = "" if grammar.pattern is None else " (no line matches the target's pattern)"
    return f"no ticker found{where}{how}"


def _parse_text(text: str, selector: str | None, grammar: Grammar) -> Snapshot:
    if selector is not None:
        _check_selector(selector)
        raise ParseError(f"selector {selector!r} given, but the page is not HTML")
    snapshot = _read(_text_lines(text, grammar), grammar, truncated=False)
    if snapshot is None:
        raise ParseError(_nothing(grammar, None))
    return snapshot


_CHUNK: Final = 1 << 20
_DIGIT: Final = re.compile("[0-9]")


def _text_lines(text: str, grammar: Grammar) -> Iterator[Entry]:
    """The lines of a text page that matter, stripped, in order (``Entry`` form).

    Those are the lines that may be quotes (holding ``/`` and ``=``; a digit, for a pattern)
    and, after each run of them, the first other non-blank line (it ends the run; after the
    first run it may be the date line). The rest never reaches Python code: blank lines are
    dropped and the candidates picked by C iterators, one 1 MiB chunk of lines at a time, so
    that 50 MB of short lines cost neither minutes nor gigabytes.
    """
    last = -1  # index (among the non-blank lines of the page) of the last line handed out
    base = 0  # index of the chunk's first non-blank line
    for chunk in _chunks(text):
        lines = list(filter(None, map(str.strip, chunk.splitlines())))
        if grammar.pattern is None:  # an item holds "/" and "="
            flags: Iterator[object] = map(
                operator.and_,
                map(operator.contains, lines, repeat("=")),
                map(operator.contains, lines, repeat("/")),
            )
        else:
            flags = map(_DIGIT.search, lines)
        for i in compress(count(), flags):
            gap = last + 1 - base
            if 0 <= gap < i:
                yield lines[gap], True
            yield lines[i], True
            last = base + i
        gap = last + 1 - base
        if 0 <= gap < len(lines):
            yield lines[gap], True
            last += 1
        base += len(lines)


def _chunks(text: str) -> Iterator[str]:
    """``text`` in pieces of about ``_CHUNK`` characters, each ending after a line feed."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK)
        if end < 0:
            yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


# --- decoding --------------------------------------------------------------------------------

_META_CHARSET: Final = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.IGNORECASE
)
#: Labels that browsers read as windows-1252 (the WHATWG Encoding Standard).
_AS_CP1252: Final = frozenset({"latin-1", "iso8859-1", "ascii", "cp1252"})
_BOMS: Final = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _utf8(raw: bytes) -> bytes:
    """The page as UTF-8: a BOM, else a ``<meta charset>`` in the first 1024 bytes, else as is.

    Bytes that are not valid UTF-8 are left for the decoder at hand (Python's or Lexbor's), which
    turns them into U+FFFD.
    """
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return raw[len(bom) :].decode(codec, "replace").encode("utf-8", "replace")
    match = _META_CHARSET.search(raw, 0, 1024)
    if match is None:
        return raw
    try:
        name = codecs.lookup(match.group(1).decode("ascii")).name
    except LookupError:
        return raw
    if name in _AS_CP1252:
        name = "cp1252"
    # a page whose <meta> could be read as ASCII is not UTF-16/32 (the Standard agrees)
    if name.startswith(("utf-8", "utf-16", "utf-32")):
        return raw
    return raw.decode(name, "replace").encode("utf-8", "replace")


# --- HTML: where to look ---------------------------------------------------------------------

#: Names whose tag (``<div``, ``</p``, ``<span>``) makes a page HTML.
_HTML_NAME_LIST: Final = (
    "html head body div ul ol li dl dt dd span p br hr table tbody thead tr td th h1 h2 h3 h4 h5 "
    "h6 section article header footer nav main aside a b i em strong small sup sub font center "
    "blockquote pre form img script style meta link title noscript iframe frameset !doctype"
)
_HTML_NAMES: Final = frozenset(_HTML_NAME_LIST.split())
# a start or end tag (its name checked against _HTML_NAMES afterwards): one cheap attempt per "<"
_TAG_NAME_SRC: Final = r"<(?:/?([A-Za-z][A-Za-z0-9]{0,9})|(![Dd][Oo][Cc][Tt][Yy][Pp][Ee]))[\s/>]"
_TAG_NAME: Final = re.compile(_TAG_NAME_SRC)
_TAG_NAME_BYTES: Final = re.compile(_TAG_NAME_SRC.encode())
#: Give up looking for an HTML tag after this many tags of other names (``a <b`` in prose).
_HTML_TRIES: Final = 1000


def _is_html(page: str | bytes) -> bool:
    """Whether ``page`` holds a tag of a well-known HTML element anywhere (or is all markup)."""
    names: Iterator[str]
    if isinstance(page, str):
        names = (m.group(1) or m.group(2) for m in _TAG_NAME.finditer(page))
    else:
        names = ((m.group(1) or m.group(2)).decode() for m in _TAG_NAME_BYTES.finditer(page))
    return any(
        tried >= _HTML_TRIES or name.lower() in _HTML_NAMES for tried, name in enumerate(names)
    )


_PREFIX_MIN: Final = 32 * 1024
#: Read this much past the last hit first, then this much more, then everything.
_PREFIX_MARGINS: Final = (2 * 1024, 32 * 1024)
_PAIR_WINDOW: Final = 1000
#: Pages with fewer start tags (about 500 KB of HTML) skip the nesting check: so few cannot nest
#: deeply enough to cost Lexbor more than ~0.2 s.
_DEPTH_CHECK_MIN_TAGS: Final = 8000

# Separators the scan looks past: whitespace (ASCII, NBSP, the U+2000 spaces, U+202F, U+3000),
# an entity, a tag or comment of at most 400 bytes. Their reversed forms read backwards.
_SEP = rb"(?:\s|\xc2\xa0|\xe2\x80[\x80-\x8b\xaf]|\xe3\x80\x80|&[#0-9A-Za-z]{1,10};|<[^<>]{0,400}>)"
_SEP_REV = (
    rb"(?:\s|\xa0\xc2|[\x80-\x8b\xaf]\x80\xe2|\x80\x80\xe3|;[#0-9A-Za-z]{1,10}&|>[^<>]{0,400}<)"
)
#: ``=`` then, past up to 30 separators, a digit: where a ticker item's rate may start.
_EQ_HIT: Final = re.compile(rb"=(?=[^\"'])" + _SEP + rb"{0,30}\d")
#: Read backwards from such an ``=``: ``CODE/CODE`` past separators (all of it reversed).
_REV_PAIR: Final = re.compile(
    _SEP_REV + rb"{0,30}[A-Z0-9]{2,10}" + _SEP_REV + rb"{0,30}/" + _SEP_REV + rb"{0,30}[A-Z0-9]{2}"
)
#: ``=`` or ``/`` written as an entity: the scan cannot see such items, so it is not trusted.
_EQ_ENTITY: Final = re.compile(
    rb"&(?:#0{0,5}(?:61|47)|#[xX]0{0,5}(?:3[dD]|2[fF])|equals|sol|frasl)(?![0-9A-Za-z])"
)
#: Selectors whose matches can depend on content after a cut: these always see the whole page.
_PREFIX_UNSAFE_SELECTOR: Final = re.compile(r"last|only|empty|blank|has|contains", re.IGNORECASE)


#: Block elements that nest, and whose start tags make Lexbor look down the stack of open
#: elements (for a ``p`` to close): nesting them is what costs O(depth) per tag. Inline elements,
#: tables and the block elements that close their own kind (``p``, ``li``, ``h1`` ...) do not.
_NESTING_TAGS: Final = (
    b"div ul ol dl section article aside nav header footer main blockquote center details "
    b"dialog dir fieldset figure figcaption hgroup menu search summary address"
)
#: Elements whose content is raw text up to their end tag (a ``<div>`` in a script is text).
_RAW_TEXT_TAGS: Final = (
    b"script style textarea title xmp iframe noembed noframes noscript plaintext"
)
_NESTING: Final = b"|".join(_NESTING_TAGS.split())
_RAW_TEXT: Final = b"|".join(_RAW_TEXT_TAGS.split())
#: What the nesting count looks at, in the page made lower case (``bytes.lower()`` keeps every
#: offset): a nesting tag, a comment, a raw-text element.
_NEST_TOKEN: Final = re.compile(
    rb"<(?=[/!a-z])(?:(/?)(" + _NESTING + rb")(?=[\s/>])|!--|(" + _RAW_TEXT + rb")(?=[\s/>]))"
)
_RAW_END: Final = {tag: b"</" + tag for tag in _RAW_TEXT_TAGS.split()}


def _last_item_hit(raw: bytes, limit: int) -> int | None:
    """Where the raw HTML's last ticker-looking item is; None when the scan cannot tell."""
    starts = [match.start() for match in _EQ_HIT.finditer(raw, 0, limit)]
    for pos in reversed(starts):
        if _REV_PAIR.match(raw[max(0, pos - _PAIR_WINDOW) : pos][::-1]) is not None:
            # an item past this point written with entities would escape the scan
            return None if _EQ_ENTITY.search(raw, pos, limit) else pos
    return None


def _cap_depth(doc: bytes) -> bytes:
    """``doc``, cut where block elements nest deeper than ``MAX_DEPTH``.

    Lexbor's tree building costs O(depth) per block start tag; without a cap, 100,000 nested
    ``<div>`` take half a minute. A page with few tags cannot nest deeply enough to matter and is
    not looked at; others are tokenised (roughly, in linear time) to find where to cut.
    """
    if doc.count(b"<") - doc.count(b"</") <= _DEPTH_CHECK_MIN_TAGS:
        return doc
    cut = _nesting_cut(doc.lower())
    return doc if cut is None else doc[:cut]


def _nesting_cut(low: bytes) -> int | None:
    """Where nested block elements first outnumber ``MAX_DEPTH``, by a rough tokeniser.

    ``low`` is the page in lower case.

    Comments and raw-text elements (script, style ...) are passed over; an end tag closes the
    elements opened after its own start tag. Every step moves forward: linear time.
    """
    stack: list[bytes] = []
    pos = 0
    while (match := _NEST_TOKEN.search(low, pos)) is not None:
        pos = match.end()
        name, raw_text = match.group(2), match.group(3)
        if raw_text is not None:
            end = low.find(_RAW_END[raw_text], pos)
            if end < 0:
                return None
            pos = end
        elif name is None:  # a comment
            end = low.find(b"-->", pos)
            if end < 0:
                return None
            pos = end + 3
        elif match.group(1):
            if name in stack:
                del stack[len(stack) - 1 - stack[::-1].index(name) :]
        else:
            stack.append(name)
            if len(stack) > MAX_DEPTH:
                return match.start()
    return None


def _check_selector(selector: str) -> None:
    """Raise ParseError when ``selector`` is not CSS that Lexbor understands."""
    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError:
        raise ParseError(f"invalid CSS selector {selector!r}") from None


def _parse_html(raw: bytes, selector: str | None, grammar: Grammar) -> Snapshot:
    limit = min(len(raw), MAX_HTML_BYTES)
    if (
        grammar.pattern is None
        and limit > _PREFIX_MIN
        and (selector is None or _PREFIX_UNSAFE_SELECTOR.search(selector) is None)
    ):
        hit = _last_item_hit(raw, limit)
        if hit is not None:
            for margin in _PREFIX_MARGINS:
                end = hit + margin
                if end >= limit:
                    break
                snapshot = _read_html(_cap_depth(raw[:end]), selector, grammar, truncated=True)
                if snapshot is not None:
                    return snapshot
    snapshot = _read_html(_cap_depth(raw[:limit]), selector, grammar, truncated=False)
    if snapshot is None:
        raise ParseError(_nothing(grammar, selector))
    return snapshot


# --- HTML: lines -----------------------------------------------------------------------------


def _tag_ids(names: str) -> frozenset[int]:
    return frozenset(create_tag(name).tag_id for name in names.split())


#: Elements that end a line (before and after them).
_BLOCK: Final = _tag_ids(
    "address article aside blockquote caption center dd details dialog dir div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr legend li listing main "
    "menu nav ol p pre search section summary table tbody td tfoot th thead tr ul body html "
    "option optgroup"
)
#: Block elements worth a look at their text (in C) before walking them: when it cannot hold a
#: quote, the whole subtree is passed over.
_CONTAINER: Final = _tag_ids(
    "address article aside blockquote center details dialog dir div dl fieldset figure footer "
    "form header hgroup main menu nav ol search section table tbody tfoot thead ul"
)
#: Elements whose whole subtree is ignored.
_SKIP: Final = _tag_ids(
    "script style noscript template svg math iframe object embed textarea select head title "
    "canvas audio video"
)
_BR: Final = create_tag("br").tag_id
_PRE: Final = _tag_ids("pre listing")
#: Elements that a line (of an inline-only block) cannot contain.
_NOT_INLINE: Final = _BLOCK | _SKIP | {_BR}


def _text_tag_id() -> int:
    node = LexborHTMLParser("<p>x</p>").css_first("p")
    child = None if node is None else node.first_child
    if child is None:  # pragma: no cover -- Lexbor always parses this
        raise ImportError("selectolax: cannot find the tag id of text nodes")
    return child.tag_id


_TEXT_NODE: Final = _text_tag_id()
#: What the text of a block must hold to hold a quote: ``=`` (default grammar), a digit (any).
_MAY_HOLD_DEFAULT: Final = re.compile("=")
_MAY_HOLD_CUSTOM: Final = re.compile("[0-9]")
#: Containers deeper than this are walked without a look at their text: each look costs the size
#: of the subtree, so looking at every level of a deep page would cost O(size x depth).
_LOOK_DEPTH: Final = 24


def _read_html(
    doc: bytes, selector: str | None, grammar: Grammar, *, truncated: bool
) -> Snapshot | None:
    """Parse ``doc`` and read its ticker; None when there is none or a truncated read is unsure."""
    tree = LexborHTMLParser(doc, options=LexborDocumentOptions.WO_EVENTS, scripting=True)
    selected: frozenset[int] | None = None
    on_path: frozenset[int] = frozenset()
    root = tree.body
    if root is None:  # a <frameset> page has no body
        root = tree.root
    if selector is not None:
        try:
            matches = tree.css(selector)
        except SelectolaxError:
            raise ParseError(f"invalid CSS selector {selector!r}") from None
        if not matches:
            if truncated:
                return None
            raise ParseError(f"selector {selector!r} matches nothing on the page")
        selected = frozenset(node.mem_id for node in matches)
        on_path = _ancestors(matches)
        root = tree.root
    if root is None:  # pragma: no cover -- Lexbor always builds an html element
        return None
    may_hold = _MAY_HOLD_DEFAULT if grammar.pattern is None else _MAY_HOLD_CUSTOM
    lines = _walk(root, may_hold, selected=selected, on_path=on_path)
    return _read(lines, grammar, truncated=truncated)


def _ancestors(nodes: Iterable[LexborNode]) -> frozenset[int]:
    """The ``mem_id`` of ``nodes`` and of all their ancestors."""
    seen: set[int] = set()
    for node in nodes:
        current: LexborNode | None = node
        while current is not None and current.mem_id not in seen:
            seen.add(current.mem_id)
            current = current.parent
    return frozenset(seen)


Entry = tuple["str | LexborNode", bool]
"""A line of text (or a passed-over block, read only if needed) and whether it is selected."""


def _walk(  # noqa: PLR0912, PLR0915 -- the hot loop, kept flat: a call per node costs time
    root: LexborNode,
    may_hold: re.Pattern[str] | None,
    *,
    selected: frozenset[int] | None = None,
    on_path: frozenset[int] = frozenset(),
) -> Iterator[Entry]:
    """The lines of ``root``'s subtree in document order (an iterative walk: no recursion).

    ``may_hold``: a container block whose text does not match it is handed out unwalked.
    ``selected``: the ``mem_id`` of the elements a selector matched (None: everything counts);
    ``on_path``: those of the matched elements and their ancestors. A block outside the matched
    elements that holds none of them cannot hold a quote either: it is handed out unwalked.
    """
    buf: list[str] = []
    inside = 1 if selected is None or root.mem_id in selected else 0
    pre = 0
    # (element, ends a line, is a selected element, keeps line breaks)
    stack: list[tuple[LexborNode, bool, bool, bool]] = []
    node = root.first_child
    while True:
        if node is None:
            if not stack:
                break
            parent, block, chosen, keeps = stack.pop()
            if (block or chosen) and buf:
                yield "".join(buf), inside > 0
                buf.clear()
            inside -= chosen
            pre -= keeps
            node = parent.next
            continue
        tag = node.tag_id
        if tag == _TEXT_NODE:
            data = node.text_content
            if data:
                if pre and "\n" in data:
                    first, *rest = data.split("\n")
                    buf.append(first)
                    for part in rest:
                        yield "".join(buf), inside > 0
                        buf.clear()
                        buf.append(part)
                else:
                    buf.append(data)
            node = node.next
            continue
        if tag in _SKIP or not node.is_element_node:
            node = node.next
            continue
        if tag == _BR:
            yield "".join(buf), inside > 0
            buf.clear()
            node = node.next
            continue
        block = tag in _BLOCK
        chosen = False
        if selected is not None:
            node_id = node.mem_id
            chosen = node_id in selected
            if block and not inside and node_id not in on_path:
                if buf:
                    yield "".join(buf), False
                    buf.clear()
                content = node.text()
                if content and not content.isspace():
                    yield node, False
                node = node.next
                continue
        if (block or chosen) and buf:
            yield "".join(buf), inside > 0
            buf.clear()
        if may_hold is not None and not chosen and tag in _CONTAINER and len(stack) < _LOOK_DEPTH:
            content = node.text()
            if may_hold.search(content) is None:
                if content and not content.isspace():
                    yield node, False
                node = node.next
                continue
        if block and not pre and tag not in _PRE and _inline_only(node, selected):
            # li, p, td ... holding inline elements only: Lexbor joins their text, in C
            content = node.text()
            if content:
                yield content, inside + chosen > 0
            node = node.next
            continue
        child = node.first_child
        if child is None:
            node = node.next
            continue
        keeps = tag in _PRE
        stack.append((node, block, chosen, keeps))
        inside += chosen
        pre += keeps
        node = child
    if buf:
        yield "".join(buf), inside > 0


def _inline_only(node: LexborNode, selected: frozenset[int] | None) -> bool:
    """Whether the subtree below ``node`` holds only inline elements (and no selected one)."""
    below = node.traverse()
    next(below)  # the node itself
    for element in below:
        if element.tag_id in _NOT_INLINE or (selected is not None and element.mem_id in selected):
            return False
    return True


def _first_line(node: LexborNode) -> str | None:
    """The first non-blank line of a block that the walk passed over."""
    for line, _ in _walk(node, None):
        if isinstance(line, str) and line.strip():
            return line
    return None


# --- lines -----------------------------------------------------------------------------------

_ZERO_WIDTH: Final = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def _normalise(line: str) -> str:
    """Zero-width characters dropped, whitespace runs made one space, ends stripped."""
    if _ZERO_WIDTH.search(line) is not None:
        line = _ZERO_WIDTH.sub("", line)
    return " ".join(line.split())  # str.split() splits at any Unicode whitespace, NBSP included


_CODE = r"[A-Z0-9]{2,10}"
_SIGNS: Final = "+-−–"
_SIGN_CLASS: Final = r"[+\-−–]"
_MINUS: Final = frozenset("-−–")


def _item_pattern(sep: str) -> re.Pattern[str]:
    number = rf"[0-9]{{1,40}}(?:{re.escape(sep)}[0-9]{{1,40}})?"
    return re.compile(
        r"(?:[•·∙●▪‣◦*\-–—] ?)?"
        rf"(?P<base>{_CODE}) ?/ ?(?P<quote>{_CODE}) ?= ?"
        rf"(?P<rate>{number})"
        rf"(?:(?: |(?={_SIGN_CLASS}))(?P<sign>{_SIGN_CLASS})? ?(?P<pct>{number}) ?%)?"
    )


_ITEM: Final = {".": _item_pattern("."), ",": _item_pattern(",")}
_CODE_RE: Final = re.compile(_CODE)
# numbers are ASCII digits: "٣" would read as 3, which is not "as written"
_PLAIN_NUMBER: Final = {
    ".": re.compile(r"[0-9]{1,40}(?:\.[0-9]{1,40})?"),
    ",": re.compile(r"[0-9]{1,40}(?:,[0-9]{1,40})?"),
}
_GROUPED_NUMBER: Final = {
    ".": re.compile(r"[0-9]{1,3}(?:[, ][0-9]{3}){1,13}(?:\.[0-9]{1,40})?"),
    ",": re.compile(r"[0-9]{1,3}(?:[. ][0-9]{3}){1,13}(?:,[0-9]{1,40})?"),
}
_PAIR_SPLIT: Final = re.compile(r"[^A-Za-z0-9]+")


def _number(raw: str, sep: str) -> Decimal | None:
    """``raw`` as written (``sep`` the decimal separator; thousands grouping allowed)."""
    text = raw.strip()
    if _PLAIN_NUMBER[sep].fullmatch(text) is not None:
        return Decimal(text.replace(sep, "."))
    if _GROUPED_NUMBER[sep].fullmatch(text) is not None:
        thousands = "," if sep == "." else "."
        return Decimal(text.replace(thousands, "").replace(" ", "").replace(sep, "."))
    return None


def _change(raw: str, sep: str) -> Decimal | None:
    """``-0.14%``, ``(+1,5 %)``, ``−0`` as a Decimal that keeps its sign; None if unreadable."""
    text = raw.strip().removeprefix("(").removesuffix(")").strip().removesuffix("%").strip()
    negative = text[:1] in _MINUS
    if text[:1] in _SIGNS:
        text = text[1:]
    value = _number(text, sep)
    if value is None:
        return None
    return value.copy_negate() if negative else value


def _has_letter(code: str) -> bool:
    return not code.isdigit()


def _quote(base: str, quote: str, rate: Decimal, change: Decimal | None) -> Quote | None:
    base, quote = base.upper(), quote.upper()
    if not (_CODE_RE.fullmatch(base) and _CODE_RE.fullmatch(quote)):
        return None
    if not (_has_letter(base) and _has_letter(quote)):
        return None
    return Quote(pair=f"{base}/{quote}", base=base, quote=quote, rate=rate, change_pct=change)


def _item(line: str, grammar: Grammar) -> Quote | None:
    """The quote that ``line`` is, as a whole (default grammar) or by a search (a pattern)."""
    if len(line) > 4 * MAX_LINE:
        return None
    if grammar.pattern is None:
        return _default_item(line, grammar.decimal_separator) if "=" in line else None
    # a rate has digits: lines without any are not worth normalising
    return _custom_item(line, grammar, grammar.pattern) if _DIGIT.search(line) else None


def _default_item(line: str, sep: str) -> Quote | None:
    line = _normalise(line)
    match = _ITEM[sep].fullmatch(line) if len(line) <= MAX_LINE else None
    if match is None:
        return None
    change = None
    if match["pct"] is not None:
        change = Decimal(match["pct"].replace(sep, "."))
        if match["sign"] in _MINUS:
            change = change.copy_negate()
    return _quote(match["base"], match["quote"], Decimal(match["rate"].replace(sep, ".")), change)


def _custom_item(line: str, grammar: Grammar, pattern: re.Pattern[str]) -> Quote | None:
    line = _normalise(line)
    match = pattern.search(line) if len(line) <= MAX_LINE else None
    if match is None:
        return None
    groups = match.groupdict()
    rate_raw = groups.get("rate")
    if rate_raw is None:
        return None
    rate = _number(rate_raw, grammar.decimal_separator)
    if rate is None:
        return None
    base, quote = groups.get("base"), groups.get("quote")
    pair = groups.get("pair")
    if pair:
        parts = [p for p in _PAIR_SPLIT.split(pair) if p]
        if len(parts) == 2:
            base, quote = base or parts[0], quote or parts[1]
        elif len(parts) == 1:
            base = base or parts[0]
    quote = quote or grammar.quote_currency
    if not base or not quote:
        return None
    raw_change = groups.get("change_pct")
    change = _change(raw_change, grammar.decimal_separator) if raw_change else None
    return _quote(base, quote, rate, change)


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


def _date(line: str) -> date | None:
    """``16 May 2025`` (and a few other spellings) as a date; None for anything else."""
    if len(line) > 64:
        return None
    match = _DATE.fullmatch(_normalise(line))
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


def _read(entries: Iterable[Entry], grammar: Grammar, *, truncated: bool) -> Snapshot | None:
    """The snapshot of a page's lines; None when there are no quotes, or when the page was cut
    (``truncated``) and fewer than two non-blank lines follow the last quote.
    """
    items: list[Quote] = []
    known: dict[str, Quote | None] = {}  # the marquee repeats each line: read it once
    in_first_run = False
    page_date: date | None = None
    after_last = 0  # non-blank lines seen after the latest quote
    for payload, chosen in entries:
        quote = None
        if isinstance(payload, str):
            if not payload or payload.isspace():
                continue
            if chosen:
                if payload in known:
                    quote = known[payload]
                else:
                    quote = known[payload] = _item(payload, grammar)
        if quote is not None:
            items.append(quote)
            after_last = 0
            in_first_run = in_first_run or len(items) == 1
            continue
        after_last += 1
        if in_first_run:
            in_first_run = False
            line = payload if isinstance(payload, str) else _first_line(payload)
            page_date = None if line is None else _date(line)
    if not items or (truncated and after_last < 2):
        return None
    quotes, conflicts = _dedup(items)
    return Snapshot(quotes=quotes, page_date=page_date, conflicts=conflicts)


def _dedup(items: Sequence[Quote]) -> tuple[tuple[Quote, ...], tuple[str, ...]]:
    """One quote per pair in order of first appearance, from the first complete block.

    A block ends where a pair repeats; it is complete when it holds every pair of the page. When
    no block is, each pair's first quote is used. Also returns the pairs whose quotes disagree.
    """
    # a repeated line yields the very same Quote object: compare each distinct object once
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
