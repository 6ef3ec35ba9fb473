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
import io
import os
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import BinaryIO, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from monitor import __version__
from monitor.cluster import ClusterView
from monitor.models import Quote, Snapshot
from monitor.store import OutboxCounts

Labels = tuple[str, ...]
#: one sample: its name, its labels in the family's order, its value
Row = tuple[str, tuple[tuple[str, str], ...], float]
V = TypeVar("V")

#: how prometheus_client writes a value or a bucket's ``le`` (``1.0``, ``+Inf``, ``1e+06``); the
#: library leaves it untyped
_go: Callable[[float], str] = floatToGoString


def _created_series() -> bool:
    """Whether counters and histograms carry ``_created`` samples: prometheus_client's own rule
    (``PROMETHEUS_DISABLE_CREATED_SERIES``), so both kinds of series on one page agree."""
    return os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in (
        "true",
        "1",
        "t",
    )


def _help(name: str, documentation: str) -> str:
    text = documentation.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {text}\n"


def _label_text(labels: tuple[tuple[str, str], ...]) -> str:
    """``{outcome="observed",target="timesca"}``: sorted by name, values escaped, as
    prometheus_client writes them."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels)) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class _Family:
    """One metric family whose series are plain data, rendered at scrape time.

    prometheus_client keeps an object per series (per label values) with locks of its own: about
    2 KB for a counter, more for a histogram, which at 5,000 targets was 89 MB
    (docs/performance.md). Here a series is a dict entry of floats. The daemon writes on its event
    loop and ``/metrics`` renders in a thread, so both hold ``lock`` (one per :class:`Metrics`);
    a scrape copies under it and writes the page outside it.

    A family is a prometheus_client collector (``collect``, ``describe``) and writes its own text
    (:meth:`exposition`, the same bytes ``generate_latest`` would write) without building a
    ``Sample`` per series: at 5,000 targets those took ~50 MB for the length of a scrape.
    """

    kind = "untyped"

    def __init__(self, name: str, documentation: str, lock: threading.Lock) -> None:
        self.name = name
        self.documentation = documentation
        self._lock = lock

    def rows(self) -> Iterator[Row]:
        """The samples, ``_created`` ones included, in prometheus_client's order."""
        raise NotImplementedError

    def _metric(self) -> Metric:
        return Metric(self.name, self.documentation, self.kind)

    def describe(self) -> Iterable[Metric]:
        """The family without samples: the registry learns its names without a scrape."""
        return [self._metric()]

    def collect(self) -> Iterator[Metric]:
        metric = self._metric()
        metric.samples = [Sample(name, dict(labels), value) for name, labels, value in self.rows()]
        yield metric

    def exposition(self, page: BinaryIO) -> None:
        """Write the family in the Prometheus text format, as ``generate_latest`` writes it (the
        ``_created`` samples follow as a gauge family of their own), a line at a time."""
        main = f"{self.name}_total" if self.kind == "counter" else self.name
        page.write(f"{_help(main, self.documentation)}# TYPE {main} {self.kind}\n".encode())
        created_name = f"{self.name}_created"
        created: list[str] = []
        for name, labels, value in self.rows():
            line = f"{name}{_label_text(labels)} {_go(value)}\n"
            if name == created_name:
                created.append(line)
            else:
                page.write(line.encode())
        if created:
            page.write(
                f"{_help(created_name, self.documentation)}# TYPE {created_name} gauge\n".encode()
            )
            page.write("".join(created).encode())


