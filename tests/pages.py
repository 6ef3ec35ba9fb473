"""Builders of ticker pages for tests and benchmarks: plain text and HTML.

A quote is given as ``(pair, rate, change)``: ``("TMT/USD", "0.28575", "-0.14")``. ``rate`` and
``change`` are written exactly as the page should show them; ``change`` may carry its ``%`` or not
(it is added), and ``None`` leaves the percentage out. A minus sign may be ASCII ``-`` or the
unicode minus ``−``.

The main entry points:

* :func:`ticker_text` -- the marquee as the corpus text renderings show it (``• KGS/USD = ...``).
* :func:`ticker_html` -- a whole, realistic page (nav, header, decoy scripts and styles, the marquee
  in ``<div class="ticker">``, the date line, article teasers of made-up prose, footer), padded to
  ``filler_kb`` kilobytes. The daemon's end-to-end tests serve it and change the quotes between
  checks.
* :func:`marquee_html` -- just the marquee, in one of several markups (``MARQUEE_FORMS``).
* :func:`corpus_html` -- one of the stored text renderings (``tests/fixtures/NNN.txt``) turned into
  HTML in one of several forms (``FORMS``).
* :func:`expected_json` -- what ``parse`` must read from such a page, as ``Quote.to_json()`` dicts.

Everything here is deterministic: the same arguments give the same page, byte for byte.
"""

from __future__ import annotations

import html
import random
import re
from collections.abc import Iterable, Sequence

QuoteSpec = tuple[str, str, str | None]

#: The marquee of the page this project was specified from (DESIGN.md).
SEED_QUOTES: tuple[QuoteSpec, ...] = (
    ("KGS/USD", "0.01144", "0"),
    ("KZT/USD", "0.00196", "-0"),
    ("TJS/USD", "0.09650", "0"),
    ("UZS/USD", "0.00008", "0"),
    ("TMT/USD", "0.28575", "-0.14"),
)
SEED_DATE = "16 May 2025"

#: The HTML forms :func:`corpus_html` can build.
FORMS = ("list", "spans", "decoys", "page")

#: Tickers that must never be read: they sit in script, style, noscript, template and svg.
DECOY_QUOTES: tuple[QuoteSpec, ...] = (
    ("KGS/USD", "9.99999", "+9.9"),
    ("KZT/USD", "8.88888", "-8.8"),
    ("TMT/USD", "7.77777", "7.7"),
    ("XAU/USD", "2345.6", "1.5"),
)


# --- text ------------------------------------------------------------------------------------


def change_text(change: str | None) -> str:
    """``"-0.14"`` -> ``"-0.14%"``; ``None`` -> ``""``."""
    if change is None:
        return ""
    return change if change.endswith("%") else f"{change}%"


def item_text(quote: QuoteSpec, space: str = " ") -> str:
    """One ticker item as text: ``KGS/USD = 0.01144 0%`` (``space`` between the tokens)."""
    pair, rate, change = quote
    pct = change_text(change)
    return f"{pair}{space}={space}{rate}{space}{pct}" if pct else f"{pair}{space}={space}{rate}"


def expected_json(quotes: Iterable[QuoteSpec]) -> list[dict[str, str | None]]:
    """What ``parse`` reads from a page showing ``quotes``: ``Quote.to_json()`` of each.

    The sign of the change is kept the way ``Decimal`` prints it: ``-0`` stays ``-0``, ``+0.12``
    is ``0.12`` and the unicode minus becomes ``-``.
    """
    out: list[dict[str, str | None]] = []
    for pair, rate, change in quotes:
        base, _, quote = pair.partition("/")
        pct = None
        if change is not None:
            pct = change.removesuffix("%").replace("−", "-").removeprefix("+")
        out.append({"pair": pair, "base": base, "quote": quote, "rate": rate, "change_pct": pct})
    return out


