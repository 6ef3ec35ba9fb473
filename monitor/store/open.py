"""Pick the store backend from the ``[monitor] database`` URL, by its scheme.

- ``sqlite:///var/state.db`` — a file relative to the current directory (three slashes);
- ``sqlite:////srv/monitor/state.db`` — an absolute path (four slashes);
- ``sqlite:///:memory:`` — an in-memory database (tests; lost at exit);
- ``postgresql://...`` / ``postgres://...`` — PostgreSQL (not available yet).

:data:`BACKENDS` is the registry: URL scheme → a function that builds the (not yet open) store.
Adding a backend is one module and one line there. The URL may carry a password, so no error
message here ever repeats it. Nothing touches the disk until the store's ``open()``, which also
creates the file's parent directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from monitor.errors import StoreError
from monitor.store import Store

__all__ = ["BACKENDS", "open_store", "scheme_of"]


def _sqlite(dsn: str) -> Store:
    from monitor.store.sqlite import SqliteStore  # noqa: PLC0415 -- only the chosen backend loads

    path = dsn.removeprefix("sqlite:///")
    if not dsn.startswith("sqlite:///") or not path:
        raise StoreError("database: sqlite:/// needs a file path, e.g. sqlite:///var/state.db")
    if path == ":memory:":
        return SqliteStore(path)
    # Resolved now, so a later change of directory cannot move the database.
    return SqliteStore(Path(path).absolute())


#: URL scheme → the backend that opens it
BACKENDS: Mapping[str, Callable[[str], Store]] = {"sqlite": _sqlite}

_HINT = "expected sqlite:///PATH (value not shown)"


def scheme_of(dsn: str) -> str:
    """The URL's scheme, lower case (``""`` when there is none)."""
    scheme, sep, _ = dsn.partition("://")
    return scheme.lower() if sep else ""


def open_store(dsn: str) -> Store:
    """Build (not yet open) the store named by ``dsn``; raise ``StoreError`` for an unusable one."""
    scheme = scheme_of(dsn)
    backend = BACKENDS.get(scheme)
    if backend is None:
        if scheme in ("postgresql", "postgres"):
            raise StoreError("database: the PostgreSQL store is not available in this version")
        raise StoreError(f"database: {_HINT}")
    return backend(dsn)
