"""The status picture: what the page at ``/``, ``/readyz`` and ``ticker-monitor status`` show.

Two halves:

- :class:`Board` is the daemon's memory of each target — its last check (when, outcome, error), its
  next run, its current state and quotes — plus a store-health flag and the outbox counts that the
  daemon's store probe refreshes. The daemon updates it as it works; ``/healthz`` and ``/readyz``
  read only the board, so they never wait on the database.
- :class:`StatusView` is one frozen picture for people: the board, the settings and what the store
  adds (each pair's recent history for the sparklines, the recent alerts with their delivery per
  sink, the dead letters). :func:`build_view` assembles it with a deadline on the store, so a locked
  database makes the page say so instead of hanging. Its JSON form is ``/api/status`` and
  ``status --json``; the terminal text is :func:`render_text`, the HTML is
  :mod:`monitor.statuspage`.

Nothing here is secret: target URLs pass through :func:`monitor.fetch.safe_url` (no credentials, no
query), error texts are the ones the daemon logs (secret-free by construction), and sink names and
statuses are configuration words.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from monitor import __version__, render
from monitor.cluster import ClusterView
from monitor.errors import StoreError
from monitor.fetch import safe_url
from monitor.history import Change, changes
from monitor.models import Delivery, Snapshot, TargetState, dec_str
from monitor.settings import TargetConfig
from monitor.store import OutboxCounts, OutboxRow, Store

#: how far back the sparklines look
SPARK_WINDOW = timedelta(days=7)
#: and at most how many of a target's observations they read: a page changing every minute has
#: 10,080 in a week, and reading them all, for every target, held the store's thread for seconds;
#: each costs a snapshot's decoding (bench/growth.py: 500 a target took 3.2 s at 100 targets)
SPARK_OBSERVATIONS = 120
#: the most recent alerts the picture lists (grouped by event, each with its sinks)
RECENT_ALERTS = 20
#: the most dead letters it lists
DEAD_LETTERS = 20
#: the longest the picture waits for the store before showing what it has in memory
STORE_DEADLINE = 3.0
#: how the page and `status` write a pair's alert: `timesca: TMT/USD ▲ 0.28575 → 0.28600 ...`
ALERT_LINE = "$target: $pair $direction $summary"


def alert_text(row: OutboxRow) -> str:
    """One alert as operators read it: a pair's move itself (old → new), an outage's title."""
    if row.event is None:
        return "(unreadable event)"
    delivery = Delivery(row.id, row.dedup_key, row.sink, row.event, check_id="")
    if row.event.pair is None:
        return render.title(delivery)
    return render.line(delivery, ALERT_LINE)


#: a target's state, as the page and ``status`` name it
OK, FAILING, DOWN, LAYOUT_BROKEN, UNKNOWN = "ok", "failing", "down", "layout_broken", "unknown"

#: is a target inside its active window at a moment? (``monitor.daemon.in_window`` of its config)
ActiveCheck = Callable[[TargetConfig, datetime], bool]


# --- the daemon's memory ---------------------------------------------------------------------


@dataclass(slots=True)
class LiveTarget:
    """What the daemon knows of one target right now (mutable; the daemon's own)."""

    config: TargetConfig
    state: TargetState = field(default_factory=TargetState)
    last_check_at: datetime | None = None
    #: ``observed``, ``not_modified``, ``fetch_failed``, ``parse_failed`` or ``error`` (a crash)
    last_outcome: str | None = None
    last_error: str = ""
    next_run: datetime | None = None

    @property
    def health(self) -> str:
        if self.state.down:
            return DOWN
        if self.state.parse_failing:
            return LAYOUT_BROKEN
        if self.last_outcome in ("fetch_failed", "error"):
            return FAILING
        if self.last_outcome is None and self.state.consecutive_failures:  # as stored
            return FAILING
        if self.last_outcome is None and self.state.snapshot is None:
            return UNKNOWN
        return OK


class Board:
    """The daemon's in-memory status: per target, the store's health and the outbox counts."""

    def __init__(self, targets: Iterable[TargetConfig], *, started_at: datetime) -> None:
        self.targets: dict[str, LiveTarget] = {t.name: LiveTarget(t) for t in targets}
        self.started_at = started_at
        #: the last read probe's failure; and by writer (a check's commit, the heartbeat), its
        #: last write's failure until that writer writes again -- a locked SQLite file, or a full
        #: disk, still answers reads
        self._read_error = ""
        self._write_errors: dict[str, str] = {}
        self.outbox: list[OutboxCounts] = []
        #: the cluster as this daemon's last heartbeat saw it (None: before the first one)
        self.cluster: ClusterView | None = None

    def seed(self, name: str, state: TargetState) -> None:
        """The state the store holds from before this start (quotes, failures, last success)."""
        self.targets[name].state = state

    def checked(
        self, name: str, *, at: datetime, outcome: str, error: str, state: TargetState | None
    ) -> None:
        live = self.targets[name]
        live.last_check_at, live.last_outcome, live.last_error = at, outcome, error
        if state is not None:
            live.state = state

    def scheduled(self, name: str, next_run: datetime | None) -> None:
        self.targets[name].next_run = next_run

    def clustered(self, view: ClusterView) -> None:
        self.cluster = view

    def holds(self, name: str) -> bool:
        """Does this daemon check ``name``? (Every target, until its first heartbeat.)"""
        return self.cluster is None or self.cluster.holds(name)

    @property
    def store_ok(self) -> bool:
        """The store answers reads, and each writer's last write went in."""
        return not (self._read_error or self._write_errors)

    @property
    def store_error(self) -> str:
        return next(iter(self._write_errors.values()), self._read_error)

    def store_answered(self, counts: list[OutboxCounts]) -> None:
        """A read answered (the probe): the outbox counts; a failed write still stands."""
        self._read_error, self.outbox = "", counts

    def store_failed(self, error: str) -> None:
        """A read failed or timed out."""
        self._read_error = error

    def store_write_failed(self, writer: str, error: str) -> None:
        """``writer``'s write failed: not ready until its next write goes in."""
        self._write_errors[writer] = error

    def store_wrote(self, writer: str) -> None:
        self._write_errors.pop(writer, None)

    def outbox_total(self, status: str) -> int:
        return sum(c.count for c in self.outbox if c.status == status)


# --- readiness -------------------------------------------------------------------------------


def freshness_limit(config: TargetConfig) -> float:
    """How old a target's last success may be while it counts as ready: two intervals (plus the
    jitter one run may add)."""
    return 2 * config.interval + config.effective_jitter


def readiness(board: Board, now: datetime, active: ActiveCheck) -> dict[str, str]:
    """Why the daemon is not ready, by target (``"store"`` for the database); empty when ready.

    Ready: the store answers, and every target that this daemon checks (all of them, but for those
    another instance of a cluster holds) and that is inside its active window had a successful
    check within :func:`freshness_limit`.
    """
    problems: dict[str, str] = {}
    if not board.store_ok:
        problems["store"] = f"the store does not answer: {board.store_error}"
    for name, live in board.targets.items():
        if not active(live.config, now) or not board.holds(name):
            continue
        error = f": {live.last_error}" if live.last_error else ""
        last = live.state.last_success_at
        limit = freshness_limit(live.config)
        if live.health == DOWN:
            problems[name] = f"source down{error}"
        elif live.health == LAYOUT_BROKEN:
            problems[name] = f"layout broken{error}"
        elif last is None:
            problems[name] = f"no successful check yet{error}"
        elif (age := (now - last).total_seconds()) > limit:
            problems[name] = f"last success {age:.0f}s ago (limit {limit:g}s){error}"
    return problems


# --- the picture -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PairView:
    pair: str
    rate: Decimal
    change_pct: Decimal | None
    #: the pair's changes within :data:`SPARK_WINDOW`, oldest first
    history: tuple[Change, ...] = ()


@dataclass(frozen=True, slots=True)
class TargetView:
    name: str
    url: str
    health: str
    detail: str
    active: bool
    interval: float
    last_check_at: datetime | None
    last_outcome: str | None
    last_success_at: datetime | None
    next_run: datetime | None
    failures: int
    down_after: int
    page_date: str | None
    pairs: tuple[PairView, ...]
    #: the instance that checks it (None: none holds it now, or no cluster view)
    checked_by: str | None = None


@dataclass(frozen=True, slots=True)
class SinkDelivery:
    """One sink's delivery of one alert."""

    sink: str
    status: str
    short_id: str
    attempts: int
    last_error: str | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert (one event) and its delivery to each sink it was routed to."""

    at: datetime
    kind: str
    target: str
    pair: str | None
    title: str
    deliveries: tuple[SinkDelivery, ...]


@dataclass(frozen=True, slots=True)
class StatusView:
    generated_at: datetime
    #: True when a running daemon drew it (next runs known); False when read from the store alone
    live: bool
    started_at: datetime | None
    store_ok: bool
    store_error: str
    problems: Mapping[str, str]
    targets: tuple[TargetView, ...]
    alerts: tuple[AlertView, ...]
    dead: tuple[AlertView, ...]
    outbox: Mapping[str, int]
    version: str = __version__
    #: this instance and the cluster's members (None: not known)
    cluster: ClusterView | None = None

    @property
    def ready(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: times ISO 8601, decimals as exact strings (never floats)."""
        data: dict[str, Any] = _jsonable(self)
        return data


def _jsonable(value: object) -> Any:  # noqa: PLR0911 -- one return per kind of value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return dec_str(value)
    if isinstance(value, Change):
        return value.to_json()
    if hasattr(value, "__dataclass_fields__"):
        out = {
            name: _jsonable(getattr(value, name))
            for name in value.__dataclass_fields__
            if not name.startswith("_")  # a private field is a cache, not part of the picture
        }
        if isinstance(value, StatusView):
            out["ready"] = value.ready
        return out
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _pairs(snapshot: Snapshot | None, history: Sequence[Change]) -> tuple[PairView, ...]:
    if snapshot is None:
        return ()
    by_pair: dict[str, list[Change]] = {}
    for change in history:
        by_pair.setdefault(change.pair, []).append(change)
    return tuple(
        PairView(q.pair, q.rate, q.change_pct, tuple(by_pair.get(q.pair, ())))
        for q in snapshot.quotes
    )


def _alerts(rows: Iterable[OutboxRow]) -> tuple[AlertView, ...]:
    """Rows grouped by event (newest first), each with its sinks in the order they were written."""
    groups: dict[str, list[OutboxRow]] = {}
    for row in rows:
        key = row.event.event_id if row.event is not None else row.dedup_key
        groups.setdefault(key, []).append(row)
    out = []
    for group in groups.values():
        group.sort(key=lambda r: r.id)
        first = group[0]
        ev = first.event
        title = "(unreadable event)" if ev is None else alert_text(first)
        out.append(
            AlertView(
                at=ev.observed_at if ev is not None else first.created_at,
                kind=ev.kind.value if ev is not None else "?",
                target=first.target,
                pair=ev.pair if ev is not None else None,
                title=title,
                deliveries=tuple(
                    SinkDelivery(
                        r.sink, r.status, r.short_id, r.attempts, r.last_error, r.updated_at
                    )
                    for r in group
                ),
            )
        )
    return tuple(out)


async def build_view(
    board: Board,
    store: Store,
    *,
    now: datetime,
    active: ActiveCheck,
    live: bool,
    deadline: float = STORE_DEADLINE,
    cluster: ClusterView | None = None,
) -> StatusView:
    """The picture: the board, plus history and alerts from the store (within ``deadline``).

    A daemon in a cluster knows only the targets it checks; the state of the others comes from
    the store, and their last check from the cluster's record (``cluster``: the view of a
    command, which is no member; a daemon's own is on the board)."""
    cluster = board.cluster if cluster is None else cluster
    history: dict[str, list[Change]] = {}
    others: dict[str, TargetState] = {}
    recent: list[OutboxRow] = []
    dead: list[OutboxRow] = []
    store_ok, store_error = board.store_ok, board.store_error
    outbox = board.outbox
    try:
        async with asyncio.timeout(deadline):
            # one indexed read per target, never the whole week. Not Store.latest_history: in
            # batches the decoded snapshots outlive the young GC generations, and the page at
            # 5,000 targets took 1.3-1.5 x as long (docs/performance.md, "the sparklines' reads")
            for name in board.targets:
                observations = await store.history(
                    target=name, since=now - SPARK_WINDOW, latest=SPARK_OBSERVATIONS
                )
                for change in changes(observations):
                    history.setdefault(change.target, []).append(change)
            recent = await store.outbox_rows(limit=RECENT_ALERTS * 4)
            dead = await store.outbox_rows(status="dead", limit=DEAD_LETTERS)
            outbox = await store.outbox_counts()
            if live:
                for name in board.targets:
                    if not board.holds(name):
                        others[name], _ = await store.load_target(name)
    except TimeoutError:
        store_ok, store_error = False, f"the store did not answer within {deadline:g}s"
    except StoreError as exc:
        store_ok, store_error = False, str(exc)
    problems = readiness(board, now, active)
    if not store_ok and "store" not in problems:
        problems = {"store": f"the store does not answer: {store_error}", **problems}
    counts: dict[str, int] = {}
    for c in outbox:
        counts[c.status] = counts.get(c.status, 0) + c.count
    targets = []
    for name, t in board.targets.items():
        state, cfg = others.get(name, t.state), t.config
        snapshot = state.snapshot
        mine = board.holds(name) and live
        elsewhere = None if mine or cluster is None else cluster.checked_at.get(name)
        targets.append(
            TargetView(
                name=name,
                url=safe_url(cfg.url),
                health=t.health if name not in others else LiveTarget(cfg, state).health,
                detail=t.last_error if mine else "",
                active=active(cfg, now),
                interval=cfg.interval,
                last_check_at=t.last_check_at if mine else elsewhere,
                last_outcome=t.last_outcome if mine else None,
                last_success_at=state.last_success_at,
                next_run=t.next_run if mine else None,
                failures=state.consecutive_failures,
                down_after=cfg.down_after,
                page_date=snapshot.page_date.isoformat()
                if snapshot and snapshot.page_date
                else None,
                pairs=_pairs(snapshot, history.get(name, ())),
                checked_by=None if cluster is None else cluster.owners.get(name),
            )
        )
    return StatusView(
        generated_at=now,
        live=live,
        started_at=board.started_at if live else None,
        store_ok=store_ok,
        store_error=store_error,
        problems=problems,
        targets=tuple(targets),
        alerts=_alerts(recent)[:RECENT_ALERTS],
        dead=_alerts(dead),
        outbox=counts,
        cluster=cluster,
    )


async def seed_board(board: Board, store: Store) -> None:
    """Fill the board with what the store holds (quotes and failures from before this start)."""
    for name in board.targets:
        state, _ = await store.load_target(name)
        board.seed(name, state)


class StatusService:
    """What the operator endpoint serves for one daemon: its board, store and metrics."""

    def __init__(
        self,
        board: Board,
        store: Store,
        *,
        clock: Callable[[], datetime],
        active: ActiveCheck,
        metrics: Callable[[], bytes],
    ) -> None:
        self._board = board
        self._store = store
        self._clock = clock
        self._active = active
        self._metrics = metrics

    def health(self) -> dict[str, object]:
        """The process and its loop are alive: from memory only."""
        b = self._board
        return {
            "status": "ok",
            "targets": len(b.targets),
            "outbox_pending": b.outbox_total("pending"),
            "outbox_dead": b.outbox_total("dead"),
            "uptime_seconds": round((self._clock() - b.started_at).total_seconds()),
        }

    def readiness(self) -> tuple[bool, dict[str, object]]:
        """Ready or not, and why not, by target: from memory only (the store flag included)."""
        problems = readiness(self._board, self._clock(), self._active)
        body: dict[str, object] = {"status": "ready" if not problems else "not_ready"}
        if problems:
            body["failing"] = problems
        cluster = self._board.cluster
        if cluster is not None:
            body["instance"] = cluster.me
            body["holds"] = list(cluster.held)
            body["members"] = [
                {"id": m.id, "last_heartbeat": m.last_heartbeat.isoformat(), "alive": m.alive}
                for m in cluster.members
            ]
        return not problems, body

    def metrics(self) -> bytes:
        return self._metrics()

    async def view(self) -> StatusView:
        return await build_view(
            self._board, self._store, now=self._clock(), active=self._active, live=True
        )


# --- words for people ------------------------------------------------------------------------


def relative(moment: datetime | None, now: datetime) -> str:
    """``12s ago``, ``in 4m``, ``3h ago``, ``2d ago``; ``never`` for None."""
    if moment is None:
        return "never"
    seconds = (moment - now).total_seconds()
    size = abs(seconds)
    if size < 1:
        return "now"
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if size >= length:
            text = f"{int(size // length)}{unit}"
            break
    else:
        text = f"{int(size)}s"
    return f"in {text}" if seconds > 0 else f"{text} ago"


def clock(moment: datetime | None) -> str:
    """``2025-05-16 09:30:00Z`` (UTC, to the second); ``-`` for None."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


HEALTH_WORDS = {
    OK: "ok",
    FAILING: "failing",
    DOWN: "down",
    LAYOUT_BROKEN: "layout broken",
    UNKNOWN: "not checked yet",
}


__all__ = [
    "Board",
    "LiveTarget",
    "StatusService",
    "StatusView",
    "build_view",
    "readiness",
    "seed_board",
]