class _Series(_Family, Generic[V]):
    """A family of series keyed by label values."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        lock: threading.Lock,
        *,
        created: bool = False,
    ) -> None:
        super().__init__(name, documentation, lock)
        self.labelnames = tuple(labelnames)
        #: whether counters and histograms carry ``_created`` samples
        self._created = created
        self._series: dict[Labels, V] = {}

    def _labels(self, values: Labels) -> tuple[tuple[str, str], ...]:
        return tuple(zip(self.labelnames, values, strict=True))


class _Counters(_Series["array[float]"]):
    """A counter family: label values -> ``[value, created]``."""

    kind = "counter"

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                self._series[labels] = array("d", (amount, time.time()))
            else:
                series[0] += amount

    def rows(self) -> Iterator[Row]:
        with self._lock:
            copied = [(values, s[0], s[1]) for values, s in self._series.items()]
        for values, value, created in copied:
            labels = self._labels(values)
            yield f"{self.name}_total", labels, value
            if self._created:
                yield f"{self.name}_created", labels, created


class _Gauges(_Series[float]):
    """A gauge family: label values -> value."""

    kind = "gauge"

    def set(self, labels: Labels, value: float) -> None:
        with self._lock:
            self._series[labels] = float(value)

    def rows(self) -> Iterator[Row]:
        with self._lock:
            copied = list(self._series.items())
        for values, value in copied:
            yield self.name, self._labels(values), value


class _Histograms(_Series["array[float]"]):
    """A histogram family: label values -> ``[count per bucket..., sum, created]`` (counts not
    cumulative, as prometheus_client keeps them; the last bucket is ``+Inf``)."""

    kind = "histogram"

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
        super().__init__(name, documentation, labelnames, lock, created=created)
        self._bounds = (*(float(b) for b in buckets), float("inf"))
        self._le = tuple(_go(b) for b in self._bounds)

    def observe(self, labels: Labels, value: float) -> None:
        width = len(self._bounds)
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = array("d", bytes(8 * (width + 2)))
                series[width + 1] = time.time()
            series[width] += value
            series[bisect.bisect_left(self._bounds, value)] += 1

    def rows(self) -> Iterator[Row]:
        with self._lock:
            copied = [(values, s[:]) for values, s in self._series.items()]
        width = len(self._bounds)
        for values, series in copied:
            labels = self._labels(values)
            acc = 0.0
            for le, count in zip(self._le, series[:width], strict=True):
                acc += count
                yield f"{self.name}_bucket", (*labels, ("le", le)), acc
            yield f"{self.name}_count", labels, acc
            yield f"{self.name}_sum", labels, series[width]
            if self._created:
                yield f"{self.name}_created", labels, series[width + 1]


class _Quotes:
    """Each target's latest :class:`Snapshot`, kept by reference (the daemon's board holds the
    same frozen object) for ``ticker_rate`` and ``ticker_change_pct``."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.snapshots: dict[str, Snapshot] = {}

    def show(self, target: str, snapshot: Snapshot | None) -> None:
        with self.lock:
            if snapshot is None or not snapshot.quotes:
                self.snapshots.pop(target, None)
            else:
                self.snapshots[target] = snapshot


