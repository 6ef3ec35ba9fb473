"""The remembered slice: read a page again from the bytes where its ticker is, without a DOM.

After a whole read of a page (:func:`monitor.parse.html.read_html`), :func:`learn` looks for the
ticker's bytes: a run of simple markup (block elements such as ``div``, ``ul``, ``li``, ``p``;
inline ones such as ``span``, ``b``, ``a``) from an element's start tag to a few blocks past the
ticker. It reads that run *without* Lexbor -- the tags split the bytes, block tags end a block,
entities are decoded, the blocks go through the same item grammar and :func:`assemble` -- and
keeps it as a :class:`Slice` only if

* that read equals the whole read exactly, and
* the page *without* the run holds no ticker at all (a whole read of the rest finds none).

The run is kept as a *template*: its **variable pieces** are the text pieces that hold a digit
(rates, percentages, the date), each between a tag's ``>`` and the next tag's ``<``; everything
else -- every tag, every other text -- is **constant**. The slice keeps where the run starts
(the length of the page before it) and the length of the page after it, fingerprints of those two
parts (:func:`fingerprint`), of the constant pieces (its *skeleton*) and of the run, the decoded
constant text between the variable pieces (the blocks it makes, blank ones left out), and the
result, with the quotes of each block text read (``read_block`` is pure: a block read before is
not read again).

The next time (:func:`read_slice`) the run is ``raw[start:len(raw) - tail]``, and:

* the page before it and after it must be what they were (their fingerprints): so the rest
  still holds no item, and everything around the run parses as it did;
* cut by its constant pieces' lengths (each variable piece runs to the next ``<``), its
  constant pieces must be the same (the skeleton): the same elements, attributes, order and
  digit-less text, so only text holding a digit can differ, and a variable piece holds no ``<``
  or ``>``: it is a whole text node where the old one was, and the blocks are the ones the DOM
  walk would see;
* the read must give the same pairs, a date line if there was one, and two blocks past the last
  quote.

Then the result is the whole read's (a run whose bytes are unchanged too gives the remembered
result without reading). Anything else -- the page changed elsewhere or around the run, a tag
inside it changed, a comment, a script, a NUL byte or a reference to a control character in a
variable piece (Python's ``unescape`` drops what Lexbor keeps) -- returns None
and the caller reads the whole page, learning again.

Memory (5,000 targets, ``docs/performance.md``): the template is one tuple shared by the slices
of pages with the same constant text (the pages of one site), the quotes of the blocks kept are
the very objects of the result (which the daemon's board holds too), and the lengths are an
``array``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from html import unescape
from typing import Final

from monitor.errors import ParseError
from monitor.models import Quote
from monitor.parse.assemble import ParseResult, assemble
from monitor.parse.html import read_html
from monitor.parse.items import Grammar

__all__ = ["Fingerprint", "Slice", "fingerprint", "learn", "read_slice"]

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


_DIGIT: Final = re.compile(rb"[0-9]")
#: A numeric character reference (``html.unescape`` reads them as the DOM does but for some).
_NUMERIC_REF: Final = re.compile(r"&#(?:[xX]0*([0-9a-fA-F]{1,8})|0*([0-9]{1,10}))")
#: What ends a block in a slice's template (a text holding one does not read from a slice).
_BREAK: Final = "\x1e"
#: Templates learned lately, each the one tuple its slices share: the pages of one site share
#: their ticker's markup (5,000 targets' memory). Bounded: emptied when it holds this many.
_TEMPLATES: Final[dict[tuple[str, ...], tuple[str, ...]]] = {}
_TEMPLATES_KEPT: Final = 1024

#: Whether Python's ``hash`` of bytes is keyed by a secret drawn at random at start-up (not fixed
#: by ``PYTHONHASHSEED``, which the interpreter reads once, when it starts).
_KEYED: Final = bool(sys.flags.hash_randomization) and os.environ.get("PYTHONHASHSEED", "") in (
    "",
    "random",
)

Fingerprint = int | bytes
"""What :func:`fingerprint` gives: an ``int`` (keyed SipHash) or a ``bytes`` (sha256)."""


def fingerprint(data: bytes | memoryview) -> Fingerprint:
    """A fingerprint of ``data`` (bytes, or a view of them) for telling bytes seen before.

    Python's own ``hash`` of the bytes: SipHash-1-3, keyed by a 128-bit secret drawn at random
    when the process starts, 64 bits out, ~3 GB/s here (sha256: ~1.4 GB/s, zlib.crc32: ~1.7 GB/s
    and not keyed: a page can be written to collide with any crc). Two different byte strings
    share a fingerprint with probability ~2**-64 unless they were made with the key, which the
    page cannot learn: fingerprints live in this process's memory only (a memo is a cache, never
    stored, logged or shown), and the key dies with the process. So a page that changes passes
    for the page it was with odds of ~5e-20 per check: 5,000 targets a minute would meet one in
    ~7e10 years. When ``PYTHONHASHSEED`` fixes the key (anyone may know it) this is sha256.
    """
    if _KEYED:
        return hash(memoryview(data))
    return hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class _Shape:
    """A slice's template: the lengths of its constant pieces, the decoded text around its
    variable pieces (one more than them; _BREAK ends a block), how many blocks it makes."""

    lengths: array[int]
    template: tuple[str, ...]
    blocks: int


@dataclass(frozen=True, slots=True)
class Slice:
    """Where a page's ticker is, what its markup and the rest of the page were (see the module)."""

    #: where the slice starts: the length of the page before it
    start: int
    #: the length of the page after it
    tail: int
    #: fingerprints of the page before and after the slice
    before: Fingerprint
    after: Fingerprint
    #: the fingerprint of the slice's constant pieces, and their lengths (compact: 5,000 targets)
    skeleton: Fingerprint
    lengths: array[int]
    #: the decoded text around the variable pieces (one more than them); _BREAK ends a block.
    #: Shared by the slices of pages with the same constant text (``_TEMPLATES``).
    template: tuple[str, ...]
    #: how many blocks the template makes
    blocks: int
    grammar: Grammar
    #: the fingerprint of the slice's bytes, and what they read as
    inside: Fingerprint
    result: ParseResult
    #: the quotes of each block text of the last read that held some (``read_block`` is pure)
    known: Mapping[str, tuple[Quote, ...]]

    @property
    def pairs(self) -> tuple[str, ...]:
        return tuple(q.pair for q in self.result.snapshot.quotes)


