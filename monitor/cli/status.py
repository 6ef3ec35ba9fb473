"""``ticker-monitor status``: the status page's picture in the terminal.

It asks the running daemon first (``/api/status`` on ``[monitor].listen``), so it shows what the
page shows — next runs included. With no daemon answering, it draws the same picture from the
store alone (last stored state, history, alerts; next runs unknown) and says so.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from monitor.cli.common import EXIT_OK, Subparsers, add_config, settings_of, with_store
from monitor.settings import Settings
from monitor.store import Store

#: how long ``status`` waits for the daemon's endpoint before reading the store itself
DAEMON_TIMEOUT = 3.0


def register(sub: Subparsers) -> None:
    status = sub.add_parser(
        "status",
        help="show every target's state, quotes and recent alerts",
        description="Show what the status page shows: each target's state, last check and next "
        "run, its quotes, recent alerts and dead letters. Asks the running daemon; without one, "
        "reads the store.",
    )
    add_config(status)
    status.add_argument("--json", action="store_true", help="print the picture as JSON")
    status.set_defaults(func=run)


def _local_url(listen: str) -> str | None:
    """Where this host reaches the endpoint (a wildcard bind is reached on loopback)."""
    if not listen:
        return None
    from monitor.web import split_listen  # noqa: PLC0415 -- start-up time

    host, port = split_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 -- mapping a wildcard bind to loopback
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _from_daemon(settings: Settings) -> dict[str, Any] | None:
    import httpx  # noqa: PLC0415 -- start-up time

    base = _local_url(settings.monitor.listen)
    if base is None:
        return None
    try:
        # the endpoint is local: never through a proxy the environment names
        response = httpx.get(f"{base}/api/status", timeout=DAEMON_TIMEOUT, trust_env=False)
        data = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if response.status_code != 200 or not isinstance(data, dict) or "targets" not in data:
        return None  # something else listens there
    return data


def _from_store(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    from monitor.daemon import in_window  # noqa: PLC0415 -- start-up time
    from monitor.status import Board, build_view, seed_board  # noqa: PLC0415 -- start-up time

    now = datetime.now(UTC)

    async def work(store: Store) -> dict[str, Any]:
        board = Board(settings.targets, started_at=now)
        await seed_board(board, store)
        board.store_answered(await store.outbox_counts())
        view = await build_view(
            board, store, now=now, active=lambda t, at: in_window(t.active, at), live=False
        )
        return view.to_json()

    return with_store(args, work)


def run(args: argparse.Namespace) -> int:
    from monitor.status import render_text  # noqa: PLC0415 -- start-up time

    settings = settings_of(args)
    data = _from_daemon(settings) or _from_store(args, settings)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(render_text(data, datetime.now(UTC)))
    return EXIT_OK


__all__ = ["register"]
