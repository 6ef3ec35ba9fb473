"""``monitor.metrics``: the per-target series are plain data rendered at scrape time.

The oracle is prometheus_client's own ``Counter``/``Gauge``/``Histogram`` objects (what the
daemon used before): fed the same calls, both pages must parse to the same families, types, help
texts, label sets and values (``_created`` and the last-success clock excepted, which are times).
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.cluster import ClusterView, MemberView
from monitor.metrics import Metrics
from monitor.models import Quote, Snapshot

TARGETS = ("timesca", "kg24", "t3")
PAIRS = ("KGS/USD", "KZT/USD", "TMT/USD")
CHECK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LATE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120)
#: samples whose value is a clock reading, compared for presence only
TIMES = ("_created", "ticker_monitor_last_success_timestamp_seconds")


class Oracle:
    """The per-target families as prometheus_client objects, fed as ``Metrics`` is."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
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
            buckets=CHECK_BUCKETS,
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
        self.rate = Gauge(
            "ticker_rate", "The latest rate a target's page shows.", ["target", "pair"], registry=r
        )
        self.change = Gauge(
            "ticker_change_pct",
            "The latest change percentage a target's page shows next to the rate.",
            ["target", "pair"],
            registry=r,
        )
        self.lateness = Histogram(
            "ticker_monitor_scheduler_lateness_seconds",
            "How long after its planned time a scheduled check started.",
            ["target"],
            buckets=LATE_BUCKETS,
            registry=r,
        )
        self.problems = Counter(
            "ticker_monitor_scheduler_problems",
            "Scheduler jobs that raised or missed their run time.",
            ["target", "problem"],
            registry=r,
        )
        self.held = Gauge(
            "ticker_monitor_cluster_target_held",
            "1 for each target this instance holds (checks), 0 for the others it knows.",
            ["target"],
            registry=r,
        )

    def apply(self, op: tuple[object, ...]) -> None:
        match op:
            case ("check", str(t), str(outcome), float(seconds)):
                self.checks.labels(t, outcome).inc()
                self.check_seconds.labels(t).observe(seconds)
                if outcome in ("observed", "not_modified"):
                    self.last_success.labels(t).set(0)
            case ("event", str(t), str(kind)):
                self.events.labels(t, kind).inc()
            case ("quotes", str(t), snapshot):
                for pair in PAIRS:  # what the page no longer shows disappears
                    for gauge in (self.rate, self.change):
                        with contextlib.suppress(KeyError):
                            gauge.remove(t, pair)
                quotes = snapshot.quotes if isinstance(snapshot, Snapshot) else ()
                for q in quotes:
                    self.rate.labels(t, q.pair).set(float(q.rate))
                    if q.change_pct is not None:
                        self.change.labels(t, q.pair).set(float(q.change_pct))
            case ("late", str(t), float(seconds)):
                self.lateness.labels(t).observe(max(seconds, 0.0))
            case ("problem", str(t), str(problem)):
                self.problems.labels(t, problem).inc()
            case ("cluster", tuple(held)):
                for t in TARGETS:
                    self.held.labels(t).set(1 if t in held else 0)


def feed(metrics: Metrics, op: tuple[object, ...]) -> None:
    match op:
        case ("check", str(t), str(outcome), float(seconds)):
            metrics.check_done(t, outcome, seconds)
        case ("event", str(t), str(kind)):
            metrics.event(t, kind)
        case ("quotes", str(t), snapshot):
            metrics.quotes(t, snapshot if isinstance(snapshot, Snapshot) else None)
        case ("late", str(t), float(seconds)):
            metrics.late(t, seconds)
        case ("problem", str(t), str(problem)):
            metrics.job_problem(t, problem)
        case ("cluster", tuple(held)):
            metrics.cluster(view(tuple(str(h) for h in held)), TARGETS)


def view(held: tuple[str, ...]) -> ClusterView:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    me = MemberView("host/1/boot/start", "host", 1, now, now, True, held)
    return ClusterView("host/1/boot/start", 30.0, held, (me,), {}, {}, True, now)


def page(text: str, names: set[str]) -> dict[str, tuple[str, str, set[tuple[object, ...]]]]:
    """name -> (type, help, samples as (name, sorted labels, value or "time"))."""
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name not in names:
            continue
        samples = {
            (
                s.name,
                tuple(sorted(s.labels.items())),
                "time" if any(t in s.name for t in TIMES) else s.value,
            )
            for s in family.samples
        }
        out[family.name] = (family.type, family.documentation, samples)
    return out


