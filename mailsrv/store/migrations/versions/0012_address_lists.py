"""ip_list_entries and name_list_entries: the server's address lists, watched by the directory generation

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 09:15:00.000000

Every change raises directory_generation (migration 0007's trigger function on PostgreSQL): the lists
are read at connect, MAIL and RCPT from a per-process snapshot kept under that number
(mailsrv.directory.address_lists), and the forwarding blacklist changes what the cached recipient
lookups answer (mailsrv.mta.recipients).
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

TABLES = ('ip_list_entries', 'name_list_entries')
_BUMP = "UPDATE directory_generation SET generation = generation + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table('ip_list_entries',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('list', sa.String(length=16), nullable=False),
                    sa.Column('ip_address', sa.String(length=64), nullable=False),
                    sa.Column('range_start', sa.String(length=45), nullable=False),
                    sa.Column('range_end', sa.String(length=45), nullable=False),
                    sa.Column('first', sa.String(length=45), nullable=False),
                    sa.Column('last', sa.String(length=45), nullable=False),
                    sa.Column('smtp', sa.Boolean(), nullable=False),
                    sa.Column('pop', sa.Boolean(), nullable=False),
                    sa.Column('imap', sa.Boolean(), nullable=False),
                    sa.Column('xmpp', sa.Boolean(), nullable=False),
                    sa.Column('disable_greylisting', sa.Boolean(), nullable=False),
                    sa.Column('description', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('list', 'first', 'last'))
    op.create_table('name_list_entries',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('list', sa.String(length=16), nullable=False),
                    sa.Column('name', sa.String(length=320), nullable=False),
                    sa.Column('description', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('list', 'name'))
    if op.get_bind().dialect.name == 'postgresql':
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_directory_changed AFTER INSERT OR DELETE OR UPDATE ON {table} "
                       f"FOR EACH STATEMENT EXECUTE FUNCTION mailsrv_directory_changed()")
    else:
        for table in TABLES:
            for event in ('INSERT', 'DELETE', 'UPDATE'):
                op.execute(f"CREATE TRIGGER {table}_{event.lower()}_directory_changed "
                           f"AFTER {event} ON {table} BEGIN {_BUMP}; END")


def downgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == 'postgresql':
            op.execute(f"DROP TRIGGER {table}_directory_changed ON {table}")
        else:
            for event in ('insert', 'delete', 'update'):
                op.execute(f"DROP TRIGGER {table}_{event}_directory_changed")
        op.drop_table(table)
