"""Prometheus metrics, in a registry owned by one daemon (never the process-global one).

Labels are target names, sink names, event kinds and outcomes from configuration or code, and the
pairs a target's page shows (``TMT/USD``, bounded by the page) — never URLs, never anything secret,
and never other page text (bounded cardinality).

``ticker_rate`` and ``ticker_change_pct`` carry the ticker itself, so it can be graphed. Prometheus
samples are float64: this is the one place a page's decimal becomes a float, and only for the
exposition (every rate a page prints, up to 15 significant digits, reads back as the same number).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from monitor import __version__
from monitor.cluster import ClusterView
from monitor.models import Snapshot
from monitor.store import OutboxCounts


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge(
            "ticker_monitor_build_info", "Build information.", ["version"], registry=r
        )
        self.info.labels(__version__).set(1)
        self.checks = Counter(
            "ticker_monitor_checks",
            "Checks by target and outcome.",
            ["target", "outcome"],
            registry=r,
        )
        self.check_seconds = Histogram(
            "ticker_monitor_check_duration_seconds",
            "Wall time of one check, fetch included.",
            ["target"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.last_success = Gauge(
            "ticker_monitor_last_success_timestamp_seconds",
            "Unix time of the last successful check.",
            ["target"],
            registry=r,
        )
        self.events = Counter(
            "ticker_monitor_events", "Events detected.", ["target", "kind"], registry=r
        )
        self.deliveries = Counter(
            "ticker_monitor_deliveries",
            "Outbox rows that were sent, scheduled for retry or dead-lettered.",
            ["sink", "outcome"],
            registry=r,
        )
        self.outbox = Gauge(
            "ticker_monitor_outbox_rows",
            "Outbox rows by sink and status.",
            ["sink", "status"],
            registry=r,
        )
        self.rate = Gauge(
            "ticker_rate", "The latest rate a target's page shows.", ["target", "pair"], registry=r
        )
        self.change_pct = Gauge(
            "ticker_change_pct",
            "The latest change percentage a target's page shows next to the rate.",
            ["target", "pair"],
            registry=r,
        )
        self._pairs: dict[str, set[str]] = {}
        self.lateness = Histogram(
            "ticker_monitor_scheduler_lateness_seconds",
            "How long after its planned time a scheduled check started.",
            ["target"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120),
            registry=r,
        )
        self.delivery_latency = Histogram(
            "ticker_monitor_delivery_latency_seconds",
            "From an alert's detection to its delivery, by sink.",
            ["sink"],
            buckets=(0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 21600, 86400),
            registry=r,
        )
        self.store_errors = Counter(
            "ticker_monitor_store_errors",
            "Store operations that failed (disk full, file locked, read-only), by who asked.",
            ["operation"],
            registry=r,
        )
        self.job_problems = Counter(
            "ticker_monitor_scheduler_problems",
            "Scheduler jobs that raised or missed their run time.",
            ["target", "problem"],
            registry=r,
        )

        self.instance = Gauge(
            "ticker_monitor_instance_info",
            "This instance's name in its store's cluster (host/pid/boot/start).",
            ["member"],
            registry=r,
        )
        self.held = Gauge(
            "ticker_monitor_cluster_target_held",
            "1 for each target this instance holds (checks), 0 for the others it knows.",
            ["target"],
            registry=r,
        )
        self.members = Gauge(
            "ticker_monitor_cluster_members",
            "Members registered in the store's cluster, by whether they are alive.",
            ["state"],
            registry=r,
        )
        self.heartbeats = Gauge(
            "ticker_monitor_cluster_member_heartbeat_timestamp_seconds",
            "Unix time of each member's last heartbeat (the store's clock).",
            ["member"],
            registry=r,
        )

    def cluster(self, view: ClusterView, targets: Iterable[str]) -> None:
        """The gauges of this instance's membership (of its configured ``targets``), as of its
        last heartbeat."""
        self.instance.clear()
        self.instance.labels(view.me).set(1)
        for target in targets:
            self.held.labels(target).set(1 if target in view.held else 0)
        alive = sum(1 for m in view.members if m.alive)
        self.members.labels("alive").set(alive)
        self.members.labels("silent").set(len(view.members) - alive)
        self.heartbeats.clear()
        for m in view.members:
            self.heartbeats.labels(m.id).set(m.last_heartbeat.timestamp())

    def store_error(self, operation: str) -> None:
        self.store_errors.labels(operation).inc()

    def check_done(self, target: str, outcome: str, seconds: float) -> None:
        self.checks.labels(target, outcome).inc()
        self.check_seconds.labels(target).observe(seconds)
        if outcome in ("observed", "not_modified"):
            self.last_success.labels(target).set(time.time())

    def event(self, target: str, kind: str) -> None:
        self.events.labels(target, kind).inc()

    def delivery(self, sink: str, outcome: str, count: int) -> None:
        self.deliveries.labels(sink, outcome).inc(count)

    def quotes(self, target: str, snapshot: Snapshot | None) -> None:
        """The gauges of ``target`` show ``snapshot`` (pairs no longer on the page disappear)."""
        current = {q.pair: q for q in snapshot.quotes} if snapshot else {}
        for gone in self._pairs.get(target, set()) - set(current):
            self.rate.remove(target, gone)
            with contextlib.suppress(KeyError):
                self.change_pct.remove(target, gone)
        for pair, q in current.items():
            self.rate.labels(target, pair).set(float(q.rate))
            if q.change_pct is None:
                with contextlib.suppress(KeyError):
                    self.change_pct.remove(target, pair)
            else:
                self.change_pct.labels(target, pair).set(float(q.change_pct))
        self._pairs[target] = set(current)

    def late(self, target: str, seconds: float) -> None:
        self.lateness.labels(target).observe(max(seconds, 0.0))

    def delivered(self, sink: str, seconds: float) -> None:
        self.delivery_latency.labels(sink).observe(max(seconds, 0.0))

    def job_problem(self, target: str, problem: str) -> None:
        self.job_problems.labels(target, problem).inc()

    def set_outbox(self, counts: list[OutboxCounts]) -> None:
        self.outbox.clear()
        for row in counts:
            self.outbox.labels(row.sink, row.status).set(row.count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
