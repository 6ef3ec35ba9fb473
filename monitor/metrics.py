"""Prometheus metrics, in a registry owned by one daemon (never the process-global one).

Labels are target names, sink names, event kinds and outcomes from configuration or code — never URLs,
never anything secret, and never page text (bounded cardinality).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from monitor import __version__
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

    def job_problem(self, target: str, problem: str) -> None:
        self.job_problems.labels(target, problem).inc()

    def set_outbox(self, counts: list[OutboxCounts]) -> None:
        self.outbox.clear()
        for row in counts:
            self.outbox.labels(row.sink, row.status).set(row.count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