def _dropped_reference(text: str) -> bool:
    """Does ``text`` hold a reference to a control or non-character (``&#1;``, ``&#x7F;``,
    ``&#xFFFE;``)? ``html.unescape`` drops those, Lexbor keeps them (as the HTML standard says);
    C1 controls (``&#x80;``: windows-1252) are counted too, to be safe."""
    for match in _NUMERIC_REF.finditer(text):
        hexa, decimal = match.groups()
        num = int(hexa, 16) if hexa is not None else int(decimal)
        if (
            1 <= num <= 0x8  # html.unescape drops these code points
            or num == 0xB
            or 0xE <= num <= 0x9F  # C0 from 0x0E, DEL, C1
            or 0xFDD0 <= num <= 0xFDEF
            or (num & 0xFFFE == 0xFFFE and num <= 0x10FFFF)
        ):
            return True
    return False


def _cut(span: bytes, lengths: array[int]) -> tuple[list[bytes], list[bytes]] | None:
    """The constant and the variable pieces of a slice: each constant piece as long as it was,
    each variable piece up to the next ``<``; None when that does not fit the slice."""
    if b"\0" in span:  # Lexbor drops a NUL in text: the blocks would differ
        return None
    # each constant piece is as long as it was, each variable piece runs to the next "<"
    constants: list[bytes] = []
    variables: list[bytes] = []
    find = span.find
    pos = 0
    for length in lengths[:-1]:
        stop = pos + length
        constants.append(span[pos:stop])
        pos = find(b"<", stop)
        if pos < 0:
            return None
        variables.append(span[stop:pos])
    if len(span) - pos != lengths[-1]:
        return None
    constants.append(span[pos:])
    return constants, variables


