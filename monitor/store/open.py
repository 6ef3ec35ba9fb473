"""Pick the store backend from the ``[monitor] database`` URL.

- ``sqlite:///var/state.db`` — a file relative to the current directory (three slashes);
- ``sqlite:////srv/monitor/state.db`` — an absolute path (four slashes);
- ``sqlite:///:memory:`` — an in-memory database (tests; lost at exit);
- ``postgresql://...`` / ``postgres://...`` — PostgreSQL (not available yet).

The URL may carry a password, so no error message here ever repeats it. Nothing touches the disk
until the store's ``open()``, which also creates the file's parent directory.
"""

from __future__ import annotations

from pathlib import Path

from monitor.errors import StoreError
from monitor.store import Store
from monitor.store.sqlite import SqliteStore

_SQLITE = "sqlite:///"


def open_store(dsn: str) -> Store:
    """Build (not yet open) the store named by ``dsn``; raise ``StoreError`` for an unusable one."""
    if dsn.startswith(_SQLITE):
        path = dsn.removeprefix(_SQLITE)
        if not path:
            raise StoreError("database: sqlite:/// needs a file path, e.g. sqlite:///var/state.db")
        if path == ":memory:":
            return SqliteStore(path)
        # Resolved now, so a later change of directory cannot move the database.
        return SqliteStore(Path(path).absolute())
    if dsn.startswith(("postgresql://", "postgres://")):
        raise StoreError("PostgreSQL support is not available yet")
    raise StoreError("database: expected sqlite:///PATH or postgresql://... (value not shown)")


__all__ = ["open_store"]
