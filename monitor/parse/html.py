"""HTML pages: where a ticker may be, and its blocks of text in document order.

The page is parsed by selectolax's Lexbor backend (as a browser with scripting on would:
``<noscript>`` holds text) and the DOM walked iteratively, never recursively, into blocks. See the
package's docstring for what a block is, what is ignored and how large pages are cut short.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Final

from selectolax.lexbor import (
    LexborDocumentOptions,
    LexborHTMLParser,
    LexborNode,
    SelectolaxError,
    create_tag,
)

from monitor.errors import ParseError
from monitor.parse.assemble import Entry, ParseResult, assemble
from monitor.parse.items import Grammar

__all__ = [
    "MAX_DEPTH",
    "MAX_HTML_BYTES",
    "blocks",
    "check_selector",
    "is_html",
    "item_hits",
    "read_html",
]

#: An HTML page is read up to this many bytes (of UTF-8).
MAX_HTML_BYTES: Final = 8 * 1024 * 1024
#: An HTML page is read up to the point where block elements nest deeper than this.
MAX_DEPTH: Final = 1000

# --- HTML: where to look ---------------------------------------------------------------------

#: Names whose tag (``<div``, ``</p``, ``<span>``) makes a page HTML.
_HTML_NAME_LIST: Final = (
    "html head body div ul ol li dl dt dd span p br hr table tbody thead tr td th h1 h2 h3 h4 h5 "
    "h6 section article header footer nav main aside a b i em strong small sup sub font center "
    "blockquote pre form img script style meta link title noscript iframe frameset marquee "
    "caption !doctype"
)
_HTML_NAMES: Final = frozenset(_HTML_NAME_LIST.split())
# a start or end tag (its name checked against _HTML_NAMES afterwards): one cheap attempt per "<"
_TAG_NAME_SRC: Final = r"<(?:/?([A-Za-z][A-Za-z0-9]{0,9})|(![Dd][Oo][Cc][Tt][Yy][Pp][Ee]))[\s/>]"
_TAG_NAME: Final = re.compile(_TAG_NAME_SRC)
_TAG_NAME_BYTES: Final = re.compile(_TAG_NAME_SRC.encode())
#: Give up looking for an HTML tag after this many tags of other names (``a <b`` in prose).
_HTML_TRIES: Final = 1000


def is_html(page: str | bytes) -> bool:
    """Whether ``page`` holds a tag of a well-known HTML element anywhere (or is all markup)."""
    names: Iterator[str]
    if isinstance(page, str):
        names = (m.group(1) or m.group(2) for m in _TAG_NAME.finditer(page))
    else:
        names = ((m.group(1) or m.group(2)).decode() for m in _TAG_NAME_BYTES.finditer(page))
    return any(
        tried >= _HTML_TRIES or name.lower() in _HTML_NAMES for tried, name in enumerate(names)
    )


# --- the quick read of a large page ----------------------------------------------------------

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
#: A ticker item's signature, from its ``/`` on: past separators a code (with a letter), past
#: separators and an optional ``=`` or ``:``, a digit. (The character after ``/`` is looked at
#: first: most slashes of a page, in ``</div>`` or a URL, fail right there.) Separators are
#: possessive: a code or a digit can never start one, so nothing is lost and nothing backtracks.
_HIT: Final = re.compile(
    rb"/(?=[\s<&A-Z0-9\xc2\xe2\xe3])"
    + _SEP
    + rb"{0,30}+(?=[0-9]{0,9}[A-Z])[A-Z0-9]{2,10}"
    + _SEP
    + rb"{0,30}+(?:[=:]"
    + _SEP
    + rb"{0,30}+)?[0-9]"
)
#: Read backwards from such a ``/``: a code's last two characters past separators.
_REV_CODE: Final = re.compile(_SEP_REV + rb"{0,30}+[A-Z0-9]{2}")
#: ``=``, ``/`` or ``:`` written as an entity: the scan cannot see such items, so it is not trusted.
_LINK_ENTITY: Final = re.compile(
    rb"&(?:#0{0,5}(?:61|47|58)|#[xX]0{0,5}(?:3[dDaA]|2[fF])|equals|sol|frasl|colon)(?![0-9A-Za-z])"
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


def item_hits(raw: bytes) -> list[int]:
    """Where the raw HTML (its first ``MAX_HTML_BYTES``) holds ticker-looking items, in order."""
    return [match.start() for match in _HIT.finditer(raw, 0, min(len(raw), MAX_HTML_BYTES))]


def _last_item_hit(raw: bytes, limit: int, starts: list[int]) -> int | None:
    """Where the raw HTML's last ticker-looking item is; None when the scan cannot tell."""
    for pos in reversed(starts):
        if _REV_CODE.match(raw[max(0, pos - _PAIR_WINDOW) : pos][::-1]) is not None:
            # an item past this point written with entities would escape the scan
            return None if _LINK_ENTITY.search(raw, pos, limit) else pos
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


