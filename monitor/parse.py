"""The ticker parser: page bytes or text in, a :class:`~monitor.models.Snapshot` out.

``parse`` is pure and deterministic: no I/O, no logging, no clock, no state kept between calls. It
raises only :class:`~monitor.errors.ParseError` (no ticker, a selector that matches nothing, an
invalid selector); every other input, however broken, yields a snapshot.

How a page is read
==================

1. **Decode.** ``bytes`` are decoded as UTF-8 with ``errors="replace"``, unless a byte-order mark
   or a ``<meta charset>`` in the first 1024 bytes names another encoding (``latin-1`` and
   ``ascii`` are read as ``windows-1252``, as browsers do).
2. **HTML or text.** A page holding an HTML tag (``<html``, ``<body``, ``<div``, ``<ul``, ``<li``,
   ``<span``, ``<p`` ...) anywhere is HTML; anything else is plain text, split at line breaks.
3. **Lines.** HTML is parsed with selectolax (Lexbor) and its DOM is walked, iteratively (a
   100,000-deep page cannot exhaust the stack), into *lines*: block elements (``li``, ``div``,
   ``p``, ``br``, ``tr``, ``td``, ``h1``-``h6``, ``section`` ...) end a line, inline elements
   (``span``, ``b``, ``a``, ``small`` ...) do not, so ``<li>TMT/USD = <span>0.28575</span></li>``
   is one line. Entities are decoded by the parser; ``script``, ``style``, ``noscript``,
   ``template``, ``svg``, ``math``, ``iframe``, ``textarea``, ``select`` and ``head`` are ignored
   entirely (they may hold decoy tickers). With a CSS ``selector`` only lines inside the matched
   elements (all of them, in document order) can be quotes.
4. **Items.** Each line is normalised (zero-width characters dropped, every run of whitespace --
   NBSP, narrow NBSP, thin spaces, tabs -- becomes one space, ends stripped) and must match the
   grammar *as a whole*: ``• KGS/USD = 0.01144 0%`` is a quote, while a sentence that merely
   contains ``KGS/USD = 0.01`` is prose and is not. The default grammar is
   ``[bullet] BASE/QUOTE = RATE [±CHANGE%]`` with codes of 2-10 capitals or digits (at least one
   letter), a bullet among ``• · * - –``, signs ``+``, ``-``, ``−`` (U+2212) and ``–``. Numbers
   are kept exactly as written: ``0.09650`` stays ``Decimal("0.09650")`` and ``-0%`` is
   ``Decimal("-0")``. A per-target :class:`Grammar` replaces it with a regular expression that is
   *searched* in each line (see there).
5. **Marquee repeats.** Quotes are de-duplicated: one per pair, in order of first appearance. The
   items are cut into blocks (a block ends where a pair repeats); the values come from the first
   block holding every pair. A pair whose repeats disagree (another rate or change, compared as
   numbers, so ``0%`` and ``-0%`` agree) is listed in ``Snapshot.conflicts``.
6. **Date line.** The first non-blank line after the first run of items (blank lines may sit in
   between; in HTML, the next block's text, also outside the selected elements) is the page date
   when it reads ``16 May 2025``, ``Friday, 16 May 2025``, ``May 16, 2025`` or ``2025-05-16``.
   Anything else, or an impossible date such as ``31 February 2025``, leaves it ``None``.

Speed
=====

A DOM parse costs about 15-25 µs per KB on the target machine, so the whole of a 200 KB page
cannot be parsed within the 2 ms budget. With the default grammar the raw HTML is first scanned
for the ticker's signature: an ``=`` followed (past spaces, entities and tags) by a digit, whose
preceding characters read (again past tags) ``CODE/CODE``. Only the document up to a margin after
the *last* such hit is parsed; nothing after it can hold a quote. The result is used only when the
walk saw at least two non-blank lines after the last quote (so neither the last quote nor the date
line can have been cut); otherwise, and whenever the scan finds nothing, the selector could depend
on later content (``:last-child``, ``:empty``, ``:has`` ...) or the page writes ``=`` or ``/`` as
an entity, the whole document is parsed. During the walk, a block element whose text (computed by
Lexbor, in C) holds no ``=`` cannot hold a quote and is skipped; its lines are read only if the
date line is needed from it.

Limits
======

Work is bounded on any input: an HTML page is read up to its first 8 MiB of text
(``MAX_HTML_CHARS``), and up to the point where block elements nest more than ``MAX_DEPTH`` (1000)
deep, since Lexbor's tree building is quadratic in nesting depth (browsers cap nesting too).
Lines longer than ``MAX_LINE`` (1024) characters are never quotes. Every regular expression of
the module has bounded repetition and cannot backtrack catastrophically; a per-target pattern is
the user's own.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
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
        if _HTML_TAG.search(page) is None:
            return _parse_text(page, selector, grammar)
        raw = page.encode("utf-8", "replace")
    else:
        raw = _utf8(bytes(page))
        if _HTML_TAG_BYTES.search(raw) is None:
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
    snapshot = _read(((line, True) for line in text.splitlines()), grammar, truncated=False)
    if snapshot is None:
        raise ParseError(_nothing(grammar, None))
    return snapshot


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

_HTML_TAG_SRC: Final = (
    r"<(?:!doctype|/?(?:html|head|body|div|ul|ol|li|dl|dt|dd|span|p|br|hr|table|tbody|thead|tr|"
    r"td|th|h[1-6]|section|article|header|footer|nav|main|aside|a|b|i|em|strong|small|sup|sub|"
    r"font|center|blockquote|pre|form|img|script|style|meta|link|title|noscript|iframe))"
    r"(?=[\s/>])"
)
_HTML_TAG: Final = re.compile(_HTML_TAG_SRC, re.IGNORECASE)
_HTML_TAG_BYTES: Final = re.compile(_HTML_TAG_SRC.encode(), re.IGNORECASE)

_PREFIX_MIN: Final = 32 * 1024
#: Read this much past the last hit first, then this much more, then everything.
_PREFIX_MARGINS: Final = (2 * 1024, 32 * 1024)
_PAIR_WINDOW: Final = 1000
_DEPTH_CHECK_MIN_TAGS: Final = 4000
_DEPTH_CHUNK: Final = 32 * 1024

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


def _ci(word: str) -> str:
    """A case-insensitive regex for ``word`` that keeps a literal first character (fast scans)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


