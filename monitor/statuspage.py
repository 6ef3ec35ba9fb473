"""The status page at ``/``: one self-contained HTML document drawn on the server.

No script, no external font, stylesheet or image (the endpoint's Content-Security-Policy forbids
them): inline CSS, inline SVG sparklines (:func:`monitor.charts.sparkline_svg`), and a
``<meta http-equiv="refresh">`` so it keeps itself current without JavaScript. The layout is one
column that reflows down to a phone's width; light and dark follow the system's preference.
Every text that comes from a page or the configuration is HTML-escaped here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from html import escape

from monitor.charts import sparkline_svg
from monitor.cluster import ClusterView
from monitor.models import dec_str
from monitor.status import (
    HEALTH_WORDS,
    AlertView,
    PairView,
    StatusView,
    TargetView,
    clock,
    relative,
)

#: seconds between the page's own reloads
REFRESH = 15
_NO_DEAD = "None: every alert was delivered or is on its way."

_CSS = """
:root { color-scheme: light dark; --bg: #f6f7f9; --card: #fff; --fg: #1d232b; --muted: #5d6673;
  --line: #dde1e6; --ok: #17803d; --warn: #a15c00; --bad: #c0262d; --up: #17803d; --down: #c0262d; }
@media (prefers-color-scheme: dark) { :root { --bg: #111418; --card: #1b2027; --fg: #e7eaee;
  --muted: #9aa4b1; --line: #2c333c; --ok: #4cc47a; --warn: #e0a040; --bad: #ff6b6b;
  --up: #4cc47a; --down: #ff6b6b; } }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .5rem 1rem; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1.1rem; margin: 0; display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
h3 { font-size: 1rem; margin: 0 0 .5rem; }
.muted, .meta { color: var(--muted); font-size: .88rem; }
.meta { margin: .3rem 0 .6rem; overflow-wrap: anywhere; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: .8rem 1rem; margin: .8rem 0; }
.badge { display: inline-block; border-radius: 999px; padding: .05rem .6rem; font-size: .8rem;
  font-weight: 600; color: #fff; background: var(--muted); white-space: nowrap; }
.ok, .ready, .sent { background: var(--ok); }
.failing, .unknown, .pending { background: var(--warn); }
.down, .layout_broken, .not-ready, .dead { background: var(--bad); }
.problems { border-color: var(--bad); }
.problems li, .error { color: var(--bad); overflow-wrap: anywhere; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: .3rem .4rem; border-top: 1px solid var(--line); }
th { font-size: .8rem; color: var(--muted); font-weight: 600; border-top: 0; }
td.num, th.num { text-align: right; white-space: nowrap; }
td.pair { font-weight: 600; white-space: nowrap; }
td.chart { width: 124px; padding-right: 0; }
.spark { display: block; color: var(--muted); }
.spark .up { color: var(--up); } .spark .down { color: var(--down); }
.pct-up { color: var(--up); } .pct-down { color: var(--down); }
ul.alerts { list-style: none; margin: 0; padding: 0; }
ul.alerts li { padding: .45rem 0; border-top: 1px solid var(--line); }
ul.alerts li:first-child { border-top: 0; }
.sinks { display: flex; flex-wrap: wrap; gap: .3rem; margin-top: .25rem; }
.sink { font-size: .8rem; border: 1px solid var(--line); border-radius: 6px; padding: 0 .4rem; }
.sink .badge { font-size: .72rem; padding: 0 .4rem; }
code { font-size: .85em; overflow-wrap: anywhere; }
footer { margin: 1.5rem 0; }
footer a { color: inherit; }
@media (max-width: 30rem) { main { padding: .6rem; } td.chart { width: 90px; }
  .spark { width: 90px; } th, td { padding: .3rem .25rem; } }
"""


def _time(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    return f'<time datetime="{moment.isoformat()}" title="{clock(moment)}">{relative(moment, now)}</time>'


def _badge(health: str) -> str:
    return f'<span class="badge {escape(health)}">{escape(HEALTH_WORDS.get(health, health))}</span>'


def _pct(value: Decimal | None) -> str:
    if value is None:
        return "–"
    cls = "pct-up" if value > 0 else "pct-down" if value < 0 else "flat"
    return f'<span class="{cls}">{escape(dec_str(value))}%</span>'


def _pair_row(target: TargetView, pair: PairView, now: datetime) -> str:
    points = [(c.at, c.rate) for c in pair.history]
    if not points and target.last_success_at is not None:
        points = [(target.last_success_at, pair.rate)]
    label = (
        f"{pair.pair} over the last 7 days: {len(pair.history)} changes, now {dec_str(pair.rate)}"
    )
    spark = sparkline_svg(points, end=now, label=label)
    return (
        f'<tr><td class="pair">{escape(pair.pair)}</td>'
        f'<td class="num rate">{escape(dec_str(pair.rate))}</td>'
        f'<td class="num change">{_pct(pair.change_pct)}</td>'
        f'<td class="chart">{spark}</td></tr>'
    )


def _target(t: TargetView, now: datetime, cluster: ClusterView | None) -> str:
    nxt = _time(t.next_run, now) if t.next_run else "unknown"
    by = ""
    if cluster is not None and t.checked_by != cluster.me:
        who = f"<code>{escape(t.checked_by)}</code>" if t.checked_by else "no instance right now"
        by = f" · checked by {who}"
    meta = (
        f"<code>{escape(t.url)}</code> · every {t.interval:g}s · "
        f"last check {_time(t.last_check_at, now)}"
        + (f" ({escape(t.last_outcome)})" if t.last_outcome else "")
        + f" · last success {_time(t.last_success_at, now)} · next run {nxt}{by}"
    )
    notes = ""
    if t.health == "failing":
        notes += (
            f'<p class="error">{t.failures} of {t.down_after} failed checks before it counts as '
            "down</p>"
        )
    if t.detail:
        notes += f'<p class="error">{escape(t.detail)}</p>'
    if not t.active:
        notes += '<p class="muted">outside its active window: not checked now</p>'
    rows = "".join(_pair_row(t, p, now) for p in t.pairs)
    table = (
        '<table class="pairs"><thead><tr><th>Pair</th><th class="num">Rate</th>'
        f'<th class="num">Change</th><th>7 days</th></tr></thead><tbody>{rows}</tbody></table>'
        if rows
        else '<p class="muted">no quotes yet</p>'
    )
    date = f'<p class="muted">page date {escape(t.page_date)}</p>' if t.page_date else ""
    return (
        f'<section class="card target" id="target-{escape(t.name, quote=True)}">'
        f"<h2>{escape(t.name)} {_badge(t.health)}</h2>"
        f'<p class="meta">{meta}</p>{notes}{table}{date}</section>'
    )


def _alert(a: AlertView, now: datetime, *, retry_hint: bool) -> str:
    sinks = "".join(
        f'<span class="sink">{escape(d.sink)} <span class="badge {escape(d.status)}">'
        f"{escape(d.status)}</span>"
        + (f" {d.attempts}×" if d.attempts else "")
        + f" <code>#{escape(d.short_id)}</code></span>"
        for d in a.deliveries
    )
    errors = "".join(
        f'<div class="error">{escape(d.sink)}: {escape(d.last_error)}</div>'
        for d in a.deliveries
        if d.last_error
    )
    hint = ""
    if retry_hint:
        ids = " ".join(escape(d.short_id) for d in a.deliveries if d.status == "dead")
        hint = f'<div class="muted">retry: <code>ticker-monitor alerts retry {ids}</code></div>'
    return (
        f"<li>{_time(a.at, now)} · {escape(a.title)}"
        f'<div class="sinks">{sinks}</div>{errors}{hint}</li>'
    )


def _cluster(view: ClusterView, now: datetime) -> str:
    """The members of the store's cluster, each with its last heartbeat and what it checks."""
    kind = "one daemon (SQLite)" if view.single_daemon else "shared store"
    rows = "".join(
        f"<tr><td><code>{escape(m.id)}</code>{' (this instance)' if m.id == view.me else ''}</td>"
        f'<td><span class="badge {"ok" if m.alive else "down"}">'
        f"{'alive' if m.alive else 'silent'}</span></td>"
        f"<td>{_time(m.last_heartbeat, now)}</td>"
        f"<td>{escape(', '.join(m.targets)) or '–'}</td></tr>"
        for m in view.members
    )
    me = f'<p class="meta">this instance: <code>{escape(view.me)}</code></p>' if view.me else ""
    return (
        f'<section class="card" id="cluster"><h3>Cluster · {kind} · lease {view.lease:g}s</h3>{me}'
        '<table class="members"><thead><tr><th>Member</th><th>State</th><th>Heartbeat</th>'
        f"<th>Checks</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def render(view: StatusView, *, refresh: int = REFRESH) -> str:
    """The whole page for ``view``."""
    now = view.generated_at
    ready = "ready" if view.ready else "not ready"
    problems = ""
    if view.problems:
        items = "".join(
            f"<li><strong>{escape(key)}</strong>: {escape(why)}</li>"
            for key, why in view.problems.items()
        )
        problems = f'<section class="card problems"><h3>Not ready</h3><ul>{items}</ul></section>'
    targets = "".join(_target(t, now, view.cluster) for t in view.targets) or (
        '<section class="card"><p>No targets are configured.</p></section>'
    )
    alerts = "".join(_alert(a, now, retry_hint=False) for a in view.alerts)
    dead = "".join(_alert(a, now, retry_hint=True) for a in view.dead)
    outbox = ", ".join(f"{n} {escape(s)}" for s, n in sorted(view.outbox.items())) or "empty"
    store = "" if view.store_ok else f'<p class="error">store: {escape(view.store_error)}</p>'
    cluster = "" if view.cluster is None else _cluster(view.cluster, now)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{refresh:d}">
<title>ticker-monitor · {ready}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header>
<h1>ticker-monitor</h1>
<span class="badge {"ready" if view.ready else "not-ready"}" id="readiness">{ready}</span>
<span class="muted">{escape(view.version)} · drawn {clock(now)} · refreshes every {refresh}s</span>
</header>
{store}{problems}
{targets}
<section class="card" id="alerts"><h3>Recent alerts</h3>
{f'<ul class="alerts">{alerts}</ul>' if alerts else '<p class="muted">No alerts yet.</p>'}
</section>
<section class="card" id="dead"><h3>Dead letters</h3>
{f'<ul class="alerts">{dead}</ul>' if dead else f'<p class="muted">{_NO_DEAD}</p>'}
</section>
{cluster}
<footer class="muted">outbox: {outbox} ·
<a href="/api/status">JSON</a> · <a href="/metrics">metrics</a> · <a href="/readyz">readiness</a></footer>
</main>
</body>
</html>
"""


__all__ = ["REFRESH", "render"]
