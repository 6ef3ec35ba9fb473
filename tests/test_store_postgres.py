"""The PostgreSQL store on the real server: what only it does, beyond the contract suite.

Its leases follow the database's clock (not the callers'), its claims skip rows another
transaction holds instead of waiting, its times are ``timestamptz``, its TLS options reach libpq,
and no failure shows the URL or its password. Every test skips, saying why, without
``MONITOR_TEST_POSTGRES_DSN``; the TLS ones also need ``MONITOR_TEST_POSTGRES_CA`` (the server's
certificate, which ``.ci/run`` makes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
import trustme

from monitor.errors import StoreError
from monitor.models import TargetState, Validators
from monitor.settings import load_settings, secret_values
from monitor.store.open import open_store
from monitor.store.postgres import SCHEMA_VERSION, PostgresStore
from monitor.store.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from tests.store_backends import Clock, PostgresBackend, postgres_dsn
from tests.test_store_contract import delivery

pytestmark = pytest.mark.postgres

CA_VAR = "MONITOR_TEST_POSTGRES_CA"


@pytest.fixture
async def backend() -> AsyncIterator[PostgresBackend]:
    made = PostgresBackend(Clock(), postgres_dsn())
    await made.create_schema()
    try:
        yield made
    finally:
        await made.cleanup()


def replace_url(
    dsn: str,
    *,
    password: str | None = None,
    port: int | None = None,
    dbname: str | None = None,
    query: str | None = None,
) -> str:
    """``dsn`` with some parts changed (the password percent-encoded as a user must)."""
    parts = urlsplit(dsn)
    user = parts.username or ""
    secret = parts.password if password is None else quote(password, safe="")
    host = parts.hostname or "127.0.0.1"
    userinfo = f"{user}:{secret}" if secret else user
    netloc = f"{userinfo}@{host}:{port or parts.port or 5432}"
    path = parts.path if dbname is None else f"/{dbname}"
    return urlunsplit((parts.scheme, netloc, path, parts.query if query is None else query, ""))


def secrets_for(dsn: str, tmp_path: Path) -> list[str]:
    """What the settings call secret for a configuration with this database URL."""
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[monitor]\ndatabase = "{dsn}"\n[[targets]]\nname = "t"\nurl = "http://127.0.0.1:1/"\n',
        encoding="utf-8",
    )
    return secret_values(load_settings(config))


def test_the_schema_versions_match_sqlite() -> None:
    assert SCHEMA_VERSION == SQLITE_SCHEMA_VERSION


async def test_open_store_opens_a_postgresql_url(backend: PostgresBackend) -> None:
    for scheme in ("postgresql", "postgres"):
        store = open_store(backend.dsn.replace("postgresql://", f"{scheme}://", 1))
        assert isinstance(store, PostgresStore)
        await store.open()
        try:
            assert await store.load_target("x") is not None
        finally:
            await store.aclose()


async def test_every_time_column_is_timestamptz(backend: PostgresBackend) -> None:
    await (await _opened(backend)).aclose()
    async with backend.raw() as conn:
        cur = await conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND (column_name LIKE '%%\\_at' OR column_name LIKE"
            " '%%\\_until' OR column_name = 'last_heartbeat')",
            (backend.schema,),
        )
        columns = await cur.fetchall()
    assert {(table, column) for table, column, _ in columns} == {
        ("schema_migrations", "applied_at"),
        ("targets", "updated_at"),
        ("observations", "observed_at"),
        *(
            ("outbox", c)
            for c in ("created_at", "next_attempt_at", "lease_until", "sent_at", "updated_at")
        ),
        ("instances", "started_at"),
        ("instances", "last_heartbeat"),
        ("target_leases", "lease_until"),
        ("target_checks", "checked_at"),
        *(("silences", c) for c in ("starts_at", "ends_at", "created_at", "updated_at")),
    }
    assert {t for _, _, t in columns} == {"timestamp with time zone"}, columns


async def _opened(backend: PostgresBackend) -> PostgresStore:
    store = backend.store()
    assert isinstance(store, PostgresStore)
    await store.open()
    return store


# --- the database's clock -----------------------------------------------------------------------


async def test_leases_follow_the_database_clock_not_the_callers(backend: PostgresBackend) -> None:
    # Stores without an injected clock: the server's clock_timestamp family decides.
    a = PostgresStore(backend.dsn)
    b = PostgresStore(backend.dsn)
    await a.open()
    await b.open()
    try:
        host_now = datetime.now(UTC)
        await a.commit_check(
            "t",
            state=TargetState(),
            validators=Validators(),
            observed=None,
            observed_at=host_now,
            deliveries=[delivery(1), delivery(2)],
        )
        claimed = await a.claim("slack", now=host_now, limit=10, lease=60, owner="A")
        assert len(claimed) == 2
        # B's host clock runs a year ahead: to the database A's lease is still live
        skewed = host_now + timedelta(days=365)
        assert await b.claim("slack", now=skewed, limit=10, lease=60, owner="B") == []
        assert await a.acquire_target("t", owner="A", lease=60, now=host_now) is not None
        assert await b.acquire_target("t", owner="B", lease=60, now=skewed) is None
        # a caller whose clock is a year behind still takes a lease of 60 s on the database's clock
        await a.release([d.id for d in claimed])
        claimed = await a.claim(
            "slack", now=host_now - timedelta(days=365), limit=1, lease=60, owner="A"
        )
        assert len(claimed) == 1
        assert await b.claim("slack", now=skewed, limit=10, lease=60, owner="B") == []
        # next_due is in the caller's time: the lease ends about 60 s from now
        due = await a.next_due("slack")
        assert due is not None
        assert timedelta(seconds=50) < due - datetime.now(UTC) <= timedelta(seconds=60)
        # a retry 30 s after a "now" from 2001 is due 30 s from the database's now
        old = datetime(2001, 1, 1, tzinfo=UTC)
        await a.mark_retry(
            [claimed[0].id], now=old, next_attempt_at=old + timedelta(seconds=30), error="503"
        )
        assert await a.claim("slack", now=skewed, limit=10, lease=60, owner="A") == []
        due = await a.next_due("slack")
        assert due is not None
        assert timedelta(seconds=20) < due - datetime.now(UTC) <= timedelta(seconds=30)
        await a.register("A", host="h", pid=1, now=old)
        (member,) = await a.members()
        assert abs(member.last_heartbeat - datetime.now(UTC)) < timedelta(minutes=5)
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_claim_skips_a_head_another_transaction_holds_without_waiting(
    backend: PostgresBackend,
) -> None:
    store = await _opened(backend)
    clock = backend.clock
    await store.commit_check(
        "t",
        state=TargetState(),
        validators=Validators(),
        observed=None,
        observed_at=clock(),
        deliveries=[delivery(1), delivery(2)],
    )
    async with backend.raw() as conn, conn.transaction():
        # another instance is in the middle of claiming (or marking) the head row
        await conn.execute("SELECT id FROM outbox ORDER BY id LIMIT 1 FOR UPDATE")
        async with asyncio.timeout(10):  # a blocking claim would wait for ever
            assert await store.claim("slack", now=clock(), limit=10, lease=60, owner="B") == []
            assert await store.next_due("slack") == clock()
    claimed = await store.claim("slack", now=clock(), limit=10, lease=60, owner="B")
    assert len(claimed) == 2


# --- secrets ------------------------------------------------------------------------------------

PASSWORD = "Pa55w0rd-not-the-real-one/@x"


def _scenarios(dsn: str) -> dict[str, tuple[str, str]]:
    """name -> (URL, what the message must say)."""
    return {
        "wrong password": (replace_url(dsn, password=PASSWORD), "password authentication failed"),
        "unreachable": (replace_url(dsn, password=PASSWORD, port=1), "refused"),
        "no such database": (
            replace_url(dsn, dbname="no_such_db_for_monitor_tests"),
            "does not exist",
        ),
        "password in the query": (
            replace_url(dsn, password="", query=f"password={quote(PASSWORD, safe='')}"),
            "password authentication failed",
        ),
    }


@pytest.mark.parametrize(
    "scenario", ["wrong password", "unreachable", "no such database", "password in the query"]
)
async def test_a_failed_open_says_why_in_one_line_without_a_secret(
    backend: PostgresBackend,
    scenario: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, says = _scenarios(postgres_dsn())[scenario]
    secrets = secrets_for(url, tmp_path)
    assert secrets  # the URL, and its password where it has one
    store = open_store(url)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(StoreError) as info:
        await store.open()
    message = str(info.value)
    assert says in message
    assert message.startswith("cannot open the database 127.0.0.1:")
    assert "\n" not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__  # no psycopg error rides along into a traceback
    for text in (message, repr(store), caplog.text):
        for secret in [*secrets, PASSWORD, quote(PASSWORD, safe="")]:
            assert secret not in text, (scenario, text)
    with pytest.raises(StoreError, match="not open"):
        await store.load_target("t")


def test_a_malformed_url_is_refused_without_quoting_it() -> None:
    # libpq's own message would quote the bad token: here, the password
    with pytest.raises(StoreError) as info:
        PostgresStore("postgresql://monitor:se%ZZcret-pw@127.0.0.1/monitor")
    assert str(info.value) == "database: not a valid PostgreSQL URL (value not shown)"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_repr_shows_where_and_never_who() -> None:
    store = PostgresStore(f"postgresql://monitor:{quote(PASSWORD, safe='')}@db.internal:5433/state")
    assert repr(store) == "PostgresStore(db.internal:5433/state)"


async def test_a_failing_statement_is_a_store_error_without_secrets(
    backend: PostgresBackend,
) -> None:
    store = await _opened(backend)
    async with backend.raw() as conn:
        await conn.execute("DROP TABLE outbox CASCADE")
    with pytest.raises(StoreError) as info:
        await store.outbox_counts()
    message = str(info.value)
    assert re.fullmatch(
        r'outbox_counts: postgresql UndefinedTable: relation "outbox" does not exist', message
    )
    assert "monitor:monitor@" not in message


# --- TLS ----------------------------------------------------------------------------------------


def _server_ca() -> str:
    ca = os.environ.get(CA_VAR, "")
    if not ca:
        pytest.skip(
            f"TLS tests need the server's certificate in {CA_VAR} "
            "(.ci/run turns TLS on in the test server and sets it)"
        )
    return ca


async def test_verify_full_with_the_servers_ca_connects_over_tls(
    backend: PostgresBackend,
) -> None:
    ca = _server_ca()
    name = f"monitor-tls-{backend.schema}"
    dsn = f"{backend.dsn}&sslmode=verify-full&sslrootcert={quote(ca)}&application_name={name}"
    store = PostgresStore(dsn)
    await store.open()
    try:
        await store.load_target("t")
        async with backend.raw() as conn:
            cur = await conn.execute(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)"
                " WHERE a.application_name = %s",
                (name,),
            )
            found = await cur.fetchall()
        assert found
        assert all(ssl for (ssl,) in found)
    finally:
        await store.aclose()


async def test_a_certificate_from_another_ca_is_refused(
    backend: PostgresBackend, tmp_path: Path
) -> None:
    _server_ca()
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    store = PostgresStore(f"{backend.dsn}&sslmode=verify-full&sslrootcert={quote(str(other))}")
    with pytest.raises(StoreError, match="certificate verify failed") as info:
        await store.open()
    assert "monitor:monitor@" not in str(info.value)


async def test_the_search_path_option_puts_the_tables_in_a_schema(
    backend: PostgresBackend,
) -> None:
    # the way the contract suite isolates tests is also how a user shares a database
    await (await _opened(backend)).aclose()
    async with backend.raw() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name IN ('outbox', 'targets', 'schema_migrations')",
            (backend.schema,),
        )
        row = await cur.fetchone()
    assert row is not None
    assert row[0] == 3
