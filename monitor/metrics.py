"""Prometheus metrics, in a registry owned by one daemon (never the process-global one).

Labels are target names, sink names, event kinds and outcomes from configuration or code, and the
pairs a target's page shows (``TMT/USD``, bounded by the page) — never URLs, never anything secret,
and never other page text (bounded cardinality).

``ticker_rate`` and ``ticker_change_pct`` carry the ticker itself, so it can be graphed. Prometheus
samples are float64: this is the one place a page's decimal becomes a float, and only for the
exposition (every rate a page prints, up to 15 significant digits, reads back as the same number).
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from monitor import __version__
from monitor.cluster import ClusterView
from monitor.models import Snapshot
from monitor.store import OutboxCounts

Labels = tuple[str, ...]

#: how prometheus_client writes a bucket's ``le`` (``1.0``, ``+Inf``); the library leaves it untyped
_le: Callable[[float], str] = floatToGoString


def _created_series() -> bool:
    """Whether counters and histograms carry ``_created`` samples: prometheus_client's own rule
    (``PROMETHEUS_DISABLE_CREATED_SERIES``), so both kinds of series on one page agree."""
    return os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
        "true",
        "1",
        "t",
    )


class _Series:
    """One metric family whose series are plain data in this object, rendered at scrape time.

    prometheus_client keeps an object per series (per label values) with locks of its own: about
    2 KB for a counter, more for a histogram, which at 5,000 targets was 89 MB
    (docs/performance.md). Here a series is a dict entry of floats. The daemon writes on its event
    loop and ``/metrics`` renders in a thread, so both hold ``lock`` (one per :class:`Metrics`);
    a scrape copies under it and builds the page outside it.
    """

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], lock: threading.Lock
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = lock

    def describe(self) -> Iterable[Metric]:
        """The family without samples: the registry learns its names without a scrape."""
        return [self._family()]

    def _family(self) -> Metric:
        raise NotImplementedError


class _Counters(_Series):
    """A counter family: label values -> ``[value, created]``."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        lock: threading.Lock,
        *,
        created: bool,
    ) -> None:
        super().__init__(name, documentation, labelnames, lock)
        self._created = created
        self._series: dict[Labels, array[float]] = {}

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                self._series[labels] = array("d", (amount, time.time()))
            else:
                series[0] += amount

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = [(labels, s[0], s[1]) for labels, s in self._series.items()]
        family = self._family()
        for labels, value, created in rows:
            family.add_metric(labels, value, created=created if self._created else None)
        yield family


