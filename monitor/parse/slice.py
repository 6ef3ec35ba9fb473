"""The remembered slice: read a page again from the bytes where its ticker is, without a DOM.

After a whole read of a page (:func:`monitor.parse.html.read_html`), :func:`learn` looks for the
ticker's bytes: a run of simple markup (block elements such as ``div``, ``ul``, ``li``, ``p``;
inline ones such as ``span``, ``b``, ``a``) from an element's start tag to a few blocks past the
ticker. It reads that run *without* Lexbor -- the tags split the bytes, block tags end a block,
entities are decoded, the blocks go through the same item grammar and :func:`assemble` -- and
keeps it as a :class:`Slice` only if

* that read equals the whole read exactly, and
* the page *without* the run holds no ticker at all (a whole read of the rest finds none).

The slice keeps the run's start tag (and which occurrence of it), how many tags it spans, a digest
of those tags (its *skeleton*), a digest of the rest of the page (*outside*), and the result.

The next time (:func:`read_slice`), the start tag is found again, the same number of tags is cut
out, and:

* the rest of the page must be byte for byte what it was (its digest): so it still holds no item,
  and everything around the slice parses as it did;
* the skeleton must be the same -- the same elements, attributes and order, so only text (rates,
  percentages, the date) can differ, and the blocks are the ones the DOM walk would see;
* the read must give the same pairs, a date line if there was one, and two blocks past the last
  quote.

Then the result is the whole read's (a slice whose bytes are unchanged too gives the remembered
result without reading). Anything else -- the page changed elsewhere, the tag moved out of sight,
other markup, a comment or a script in the run -- returns None and the caller reads the whole page,
learning again.
"""

from __future__ import annotations

import hashlib
import re
from array import array
from dataclasses import dataclass, replace
from html import unescape
from typing import Final

from monitor.errors import ParseError
from monitor.parse.assemble import Entry, ParseResult, assemble
from monitor.parse.html import read_html
from monitor.parse.items import Grammar

__all__ = ["Slice", "learn", "read_slice"]

