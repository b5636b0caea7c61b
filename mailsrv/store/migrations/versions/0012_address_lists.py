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

from mailsrv.store.directory_triggers import unwatch, watch

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

TABLES = ('ip_list_entries', 'name_list_entries')


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
    for table in TABLES:
        watch(table)


def downgrade() -> None:
    for table in TABLES:
        unwatch(table)
        op.drop_table(table)
