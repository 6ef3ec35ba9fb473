"""``ticker-monitor status``: the status page's picture in the terminal.

It asks the running daemon first (``/api/status`` on ``[monitor].listen``), so it shows what the
page shows — next runs included. With no daemon answering, it draws the same picture from the
store alone (last stored state, history, alerts; next runs unknown) and says so.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from monitor.cli.common import EXIT_OK, Subparsers, add_config, columns, settings_of, with_store

if TYPE_CHECKING:
    from monitor.settings import Settings
    from monitor.store import ClusterStore

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
    from monitor.settings import listen_address  # noqa: PLC0415 -- start-up time

    host, port = listen_address(listen)
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
    from monitor.cluster import view_of  # noqa: PLC0415 -- start-up time
    from monitor.daemon import in_window  # noqa: PLC0415 -- start-up time
    from monitor.status import Board, build_view, seed_board  # noqa: PLC0415 -- start-up time

    now = datetime.now(UTC)

    async def work(store: ClusterStore) -> dict[str, Any]:
        board = Board(settings.targets, started_at=now)
        await seed_board(board, store)
        board.store_answered(await store.outbox_counts())
        view = await build_view(
            board,
            store,
            now=now,
            active=lambda t, at: in_window(t.active, at),
            live=False,
            cluster=await view_of(store, lease=settings.cluster.lease, now=now),
        )
        return view.to_json()

    return with_store(args, work)


def health_text(target: Mapping[str, Any]) -> str:
    """``failing (1 of 3 failures before source_down)``, ``down``, ``ok`` ... from a JSON target."""
    from monitor.status import FAILING, HEALTH_WORDS  # noqa: PLC0415 -- start-up time

    health = str(target["health"])
    words = HEALTH_WORDS.get(health, health)
    if health == FAILING:
        words += f" ({target['failures']} of {target['down_after']} failures before source_down)"
    if not target["active"]:
        words += " · outside its active window"
    return words


def render_text(data: Mapping[str, Any], now: datetime) -> str:
    """The picture for a terminal, from its JSON form (the daemon's ``/api/status`` or a local
    one), so ``status`` prints the same whichever drew it."""
    from monitor.status import clock  # noqa: PLC0415 -- start-up time

    lines = []
    source = "live from the daemon" if data["live"] else "from the store (daemon not reachable)"
    ready = "ready" if data["ready"] else "NOT READY"
    lines.append(f"ticker-monitor {data['version']} · {ready} · {source}")
    cluster: Mapping[str, Any] | None = data.get("cluster")
    me = cluster["me"] if cluster else ""
    if me and cluster is not None:
        holds = ", ".join(cluster["held"]) or "no target"
        lines.append(f"instance {me} · checks {holds}")
    for key, why in data["problems"].items():
        lines.append(f"  ! {key}: {why}")
    for t in data["targets"]:
        lines.append("")
        lines.extend(_target_text(t, now, live=data["live"], me=me if cluster else None))
    if cluster is not None:
        lines.extend(_members_text(cluster, now))
    counts = data["outbox"]
    if counts:
        lines.append("")
        lines.append("outbox: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    for title, alerts in (("recent alerts", data["alerts"]), ("dead letters", data["dead"])):
        if not alerts:
            continue
        lines.append("")
        lines.append(f"{title}:")
        for a in alerts:
            at = _parse_time(a["at"])
            lines.append(f"  {clock(at)}  {a['title']}")
            for d in a["deliveries"]:
                error = f" · {d['last_error']}" if d["last_error"] else ""
                lines.append(
                    f"      {d['sink']}: {d['status']} (#{d['short_id']}, "
                    f"attempts {d['attempts']}){error}"
                )
    return "\n".join(lines)


def _target_text(t: Mapping[str, Any], now: datetime, *, live: bool, me: str | None) -> list[str]:
    """One target's lines; ``me``: this instance's name in a cluster (None: no cluster known)."""
    from monitor.status import relative  # noqa: PLC0415 -- start-up time

    lines = [f"{t['name']}  {health_text(t)}  {t['url']}"]
    by = t.get("checked_by")
    if me is not None and by != me:
        lines.append(f"  checked by {by}" if by else "  checked by no instance right now")
    last = _parse_time(t["last_check_at"])
    nxt = _parse_time(t["next_run"])
    ok = _parse_time(t["last_success_at"])
    lines.append(
        f"  last check {relative(last, now) if last or live else 'unknown'}"
        f" ({t['last_outcome'] or '-'}) · "
        f"last success {relative(ok, now)} · next run " + (relative(nxt, now) if nxt else "unknown")
    )
    if t["detail"]:
        lines.append(f"  error: {t['detail']}")
    rows = [("PAIR", "RATE", "CHANGE", "CHANGES (7d)")]
    for p in t["pairs"]:
        pct = "" if p["change_pct"] is None else f"{p['change_pct']}%"
        rows.append((p["pair"], p["rate"], pct, str(len(p["history"]))))
    if len(rows) > 1:
        lines.extend(f"  {line}" for line in columns(rows, right={1, 2, 3}))
    if t["page_date"]:
        lines.append(f"  page date: {t['page_date']}")
    return lines


def _members_text(cluster: Mapping[str, Any], now: datetime) -> list[str]:
    """The cluster's members, each with its last heartbeat and what it checks."""
    from monitor.status import relative  # noqa: PLC0415 -- start-up time

    kind = "one daemon (SQLite)" if cluster["single_daemon"] else "shared store"
    members = cluster["members"]
    lines = ["", f"cluster ({kind}, lease {cluster['lease']:g}s): {len(members)} member(s)"]
    rows = [("MEMBER", "STATE", "HEARTBEAT", "CHECKS")]
    for m in members:
        beat = relative(_parse_time(m["last_heartbeat"]), now)
        name = f"{m['id']} (this one)" if m["id"] == cluster["me"] else m["id"]
        rows.append((name, "alive" if m["alive"] else "silent", beat, ", ".join(m["targets"])))
    if members:
        lines.extend(f"  {line}" for line in columns(rows))
    return lines


def _parse_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    data = _from_daemon(settings) or _from_store(args, settings)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(render_text(data, datetime.now(UTC)))
    return EXIT_OK


__all__ = ["register", "render_text"]
