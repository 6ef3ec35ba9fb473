"""The ticker parser (placeholder: the full parser lands with its tests)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.errors import ParseError
from monitor.models import Snapshot


@dataclass(frozen=True, slots=True)
class Grammar:
    """How one site writes its quotes. The default reads ``KGS/USD = 0.01144 0%``."""

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


def parse(
    page: bytes | str, *, selector: str | None = None, grammar: Grammar | None = None
) -> Snapshot:
    raise ParseError("not implemented yet")