def ticker_text(
    quotes: Sequence[QuoteSpec],
    repeats: int = 8,
    date_line: str | None = None,
    *,
    bullet: str = "•",
    indent: str = "  ",
) -> str:
    """The marquee as the corpus renders it: ``• A``, then ``  • B`` ... repeated, then the date.

    Ends with a newline. With ``date_line`` the line directly follows the last item.
    """
    lines = []
    for i in range(repeats):
        for j, quote in enumerate(quotes):
            lead = "" if i == 0 and j == 0 else indent
            lines.append(f"{lead}{bullet} {item_text(quote)}")
    if date_line is not None:
        lines.append(date_line)
    return "\n".join(lines) + "\n"


# --- HTML pieces -----------------------------------------------------------------------------


def _minus_entity(text: str, k: int) -> str:
    """Write a leading minus (ASCII or unicode) as one of the entities a CMS might emit."""
    if text[:1] in ("-", "−"):
        entity = ("&minus;", "&#8722;", "&#x2212;")[k % 3]
        return entity + html.escape(text[1:])
    return html.escape(text)


def item_html(quote: QuoteSpec, *, spans: bool = False, k: int = 0) -> str:
    """The inside of one ``<li>``.

    Plain: the item's text, escaped. With ``spans``: pair, rate and change in nested inline
    elements, ``&nbsp;`` around ``=``, and the minus written as an entity (``&minus;``,
    ``&#8722;`` or ``&#x2212;``, varying with ``k``), the way WordPress ticker widgets write it.
    """
    if not spans:
        return html.escape(item_text(quote))
    pair, rate, change = quote
    base, _, quote_code = pair.partition("/")
    parts = [
        f'<span class="pair"><b>{html.escape(base)}</b>/<b>{html.escape(quote_code)}</b></span>',
        "&nbsp;=&nbsp;",
        f'<span class="rate"><strong>{html.escape(rate)}</strong></span>',
    ]
    pct = change_text(change)
    if pct:
        trend = "down" if pct[:1] in ("-", "−") else "up"
        parts.append(
            f' <span class="change {trend}"><span class="num">{_minus_entity(pct[:-1], k)}'
            f"</span><small>%</small></span>"
        )
    return "".join(parts)


#: The markups :func:`marquee_html` can write: one item per block ...
LINE_FORMS = ("list", "spans", "br", "divs", "table", "pre", "colon", "bare")
#: ... all items of a repeat in one line of text or inline elements ...
RUN_FORMS = ("run", "minified", "pipes", "bullets", "marquee")
#: ... and structures whose parts make one item: a table row of cells, a ``dt`` with its ``dd``.
STRUCTURE_FORMS = ("rows", "dl")
MARQUEE_FORMS = LINE_FORMS + RUN_FORMS + STRUCTURE_FORMS


def colon_text(quote: QuoteSpec) -> str:
    """``KGS/USD: 0.01144 (0%)``: a colon, the change in parentheses."""
    pair, rate, change = quote
    pct = change_text(change)
    return f"{pair}: {rate} ({pct})" if pct else f"{pair}: {rate}"


def bare_text(quote: QuoteSpec) -> str:
    """``KGS/USD 0.01144 0%``: nothing between pair and rate."""
    pair, rate, change = quote
    pct = change_text(change)
    return f"{pair} {rate} {pct}" if pct else f"{pair} {rate}"


def _run_items(items: Sequence[QuoteSpec], form: str) -> str:
    text = [html.escape(item_text(q)) for q in items]
    if form == "run":  # <span> items with a <b> change, spaces between them
        spans = []
        for pair, rate, change in items:
            pct = change_text(change)
            tail = f" <b>{html.escape(pct)}</b>" if pct else ""
            spans.append(f"<span>{html.escape(pair)} = {html.escape(rate)}{tail}</span>")
        return '<div class="marquee-run">' + " ".join(spans) + "</div>"
    if form == "minified":  # no whitespace at all between the elements
        return (
            '<div class="marquee-run">'
            + "".join(f'<span class="i">{t}</span>' for t in text)
            + "</div>"
        )
    if form == "pipes":
        return '<p class="marquee-run">' + " | ".join(text) + "</p>"
    if form == "bullets":
        return '<p class="marquee-run">' + " • ".join(text) + "</p>"
    return '<marquee behavior="scroll">' + " ".join(text) + "</marquee>"