def _entries(variables: list[bytes], template: tuple[str, ...]) -> list[str] | None:
    """The block texts of a slice: its ``variable`` pieces decoded and filled into the decoded
    ``template`` around them, split where blocks end; None when a piece refers to a character
    that ``unescape`` would drop (:func:`_dropped_reference`)."""
    # the variable pieces hold no "<": one decode for all of them, split where they were joined
    texts = b"<".join(variables).decode("utf-8", "replace").split("<")
    refs = [text for text in set(texts) if "&" in text]
    if any(_dropped_reference(text) for text in refs if "&#" in text):
        return None
    decoded = {text: unescape(text) for text in refs}
    parts = [""] * (2 * len(texts) + 1)
    parts[0::2] = template
    parts[1::2] = [decoded.get(text, text) for text in texts]
    return "".join(parts).split(_BREAK)


def _fill(
    span: bytes,
    memo: _Shape | Slice,
    grammar: Grammar,
    *,
    previous: Mapping[str, tuple[Quote, ...]] | None = None,
    skeleton: Fingerprint | None = None,
) -> tuple[Fingerprint, ParseResult | None, dict[str, tuple[Quote, ...]]] | None:
    """The slice ``span`` read through the template of ``memo``: the fingerprint of its constant
    pieces, its result and the quotes of each block text that held some; None when its shape is
    not the template's, or its constant pieces are not ``skeleton`` (when given)."""
    cut = _cut(span, memo.lengths)
    if cut is None:
        return None
    constants, variables = cut
    constant = fingerprint(b"".join(constants))  # the lengths are fixed: no separator needed
    if skeleton is not None and constant != skeleton:
        return None
    entries = _entries(variables, memo.template)
    if entries is None or len(entries) != memo.blocks:  # a piece that decodes to _BREAK
        return None
    known: dict[str, tuple[Quote, ...]] = {}
    result = assemble(
        [(entry, True) for entry in entries],
        grammar,
        truncated=True,
        known=known,
        previous=previous if grammar.pattern is None else None,
    )
    # the blocks that held quotes: the ones worth not reading again (5,000 targets' memory)
    return constant, result, {text: quotes for text, quotes in known.items() if quotes}


def read_slice(raw: bytes, memo: Slice, grammar: Grammar) -> tuple[ParseResult, Slice] | None:
    """The ticker of ``raw`` (UTF-8 HTML) read from its remembered slice, and the slice for next
    time; None when the page is not as the slice needs it (see the module): read it whole."""
    end = len(raw) - memo.tail
    if end <= memo.start or (grammar is not memo.grammar and grammar != memo.grammar):
        return None
    view = memoryview(raw)
    if fingerprint(view[: memo.start]) != memo.before or fingerprint(view[end:]) != memo.after:
        return None
    inside = fingerprint(view[memo.start : end])
    if inside == memo.inside:
        return memo.result, memo
    span = raw[memo.start : end]
    read = _fill(span, memo, grammar, previous=memo.known, skeleton=memo.skeleton)
    if read is None:
        return None
    _, result, known = read
    if (
        result is None
        or tuple(q.pair for q in result.snapshot.quotes) != memo.pairs
        or (memo.result.snapshot.page_date is not None and result.snapshot.page_date is None)
    ):
        return None
    return result, Slice(
        memo.start,
        memo.tail,
        memo.before,
        memo.after,
        memo.skeleton,
        memo.lengths,
        memo.template,
        memo.blocks,
        memo.grammar,
        inside,
        result,
        known,
    )


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
    end = start + sum(map(len, tags)) + sum(map(len, texts))
    span = raw[start:end]
    # every tag is of a block or an inline element (_OTHER found none else)
    breaks = [i for i, tag in enumerate(tags) if _name(tag) in _BLOCKS]
    shaped = _template(span, tags, texts, breaks)
    if shaped is None:
        return None
    read = _fill(span, shaped, grammar)
    if read is None or read[1] != result:
        return None
    if _rest_holds_ticker(raw, start, end, grammar, hits):
        return None
    view = memoryview(raw)
    return Slice(
        start=start,
        tail=len(raw) - end,
        before=fingerprint(view[:start]),
        after=fingerprint(view[end:]),
        skeleton=read[0],
        lengths=shaped.lengths,
        template=shaped.template,
        blocks=shaped.blocks,
        grammar=grammar,
        inside=fingerprint(view[start:end]),
        result=result,
        known=_shared(read[2], result),
    )