class _Gauges(_Series):
    """A gauge family: label values -> value."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], lock: threading.Lock
    ) -> None:
        super().__init__(name, documentation, labelnames, lock)
        self._series: dict[Labels, float] = {}

    def set(self, labels: Labels, value: float) -> None:
        with self._lock:
            self._series[labels] = float(value)

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = list(self._series.items())
        family = self._family()
        for labels, value in rows:
            family.add_metric(labels, value)
        yield family


class _Histograms(_Series):
    """A histogram family: label values -> ``[count per bucket..., sum, created]`` (counts not
    cumulative, as prometheus_client keeps them; the last bucket is ``+Inf``)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        lock: threading.Lock,
        *,
        buckets: Sequence[float],
        created: bool,
    ) -> None:
        super().__init__(name, documentation, labelnames, lock)
        self._bounds = (*(float(b) for b in buckets), float("inf"))
        self._le = tuple(_le(b) for b in self._bounds)
        self._created = created
        self._series: dict[Labels, array[float]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        width = len(self._bounds)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = array("d", bytes(8 * (width + 2)))
                series[width + 1] = time.time()
            series[width] += value
            series[bisect.bisect_left(self._bounds, value)] += 1

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = [(labels, s[:]) for labels, s in self._series.items()]
        family = self._family()
        width = len(self._bounds)
        for labels, series in rows:
            buckets, acc = [], 0.0
            for le, count in zip(self._le, series[:width], strict=True):
                acc += count
                buckets.append((le, acc))
            family.add_metric(labels, buckets, series[width])
            if self._created:
                created = dict(zip(self.labelnames, labels, strict=True))
                family.samples.append(Sample(f"{self.name}_created", created, series[width + 1]))
        yield family


class _Quotes:
    """``ticker_rate`` and ``ticker_change_pct``: each target's latest :class:`Snapshot`, kept by
    reference (the daemon's board holds the same frozen object), its decimals turned into floats
    only when a scrape renders them."""

    RATE = ("ticker_rate", "The latest rate a target's page shows.")
    CHANGE = (
        "ticker_change_pct",
        "The latest change percentage a target's page shows next to the rate.",
    )

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._snapshots: dict[str, Snapshot] = {}

    def show(self, target: str, snapshot: Snapshot | None) -> None:
        with self._lock:
            if snapshot is None or not snapshot.quotes:
                self._snapshots.pop(target, None)
            else:
                self._snapshots[target] = snapshot

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(*self.RATE, labels=("target", "pair")),
            GaugeMetricFamily(*self.CHANGE, labels=("target", "pair")),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = list(self._snapshots.items())
        rate, change = self._families()
        for target, snapshot in rows:
            for pair, q in snapshot.by_pair().items():
                rate.add_metric((target, pair), float(q.rate))
                if q.change_pct is not None:
                    change.add_metric((target, pair), float(q.change_pct))
        yield rate
        yield change


class Metrics:
    """The daemon's metrics. Series labelled by target (or by target and pair) are plain data in
    :class:`_Series` collectors; the few labelled by sink, operation or member are
    prometheus_client's own objects."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        lock = threading.Lock()
        created = _created_series()
        self.info = Gauge(
            "ticker_monitor_build_info", "Build information.", ["version"], registry=r
        )
        self.info.labels(__version__).set(1)
        self.checks = _Counters(
            "ticker_monitor_checks",
            "Checks by target and outcome.",
            ["target", "outcome"],
            lock,
            created=created,
        )
        r.register(self.checks)
        self.check_seconds = _Histograms(
            "ticker_monitor_check_duration_seconds",
            "Wall time of one check, fetch included.",
            ["target"],
            lock,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            created=created,
        )
        r.register(self.check_seconds)
        self.last_success = _Gauges(
            "ticker_monitor_last_success_timestamp_seconds",
            "Unix time of the last successful check.",
            ["target"],
            lock,
        )
        r.register(self.last_success)
        self.events = _Counters(
            "ticker_monitor_events", "Events detected.", ["target", "kind"], lock, created=created
        )
        r.register(self.events)
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
        self._quotes = _Quotes(lock)
        r.register(self._quotes)
        self.lateness = _Histograms(
            "ticker_monitor_scheduler_lateness_seconds",
            "How long after its planned time a scheduled check started.",
            ["target"],
            lock,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120),
            created=created,
        )
        r.register(self.lateness)
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
        self.job_problems = _Counters(
            "ticker_monitor_scheduler_problems",
            "Scheduler jobs that raised or missed their run time.",
            ["target", "problem"],
            lock,
            created=created,
        )
        r.register(self.job_problems)

        self.instance = Gauge(
            "ticker_monitor_instance_info",
            "This instance's name in its store's cluster (host/pid/boot/start).",
            ["member"],
            registry=r,
        )
        self.held = _Gauges(
            "ticker_monitor_cluster_target_held",
            "1 for each target this instance holds (checks), 0 for the others it knows.",
            ["target"],
            lock,
        )
        r.register(self.held)
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
        held = set(view.held)
        for target in targets:
            self.held.set((target,), 1 if target in held else 0)
        alive = sum(1 for m in view.members if m.alive)
        self.members.labels("alive").set(alive)
        self.members.labels("silent").set(len(view.members) - alive)
        self.heartbeats.clear()
        for m in view.members:
            self.heartbeats.labels(m.id).set(m.last_heartbeat.timestamp())

    def store_error(self, operation: str) -> None:
        self.store_errors.labels(operation).inc()

    def check_done(self, target: str, outcome: str, seconds: float) -> None:
        self.checks.inc((target, outcome))
        self.check_seconds.observe((target,), seconds)
        if outcome in ("observed", "not_modified"):
            self.last_success.set((target,), time.time())

    def event(self, target: str, kind: str) -> None:
        self.events.inc((target, kind))

    def delivery(self, sink: str, outcome: str, count: int) -> None:
        self.deliveries.labels(sink, outcome).inc(count)

    def quotes(self, target: str, snapshot: Snapshot | None) -> None:
        """The gauges of ``target`` show ``snapshot`` (pairs no longer on the page disappear)."""
        self._quotes.show(target, snapshot)

    def late(self, target: str, seconds: float) -> None:
        self.lateness.observe((target,), max(seconds, 0.0))

    def delivered(self, sink: str, seconds: float) -> None:
        self.delivery_latency.labels(sink).observe(max(seconds, 0.0))

    def job_problem(self, target: str, problem: str) -> None:
        self.job_problems.inc((target, problem))

    def set_outbox(self, counts: list[OutboxCounts]) -> None:
        self.outbox.clear()
        for row in counts:
            self.outbox.labels(row.sink, row.status).set(row.count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
