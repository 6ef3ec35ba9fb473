"""A fetched body to what it shows: a JSON feed through its query, anything else through the parser.

The one place that decides how a response is read, for the daemon's checks and for ``check``:
with a ``json_query`` the body is JSON (:mod:`monitor.feed`), else a page (:mod:`monitor.parse`);
either way in the charset the ``Content-Type`` header declares (:mod:`monitor.charset`).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.charset import charset_of
from monitor.errors import ParseError
from monitor.feed import FeedQuery, explain_feed, is_json, read_feed
from monitor.parse import Explanation, Grammar, ParseResult, explain, parse_page
from monitor.parse.items import DEFAULT_GRAMMAR

__all__ = ["Reader"]


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
        try:
            return parse_page(body, selector=self.selector, grammar=self.grammar, charset=charset)
        except ParseError as exc:
            if is_json(content_type):
                raise ParseError(
                    f"{exc}; the response is JSON: read it with a json_query"
                ) from None
            raise

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
