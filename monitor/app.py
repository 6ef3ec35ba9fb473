"""The builder: every part the daemon and the commands run, built from ``Settings`` in one place.

:func:`build_app` is the composition root. It picks the store backend by the database URL's scheme
(``monitor.store.open.BACKENDS``), builds each sink through its type's factory
(``monitor.sinks.registry.SINK_TYPES``), and wires the fetcher, checker and deliverer together.
It opens nothing: the daemon opens the store (and joins its cluster) when it starts and
:meth:`App.aclose` releases everything. Commands that need only a part use :func:`store_for` or
:func:`open_sinks`, so they build it exactly as the daemon does.

Nothing here is global: two apps in one process (as the tests do) share nothing, the Prometheus
registry included.
"""

from __future__ import annotations

import contextlib
import random
import ssl
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

import httpx

from monitor.check import Checker, TargetPlan
from monitor.cluster import Cluster, ClusterPolicy
from monitor.detect import policy_for
from monitor.fetch import DEFAULT_TIMEOUT, Fetcher, FetchPolicy
from monitor.metrics import Metrics
from monitor.outbox import Deliverer, RetryPolicy
from monitor.owner import Owner, is_dead, this_process
from monitor.route import routes_from_settings
from monitor.settings import Settings, TargetConfig
from monitor.sinks import Sink, SinkDeps
from monitor.sinks.registry import build_sinks
from monitor.store import ClusterStore
from monitor.store.group import GroupCommit
from monitor.store.open import open_store
from monitor.transport import CookielessClient, aiohttp_transport

__all__ = ["App", "build_app", "open_sinks", "plan_target", "store_for", "utc_now"]


def utc_now() -> datetime:
    return datetime.now(UTC)


def plan_target(settings: Settings, target: TargetConfig) -> TargetPlan:
    """A target's settings turned into what its checks need, computed once."""
    headers = dict(target.headers)
    if target.user_agent:  # else the fetcher sends the global one
        headers["User-Agent"] = target.user_agent
    # a check must end before the next one is due
    timeout = min(DEFAULT_TIMEOUT, target.interval) if target.timeout is None else target.timeout
    return TargetPlan(
        config=target,
        grammar=target.grammar(),
        fetch_policy=FetchPolicy(
            timeout=timeout,
            max_bytes=target.max_bytes,
            attempts=target.retries + 1,
        ),
        detect_policy=policy_for(target, settings.rules, settings.rule_names()),
        headers=headers,
    )


def plans_for(settings: Settings) -> tuple[TargetPlan, ...]:
    """Every target's plan under the configured rules."""
    return tuple(plan_target(settings, t) for t in settings.targets)


def store_for(settings: Settings) -> ClusterStore:
    """The (not yet open) store the configuration names."""
    return open_store(settings.monitor.database.get_secret_value())


@dataclass(frozen=True, slots=True)
class App:
    """Everything one daemon runs. Built by :func:`build_app`; closed by :meth:`aclose`."""

    settings: Settings
    clock: Callable[[], datetime]
    metrics: Metrics
    store: ClusterStore
    #: the HTTP sinks' shared client
    http: httpx.AsyncClient
    sinks: Mapping[str, Sink]
    fetcher: Fetcher
    deliverer: Deliverer
    checker: Checker
    #: the checks' commits, grouped into shared transactions
    commits: GroupCommit
    plans: tuple[TargetPlan, ...]
    #: who claims outbox rows: this life of this process (``monitor.owner``)
    owner: Owner
    #: this daemon's membership of its store's cluster (which targets it checks)
    cluster: Cluster

    def lease_is_over(self, owner: str) -> bool:
        """Is ``owner`` (an outbox row's lease holder) a life of this host that has ended?"""
        return is_dead(owner, me=self.owner)

    async def aclose(self) -> None:
        """Close the sinks, the HTTP clients and the store (each once; errors do not stop it)."""
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                await sink.aclose()
        await self.fetcher.aclose()
        await self.http.aclose()
        await self.commits.aclose()
        await self.store.aclose()


def _sink_client() -> httpx.AsyncClient:
    # an alert carries no receiver's session (and a response's Set-Cookie is not even read)
    return CookielessClient(
        timeout=httpx.Timeout(15.0, connect=5.0),
        follow_redirects=False,
        transport=aiohttp_transport(),
    )


async def build_app(
    settings: Settings,
    *,
    clock: Callable[[], datetime] = utc_now,
    rng: random.Random | None = None,
    stdout: TextIO | None = None,
    smtp_tls_context: ssl.SSLContext | None = None,
) -> App:
    """Build every part from ``settings``; raise ``ConfigError`` or ``StoreError`` when a part
    cannot be built (what was built before it is released first)."""
    store = store_for(settings)
    http = _sink_client()
    try:
        sinks = await build_sinks(
            settings.sinks, SinkDeps(http=http, stdout=stdout, smtp_tls_context=smtp_tls_context)
        )
    except BaseException:
        await http.aclose()
        raise
    metrics = Metrics()
    owner = this_process()
    fetcher = Fetcher(
        user_agent=settings.monitor.user_agent, max_per_host=settings.monitor.max_per_host
    )
    d = settings.delivery
    deliverer = Deliverer(
        store,
        sinks,
        policy=RetryPolicy(
            max_age=d.max_age,
            max_attempts=d.max_attempts,
            backoff_initial=d.backoff_initial,
            backoff_max=d.backoff_max,
            lease=d.lease,
            batch_size=d.batch_size,
        ),
        owner=str(owner),
        clock=clock,
        rng=rng,
        on_result=metrics.delivery,
        on_delivered=metrics.delivered,
        on_store_error=metrics.store_error,
    )
    commits = GroupCommit(store)
    checker = Checker(
        store=store,
        commits=commits,
        fetcher=fetcher,
        routes=routes_from_settings(settings.rules, settings.rule_names()),
        on_committed=deliverer.wake,
        clock=clock,
        metrics=metrics,
        max_concurrent=settings.monitor.max_concurrent_checks,
    )
    cluster = Cluster(
        store,
        me=owner,
        targets=[t.name for t in settings.targets],
        policy=ClusterPolicy(
            lease=settings.cluster.lease, forget_after=settings.cluster.forget_after
        ),
        clock=clock,
        is_over=lambda member: is_dead(member, me=owner),
    )
    return App(
        settings=settings,
        clock=clock,
        metrics=metrics,
        store=store,
        http=http,
        sinks=sinks,
        fetcher=fetcher,
        deliverer=deliverer,
        checker=checker,
        commits=commits,
        plans=plans_for(settings),
        owner=owner,
        cluster=cluster,
    )


@contextlib.asynccontextmanager
async def open_sinks(
    settings: Settings, names: Collection[str] | None = None
) -> AsyncIterator[dict[str, Sink]]:
    """The configured sinks (or only ``names``), built as the daemon builds them, closed after."""
    configs = {n: c for n, c in settings.sinks.items() if names is None or n in names}
    async with _sink_client() as http:
        sinks = await build_sinks(configs, SinkDeps(http=http))
        try:
            yield sinks
        finally:
            for sink in sinks.values():
                await sink.aclose()
