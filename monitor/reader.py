"""A fetched body to what it shows: a JSON feed through its query, anything else through the parser.

The one place that decides how a response is read, for the daemon's checks and for ``check``:
with a ``json_query`` the body is JSON (:mod:`monitor.feed`), else a page (:mod:`monitor.parse`);
either way in the charset the ``Content-Type`` header declares (:mod:`monitor.charset`).
"""

from __future__ import annotations

from monitor.charset import charset_of
from monitor.errors import ParseError
from monitor.feed import FeedQuery, explain_feed, is_json, read_feed
from monitor.parse import Explanation, Grammar, ParseResult, explain, parse_page

__all__ = ["explain_body", "read_body"]


def read_body(
    body: bytes,
    *,
    content_type: str = "",
    selector: str | None = None,
    grammar: Grammar | None = None,
    query: FeedQuery | None = None,
    charset: str | None = None,
) -> ParseResult:
    """The quotes of a response body; ``ParseError`` (with a hint where one helps) when none.

    ``charset`` overrides the header's (``check --charset`` for a saved file).
    """
    charset = charset or charset_of(content_type)
    if query is not None:
        try:
            return read_feed(body, query, grammar=grammar, charset=charset)
        except ParseError as exc:
            if content_type and not is_json(content_type) and str(exc).startswith("not JSON"):
                media = content_type.split(";", 1)[0].strip()
                raise ParseError(f"{exc}; the response is {media}, not JSON") from None
            raise
    try:
        return parse_page(body, selector=selector, grammar=grammar, charset=charset)
    except ParseError as exc:
        if is_json(content_type):
            raise ParseError(f"{exc}; the response is JSON: read it with a json_query") from None
        raise


def explain_body(
    body: bytes,
    *,
    content_type: str = "",
    selector: str | None = None,
    grammar: Grammar | None = None,
    query: FeedQuery | None = None,
    charset: str | None = None,
    limit: int = 20,
) -> Explanation:
    """What :func:`read_body` looked at, block by block (or element by element), and why."""
    charset = charset or charset_of(content_type)
    if query is not None:
        return explain_feed(body, query, grammar=grammar, charset=charset, limit=limit)
    return explain(body, selector=selector, grammar=grammar, charset=charset, limit=limit)
