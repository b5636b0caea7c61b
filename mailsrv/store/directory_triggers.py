"""Triggers that raise the directory generation (migration 0007) on every change of a table, for the
migrations of tables whose rows feed the per-process caches keyed on it (mailsrv.mta.recipients,
mailsrv.directory.address_lists…). Migrations call these, so what they create must never change:
a new kind of trigger gets new functions."""
from __future__ import annotations

from alembic import op

_BUMP = "UPDATE directory_generation SET generation = generation + 1 WHERE id = 1"
_EVENTS = ("insert", "delete", "update")


def watch(table: str) -> None:
    """Any INSERT, DELETE or UPDATE of `table` raises the generation (once per statement on
    PostgreSQL, through 0007's function; per row on SQLite, which has no statement triggers)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {table}_directory_changed AFTER INSERT OR DELETE OR UPDATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION mailsrv_directory_changed()")
    else:
        for event in _EVENTS:
            op.execute(f"CREATE TRIGGER {table}_{event}_directory_changed "
                       f"AFTER {event.upper()} ON {table} BEGIN {_BUMP}; END")


def unwatch(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER {table}_directory_changed ON {table}")
    else:
        for event in _EVENTS:
            op.execute(f"DROP TRIGGER {table}_{event}_directory_changed")