def _as_is(quote: Quote) -> tuple[object, ...]:
    """Every field of ``quote`` as written: ``Quote`` equality ignores the texts and takes
    ``0.0965`` for ``0.09650``; this tells them apart."""
    change = None if quote.change_pct is None else str(quote.change_pct)
    return (
        quote.pair,
        quote.base,
        quote.quote,
        str(quote.rate),
        change,
        quote.rate_text,
        quote.change_text,
    )


def _shared(
    known: dict[str, tuple[Quote, ...]], result: ParseResult
) -> dict[str, tuple[Quote, ...]]:
    """``known`` (the slice's own read of its blocks) holding the very quotes of ``result`` (the
    whole read) where they are the same in every field: one set of quote objects per target, not
    two (the board holds ``result``; 5,000 targets' memory)."""
    same = {_as_is(quote): quote for quote in result.snapshot.quotes}
    return {
        text: tuple(same.get(_as_is(quote), quote) for quote in quotes)
        for text, quotes in known.items()
    }


def _template(
    span: bytes, tags: list[bytes], texts: list[bytes], breaks: list[int]
) -> _Shape | None:
    """The template of a slice (``span``: its ``tags`` and the ``texts`` before each): the
    lengths of its constant pieces, the decoded text around its variable pieces (blank blocks
    left out) and how many blocks that makes; None when a text piece that holds a digit does not
    run to the next ``<``."""
    starts, ends, pos = [], [], 0
    for tag, text in zip(tags, texts, strict=True):
        if _DIGIT.search(text):
            if span.find(b"<", pos) != pos + len(text):  # "1 < 2": not where _fill would end it
                return None
            starts.append(pos)
            ends.append(pos + len(text))
        pos += len(text) + len(tag)
    if not starts:
        return None
    gaps = [start - end for start, end in zip([*starts, len(span)], [0, *ends], strict=True)]
    lengths = array("H" if max(gaps) < 1 << 16 else "I", gaps)  # compact: 5,000 targets
    around = _around(texts, breaks)
    if around is None:
        return None
    interned: dict[str, str] = {}  # the repeats share their strings (5,000 targets)
    template = tuple(interned.setdefault(text, text) for text in around[0])
    return _Shape(lengths, _shared_template(template), around[1])


def _shared_template(template: tuple[str, ...]) -> tuple[str, ...]:
    """The one tuple of a template learned lately (``_TEMPLATES``), else ``template`` itself."""
    if len(_TEMPLATES) >= _TEMPLATES_KEPT:
        _TEMPLATES.clear()  # the slices keep theirs; later ones share anew
    return _TEMPLATES.setdefault(template, template)


def _around(texts: list[bytes], breaks: list[int]) -> tuple[list[str], int] | None:
    """The decoded text of a slice's blocks around the text pieces that hold a digit (blank
    blocks left out), and how many blocks there are; None when a text holds _BREAK."""
    decoded: dict[bytes, str] = {}
    around: list[str] = []
    current: list[str] = []
    blocks = first = 0
    for last in (*breaks, len(texts) - 1):
        parts: list[str | None] = []
        for text in texts[first : last + 1]:
            if _DIGIT.search(text):
                parts.append(None)
                continue
            got = decoded.get(text)
            if got is None:
                got = text.decode("utf-8", "replace")
                got = decoded[text] = unescape(got) if "&" in got else got
            if _BREAK in got:
                return None
            parts.append(got)
        first = last + 1
        if None not in parts:
            joined = "".join(part for part in parts if part is not None)
            if not joined or joined.isspace():
                continue  # a blank block: assemble passes over it
        if blocks:
            current.append(_BREAK)
        blocks += 1
        for part in parts:
            if part is None:
                around.append("".join(current))
                current = []
            else:
                current.append(part)
    around.append("".join(current))
    return around, blocks
