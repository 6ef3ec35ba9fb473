"""``ticker-monitor rules test OLD NEW``: a dry run of detection and routing, like ``amtool config
routes test``.

OLD and NEW are two pages (a file, an http(s):// URL, or ``-`` for one of them on stdin) or two
``ticker-monitor check --json`` outputs. OLD is the baseline a target's state would hold; NEW is the
next check. The command prints the events the detector makes from that change, which rule sends
each to which sink, the rules' conditions still waiting for their ``for``, and the message every
sink would get (with its own templates). Nothing is stored or sent; the database (its cooldowns
and silences) is not read, and a rule's ``mute`` is judged at ``--at`` (default: now).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from monitor import render
from monitor.cli.check import DEFAULT_MAX_BYTES
from monitor.cli.common import (
    EXIT_NO_TICKER,
    EXIT_OK,
    EXIT_USAGE,
    Subparsers,
    add_config,
    fail,
    settings_of,
)
from monitor.cli.source import read_source
from monitor.errors import ParseError
from monitor.models import Delivery, Event, EventKind, NewDelivery, Snapshot, TargetState

if TYPE_CHECKING:
    from monitor.check import TargetPlan
    from monitor.route import Route
    from monitor.settings import Settings

NO_PAIR = "-"


def register(sub: Subparsers) -> None:
    rules = sub.add_parser(
        "rules",
        help="try the rules on two pages (a dry run)",
        description="Work with the [[rules]] of the configuration.",
    )
    actions = rules.add_subparsers(dest="action", metavar="ACTION", required=True)
    test = actions.add_parser(
        "test",
        help="show the events two pages make and where the rules send them",
        description="Compare two pages (or two `check --json` outputs) as two checks of one "
        "target would, and print the events, which rule sends each to which sink, and each "
        "sink's message. Sends nothing, stores nothing.",
    )
    test.add_argument("old", metavar="OLD", help="the page before: a file, a URL, or -")
    test.add_argument("new", metavar="NEW", help="the page after: a file, a URL, or -")
    test.add_argument(
        "--target", help="the target whose settings and rules apply (default: the first)"
    )
    test.add_argument(
        "--at", help="judge mute windows at this time (ISO 8601, default: now)", default=None
    )
    test.add_argument("--json", action="store_true", help="print one JSON document")
    add_config(test)
    test.set_defaults(func=run_test)


@dataclass(frozen=True, slots=True)
class DryRun:
    """What ``rules test`` found."""

    target: str
    before: Snapshot
    after: Snapshot
    events: list[Event]
    deliveries: list[NewDelivery]
    #: (rule, pair, condition, seconds of ``for``) of conditions still waiting
    pending: list[tuple[str, str, str, float]]
    routes: tuple[Route, ...]


def _snapshot(source: str, plan: TargetPlan) -> Snapshot:
    from monitor.check import configured_pairs, read_snapshot  # noqa: PLC0415 -- start-up time

    body, content_type, label = read_source(source, 30.0, DEFAULT_MAX_BYTES)
    try:
        if body.lstrip().startswith(b"{"):  # a `check --json` output
            try:
                data = json.loads(body)
                snapshot = Snapshot.from_json(data)
            except (ValueError, KeyError, TypeError, AttributeError):
                fail(EXIT_USAGE, f"{label}: JSON, but not the output of `check --json`")
            return configured_pairs(snapshot, plan)
        return read_snapshot(body, plan, content_type=content_type)
    except ParseError as exc:
        fail(EXIT_NO_TICKER, f"no ticker found in {label}: {exc}")


def dry_run(settings: Settings, args: argparse.Namespace, now: datetime) -> DryRun:
    from monitor.app import plan_target  # noqa: PLC0415 -- start-up time
    from monitor.detect import Observed, step  # noqa: PLC0415
    from monitor.fetch import safe_url  # noqa: PLC0415
    from monitor.route import route, routes_from_settings  # noqa: PLC0415

    if not settings.targets:
        fail(EXIT_USAGE, "the configuration has no [[targets]]: name one the pages belong to")
    names = [t.name for t in settings.targets]
    name = args.target or names[0]
    if name not in names:
        fail(EXIT_USAGE, f"no target named {name!r} (configured: {', '.join(names)})")
    plan = plan_target(settings, settings.target(name))
    before, after = _snapshot(args.old, plan), _snapshot(args.new, plan)
    url = safe_url(plan.config.url)  # as a check reports it: no credentials, no query
    earlier = now - timedelta(seconds=plan.config.interval)
    state, _ = step(
        TargetState(),
        Observed(before),
        earlier,
        target=name,
        source_url=url,
        policy=plan.detect_policy,
    )
    state, events = step(
        state, Observed(after), now, target=name, source_url=url, policy=plan.detect_policy
    )
    routes = routes_from_settings(settings.rules, settings.rule_names())
    deliveries, _ = route(events, routes, check_id="dry-run", now=now, last_routed={})
    holds = {t.rule: t.hold for t in plan.detect_policy.thresholds}
    pending = []
    for key, alarm in sorted(state.alarms.items()):
        if not alarm.firing:
            rule, pair, condition = key.split("|")
            pending.append((rule, pair, condition, holds.get(rule, 0.0)))
    return DryRun(name, before, after, events, deliveries, pending, routes)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  " + "  ".join([*(f"{c:<{widths[i]}}" for i, c in enumerate(r[:-1])), r[-1]]).rstrip()
        for r in rows
    ]


def _what(event: Event) -> str:
    """What one event says, without the rest of its line."""
    f = render.fields(_as_delivery(NewDelivery(event, "-", "dry-run")))
    if event.kind is EventKind.RATE_CHANGED:
        return f"{f['old_rate']} → {f['new_rate']} ({f['rate_move']})"
    if event.kind is EventKind.CHANGE_PCT_CHANGED:
        return f"change {f['old_change_pct']} → {f['new_change_pct']}"
    return f["notes"] if f["notes"] != render.NA else f["summary"]


def _where(event: Event, run: DryRun) -> str:
    """Which matching rule sends the event to which sinks (a sink hears of an event once)."""
    parts = []
    for r in run.routes:
        if not r.matches(event):
            continue
        sinks = [
            d.sink if d.silenced_by is None else f"{d.sink} ({d.silenced_by})"
            for d in run.deliveries
            if d.event.event_id == event.event_id and d.rule == r.rule
        ]
        parts.append(f"{r.rule} → {', '.join(sinks) if sinks else '(its sinks already have it)'}")
    return "; ".join(parts) or "(no rule sends it)"


def _pair(event: Event) -> str:
    return render.sanitize(event.pair, render.NAME_LIMIT) if event.pair else NO_PAIR


def _as_delivery(new: NewDelivery) -> Delivery:
    return Delivery(
        0, new.dedup_key, new.sink, new.event, new.check_id, created_at=new.event.observed_at
    )


def _report(settings: Settings, run: DryRun) -> list[str]:
    out = [
        f"target {run.target}: {len(run.before.quotes)} pair(s) before, "
        f"{len(run.after.quotes)} after",
        "",
    ]
    if not run.events:
        out.append("no events: the two pages read the same to the detector")
    else:
        out.append(f"events ({len(run.events)})")
        rows: list[tuple[str, ...]] = []
        for ev in run.events:
            rows.append((ev.kind.value, _pair(ev), _what(ev)))
        out += _table(rows)
        out += ["", "routes"]
        rows = []
        for ev in run.events:
            rows.append((ev.kind.value, _pair(ev), _where(ev, run)))
        out += _table(rows)
    if run.pending:
        out += ["", "pending (waiting for the rule's `for`)"]
        rows = [
            (
                rule,
                pair,
                condition,
                f"fires if it holds for {render.duration(timedelta(seconds=hold))}",
            )
            for rule, pair, condition, hold in run.pending
        ]
        out += _table(rows)
    by_sink: dict[str, list[Delivery]] = {}
    for new in run.deliveries:
        if new.silenced_by is None:
            by_sink.setdefault(new.sink, []).append(_as_delivery(new))
    for sink, batch in by_sink.items():
        config = settings.sinks[sink]
        out += [
            "",
            f"message to {sink} ({getattr(config, 'type', '?')}): "
            f"{render.digest_title(batch, config.title_template)}",
        ]
        out += [f"  {render.line(ln, config.body_template)}" for ln in render.lines(batch)]
    return out


def run_test(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if args.old == "-" and args.new == "-":
        fail(EXIT_USAGE, "only one of OLD and NEW can be - (stdin)")
    now = datetime.now(UTC)
    if args.at:
        try:
            now = datetime.fromisoformat(args.at)
        except ValueError:
            fail(
                EXIT_USAGE,
                f"--at: expected an ISO 8601 time such as 2025-05-16T23:00:00Z, not {args.at!r}",
            )
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
    run = dry_run(settings, args, now)
    if args.json:
        doc = {
            "target": run.target,
            "events": [e.to_json() for e in run.events],
            "deliveries": [
                {
                    "event_id": d.event.event_id,
                    "kind": d.event.kind.value,
                    "pair": d.event.pair,
                    "rule": d.rule,
                    "sink": d.sink,
                    "silenced_by": d.silenced_by,
                }
                for d in run.deliveries
            ],
            "pending": [
                {"rule": r, "pair": p, "condition": c, "for_seconds": h}
                for r, p, c, h in run.pending
            ],
        }
        print(json.dumps(doc, ensure_ascii=False))
    else:
        print("\n".join(_report(settings, run)))
    return EXIT_OK