def _structure(items: Sequence[QuoteSpec], form: str) -> str:
    if form == "rows":
        head = "<thead><tr><th>Pair</th><th>Rate</th><th>Change</th></tr></thead>"
        rows = "".join(
            f"<tr><td>{html.escape(pair)}</td><td>{html.escape(rate)}</td>"
            f"<td>{html.escape(change_text(change))}</td></tr>"
            for pair, rate, change in items
        )
        return f'<table class="rates">{head}<tbody>{rows}</tbody></table>'
    pairs = "".join(
        f"<dt>{html.escape(pair)}</dt><dd>{html.escape(rate)} {html.escape(change_text(change))}</dd>"
        for pair, rate, change in items
    )
    return f'<dl class="rates">{pairs}</dl>'


def marquee_html(
    quotes: Sequence[QuoteSpec], repeats: int = 8, *, form: str = "spans", space: str = " "
) -> str:
    """The marquee alone, repeated ``repeats`` times, in one of :data:`MARQUEE_FORMS`:

    * ``list``: one ``<ul>`` per repeat (as marquee scripts clone it), the items as ``<li>`` text;
    * ``spans``: the same, values in nested inline elements with entities (:func:`item_html`);
    * ``br``: all items in one ``<div>``, separated by ``<br>``;
    * ``divs``: one ``<div>`` per item, pair and values in ``<span>``s;
    * ``table``: one ``<tr>`` per item, the whole item in one ``<td>``;
    * ``pre``: a ``<pre>`` with one item per line;
    * ``colon``, ``bare``: ``<li>`` items written ``KGS/USD: 0.01144 (0%)``, ``KGS/USD 0.01144 0%``;
    * ``run``: each repeat one ``<div>`` of ``<span>`` items separated by spaces;
    * ``minified``: the same with no whitespace between the ``<span>`` items;
    * ``pipes``, ``bullets``: each repeat one ``<p>`` of items separated by `` | `` or `` • ``;
    * ``marquee``: each repeat one ``<marquee>`` element of plain text;
    * ``rows``: a ``<table>`` with a header row, then a row of cells per item (pair, rate, change);
    * ``dl``: a ``<dl>``, a ``<dt>`` pair and a ``<dd>`` with rate and change per item.

    ``space`` separates the tokens of an item in the forms with one item per block (any
    whitespace, NBSP included; not in ``spans``, which writes ``&nbsp;`` and spaces).
    """
    if form not in MARQUEE_FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {MARQUEE_FORMS}")
    items = [quote for _ in range(repeats) for quote in quotes]
    if form in RUN_FORMS:
        return "\n".join(_run_items(quotes, form) for _ in range(repeats))
    if form in STRUCTURE_FORMS:
        return _structure(items, form)
    return _line_items(quotes, repeats, form, space)