class _QuoteGauges(_Family):
    """A gauge of one field of every target's quotes, its decimal turned into a float only when a
    scrape writes it (a quote without the field has no series)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        documentation: str,
        quotes: _Quotes,
        field: Callable[[Quote], Decimal | None],
    ) -> None:
        super().__init__(name, documentation, quotes.lock)
        self._quotes = quotes
        self._field = field

    def rows(self) -> Iterator[Row]:
        with self._lock:
            copied = list(self._quotes.snapshots.items())
        for target, snapshot in copied:
            for pair, q in snapshot.by_pair().items():
                value = self._field(q)
                if value is not None:
                    yield self.name, (("target", target), ("pair", pair)), float(value)


class Metrics:
    """The daemon's metrics. Families labelled by target (or by target and pair) are plain data
    in :class:`_Family` collectors; the few labelled by sink, operation or member are
    prometheus_client's own objects. All are in :attr:`registry`, and :meth:`render` writes them
    in the order they were added."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: what :meth:`render` writes, one family (or prometheus_client metric) after another
        self._parts: list[Callable[[BinaryIO], object]] = []
        lock = threading.Lock()
        created = _created_series()
        self.info = Gauge(
            "ticker_monitor_build_info", "Build information.", ["version"], registry=None
        )
        self._add(self.info)
        self.info.labels(__version__).set(1)
        self.checks = _Counters(
            "ticker_monitor_checks",
            "Checks by target and outcome.",
            ["target", "outcome"],
            lock,
            created=created,
        )
        self._add(self.checks)
        self.check_seconds = _Histograms(
            "ticker_monitor_check_duration_seconds",
            "Wall time of one check, fetch included.",
            ["target"],
            lock,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            created=created,
        )
        self._add(self.check_seconds)
        self.last_success = _Gauges(
            "ticker_monitor_last_success_timestamp_seconds",
            "Unix time of the last successful check.",
            ["target"],
            lock,
        )
        self._add(self.last_success)
        self.events = _Counters(
            "ticker_monitor_events", "Events detected.", ["target", "kind"], lock, created=created
        )
        self._add(self.events)
        self.deliveries = Counter(
            "ticker_monitor_deliveries",
            "Outbox rows that were sent, scheduled for retry or dead-lettered.",
            ["sink", "outcome"],
            registry=None,
        )
        self._add(self.deliveries)
        self.outbox = Gauge(
            "ticker_monitor_outbox_rows",
            "Outbox rows by sink and status.",
            ["sink", "status"],
            registry=None,
        )
        self._add(self.outbox)
        self._quotes = _Quotes(lock)
        self._add(
            _QuoteGauges(
                "ticker_rate",
                "The latest rate a target's page shows.",
                self._quotes,
                lambda q: q.rate,
            )
        )
        self._add(
            _QuoteGauges(
                "ticker_change_pct",
                "The latest change percentage a target's page shows next to the rate.",
                self._quotes,
                lambda q: q.change_pct,
            )
        )
        self.lateness = _Histograms(
            "ticker_monitor_scheduler_lateness_seconds",
            "How long after its planned time a scheduled check started.",
            ["target"],
            lock,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120),
            created=created,
        )
        self._add(self.lateness)
        self.delivery_latency = Histogram(
            "ticker_monitor_delivery_latency_seconds",
            "From an alert's detection to its delivery, by sink.",
            ["sink"],
            buckets=(0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 21600, 86400),
            registry=None,
        )
        self._add(self.delivery_latency)
        self.store_errors = Counter(
            "ticker_monitor_store_errors",
            "Store operations that failed (disk full, file locked, read-only), by who asked.",
            ["operation"],
            registry=None,
        )
        self._add(self.store_errors)
        self.job_problems = _Counters(
            "ticker_monitor_scheduler_problems",
            "Scheduler jobs that raised or missed their run time.",
            ["target", "problem"],
            lock,
            created=created,
        )
        self._add(self.job_problems)

        self.instance = Gauge(
            "ticker_monitor_instance_info",
            "This instance's name in its store's cluster (host/pid/boot/start).",
            ["member"],
            registry=None,
        )
        self._add(self.instance)
        self.held = _Gauges(
            "ticker_monitor_cluster_target_held",
            "1 for each target this instance holds (checks), 0 for the others it knows.",
            ["target"],
            lock,
        )
        self._add(self.held)
        self.members = Gauge(
            "ticker_monitor_cluster_members",
            "Members registered in the store's cluster, by whether they are alive.",
            ["state"],
            registry=None,
        )
        self._add(self.members)
        self.heartbeats = Gauge(
            "ticker_monitor_cluster_member_heartbeat_timestamp_seconds",
            "Unix time of each member's last heartbeat (the store's clock).",
            ["member"],
            registry=None,
        )
        self._add(self.heartbeats)

    def _add(self, family: _Family | MetricWrapperBase) -> None:
        self.registry.register(family)
        if isinstance(family, _Family):
            self._parts.append(family.exposition)
        else:
            self._parts.append(lambda page: page.write(generate_latest(family)))

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
        """The page: what ``generate_latest(self.registry)`` writes, byte for byte, without a
        ``Sample`` object per series (one buffer: the page is 16 MB at 5,000 targets)."""
        page = io.BytesIO()
        for part in self._parts:
            part(page)
        return page.getvalue()