decimals = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal("99999.99999"), places=5)
quote = st.builds(
    lambda pair, rate, change: Quote(pair, pair[:3], "USD", rate, change),
    st.sampled_from(PAIRS),
    decimals,
    st.none() | st.decimals(min_value=-100, max_value=100, places=2),
)
snapshots = st.none() | st.lists(quote, max_size=3, unique_by=lambda q: q.pair).map(
    lambda qs: Snapshot(tuple(qs))
)
targets = st.sampled_from(TARGETS)
seconds = st.floats(min_value=-1, max_value=200, allow_nan=False) | st.sampled_from(
    [*CHECK_BUCKETS, *LATE_BUCKETS]
).map(float)
operations = st.one_of(
    st.tuples(
        st.just("check"), targets, st.sampled_from(["observed", "not_modified", "error"]), seconds
    ),
    st.tuples(st.just("event"), targets, st.sampled_from(["rate_changed", "change_pct_changed"])),
    st.tuples(st.just("quotes"), targets, snapshots),
    st.tuples(st.just("late"), targets, seconds),
    st.tuples(st.just("problem"), targets, st.sampled_from(["missed", "error"])),
    st.tuples(st.just("cluster"), st.lists(targets, unique=True).map(tuple)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(operations, max_size=30))
def test_the_page_is_what_prometheus_clients_own_series_would_show(
    ops: list[tuple[object, ...]],
) -> None:
    metrics, oracle = Metrics(), Oracle()
    for op in ops:
        feed(metrics, op)
        oracle.apply(op)
    text = generate_latest(oracle.registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    want = page(text, names)
    rendered = metrics.render()
    assert page(rendered.decode(), names) == want
    assert rendered == generate_latest(metrics.registry)  # the library's writer, byte for byte


def test_label_values_are_escaped_as_the_librarys_writer_escapes_them() -> None:
    metrics = Metrics()
    for name in ('a"quoted"', "back\\slash", "new\nline", "ünï/cødé"):
        metrics.check_done(name, "observed", 0.02)
        metrics.quotes(name, Snapshot((Quote("KGS/USD", "KGS", "USD", Decimal("1e6")),)))
    rendered = metrics.render()
    assert rendered == generate_latest(metrics.registry)
    targets = {
        s.labels["target"]
        for f in text_string_to_metric_families(rendered.decode())
        if f.name == "ticker_rate"
        for s in f.samples
    }
    assert targets == {'a"quoted"', "back\\slash", "new\nline", "ünï/cødé"}


def test_a_rate_is_the_pages_decimal_as_a_float_and_gone_pairs_disappear() -> None:
    metrics = Metrics()
    first = Snapshot(
        (
            Quote("KGS/USD", "KGS", "USD", Decimal("87.4500"), Decimal("-0.14")),
            Quote("TMT/USD", "TMT", "USD", Decimal("0.28575")),
        )
    )
    metrics.quotes("timesca", first)
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    rates = {s.labels["pair"]: s.value for s in families["ticker_rate"].samples}
    assert rates == {"KGS/USD": 87.45, "TMT/USD": 0.28575}
    assert [s.labels["pair"] for s in families["ticker_change_pct"].samples] == ["KGS/USD"]
    metrics.quotes("timesca", Snapshot((first.quotes[1],)))
    text = metrics.render().decode()
    assert 'pair="KGS/USD"' not in text
    assert 'ticker_rate{pair="TMT/USD",target="timesca"} 0.28575' in text
    metrics.quotes("timesca", None)
    assert "ticker_rate{" not in metrics.render().decode()


def test_two_daemons_metrics_share_nothing() -> None:
    one, two = Metrics(), Metrics()
    one.check_done("timesca", "observed", 0.1)
    assert 'target="timesca"' in one.render().decode()
    assert 'target="timesca"' not in two.render().decode()


def test_a_scrape_in_another_thread_while_series_are_added_sees_whole_series() -> None:
    """``/metrics`` renders in a thread while the loop adds targets: no "changed size during
    iteration", and every histogram on every page is consistent (its count is its +Inf bucket and
    the buckets never decrease)."""
    metrics = Metrics()
    pages: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def scrape() -> None:
        try:
            while not stop.is_set() or not pages:
                pages.append(metrics.render().decode())
        except Exception as exc:  # noqa: BLE001 (the assertion below shows it)
            errors.append(exc)

    thread = threading.Thread(target=scrape)
    thread.start()
    for i in range(3000):
        metrics.check_done(f"t{i}", "observed", 0.02)
        metrics.late(f"t{i}", 0.003)
    stop.set()
    thread.join()
    pages.append(metrics.render().decode())
    assert errors == []
    for text in pages:
        for family in text_string_to_metric_families(text):
            if family.type != "histogram":
                continue
            by_target: dict[str, list[float]] = {}
            counts: dict[str, float] = {}
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    by_target.setdefault(s.labels["target"], []).append(s.value)
                elif s.name.endswith("_count"):
                    counts[s.labels["target"]] = s.value
            for target, buckets in by_target.items():
                assert buckets == sorted(buckets)
                assert counts[target] == buckets[-1] == 1.0
    assert 'ticker_monitor_checks_total{outcome="observed",target="t2999"} 1.0' in pages[-1]