def _line_items(quotes: Sequence[QuoteSpec], repeats: int, form: str, space: str) -> str:
    """The forms with one item per block (see :func:`marquee_html`)."""
    items = [quote for _ in range(repeats) for quote in quotes]
    text = [html.escape(item_text(quote, space)) for quote in items]
    if form in ("colon", "bare"):
        write = colon_text if form == "colon" else bare_text
        lis = "".join(f"<li>{html.escape(write(q))}</li>" for q in items)
        return f'<ul class="ticker-list">{lis}</ul>'
    if form in ("list", "spans"):
        blocks = []
        for i in range(repeats):
            lis = "".join(
                f'<li class="ticker-item">'
                f"{item_html(q, spans=True, k=i) if form == 'spans' else text[i * len(quotes) + j]}"
                f"</li>"
                for j, q in enumerate(quotes)
            )
            hidden = ' aria-hidden="true"' if i else ""
            blocks.append(f'<ul class="ticker-list"{hidden}>{lis}</ul>')
        return "\n".join(blocks)
    if form == "br":
        return '<div class="ticker-line">' + "<br>\n".join(text) + "</div>"
    if form == "divs":
        return "".join(
            f'<div class="item"><span class="pair">{html.escape(pair)}</span>{space}={space}'
            f'<span class="rate">{html.escape(rate)}</span>'
            + (f"{space}<span>{html.escape(change_text(change))}</span>" if change else "")
            + "</div>"
            for pair, rate, change in items
        )
    if form == "table":
        rows = "".join(f"<tr><td>{t}</td></tr>" for t in text)
        return f'<table class="rates"><tbody>{rows}</tbody></table>'
    return "<pre>" + "\n".join(text) + "</pre>"


def decoys_head() -> str:
    """Scripts and styles for ``<head>`` whose text holds whole ticker lines with other numbers."""
    lines = "\\n".join(f"• {item_text(q)}" for q in DECOY_QUOTES)
    css = "\n".join(
        f'.t{i}::after {{ content: "{item_text(q)}"; }}' for i, q in enumerate(DECOY_QUOTES)
    )
    return f'<script>window.__TICKER__ = "{lines}";</script>\n<style>\n{css}\n</style>\n'


def decoys_body(*, comments: bool = False) -> str:
    """Decoy tickers in the body: script, style, noscript, template and svg text; with
    ``comments``, also a commented-out list, row and run of them.
    """
    lis = "".join(f"<li>{html.escape(item_text(q))}</li>" for q in DECOY_QUOTES)
    text_lines = "\n".join(f"• {item_text(q)}" for q in DECOY_QUOTES)
    commented = (
        f"<!-- <ul>{lis}</ul> -->\n"
        f"<!--<table><tr><td>{DECOY_QUOTES[0][0]}</td><td>{DECOY_QUOTES[0][1]}</td></tr></table>-->\n"
        f"<!-- {' | '.join(item_text(q) for q in DECOY_QUOTES)} -->\n"
        if comments
        else ""
    )
    return commented + (
        f'<script type="text/template">\n{text_lines}\n</script>\n'
        f"<style>\n/*\n{text_lines}\n*/\n</style>\n"
        f"<noscript><ul>{lis}</ul></noscript>\n"
        f"<template><ul>{lis}</ul></template>\n"
        f'<svg width="10" height="10"><text x="0" y="0">{html.escape(item_text(DECOY_QUOTES[0]))}'
        f"</text><desc>{html.escape(text_lines)}</desc></svg>\n"
    )


# --- made-up prose ---------------------------------------------------------------------------

_SUBJECTS = (
    "The regional council",
    "A delegation of engineers",
    "Farmers in the river valley",
    "The railway consortium",
    "Small exporters",
    "A group of economists",
    "The port authority",
    "City planners",
    "Border officials",
    "A textile cooperative",
)
_VERBS = (
    "discussed",
    "postponed",
    "announced",
    "reviewed",
    "questioned",
    "welcomed",
    "drafted",
    "measured",
)
_OBJECTS = (
    "a plan to widen the mountain road before winter",
    "new rules for seasonal water sharing",
    "the cost of moving grain by rail instead of by truck",
    "a pilot project for solar pumps in remote villages",
    "the timetable for a second customs terminal",
    "how to train more technicians for the power grid",
    "a proposal to open weekend markets near the station",
    "the results of a survey on household budgets",
)
_TAILS = (
    "after a long meeting on Tuesday.",
    "according to people familiar with the talks.",
    "although several details remain open.",
    "and promised a public hearing next month.",
    "while critics asked for clearer figures.",
    "in a statement published in the morning.",
)
_HEADLINE_WORDS = (
    "Valley",
    "Corridor",
    "Water",
    "Harvest",
    "Markets",
    "Rail",
    "Power",
    "Border",
    "Trade",
    "Roads",
    "Budget",
    "Winter",
)