def check_selector(selector: str) -> None:
    """Raise ``ValueError`` when ``selector`` is not CSS that Lexbor understands."""
    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError:
        raise ValueError(f"invalid CSS selector {selector!r}") from None


def _nothing(grammar: Grammar, selector: str | None) -> str:
    """The ParseError message for a page without quotes."""
    where = "" if selector is None else f" in the elements matched by {selector!r}"
    how = "" if grammar.pattern is None else " (no block matches the target's pattern)"
    return f"no ticker found{where}{how}"


def read_html(
    raw: bytes, selector: str | None, grammar: Grammar, *, hits: list[int] | None = None
) -> ParseResult:
    """Read the ticker of an HTML page (UTF-8 bytes); raise ParseError when there is none.

    ``hits``: the page's :func:`item_hits`, when the caller has them already.
    """
    limit = min(len(raw), MAX_HTML_BYTES)
    if (
        grammar.pattern is None
        and limit > _PREFIX_MIN
        and (selector is None or _PREFIX_UNSAFE_SELECTOR.search(selector) is None)
    ):
        hit = _last_item_hit(raw, limit, item_hits(raw) if hits is None else hits)
        if hit is not None:
            for margin in _PREFIX_MARGINS:
                end = hit + margin
                if end >= limit:
                    break
                result = _read(_cap_depth(raw[:end]), selector, grammar, truncated=True)
                if result is not None:
                    return result
    result = _read(_cap_depth(raw[:limit]), selector, grammar, truncated=False)
    if result is None:
        raise ParseError(_nothing(grammar, selector))
    return result


# --- blocks ----------------------------------------------------------------------------------


def _tag_ids(names: str) -> frozenset[int]:
    return frozenset(create_tag(name).tag_id for name in names.split())


#: Elements that start a line and end it.
_BLOCK: Final = _tag_ids(
    "address article aside blockquote caption center details dialog dir div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr legend li listing main "
    "marquee menu nav ol p pre search section summary table tbody tfoot thead tr ul body html "
    "option optgroup"
)
#: Of those, the ones whose line goes on into what follows: a ``dt`` with its ``dd``.
_LABEL: Final = _tag_ids("dt")
#: Elements joined, with a space, to the line they are in: the cells of a row, a ``dd``.
_CELL: Final = _tag_ids("td th dd")
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
_NOT_INLINE: Final = _BLOCK | _CELL | _SKIP | {_BR}


def _text_tag_id() -> int:
    node = LexborHTMLParser("<p>x</p>").css_first("p")
    child = None if node is None else node.first_child
    if child is None:  # pragma: no cover -- Lexbor always parses this
        raise ImportError("selectolax: cannot find the tag id of text nodes")
    return child.tag_id


_TEXT_NODE: Final = _text_tag_id()
#: What the text of a block must hold to hold a quote: ``/`` (default grammar), a digit (any).
_MAY_HOLD_DEFAULT: Final = re.compile("/")
_MAY_HOLD_CUSTOM: Final = re.compile("[0-9]")
#: Containers deeper than this are walked without a look at their text: each look costs the size
#: of the subtree, so looking at every level of a deep page would cost O(size x depth).
_LOOK_DEPTH: Final = 24


def _tree(doc: bytes) -> LexborHTMLParser:
    return LexborHTMLParser(doc, options=LexborDocumentOptions.WO_EVENTS, scripting=True)


