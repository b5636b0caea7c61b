"""directory generation: also raised by the columns SOAP's cached reads of domains and users return

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 18:40:00.000000

Store.fetch_directory answers a read again from memory while the generation has not moved, so every
column such a read returns must raise it: a domain's primary administrator (GetDomainSettings'
read, GetPrimaryDomainAdmin) and a user's names and administrator flag (GetUser, GetUsers), beside
0007's columns. None of them is written per login or per message.
"""
from alembic import op

revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None

# table -> (0007's columns, the columns added here)
_COLUMNS = {
    'domains': (('name', 'path', 'settings'), ('primary_admin',)),
    'users': (('domain_id', 'name', 'settings', 'forwarding_addresses', 'delete_on_forward', 'autoresponder_enabled'),
              ('first_name', 'last_name', 'is_domain_admin')),
}
_BUMP = "UPDATE directory_generation SET generation = generation + 1 WHERE id = 1"


def _watch_updates(table: str, columns: tuple[str, ...]) -> None:
    """Replace `table`'s trigger on UPDATE (0007's) with one on UPDATE OF `columns`."""
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"DROP TRIGGER {table}_directory_changed ON {table}")
        op.execute(f"CREATE TRIGGER {table}_directory_changed AFTER INSERT OR DELETE OR UPDATE OF "
                   f"{', '.join(columns)} ON {table} FOR EACH STATEMENT "
                   f"EXECUTE FUNCTION mailsrv_directory_changed()")
    else:
        op.execute(f"DROP TRIGGER {table}_update_directory_changed")
        op.execute(f"CREATE TRIGGER {table}_update_directory_changed "
                   f"AFTER UPDATE OF {', '.join(columns)} ON {table} BEGIN {_BUMP}; END")


def upgrade() -> None:
    for table, (watched, added) in _COLUMNS.items():
        _watch_updates(table, watched + added)


def downgrade() -> None:
    for table, (watched, _) in _COLUMNS.items():
        _watch_updates(table, watched)
