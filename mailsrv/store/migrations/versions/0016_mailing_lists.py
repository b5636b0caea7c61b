"""mailing_lists and list_members: the mailing lists of svcMailListAdmin and who is on them

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 10:30:00.000000

A list's name is its local part in its domain. `list_members` holds every address list of a list,
told apart by `kind`: subscribers, digest subscribers, the poster whitelist and the poster kill list.
Changes to `mailing_lists` raise the directory generation (migration 0007's trigger function on
PostgreSQL) because SMTP's cached recipient lookups answer for list addresses; `list_members` is
not watched: a 100,000-address replace must not raise it per row, and posting reads members when it
expands a post, not from the cache.
"""
import sqlalchemy as sa
from alembic import op

from mailsrv.store.directory_triggers import unwatch, watch

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mailing_lists',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('domain_id', sa.Integer(), nullable=False),
                    sa.Column('name', sa.String(length=64), nullable=False),
                    sa.Column('moderator', sa.String(length=320), nullable=False),
                    sa.Column('description', sa.Text(), nullable=False),
                    sa.Column('settings', sa.JSON(), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('domain_id', 'name'))
    op.create_table('list_members',
                    sa.Column('list_id', sa.Integer(), nullable=False),
                    sa.Column('kind', sa.String(length=16), nullable=False),
                    sa.Column('address', sa.String(length=320), nullable=False),
                    sa.Column('bounces', sa.Integer(), nullable=False),
                    sa.Column('disabled', sa.Boolean(), nullable=False),
                    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['list_id'], ['mailing_lists.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('list_id', 'kind', 'address'))
    watch('mailing_lists')


def downgrade() -> None:
    unwatch('mailing_lists')
    op.drop_table('list_members')
    op.drop_table('mailing_lists')
