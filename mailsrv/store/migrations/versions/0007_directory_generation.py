"""directory_generation (raised by triggers) and maildir_renames: SMTP's cached lookups and direct delivery

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 06:30:00.000000

The triggers fire on what mailsrv.mta.recipients.Resolver reads, and only on that: never on
columns written per login or per message (logins live in user_logins, counters in traffic_daily),
so mail traffic never invalidates the caches.
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# table -> the columns an UPDATE of which changes a lookup's answer (INSERT and DELETE always do)
WATCHED = {
    'domains': ('name', 'path', 'settings'),
    'users': ('domain_id', 'name', 'settings', 'forwarding_addresses', 'delete_on_forward',
              'autoresponder_enabled'),
    'aliases': ('domain_id', 'name', 'addresses'),
    'domain_aliases': ('domain_id', 'name'),
    'server_settings': ('key', 'value'),  # the SPF policies read at every DATA (mailsrv.mta.intake)
}
_BUMP = "UPDATE directory_generation SET generation = generation + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table('directory_generation',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('generation', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.execute("INSERT INTO directory_generation (id, generation) VALUES (1, 0)")
    op.create_table('maildir_renames',
                    sa.Column('name', sa.String(length=255), nullable=False),
                    sa.Column('maildir', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('name'))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"CREATE OR REPLACE FUNCTION mailsrv_directory_changed() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {_BUMP}; RETURN NULL; END $$")
        for table, columns in WATCHED.items():
            # Per statement: a bulk change raises the number once.
            op.execute(f"CREATE TRIGGER {table}_directory_changed AFTER INSERT OR DELETE OR UPDATE OF "
                       f"{', '.join(columns)} ON {table} FOR EACH STATEMENT "
                       f"EXECUTE FUNCTION mailsrv_directory_changed()")
    else:  # SQLite has row triggers only
        for table, columns in WATCHED.items():
            for event in ('INSERT', 'DELETE', f"UPDATE OF {', '.join(columns)}"):
                op.execute(f"CREATE TRIGGER {table}_{event.split()[0].lower()}_directory_changed "
                           f"AFTER {event} ON {table} BEGIN {_BUMP}; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for table in WATCHED:
            op.execute(f"DROP TRIGGER {table}_directory_changed ON {table}")
        op.execute("DROP FUNCTION mailsrv_directory_changed()")
    else:
        for table in WATCHED:
            for event in ('insert', 'delete', 'update'):
                op.execute(f"DROP TRIGGER {table}_{event}_directory_changed")
    op.drop_table('maildir_renames')
    op.drop_table('directory_generation')