#: Elements that never hold others (void) or that close their own kind (optional end tags):
#: they do not deepen the tree, so the nesting check does not count them.
_FLAT_TAGS: Final = frozenset(
    b"area base basefont bgsound br col embed frame hr img input keygen link meta param source "
    b"track wbr p li dt dd tr td th tbody thead tfoot option optgroup colgroup caption rb rt rp "
    b"rtc html head body".split()
)
#: Elements whose content is raw text up to their end tag (a ``<div>`` in a script is text).
_RAW_TEXT_TAGS: Final = frozenset(
    b"script style textarea title xmp iframe noembed noframes plaintext".split()
)
_FLAT: Final = "|".join(_ci(tag.decode()) for tag in sorted(_FLAT_TAGS))
_DEEPENS: Final = re.compile(rf"<(?!(?:{_FLAT})[\s/>])[A-Za-z]".encode())
_SHALLOWS: Final = re.compile(rf"</(?!(?:{_FLAT})[\s/>])[A-Za-z]".encode())
_TAG: Final = re.compile(rb"<(/?)([A-Za-z][^\s/>]{0,64})|<!--")
#: Elements that a start tag of their own kind closes (or ignores) rather than nests in.
_OWN_KIND_TAGS: Final = frozenset(b"a nobr button select form h1 h2 h3 h4 h5 h6".split())
_RAW_END: Final = {tag: re.compile(b"</" + tag, re.IGNORECASE) for tag in _RAW_TEXT_TAGS}


