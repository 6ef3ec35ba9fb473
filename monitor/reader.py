"""A fetched body to what it shows: a JSON feed through its query, anything else through the parser.

The one place that decides how a response is read, for the daemon's checks and for ``check``:
with a ``json_query`` the body is JSON (:mod:`monitor.feed`), else a page (:mod:`monitor.parse`);
either way in the charset the ``Content-Type`` header declares (:mod:`monitor.charset`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from monitor.charset import charset_of
from monitor.errors import ParseError
from monitor.feed import FeedQuery, explain_feed, is_json, read_feed
from monitor.parse import (
    Explanation,
    Grammar,
    ParseResult,
    Reread,
    Slice,
    explain,
    parse_page,
    reread,
)
from monitor.parse.items import DEFAULT_GRAMMAR
from monitor.parse.slice import Fingerprint, fingerprint


@contextmanager
def _json_hint(content_type: str) -> Iterator[None]:
    """A page that reads as no ticker, served as JSON: say how to read it instead."""
    try:
        yield
    except ParseError as exc:
        if is_json(content_type):
            raise ParseError(f"{exc}; the response is JSON: read it with a json_query") from None
        raise


__all__ = ["How", "Memo", "Reader"]

#: How :meth:`Reader.read_again` read a body: the same body as last time (nothing parsed), the
#: remembered slice of a page (``monitor.parse.slice``), or the whole body.
How = Literal["same_body", "slice", "whole"]


@dataclass(frozen=True, slots=True)
class Memo:
    """What a :class:`Reader` remembers of a source's last read: a cache (losing it costs time,
    never a result): the header that decided its charset, what it read as, and either the page's
    slice or, without one, the body's fingerprint.

    A body is the same as last time when the slice's checks say so (the page before, in and after
    the slice fingerprinted as they were: ``Reread.how == "same"``), or else when its fingerprint
    is the last one's (:func:`monitor.parse.slice.fingerprint`, keyed SipHash: one pass over the
    body, twice as fast here as the sha256 it replaced). A collision can only make a changed body
    pass for the last one, read as that one was (a missed read, never a reading of bytes that
    were not there), with odds of ~2**-64 per check for a body not written with this process's
    secret key, which no page can learn (see ``fingerprint``).
    """

    content_type: str
    result: ParseResult
    digest: Fingerprint | None = None
    slice: Slice | None = None
    #: whole reads since the last read from a slice: a slice is learned at the 1st, 2nd, 4th,
    #: 8th ... (a page that changes elsewhere on every fetch does not pay for learning each time)
    whole_reads: int = 0


@dataclass(frozen=True, slots=True)
class Reader:
    """How one source is read: its ``selector`` and ``grammar`` (a page) or ``query`` (a JSON
    feed), and a ``charset`` that overrides the header's (``check --charset`` for a saved file).
    """

    selector: str | None = None
    grammar: Grammar = DEFAULT_GRAMMAR
    query: FeedQuery | None = None
    charset: str | None = None

    def read(self, body: bytes, content_type: str = "") -> ParseResult:
        """The quotes of a response body; ``ParseError`` (with a hint where one helps) if none."""
        charset = self.charset or charset_of(content_type)
        if self.query is not None:
            try:
                return read_feed(body, self.query, grammar=self.grammar, charset=charset)
            except ParseError as exc:
                if content_type and not is_json(content_type) and str(exc).startswith("not JSON"):
                    media = content_type.split(";", 1)[0].strip()
                    raise ParseError(f"{exc}; the response is {media}, not JSON") from None
                raise
        with _json_hint(content_type):
            return parse_page(body, selector=self.selector, grammar=self.grammar, charset=charset)

    def read_again(
        self, body: bytes, content_type: str = "", memo: Memo | None = None
    ) -> tuple[ParseResult, Memo, How]:
        """:meth:`read`, for a source read before (``memo``, from the last call): a body equal to
        the last one is not parsed again, and a page whose only change is in its ticker is read
        from the ticker's remembered slice (``monitor.parse.slice``). Returns the result, the
        memo for the next call, and how it was read."""
        charset = self.charset or charset_of(content_type)
        if memo is not None and memo.content_type != content_type:
            memo = None  # the charset the header declares is part of what a body reads as
        if memo is not None and memo.digest is not None and memo.digest == fingerprint(body):
            return memo.result, memo, "same_body"
        if self.query is not None or self.selector is not None:
            result = self.read(body, content_type)
            return result, Memo(content_type, result, fingerprint(body)), "whole"
        hint = None if memo is None else memo.slice
        whole = 1 if memo is None else memo.whole_reads + 1
        got = self._reread(body, content_type, charset, hint, learning=whole & (whole - 1) == 0)
        if got.how == "same" and memo is not None:
            return memo.result, memo, "same_body"
        if got.how != "whole":
            return got.result, Memo(content_type, got.result, None, got.slice), "slice"
        digest = None if got.slice is not None else fingerprint(body)
        return got.result, Memo(content_type, got.result, digest, got.slice, whole), "whole"

    def _reread(
        self,
        body: bytes,
        content_type: str,
        charset: str | None,
        hint: Slice | None,
        *,
        learning: bool,
    ) -> Reread:
        with _json_hint(content_type):
            return reread(body, grammar=self.grammar, charset=charset, hint=hint, learning=learning)

    def explain(self, body: bytes, content_type: str = "", *, limit: int = 20) -> Explanation:
        """What :meth:`read` looks at, block by block (or element by element), and why."""
        charset = self.charset or charset_of(content_type)
        if self.query is not None:
            return explain_feed(
                body, self.query, grammar=self.grammar, charset=charset, limit=limit
            )
        return explain(
            body, selector=self.selector, grammar=self.grammar, charset=charset, limit=limit
        )
