"""The remembered slice and the body digest (``Reader.read_again``): never a result the whole read
would not give.

A page read before is read again from where its ticker was (``monitor.parse.slice``) or, when its
body is the same, not at all. Every case here compares with ``parse_page`` of the same bytes: a
slice read must equal it exactly, and whenever the page changed elsewhere or changed shape the
slice must step aside (``how == "whole"``) for the whole read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import ParseError
from monitor.parse import parse_page, reread
from monitor.reader import Reader
from tests.pages import MARQUEE_FORMS, SEED_DATE, SEED_QUOTES, QuoteSpec, ticker_html

COMMON = settings(
    deadline=None,  # a shared, noisy machine; bench/parse.py measures the time
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    max_examples=40,
)


def page(quotes: tuple[QuoteSpec, ...] = SEED_QUOTES, date: str = SEED_DATE, **kw: object) -> bytes:
    return ticker_html(quotes, date_line=date, filler_kb=40, **kw).encode()  # type: ignore[arg-type]


def moved(rate: str = "0.28600", change: str | None = "-0.20") -> tuple[QuoteSpec, ...]:
    quotes = list(SEED_QUOTES)
    quotes[4] = ("TMT/USD", rate, change)
    return tuple(quotes)


def learned(body: bytes):  # type: ignore[no-untyped-def]
    first = reread(body)
    assert first.result == parse_page(body)
    assert first.slice is not None, "the seed page's ticker is simple markup: a slice is learned"
    return first.slice


def test_a_changed_rate_reads_from_the_slice_as_the_whole_page_does() -> None:
    hint = learned(page())
    for quotes, date in [
        (moved(), SEED_DATE),
        (moved("0.3", "-11.5"), SEED_DATE),  # other lengths: the slice is cut by tags, not bytes
        (moved(), "17 May 2025"),  # a new day
    ]:
        body = page(quotes, date)
        got = reread(body, hint=hint)
        assert got.how == "slice"
        assert got.result == parse_page(body)
    # the same bytes again: nothing to read
    assert reread(page(), hint=hint).how == "same"


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("a rising rate's markup", lambda b: b.replace(b"change down", b"change up")),
        ("a pair more", lambda b: b.replace(b"</ul>", b"<li>XAU/USD = 2345.6 1.5%</li></ul>", 2)),
        (
            "a pair elsewhere",
            lambda b: b.replace(b"</footer>", b"<p>XAU/USD = 2345.6 1.5%</p></footer>"),
        ),
        ("a word elsewhere", lambda b: b.replace(b"</footer>", b"<p>updated</p></footer>")),
        ("a pair less", lambda b: b.replace(b"<b>KGS</b>", b"<b>KG</b>")),
        ("other markup", lambda b: b.replace(b'class="rate"', b'class="rate new"', 3)),
        ("a comment", lambda b: b.replace(b"</li>", b"<!-- ad --></li>", 1)),
        ("a script", lambda b: b.replace(b"</li>", b"<script>x=1</script></li>", 1)),
        ("a table", lambda b: b.replace(b"</li>", b"<table><tr><td>x</td></tr></table></li>", 1)),
        ("no start tag", lambda b: b.replace(b'<li class="ticker-item">', b"<li>")),
        ("no date line", lambda b: b.replace(SEED_DATE.encode(), b"")),
        ("a rate as a word", lambda b: b.replace(b"0.28600", b"n/a")),
        ("a NUL in a rate", lambda b: b.replace(b"0.28600", b"0.28\x00600")),
        ("a block separator in a rate", lambda b: b.replace(b"0.28600", b"0.28\x1e600")),
        ("a control character by reference", lambda b: b.replace(b"0.28600", b"0.28&#1;600")),
        ("a tag in a rate", lambda b: b.replace(b"0.28600", b"0.28<i>6</i>00")),
        ("a less-than sign in a rate", lambda b: b.replace(b"0.28600", b"0.28 < 1")),
    ],
)
def test_a_page_of_another_shape_is_read_whole(name: str, edit: object) -> None:
    hint = learned(page())
    body = edit(page(moved()))  # type: ignore[operator]
    assert body != page(moved()), name
    try:
        want = parse_page(body)
    except ParseError:
        with pytest.raises(ParseError):
            reread(body, hint=hint)
        return
    got = reread(body, hint=hint)
    assert got.how == "whole", name
    assert got.result == want


def test_a_repeat_that_disagrees_is_a_conflict_as_in_the_whole_read() -> None:
    body = page()
    hint = learned(body)
    # the second repeat's KGS/USD rate differs: the whole read names the conflict
    first = body.find(b"0.01144")
    second = body.find(b"0.01144", first + 1)
    changed = body[:second] + b"0.01145" + body[second + 7 :]
    got = reread(changed, hint=hint)
    want = parse_page(changed)
    assert want.snapshot.conflicts == ("KGS/USD",)
    assert got.how == "slice"
    assert got.result == want


@pytest.mark.parametrize("form", MARQUEE_FORMS)
def test_every_markup_reads_as_the_whole_page_does(form: str) -> None:
    """Markups the slice reader does not take (tables, pre, dl ...) learn no slice; the others
    read a changed page exactly as the whole read does."""
    body = page(form=form)
    first = reread(body)
    assert first.result == parse_page(body)
    changed = page(moved(), form=form)
    got = reread(changed, hint=first.slice)
    assert got.result == parse_page(changed)
    assert (got.how == "slice") == (first.slice is not None)


rates = st.builds(
    lambda whole, frac: f"{whole}.{frac}",
    st.integers(0, 99999),
    st.text("0123456789", min_size=1, max_size=6),
)
changes = st.one_of(
    st.none(),
    st.builds(
        lambda sign, n: f"{sign}{n}",
        st.sampled_from(["", "+", "-", "−"]),
        st.decimals(0, 99, places=2).map(str),
    ),
)


@COMMON
@given(st.lists(st.tuples(rates, changes), min_size=5, max_size=5), st.integers(1, 28))
def test_any_new_values_read_from_the_slice_as_from_the_whole_page(
    values: list[tuple[str, str | None]], day: int
) -> None:
    hint = learned(page())
    quotes = tuple(
        (pair, rate, change)
        for (pair, _, _), (rate, change) in zip(SEED_QUOTES, values, strict=True)
    )
    body = page(quotes, f"{day} May 2025")
    got = reread(body, hint=hint)
    assert got.result == parse_page(body)


# --- the reader's memo -----------------------------------------------------------------------


def test_the_same_body_is_not_parsed_again_and_a_changed_one_always_is() -> None:
    reader = Reader()
    body = page()
    result, memo, how = reader.read_again(body)
    assert how == "whole"
    assert result == parse_page(body)
    again, memo, how = reader.read_again(body, memo=memo)
    assert how == "same_body"
    assert again is result
    # the charset the header declares is part of what the body reads as
    _, _, how = reader.read_again(body, "text/html; charset=windows-1251", memo)
    assert how != "same_body"
    changed = page(moved())
    result, memo, how = reader.read_again(changed, memo=memo)
    assert how == "slice"
    assert result == parse_page(changed)


@COMMON
@given(st.binary(min_size=1, max_size=8), st.integers(0, 10**6))
def test_a_body_that_differs_anywhere_is_read_again(patch: bytes, where: int) -> None:
    reader = Reader()
    body = page()
    _, memo, _ = reader.read_again(body)
    at = where % len(body)
    changed = body[:at] + patch + body[at + len(patch) :]
    if changed == body:
        return
    try:
        want = parse_page(changed)
    except ParseError:
        with pytest.raises(ParseError):
            reader.read_again(changed, memo=memo)
        return
    result, _, how = reader.read_again(changed, memo=memo)
    assert how != "same_body"
    assert result == want


def test_a_page_that_changes_elsewhere_every_time_is_read_whole_and_learned_rarely() -> None:
    reader = Reader()
    hows, learned_at = [], []
    memo = None
    for n in range(1, 21):
        body = page(moved(f"0.{28600 + n}")).replace(b"</footer>", f"<p>{n}</p></footer>".encode())
        result, memo, how = reader.read_again(body, memo=memo)
        assert result == parse_page(body)
        hows.append(how)
        if memo.slice is not None:
            learned_at.append(n)
    assert set(hows) == {"whole"}
    assert learned_at == [1, 2, 4, 8, 16]  # learning costs two whole reads: not every time


def test_a_slice_keeps_one_set_of_quotes_and_shares_its_template() -> None:
    """What a target's memo holds (5,000 targets' memory, docs/performance.md): the quotes of
    the blocks it keeps are the very objects of its result (which the board holds too), its
    template is shared with every page of the same markup, and the codes of the quotes are one
    string each."""
    first = learned(page())
    quotes = first.result.snapshot.quotes
    kept = [quote for block in first.known.values() for quote in block]
    assert kept
    assert all(any(quote is mine for mine in quotes) for quote in kept)
    again = reread(page(moved()), hint=first)  # a slice read keeps the blocks it read
    assert again.how == "slice"
    assert again.slice is not None
    assert all(
        any(quote is mine for mine in again.result.snapshot.quotes)
        for block in again.slice.known.values()
        for quote in block
    )
    other = learned(page(moved("0.3", "-11.5")))  # another page, the same markup
    assert other.template is first.template
    assert other.result.snapshot.quotes[0].pair is quotes[0].pair
    assert other.result.snapshot.quotes[0].base is quotes[0].base


def test_a_selector_or_a_feed_reads_whole_each_time() -> None:
    reader = replace(Reader(), selector=".ticker")
    _, memo, how = reader.read_again(page())
    assert how == "whole"
    assert memo.slice is None
    _, memo, how = reader.read_again(page(moved()), memo=memo)
    assert how == "whole"


@pytest.mark.parametrize(("seed", "kind"), [(None, "int"), ("random", "int"), ("0", "bytes")])
def test_a_fingerprint_is_keyed_unless_the_hash_seed_is_fixed(seed: str | None, kind: str) -> None:
    """Python's hash of bytes is keyed by a random secret; with PYTHONHASHSEED fixed anyone may
    know the key, and the fingerprint is sha256 instead."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONHASHSEED"}
    if seed is not None:
        env["PYTHONHASHSEED"] = seed
    code = "from monitor.parse.slice import fingerprint; print(type(fingerprint(b'x')).__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == kind