def _last_item_hit(raw: bytes, limit: int) -> int | None:
    """Where the raw HTML's last ticker-looking item is; None when the scan cannot tell."""
    starts = [match.start() for match in _EQ_HIT.finditer(raw, 0, limit)]
    for pos in reversed(starts):
        if _REV_PAIR.match(raw[max(0, pos - _PAIR_WINDOW) : pos][::-1]) is not None:
            # an item past this point written with entities would escape the scan
            return None if _EQ_ENTITY.search(raw, pos, limit) else pos
    return None


def _cap_depth(doc: bytes) -> bytes:
    """``doc``, cut where elements nest deeper than ``MAX_DEPTH``.

    Lexbor's tree building costs O(depth) per start tag of many kinds; without a cap, 100,000
    nested ``<div>`` take half a minute. A page with few tags cannot nest deeply; otherwise a
    cheap count per 32 KiB chunk (start minus end tags, in C) bounds the depth from above, and
    only a page where that bound passes ``MAX_DEPTH`` is tokenised to find the real depth.
    """
    if doc.count(b"<") <= _DEPTH_CHECK_MIN_TAGS:
        return doc
    depth = 0
    for start in range(0, len(doc), _DEPTH_CHUNK):
        stop = start + _DEPTH_CHUNK
        opens = len(_DEEPENS.findall(doc, start, stop))
        if depth + opens > MAX_DEPTH:
            cut = _nesting_cut(doc)
            return doc if cut is None else doc[:cut]
        depth = max(0, depth + opens - len(_SHALLOWS.findall(doc, start, stop)))
    return doc


def _nesting_cut(doc: bytes) -> int | None:
    """Where the open elements first outnumber ``MAX_DEPTH``, by a rough HTML tokeniser.

    Comments and raw-text elements (script, style ...) are passed over; an end tag closes the
    elements opened after its own start tag; void elements and those with optional end tags
    (``p``, ``li``, ``td`` ...) are not counted. Every step moves forward: linear time.
    """
    stack: list[bytes] = []
    pos = 0
    while (match := _TAG.search(doc, pos)) is not None:
        pos = match.end()
        name = match.group(2)
        if name is None:  # a comment
            end = doc.find(b"-->", pos)
            if end < 0:
                return None
            pos = end + 3
            continue
        name = name.lower()
        if match.group(1):
            if name in stack:
                del stack[len(stack) - 1 - stack[::-1].index(name) :]
            continue
        if name in _RAW_TEXT_TAGS:
            closing = _RAW_END[name].search(doc, pos)
            if closing is None:
                return None
            pos = closing.end()
            continue
        if name in _FLAT_TAGS:
            continue
        if name in _OWN_KIND_TAGS and name in stack:
            del stack[len(stack) - 1 - stack[::-1].index(name) :]
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
_MAY_HOLD_CUSTOM: Final = re.compile(r"\d")
#: Containers deeper than this are walked without a look at their text: each look costs the size
#: of the subtree, so looking at every level of a deep page would cost O(size x depth).
_LOOK_DEPTH: Final = 24


def _read_html(
    doc: bytes, selector: str | None, grammar: Grammar, *, truncated: bool
) -> Snapshot | None:
    """Parse ``doc`` and read its ticker; None when there is none or a truncated read is unsure."""
    tree = LexborHTMLParser(doc, options=LexborDocumentOptions.WO_EVENTS)
    selected: frozenset[int] | None = None
    root = tree.body
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
        root = tree.root
    if root is None:  # pragma: no cover -- Lexbor always builds html and body
        return None
    may_hold = _MAY_HOLD_DEFAULT if grammar.pattern is None else _MAY_HOLD_CUSTOM
    return _read(_walk(root, selected, may_hold), grammar, truncated=truncated)


Entry = tuple["str | LexborNode", bool]
"""A line of text (or a passed-over block, read only if needed) and whether it is selected."""