def _scope(
    tree: LexborHTMLParser, selector: str | None, *, truncated: bool
) -> tuple[LexborNode | None, frozenset[int] | None, frozenset[int]] | None:
    """Where to walk, the selected elements and their ancestors; None: the (cut) page has no match."""
    root = tree.body
    if root is None:  # a <frameset> page has no body
        root = tree.root
    if selector is None:
        return root, None, frozenset()
    try:
        matches = tree.css(selector)
    except SelectolaxError:
        raise ParseError(f"invalid CSS selector {selector!r}") from None
    if not matches:
        if truncated:
            return None
        raise ParseError(f"selector {selector!r} matches nothing on the page")
    return tree.root, frozenset(node.mem_id for node in matches), _ancestors(matches)


def _read(
    doc: bytes, selector: str | None, grammar: Grammar, *, truncated: bool
) -> ParseResult | None:
    """Parse ``doc`` and read its ticker; None when there is none or a truncated read is unsure."""
    scope = _scope(_tree(doc), selector, truncated=truncated)
    if scope is None:
        return None
    root, selected, on_path = scope
    if root is None:  # pragma: no cover -- Lexbor always builds an html element
        return None
    may_hold = _MAY_HOLD_DEFAULT if grammar.pattern is None else _MAY_HOLD_CUSTOM
    lines = _walk(root, may_hold, selected=selected, on_path=on_path)
    return assemble(lines, grammar, truncated=truncated, first_line=_first_line)


def blocks(raw: bytes, selector: str | None) -> Iterator[Entry]:
    """Every block of the whole page (UTF-8 bytes), nothing passed over: for explanations."""
    limit = min(len(raw), MAX_HTML_BYTES)
    scope = _scope(_tree(_cap_depth(raw[:limit])), selector, truncated=False)
    root, selected, on_path = scope or (None, None, frozenset())
    if root is None:  # pragma: no cover -- _scope raises instead; Lexbor always builds an html
        return iter(())
    return _walk(root, None, selected=selected, on_path=on_path)


def _ancestors(nodes: Iterable[LexborNode]) -> frozenset[int]:
    """The ``mem_id`` of ``nodes`` and of all their ancestors."""
    seen: set[int] = set()
    for node in nodes:
        current: LexborNode | None = node
        while current is not None and current.mem_id not in seen:
            seen.add(current.mem_id)
            current = current.parent
    return frozenset(seen)


def _walk(  # noqa: PLR0912, PLR0915 -- the hot loop, kept flat: a call per node costs time
    root: LexborNode,
    may_hold: re.Pattern[str] | None,
    *,
    selected: frozenset[int] | None = None,
    on_path: frozenset[int] = frozenset(),
) -> Iterator[Entry]:
    """The blocks of ``root``'s subtree in document order (an iterative walk: no recursion).

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
            parent, ends, chosen, keeps = stack.pop()
            if (ends or chosen) and buf:
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
        cell = not block and tag in _CELL
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
        if buf:
            if block or chosen:
                yield "".join(buf), inside > 0
                buf.clear()
            elif cell:
                buf.append(" ")
        if may_hold is not None and not chosen and tag in _CONTAINER and len(stack) < _LOOK_DEPTH:
            content = node.text()
            if may_hold.search(content) is None:
                if content and not content.isspace():
                    yield node, False
                node = node.next
                continue
        joins = cell or tag in _LABEL
        if (block or cell) and not pre and tag not in _PRE and _inline_only(node, selected):
            # li, p, td ... holding inline elements only: Lexbor joins their text, in C
            content = node.text()
            if chosen:
                if content:
                    yield content, True
            elif joins:
                buf.append(content)
            elif content:
                yield content, inside > 0
            node = node.next
            continue
        child = node.first_child
        if child is None:
            node = node.next
            continue
        keeps = tag in _PRE
        stack.append((node, block and not joins, chosen, keeps))
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


def _first_line(node: object) -> str | None:
    """The first non-blank line of a block that the walk passed over."""
    if not isinstance(node, LexborNode):  # pragma: no cover -- the walk hands out only these
        return None
    for line, _ in _walk(node, None):
        if isinstance(line, str) and line.strip():
            return line
    return None
