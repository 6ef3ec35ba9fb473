"""Console sink (``type = "console"``): one readable line per pair per check on standard output.

Each line is the observed time followed by the line's body (``body_template`` applies): one pair's
events of one check together, or one outage event; here folded for width::

    2025-05-16T09:30:00Z timesca TMT/USD ▼ 0.28575 → 0.28550 (-0.09%), change 0% → -0.14%
        · page date 2025-05-16 · id 1a2b3c4d

Every line is sanitized (no control characters, so a page cannot move the cursor or forge a second
line) and the stream is flushed after each batch. A stream that cannot be written (a closed pipe)
is a retryable ``SinkError``: after a restart the lines come out.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal, TextIO

from monitor import render
from monitor.errors import SinkError
from monitor.models import Delivery
from monitor.sinks import Accepted, Sink, SinkDeps, SinkSettings, SinkType


class ConsoleConfig(SinkSettings):
    """One line per pair per check (and one per outage event) on standard output; logs go to
    standard error. No keys of its own."""

    type: Literal["console"]


class ConsoleSink:
    """Writes one line per pair per check to a text stream (standard output by default)."""

    digest = True
    bulk = True
    min_interval = 0.0

    def __init__(self, name: str, config: ConsoleConfig, *, stream: TextIO | None = None) -> None:
        self.name = name
        self._config = config
        self._stream = stream

    def __repr__(self) -> str:
        return f"ConsoleSink(name={self.name!r})"

    def format(self, item: Delivery | render.Line) -> str:
        """The line printed for one line of a message (without the newline)."""
        body = render.line(item, self._config.body_template)
        first = item.first if isinstance(item, render.Line) else item.event
        return render.sanitize(f"{render.iso_utc(first)} {body}", render.LINE_LIMIT)

    async def send(self, batch: Sequence[Delivery], on_accepted: Accepted | None = None) -> None:
        """Print one line per pair per check (per outage event), then flush."""
        stream = self._stream if self._stream is not None else sys.stdout
        text = "".join(self.format(ln) + "\n" for ln in render.lines(batch))
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: I/O operation on a closed file
            raise SinkError(
                f"console {self.name!r}: cannot write: {type(exc).__name__}", retryable=True
            ) from None

    async def aclose(self) -> None:
        return None


def _build(name: str, config: ConsoleConfig, deps: SinkDeps) -> Sink:
    return ConsoleSink(name, config, stream=deps.stdout)


SINK_TYPE = SinkType("console", ConsoleConfig, _build)
