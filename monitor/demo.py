"""``ticker-monitor demo``: the whole product in ten seconds, with no network and no configuration.

A simulated ticker page — the seed page's five pairs against USD — is served on 127.0.0.1. Its
values move every few seconds, and on a fixed cycle the page loses its ticker for a while (a
layout break) and then answers 503 (an outage). The real daemon watches it, every two seconds,
with the console sink and the status page, keeping its state in a temporary directory that is
removed at the end. Ctrl-C stops it the way SIGTERM stops the daemon.

:class:`SimulatedTicker` is pure (a seeded RNG and the elapsed time in, a page out), so what the
demo shows can be tested without waiting for it.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from html import escape
from pathlib import Path
from typing import TextIO

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from monitor.models import dec_str
from monitor.settings import Settings
from monitor.web import WebServer

#: the seed page's marquee: (pair, rate, change %) as timesca.com showed it on 16 May 2025
SEED: tuple[tuple[str, str, str], ...] = (
    ("KGS/USD", "0.01144", "0"),
    ("KZT/USD", "0.00196", "-0"),
    ("TJS/USD", "0.09650", "0"),
    ("UZS/USD", "0.00008", "0"),
    ("TMT/USD", "0.28575", "-0.14"),
)
#: seconds between two moves of the values
STEP = 3.0
#: the simulation's cycle: the ticker vanishes during LAYOUT_BREAK, the page answers 503 in OUTAGE
CYCLE = 60.0
LAYOUT_BREAK = (24.0, 30.0)
OUTAGE = (42.0, 52.0)
#: how often the demo's daemon checks the page
INTERVAL = "2s"
DEFAULT_PORT = 9464

_PCT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Page:
    status: int
    html: str


class SimulatedTicker:
    """The simulated page at ``elapsed`` seconds: quotes that move every :data:`STEP` seconds,
    a layout break and an outage once per :data:`CYCLE`."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._opening = {pair: Decimal(rate) for pair, rate, _ in SEED}
        self._rates = dict(self._opening)
        self._pcts = {pair: Decimal(pct) for pair, _, pct in SEED}
        self._steps = 0

    def quotes(self, elapsed: float) -> list[tuple[str, Decimal, Decimal]]:
        """The quotes at ``elapsed`` (time only moves forward)."""
        while self._steps < int(elapsed // STEP):
            self._steps += 1
            self._move()
        return [(pair, self._rates[pair], self._pcts[pair]) for pair, _, _ in SEED]

    def _move(self) -> None:
        """One pair moves by 0.05% to 0.4%; a pair too small to move that much is skipped."""
        for _ in range(10):
            pair = self._rng.choice([p for p, _, _ in SEED])
            rate = self._rates[pair]
            basis_points = self._rng.choice((-1, 1)) * self._rng.randint(5, 40)
            moved = (rate * (1 + Decimal(basis_points) / 10_000)).quantize(rate, ROUND_HALF_EVEN)
            if moved != rate:
                break
        else:
            return
        self._rates[pair] = moved
        opening = self._opening[pair]
        self._pcts[pair] = ((moved - opening) / opening * 100).quantize(_PCT).normalize() + 0

    def page(self, elapsed: float, today: datetime) -> Page:
        phase = elapsed % CYCLE
        if OUTAGE[0] <= phase < OUTAGE[1]:
            return Page(503, "<html><body><h1>503 Service Unavailable</h1></body></html>")
        quotes = self.quotes(elapsed)
        if LAYOUT_BREAK[0] <= phase < LAYOUT_BREAK[1]:
            body = "<p>We are redesigning our site. The currency ticker will be back shortly.</p>"
        else:
            items = "".join(
                f"<li>{escape(pair)} = {dec_str(rate)} {dec_str(pct)}%</li>"
                for pair, rate, pct in quotes
            )
            body = (
                f'<div class="ticker"><ul class="marquee">{items * 4}</ul></div>'
                f'<div class="date">{today.day} {today:%B %Y}</div>'
            )
        return Page(
            200,
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Simulated ticker</title>"
            f"</head><body><header>A simulated news site</header>{body}"
            "<main><p>Nothing here is real: ticker-monitor's demo made it up.</p></main>"
            "</body></html>",
        )


def page_app(ticker: SimulatedTicker, started: float) -> Starlette:
    """The simulated site: ``/`` is the ticker page."""

    async def index(_: Request) -> Response:
        loop = asyncio.get_running_loop()
        page = ticker.page(loop.time() - started, datetime.now(UTC))
        return HTMLResponse(page.html, status_code=page.status)

    return Starlette(routes=[Route("/", index)])


def pick_port(port: int) -> int:
    """``port`` if it is free on 127.0.0.1, else any free one (0 asks for any)."""
    for candidate in (port, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def demo_settings(page_url: str, workdir: Path, port: int, *, verbose: bool) -> Settings:
    """The demo's configuration, built here: nothing from files or the environment."""
    return Settings(
        _env_prefix="=",  # no MONITOR_* variable applies: no variable name starts with "="
        _env_file=None,
        monitor={
            "database": f"sqlite:///{workdir / 'state.db'}",
            "listen": f"127.0.0.1:{port}",
            "log_format": "console",
            "log_level": "info" if verbose else "warning",
            "grace_period": "3s",
        },
        delivery={"backoff_initial": "200ms", "backoff_max": "2s"},
        targets=[
            {
                "name": "demo",
                "url": page_url,
                "interval": INTERVAL,
                "jitter": 0,
                "timeout": "2s",
                "retries": 0,
                "down_after": 2,
            }
        ],
        rules=[
            {"name": "everything", "sinks": ["console"]},
            {"name": "big-move", "min_abs_change_pct": "0.5", "sinks": ["console"]},
        ],
        sinks={"console": {"type": "console"}},
    )


async def run_demo(
    *, port: int = DEFAULT_PORT, seed: int | None = None, verbose: bool = False, out: TextIO
) -> None:
    """Serve the simulated page, run the real daemon against it until SIGINT/SIGTERM, clean up."""
    from monitor.app import build_app  # noqa: PLC0415 -- start-up time
    from monitor.cli.common import configure_for  # noqa: PLC0415 -- the CLI's logging set-up
    from monitor.daemon import Daemon  # noqa: PLC0415 -- start-up time

    workdir = Path(tempfile.mkdtemp(prefix="ticker-monitor-demo-"))
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)  # noqa: S311 -- simulated prices, not a secret
    site = WebServer(page_app(SimulatedTicker(rng), loop.time()), "127.0.0.1:0")
    await site.start()
    try:
        page_url = f"http://127.0.0.1:{site.port}/"
        status_port = pick_port(port)
        settings = demo_settings(page_url, workdir, status_port, verbose=verbose)
        configure_for(settings)
        print(
            "ticker-monitor demo — nothing leaves this machine.\n"
            f"  simulated ticker page: {page_url} (values move every {STEP:g}s; every "
            f"{CYCLE:g}s the ticker vanishes for a while, then the page is down)\n"
            f"  status page:           http://127.0.0.1:{status_port}/\n"
            f"  state:                 {workdir} (removed at the end)\n"
            "Alerts appear below as the console sink prints them. Ctrl-C stops.\n",
            file=out,
            flush=True,
        )
        await Daemon(await build_app(settings)).run_forever()
    finally:
        await site.aclose()
        shutil.rmtree(workdir, ignore_errors=True)
    print("demo stopped", file=out, flush=True)


def main(*, port: int, seed: int | None, verbose: bool) -> None:
    asyncio.run(run_demo(port=port, seed=seed, verbose=verbose, out=sys.stdout))


__all__ = ["SimulatedTicker", "demo_settings", "run_demo"]
