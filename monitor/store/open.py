"""Pick the store backend from the ``[monitor] database`` URL, by its scheme.

- ``sqlite:///var/state.db`` — a file relative to the current directory (three slashes);
- ``sqlite:////srv/monitor/state.db`` — an absolute path (four slashes);
- ``sqlite:///:memory:`` — an in-memory database (tests; lost at exit);
- ``postgresql://user:password@host:5432/dbname?sslmode=verify-full`` (or ``postgres://``) —
  PostgreSQL, for several instances on one database; any libpq parameter may follow the ``?``
  (``monitor.store.postgres`` lists the useful ones).

:data:`BACKENDS` is the registry: URL scheme → a function that builds the (not yet open) store.
Adding a backend is one module and one line there. The URL may carry a password, so no error
message here ever repeats it. Nothing touches the disk until the store's ``open()``, which also
creates the file's parent directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from monitor.errors import StoreError
from monitor.store import ClusterStore

__all__ = ["BACKENDS", "open_store", "scheme_of"]


def _sqlite(dsn: str) -> ClusterStore:
    from monitor.store.sqlite import SqliteStore  # noqa: PLC0415 -- only the chosen backend loads

    path = dsn.removeprefix("sqlite:///")
    if not dsn.startswith("sqlite:///") or not path:
        raise StoreError("database: sqlite:/// needs a file path, e.g. sqlite:///var/state.db")
    if path == ":memory:":
        return SqliteStore(path)
    # Resolved now, so a later change of directory cannot move the database.
    return SqliteStore(Path(path).absolute())


def _postgres(dsn: str) -> ClusterStore:
    from monitor.store.postgres import PostgresStore  # noqa: PLC0415 -- only the chosen backend loads

    return PostgresStore(dsn)


#: URL scheme → the backend that opens it
BACKENDS: Mapping[str, Callable[[str], ClusterStore]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
}

_HINT = "expected sqlite:///PATH or postgresql://... (value not shown)"


def scheme_of(dsn: str) -> str:
    """The URL's scheme, lower case (``""`` when there is none)."""
    scheme, sep, _ = dsn.partition("://")
    return scheme.lower() if sep else ""


def open_store(dsn: str) -> ClusterStore:
    """Build (not yet open) the store named by ``dsn``; raise ``StoreError`` for an unusable one."""
    backend = BACKENDS.get(scheme_of(dsn))
    if backend is None:
        raise StoreError(f"database: {_HINT}")
    return backend(dsn)