def filler_sentence(rng: random.Random) -> str:
    """One sentence of made-up news prose."""
    return (
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
    )


def filler_headline(rng: random.Random) -> str:
    """A made-up headline."""
    a, b = rng.sample(_HEADLINE_WORDS, 2)
    return f"{a} and {b}: What the {rng.choice(_SUBJECTS).split()[-1].title()} Decided"


def teaser_html(rng: random.Random, n: int) -> str:
    """One article teaser as a news site's listing shows it."""
    headline = html.escape(filler_headline(rng))
    excerpt = html.escape(" ".join(filler_sentence(rng) for _ in range(rng.randint(2, 4))))
    slug = re.sub(r"[^a-z]+", "-", headline.lower()).strip("-")
    return (
        f'<article class="teaser post-{n}">\n'
        f'  <div class="thumb"><a href="/{slug}-{n}/"><img src="/img/{n}.jpg" alt="" '
        f'width="320" height="180" loading="lazy"></a></div>\n'
        f'  <h2 class="entry-title"><a href="/{slug}-{n}/">{headline}</a></h2>\n'
        f'  <div class="meta"><span class="author">By <a href="/author/staff/">Staff '
        f'Writer</a></span> <time datetime="2025-05-{1 + n % 28:02d}">'
        f"{1 + n % 28} May 2025</time></div>\n"
        f'  <p class="excerpt">{excerpt}</p>\n'
        f'  <a class="more" href="/{slug}-{n}/">Read more &raquo;</a>\n'
        f"</article>\n"
    )


def _nav_html() -> str:
    sections = ("News", "Politics", "Economy", "Society", "Culture", "Opinion", "Regions")
    items = []
    for s in sections:
        subs = "".join(
            f'<li class="menu-item"><a href="/{s.lower()}/{w.lower()}/">{w}</a></li>'
            for w in _HEADLINE_WORDS[:6]
        )
        items.append(
            f'<li class="menu-item has-children"><a href="/{s.lower()}/">{s}</a>'
            f'<ul class="sub-menu">{subs}</ul></li>'
        )
    return f'<nav class="main-nav" aria-label="Main"><ul class="menu">{"".join(items)}</ul></nav>'


def _style_blob(rng: random.Random, rules: int = 60) -> str:
    out = []
    for i in range(rules):
        out.append(
            f".c{i} .x{rng.randint(0, 999)} {{ margin: {rng.randint(0, 20)}px; "
            f"color: #{rng.randint(0, 0xFFFFFF):06x}; }}"
        )
    return "\n".join(out)


def _script_blob(rng: random.Random, lines: int = 40) -> str:
    out = ["(function () {", "  var cfg = {};"]
    for i in range(lines):
        out.append(f"  cfg.k{i} = {rng.randint(0, 10**6)} / 7 + '{i}';")
    out.append("  window.siteConfig = cfg;")
    out.append("})();")
    return "\n".join(out)


