"""Plain-text pages: each line is a block."""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from itertools import compress, count, repeat
from typing import Final

from monitor.parse.assemble import Entry
from monitor.parse.items import Grammar

__all__ = ["text_blocks"]

_CHUNK: Final = 1 << 20
_DIGIT: Final = re.compile("[0-9]")


def text_blocks(text: str, grammar: Grammar, *, everything: bool = False) -> Iterator[Entry]:
    """The lines of a text page that matter, stripped, in order (``Entry`` form).

    Those are the lines that may be quotes (holding ``/``; a digit, for a pattern) and, after
    each run of them, the first other non-blank line (it ends the run; after the first run it
    may be the date line); with ``everything``, every non-blank line. The rest never reaches
    Python code: blank lines are dropped and the candidates picked by C iterators, one 1 MiB
    chunk of lines at a time, so that 50 MB of short lines cost neither minutes nor gigabytes.
    """
    last = -1  # index (among the non-blank lines of the page) of the last line handed out
    base = 0  # index of the chunk's first non-blank line
    for chunk in _chunks(text):
        lines = list(filter(None, map(str.strip, chunk.splitlines())))
        if everything:
            yield from zip(lines, repeat(True))
            continue
        if grammar.pattern is None:  # an item holds "/"
            flags: Iterator[object] = map(operator.contains, lines, repeat("/"))
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