#: A start or end tag and its name. (An attribute value holding ``>`` ends it early: the read
#: then differs from the DOM's, or not, and :func:`learn` keeps only a slice that reads the same.)
_TAG: Final = re.compile(rb"<(/?)([A-Za-z][A-Za-z0-9]{0,15})[^>]*>")
#: What the slice is cut at: text pieces between the tags.
_SPLIT: Final = re.compile(rb"(</?[A-Za-z][^>]*>)")
#: Elements that end a block, as the DOM walk reads them (``monitor.parse.html``).
_BLOCKS: Final = frozenset(
    b"address article aside blockquote center details dialog dir div figcaption figure footer "
    b"form h1 h2 h3 h4 h5 h6 header hgroup hr li main marquee menu nav ol p search section "
    b"summary ul br".split()
)
#: Elements whose text is part of the block they are in.
_INLINE: Final = frozenset(
    b"a abbr b bdi bdo cite code data del dfn em font i img ins kbd mark nobr q s samp small "
    b"span strike strong sub sup time tt u var wbr".split()
)
#: A slice spans at most this many tags (a ticker is a few hundred).
MAX_TAGS: Final = 4000
#: ... and ends this far past the last item-like hit of its run.
_MARGIN: Final = 2048
#: Markup that the slice reader does not read as the DOM walk would: never in a slice.
_REFUSED: Final = re.compile(rb"<[!?]")
#: A tag of an element that is neither of those: a slice holding one is not learned.
_OTHER: Final = re.compile(
    rb"</?(?!(?:" + b"|".join(sorted(_BLOCKS | _INLINE)) + rb")[\s/>])"
    rb"[A-Za-z]",
    re.IGNORECASE,
)
#: How far past the last item-like hit outside the slice the rest of the page is read.
_PROBE: Final = 32 * 1024
#: How many places :func:`learn` tries.
_TRIES: Final = 16
#: A start tag of an element that may hold a ticker's blocks.
_BLOCK_START: Final = re.compile(
    rb"<(?:div|ul|ol|li|p|section|article|nav|header|footer|aside|main|marquee|center)[\s>]",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Slice:
    """Where a page's ticker is, what its markup and the rest of the page were (see the module)."""

    start_tag: bytes
    #: how many times ``start_tag`` occurs before the slice
    occurrence: int
    #: how many tags the slice spans
    tags: int
    #: the digest of the slice's tags
    skeleton: bytes
    #: the index (in the slice's tags) of each tag that ends a block (compact: 5,000 targets)
    breaks: array[int]
    #: the slice's length in bytes when learned (a search window for the next read)
    length: int
    #: the digest of the page outside the slice
    outside: bytes
    #: the digest of the slice's bytes, and what they read as
    inside: bytes
    result: ParseResult

    @property
    def pairs(self) -> tuple[str, ...]:
        return tuple(q.pair for q in self.result.snapshot.quotes)


def _digest(*parts: bytes | memoryview) -> bytes:
    h = hashlib.sha256()
    for part in parts:
        h.update(part)
    return h.digest()


def _outside(raw: bytes, start: int, end: int) -> bytes:
    view = memoryview(raw)
    return _digest(view[:start], b"\0", view[end:])


def _entries(texts: list[bytes], breaks: array[int]) -> list[Entry]:
    """The blocks of a slice: the text pieces joined between two block tags, decoded."""
    entries: list[Entry] = []
    decoded: dict[bytes, str] = {}
    start = 0
    for end in (*breaks, len(texts) - 1):
        raw = b"".join(texts[start : end + 1])
        start = end + 1
        text = decoded.get(raw)
        if text is None:
            text = raw.decode("utf-8", "replace")
            if "&" in text:
                text = unescape(text)
            decoded[raw] = text
        entries.append((text, True))
    return entries


def _read(texts: list[bytes], breaks: array[int], grammar: Grammar) -> ParseResult | None:
    return assemble(_entries(texts, breaks), grammar, truncated=True)


def _find(raw: bytes, memo: Slice) -> tuple[int, int, list[bytes], list[bytes]] | None:
    """Where the slice is now (start, end), its tags and the text before each; None if gone."""
    pos = -1
    for _ in range(memo.occurrence + 1):
        pos = raw.find(memo.start_tag, pos + 1)
        if pos < 0:
            return None
    pieces = _SPLIT.split(raw[pos : pos + memo.length + _MARGIN])
    if len(pieces) < 2 * memo.tags + 1:
        return None
    del pieces[2 * memo.tags :]
    end = pos + sum(map(len, pieces))
    return pos, end, pieces[1::2], pieces[0::2]


def read_slice(raw: bytes, memo: Slice, grammar: Grammar) -> tuple[ParseResult, Slice] | None:
    """The ticker of ``raw`` (UTF-8 HTML) read from its remembered slice, and the slice for next
    time; None when the page is not as the slice needs it (see the module): read it whole."""
    found = _find(raw, memo)
    if found is None:
        return None
    start, end, tags, texts = found
    if _outside(raw, start, end) != memo.outside:
        return None
    inside = _digest(memoryview(raw)[start:end])
    if inside == memo.inside:
        return memo.result, memo
    if _digest(b"\0".join(tags)) != memo.skeleton or _REFUSED.search(raw, start, end):
        return None
    result = _read(texts, memo.breaks, grammar)
    if (
        result is None
        or tuple(q.pair for q in result.snapshot.quotes) != memo.pairs
        or (memo.result.snapshot.page_date is not None and result.snapshot.page_date is None)
    ):
        return None
    return result, replace(memo, inside=inside, result=result)


def learn(raw: bytes, result: ParseResult, grammar: Grammar, hits: list[int]) -> Slice | None:
    """A slice of ``raw`` that reads exactly as ``result`` (its whole read), or None.

    ``hits`` are the positions of item-like bytes (``monitor.parse.html.item_hits``), in order:
    the slice starts at the start tag of the block element before one of them, and ends a little
    past the last hit of the run of hits that follows it (hits further apart than ``_MARGIN``
    belong to something else: a decoy in a script, another list).
    """
    if not hits or not result.snapshot.quotes:
        return None
    tried: set[int] = set()
    for n, hit in enumerate(hits):
        if len(tried) >= _TRIES:
            break
        start = _block_start(raw, hit)
        if start is None or start in tried:
            continue
        tried.add(start)
        last = hit
        for later in hits[n + 1 :]:
            if later - last > _MARGIN:
                break
            last = later
        found = _verified(
            raw, start, min(len(raw), last + _MARGIN), result=result, grammar=grammar, hits=hits
        )
        if found is not None:
            return found
    return None


def _block_start(raw: bytes, hit: int) -> int | None:
    """Where the last block element's start tag before ``hit`` begins."""
    last = None
    for match in _BLOCK_START.finditer(raw, max(0, hit - 4096), hit):
        last = match.start()
    return last


def _name(tag: bytes) -> bytes:
    match = _TAG.match(tag)
    return b"" if match is None else match.group(2).lower()


def _rest_holds_ticker(raw: bytes, start: int, end: int, grammar: Grammar, hits: list[int]) -> bool:
    """Does the page outside ``raw[start:end]`` hold a ticker of its own?"""
    outside = [hit for hit in hits if not start <= hit < end]
    if not outside:  # an item has a hit: the whole read's prefix cut relies on it too
        return False
    # ... and lies near it
    limit = outside[-1] + _PROBE
    try:
        read_html(raw[: min(start, limit)] + raw[end : max(end, limit)], None, grammar)
    except ParseError:
        return False
    return True


def _verified(
    raw: bytes, start: int, end: int, *, result: ParseResult, grammar: Grammar, hits: list[int]
) -> Slice | None:
    span = raw[start:end]
    tag_end = span.find(b">")
    if tag_end < 0 or _REFUSED.search(span) is not None or _OTHER.search(span) is not None:
        return None
    pieces = _SPLIT.split(span)
    tags, texts = pieces[1::2], pieces[0::2]
    if not tags or len(tags) > MAX_TAGS:
        return None
    texts = texts[: len(tags)]  # the text after the last tag is not part of the slice
    # every tag is of a block or an inline element (_OTHER found none else)
    compact = array("I", (i for i, tag in enumerate(tags) if _name(tag) in _BLOCKS))
    if _read(texts, compact, grammar) != result:
        return None
    end = start + sum(map(len, tags)) + sum(map(len, texts))
    if _rest_holds_ticker(raw, start, end, grammar, hits):
        return None
    start_tag = span[: tag_end + 1]
    return Slice(
        start_tag=start_tag,
        occurrence=raw.count(start_tag, 0, start),
        tags=len(tags),
        skeleton=_digest(b"\0".join(tags)),
        breaks=compact,
        length=end - start,
        outside=_outside(raw, start, end),
        inside=_digest(memoryview(raw)[start:end]),
        result=result,
    )