def page_html(
    content: str,
    *,
    filler_kb: int = 0,
    decoys: bool = True,
    results_line: str | None = "Viewing results 1 - 6 of 12",
    seed: int = 7,
    comment_decoys: bool = False,
) -> str:
    """A whole page: head (styles, scripts), header, nav, ``content``, teasers, footer.

    ``content`` is placed right after the header, where the site shows its marquee. With
    ``decoys``, scripts, styles, noscript, template and svg elements holding ticker lines with
    other numbers are placed before it (in the head and at the top of the body); with
    ``comment_decoys`` too, comments holding them. Teasers of made-up prose are added until the
    page reaches ``filler_kb`` kilobytes (always at least two).
    """
    rng = random.Random(seed)
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n'
        '<meta charset="utf-8">\n<title>Economy | A Made-up Regional News Site</title>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<style>\n{_style_blob(rng)}\n</style>\n"
        f"<script>\n{_script_blob(rng)}\n</script>\n"
        + (decoys_head() if decoys else "")
        + "</head>\n"
    )
    results = f'<div class="results">{html.escape(results_line)}</div>\n' if results_line else ""
    top = (
        '<body class="archive category">\n'
        + (decoys_body(comments=comment_decoys) if decoys else "")
        + '<header class="site-header"><div class="logo"><a href="/">'
        '<svg viewBox="0 0 10 10" width="120"><title>Home</title><path d="M0 0h10v10z"/></svg>'
        "</a></div>\n"
        f"{_nav_html()}\n</header>\n"
        f"{content}"
        '<main id="main">\n'
        f"{results}"
    )
    footer = (
        '</main>\n<footer class="site-footer"><ul class="footer-links">'
        + "".join(f'<li><a href="/page/{i}/">Page {i}</a></li>' for i in range(1, 9))
        + '</ul><p class="copyright">&copy; 2025 A Made-up Regional News Site. '
        "All rights reserved.</p></footer>\n"
        f"<script>\n{_script_blob(rng, 20)}\n</script>\n</body>\n</html>\n"
    )
    teasers = []
    size = len(head) + len(top) + len(footer)
    n = 0
    while n < 2 or size < filler_kb * 1024:
        teaser = teaser_html(rng, n)
        teasers.append(teaser)
        size += len(teaser)
        n += 1
    return head + top + "".join(teasers) + footer


def ticker_html(
    quotes: Sequence[QuoteSpec],
    repeats: int = 8,
    date_line: str | None = None,
    filler_kb: int = 0,
    *,
    form: str = "spans",
    decoys: bool = True,
    seed: int = 7,
    comment_decoys: bool = False,
) -> str:
    """A whole page carrying the marquee in ``<div class="ticker">`` (see :func:`page_html`).

    ``date_line`` goes in a ``<div class="date">`` right after the marquee; ``filler_kb`` pads the
    page with teasers; ``form`` is the marquee's markup (:func:`marquee_html`); ``decoys`` adds
    scripts, styles, noscript, template and svg holding other tickers (never to be read), and
    ``comment_decoys`` comments holding them.
    """
    content = '<div class="ticker"><div class="marquee">\n'
    content += marquee_html(quotes, repeats, form=form) + "\n</div></div>\n"
    if date_line is not None:
        content += f'<div class="date">{html.escape(date_line)}</div>\n'
    return page_html(
        content, filler_kb=filler_kb, decoys=decoys, seed=seed, comment_decoys=comment_decoys
    )


# --- corpus text -> HTML ---------------------------------------------------------------------

_BULLET = re.compile(r"^\s*[•·*-]\s+(.*)$")
_ITEM = re.compile(r"^(\S+/\S+) = (\S+)(?: (\S+))?$")
_DATE = re.compile(r"^\d{1,2} [A-Z][a-z]+ \d{4}$")


def _quote_of(text: str) -> QuoteSpec | None:
    m = _ITEM.match(text)
    if m is None:
        return None
    return (m.group(1), m.group(2), m.group(3))


def _blocks(lines: Iterable[str], *, spans: bool) -> list[str]:
    """HTML blocks for text lines: bullet runs become ``<ul>``, the date a div, the rest ``<p>``."""
    out: list[str] = []
    bullets: list[str] = []
    k = 0

    def flush() -> None:
        if bullets:
            out.append('<ul class="items">' + "".join(bullets) + "</ul>")
            bullets.clear()

    for line in lines:
        m = _BULLET.match(line)
        if m:
            quote = _quote_of(m.group(1))
            if quote is not None:
                bullets.append(f'<li class="ticker-item">{item_html(quote, spans=spans, k=k)}</li>')
                k += 1
            else:
                bullets.append(f"<li>{html.escape(m.group(1))}</li>")
            continue
        flush()
        if not line.strip():
            continue
        if _DATE.match(line.strip()):
            out.append(f'<div class="date">{html.escape(line.strip())}</div>')
        else:
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return out