def _walk(  # noqa: PLR0912, PLR0915 -- the hot loop of the parser, kept flat: a helper call per node costs measurable time
    root: LexborNode, selected: frozenset[int] | None, may_hold: re.Pattern[str] | None
) -> Iterator[Entry]:
    """The lines of ``root``'s subtree in document order (an iterative walk: no recursion).

    ``selected``: the ``mem_id`` of the elements a selector matched (None: everything counts).
    ``may_hold``: a container block whose text does not match it is handed out unwalked.
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
        chosen = selected is not None and node.mem_id in selected
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
    for line, _ in _walk(node, None, None):
        if isinstance(line, str) and line.strip():
            return line
    return None


# --- lines -----------------------------------------------------------------------------------

_ZERO_WIDTH: Final = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_SPACES: Final = re.compile(r"\s+")


def _normalise(line: str) -> str:
    """Zero-width characters dropped, whitespace runs made one space, ends stripped."""
    return _SPACES.sub(" ", line.translate(_ZERO_WIDTH)).strip()


_CODE = r"[A-Z0-9]{2,10}"
_SIGNS: Final = "+-−–"
_MINUS: Final = frozenset("-−–")


def _item_pattern(sep: str) -> re.Pattern[str]:
    number = rf"\d{{1,40}}(?:{re.escape(sep)}\d{{1,40}})?"
    return re.compile(
        r"(?:[•·∙●▪‣◦*\-–—] ?)?"
        rf"(?P<base>{_CODE}) ?/ ?(?P<quote>{_CODE}) ?= ?"
        rf"(?P<rate>{number})"
        rf"(?:(?: |(?=[{_SIGNS}]))(?P<sign>[{_SIGNS}])? ?(?P<pct>{number}) ?%)?"
    )


_ITEM: Final = {".": _item_pattern("."), ",": _item_pattern(",")}
_CODE_RE: Final = re.compile(_CODE)
_PLAIN_NUMBER: Final = {
    ".": re.compile(r"\d{1,40}(?:\.\d{1,40})?"),
    ",": re.compile(r"\d{1,40}(?:,\d{1,40})?"),
}
_GROUPED_NUMBER: Final = {
    ".": re.compile(r"\d{1,3}(?:[, ]\d{3}){1,13}(?:\.\d{1,40})?"),
    ",": re.compile(r"\d{1,3}(?:[. ]\d{3}){1,13}(?:,\d{1,40})?"),
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
    """The quote that ``line`` is, as a whole, or None."""
    if len(line) > 4 * MAX_LINE:
        return None
    if grammar.pattern is None and "=" not in line:
        return None
    line = _normalise(line)
    if len(line) > MAX_LINE:
        return None
    if grammar.pattern is None:
        match = _ITEM[grammar.decimal_separator].fullmatch(line)
        if match is None:
            return None
        sep = grammar.decimal_separator
        change = None
        if match["pct"] is not None:
            change = Decimal(match["pct"].replace(sep, "."))
            if match["sign"] in _MINUS:
                change = change.copy_negate()
        return _quote(
            match["base"], match["quote"], Decimal(match["rate"].replace(sep, ".")), change
        )
    return _custom_item(line, grammar, grammar.pattern)


def _custom_item(line: str, grammar: Grammar, pattern: re.Pattern[str]) -> Quote | None:
    match = pattern.search(line)
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
    """One quote per pair in order of first appearance, from the first complete block."""
    seen: dict[str, set[tuple[Decimal, Decimal | None]]] = {}
    first: dict[str, Quote] = {}
    blocks: list[dict[str, Quote]] = [{}]
    for quote in items:
        values = seen.setdefault(quote.pair, set())
        values.add((quote.rate, quote.change_pct))
        first.setdefault(quote.pair, quote)
        if quote.pair in blocks[-1]:
            blocks.append({})
        blocks[-1][quote.pair] = quote
    chosen = next((block for block in blocks if len(block) == len(first)), first)
    quotes = tuple(chosen[pair] for pair in first)
    conflicts = tuple(pair for pair, values in seen.items() if len(values) > 1)
    return quotes, conflicts
