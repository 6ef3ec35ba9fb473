"""Charts of a pair's history: an inline SVG sparkline (the status page), a terminal plot and a PNG
(``ticker-monitor history --chart`` / ``--png``).

A pair's value holds from one change to the next, so every chart draws steps, not slopes. The
sparkline and the terminal chart are hand-made and computed in ``Decimal`` end to end (SVG
coordinates are rounded to 0.1 px, never through float). The PNG is drawn by matplotlib (Agg
backend), whose API takes floats — a drawing only; the numbers printed with it stay exact. It is
imported only when a PNG is drawn, so other commands start fast, and it is an optional extra
(``pip install 'ticker-monitor[charts]'``).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from monitor.history import Change
from monitor.models import dec_str

_MICRO = timedelta(microseconds=1)
_TENTH = Decimal("0.1")


def _steps(
    points: Sequence[tuple[datetime, Decimal]], end: datetime
) -> list[tuple[datetime, Decimal]]:
    """Corner points of a step line: each value holds until the next change, the last until
    ``end``."""
    out: list[tuple[datetime, Decimal]] = []
    for i, (at, value) in enumerate(points):
        if i:
            out.append((at, points[i - 1][1]))
        out.append((at, value))
    if points:
        out.append((max(end, points[-1][0]), points[-1][1]))
    return out


def sparkline_svg(
    points: Sequence[tuple[datetime, Decimal]],
    *,
    end: datetime,
    label: str,
    width: int = 120,
    height: int = 28,
) -> str:
    """An inline ``<svg>`` step line of ``points`` (time order) up to ``end``, ``label`` as its
    accessible name. No points: an empty frame. One value throughout: a flat line mid-height."""
    pad = Decimal(3)
    w, h = Decimal(width), Decimal(height)
    corners = _steps(points, end)
    name = html.escape(label, quote=True)
    head = (
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{name}"><title>{name}</title>'
    )
    if not corners:
        return head + "</svg>"
    start = corners[0][0]
    span = Decimal(max((corners[-1][0] - start) // _MICRO, 1))
    values = [v for _, v in corners]
    low, high = min(values), max(values)

    def xy(at: datetime, value: Decimal) -> str:
        x = pad + (w - 2 * pad) * Decimal((at - start) // _MICRO) / span
        y = h / 2 if high == low else h - pad - (h - 2 * pad) * (value - low) / (high - low)
        return f"{dec_str(x.quantize(_TENTH))},{dec_str(y.quantize(_TENTH))}"

    coords = [xy(at, v) for at, v in corners]
    trend = "up" if values[-1] > values[0] else "down" if values[-1] < values[0] else "flat"
    last_x, last_y = coords[-1].split(",")
    return (
        head + f'<polyline class="{trend}" points="{" ".join(coords)}" fill="none" '
        'stroke="currentColor" stroke-width="1.5" stroke-linejoin="round"/>'
        f'<circle cx="{last_x}" cy="{last_y}" r="2" fill="currentColor"/></svg>'
    )


_BLOCKS = " ▁▂▃▄▅▆▇█"


def _value_at(corners: Sequence[tuple[datetime, Decimal]], at: datetime) -> Decimal:
    """The step line's value at ``at`` (the last corner at or before it)."""
    value = corners[0][1]
    for when, v in corners:
        if when > at:
            break
        value = v
    return value


def terminal_chart(
    series: Mapping[str, Sequence[Change]], *, end: datetime, width: int = 72, height: int = 8
) -> str:
    """One block chart per series (``target pair``), stacked, as text for a terminal.

    Each column is the value at that moment as a bar of Unicode eighth blocks (``▁`` to ``█``,
    so ``height`` rows resolve ``8 * height`` levels) between the series' exact low and high,
    which label the axis; the first and last times label the bottom. Hand-made, ``Decimal``
    throughout: a terminal plot needs no library, and nothing goes through float.
    """
    blocks = []
    for name, changes in series.items():
        if not changes:
            continue
        corners = _steps([(c.at, c.rate) for c in changes], end)
        start, stop = corners[0][0], corners[-1][0]
        span = max((stop - start) // _MICRO, 1)
        columns = [
            _value_at(corners, start + timedelta(microseconds=span * i // max(width - 1, 1)))
            for i in range(width)
        ]
        low, high = (
            min(columns + [c.rate for c in changes]),
            max(columns + [c.rate for c in changes]),
        )
        levels = 8 * height
        if high == low:
            eighths = [levels // 2] * width
        else:
            eighths = [int((v - low) / (high - low) * (levels - 1)) + 1 for v in columns]
        labels = [dec_str(high) if high != low else "", dec_str(low)]
        pad = max(len(label) for label in labels)
        lines = [
            f"{name}: {dec_str(changes[0].rate)} → {dec_str(changes[-1].rate)}"
            f" ({len(changes)} value{'s' if len(changes) != 1 else ''})"
        ]
        for row in range(height, 0, -1):
            cells = "".join(_BLOCKS[min(max(e - 8 * (row - 1), 0), 8)] for e in eighths)
            label = labels[0] if row == height else labels[1] if row == 1 else ""
            lines.append(f"{label:>{pad}} ┤{cells}")
        first, last = _short(start), _short(stop)
        gap = max(width - len(first) - len(last), 1)
        lines.append(f"{'':>{pad}} └{'─' * width}")
        lines.append(f"{'':>{pad}}  {first}{' ' * gap}{last}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _short(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def png_chart(
    series: Mapping[str, Sequence[Change]], path: Path, *, end: datetime, title: str
) -> None:
    """A PNG with one step plot per series (shared time axis), written to ``path``.

    Raises ``ModuleNotFoundError`` when matplotlib is not installed (the ``charts`` extra).
    """
    import matplotlib  # noqa: PLC0415 -- large; only `history --png` needs it

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415 -- after choosing the backend

    drawn = {name: changes for name, changes in series.items() if changes}
    rows = max(len(drawn), 1)
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.2 * rows + 0.6), sharex=True, squeeze=False)
    try:
        for ax, (name, changes) in zip(axes[:, 0], drawn.items(), strict=False):
            corners = _steps([(c.at, c.rate) for c in changes], end)
            ax.plot([at for at, _ in corners], [float(v) for _, v in corners], linewidth=1.4)
            ax.set_ylabel(name, fontsize=8)
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            ax.grid(alpha=0.3)
        fig.suptitle(title)
        fig.autofmt_xdate()
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)


__all__ = ["png_chart", "sparkline_svg", "terminal_chart"]