def corpus_html(text: str, form: str) -> str:
    """One corpus text rendering as HTML.

    ``form`` is one of :data:`FORMS`:

    * ``list``: bullet lines as ``<li>`` in ``<ul>``, other lines as ``<p>``, nothing else;
    * ``spans``: the same, ticker values in nested ``<span>``/``<b>`` with ``&nbsp;`` and
      ``&minus;`` entities;
    * ``decoys``: the spans form inside a page whose scripts, styles, noscript, template and svg
      hold whole ticker lines with other numbers;
    * ``page``: the spans form inside a full page (:func:`page_html`) with made-up teasers.
    """
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {FORMS}")
    lines = text.splitlines()
    spans = form != "list"
    body = "\n".join(_blocks(lines, spans=spans))
    if form == "list":
        return f"<html><body>\n{body}\n</body></html>\n"
    if form == "spans":
        return f'<html><body><div class="content">\n{body}\n</div></body></html>\n'
    if form == "decoys":
        return (
            f"<html><head>{decoys_head()}</head><body>\n{decoys_body()}"
            f'<div class="content">\n{body}\n</div>\n{decoys_body()}</body></html>\n'
        )
    return page_html(f'<div class="content">\n{body}\n</div>\n', results_line=None, seed=11)


# --- other sources: a bank's table in windows-1251, a JSON feed -------------------------------

#: A Central Asian bank's rates in roubles: Cyrillic names around the codes, a decimal comma.
BANK_RATES: dict[str, str] = {"USD": "89,50", "EUR": "97,13", "KZT": "0,1712"}
BANK_NAMES = {"USD": "Доллар США", "EUR": "Евро", "KZT": "Казахстанский тенге"}
#: The per-target pattern that reads :func:`bank_html` (with ``quote_currency = "RUB"`` and
#: ``decimal_separator = ","``): a Cyrillic name, the code in parentheses, the rate.
BANK_PATTERN = r"(?:[А-ЯЁа-яё]+ ?)+ \((?P<base>[A-Z]{3})\) (?P<rate>\d+,\d+)"


def bank_html(rates: dict[str, str] | None = None, *, filler_kb: int = 20) -> str:
    """A bank's page of rates in a table, with no ``<meta charset>``: only the HTTP header can
    say it is windows-1251 (encode it so to serve it)."""
    rates = BANK_RATES if rates is None else rates
    rows = "".join(
        f"<tr><td>{BANK_NAMES.get(code, code)} ({code})</td><td>{rate}</td></tr>"
        for code, rate in rates.items()
    )
    body = (
        '<div class="rates"><h2>Курсы валют на 16 мая 2025</h2>'
        f"<table><tr><th>Валюта</th><th>Курс, руб.</th></tr>{rows}</table></div>"
    )
    return page_html(body, filler_kb=filler_kb).replace('<meta charset="utf-8">\n', "")


#: The query that reads :func:`feed_json`.
FEED_QUERY = "data.rates[*].{pair: symbol, rate: price, change_pct: pct}"


def feed_json(quotes: Sequence[QuoteSpec] = SEED_QUOTES) -> str:
    """A JSON feed of ``quotes`` as a marquee's XHR gets it, numbers written exactly as given
    (``0.09650`` stays ``0.09650``; a change of ``None`` is ``null``)."""
    items = ",\n    ".join(
        f'{{"symbol": "{pair}", "price": {rate}, '
        f'"pct": {"null" if change is None else change.removesuffix("%").replace("−", "-")}}}'
        for pair, rate, change in quotes
    )
    return (
        '{"status": "ok", "data": {"updated": "2025-05-16T10:00:00Z", "rates": [\n    '
        + items
        + "\n]}}\n"
    )
