"""abuse detection (rules, counters, blocks) and greylisting (filters, triplets)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 12:20:00.000000

abuse_rules and greylist_filters feed per-process caches (mailsrv.directory.abuse,
mailsrv.directory.greylisting), so every change raises the directory generation. Counters, blocks
and triplets are the state several nodes on one database share: written per event, never cached.
"""
import sqlalchemy as sa
from alembic import op

from mailsrv.store.directory_triggers import unwatch, watch

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None

WATCHED = ('abuse_rules', 'greylist_filters')


def upgrade() -> None:
    op.create_table('abuse_rules',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('kind', sa.String(length=24), nullable=False),
                    sa.Column('service', sa.String(length=16), nullable=False),
                    sa.Column('action', sa.String(length=16), nullable=False),
                    sa.Column('timeframe_minutes', sa.Integer(), nullable=False),
                    sa.Column('threshold', sa.Integer(), nullable=False),
                    sa.Column('block_minutes', sa.Integer(), nullable=False),
                    sa.Column('notify', sa.String(length=320), nullable=False),
                    sa.Column('description', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.create_table('abuse_counters',
                    sa.Column('rule_id', sa.Integer(), nullable=False),
                    sa.Column('subject', sa.String(length=320), nullable=False),
                    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('count', sa.Integer(), nullable=False),
                    sa.ForeignKeyConstraint(['rule_id'], ['abuse_rules.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('rule_id', 'subject'))
    op.create_table('abuse_blocks',
                    sa.Column('subject', sa.String(length=320), nullable=False),
                    sa.Column('service', sa.String(length=16), nullable=False),
                    sa.Column('kind', sa.String(length=24), nullable=False),
                    sa.Column('blocked_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('until', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('reason', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('subject', 'service'))
    op.create_index('ix_abuse_blocks_until', 'abuse_blocks', ['until'])
    op.create_table('greylist_filters',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('ip_address', sa.String(length=64), nullable=False),
                    sa.Column('range_start', sa.String(length=45), nullable=False),
                    sa.Column('range_end', sa.String(length=45), nullable=False),
                    sa.Column('first', sa.String(length=45), nullable=False),
                    sa.Column('last', sa.String(length=45), nullable=False),
                    sa.Column('description', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('first', 'last'))
    op.create_table('greylist_triplets',
                    sa.Column('network', sa.String(length=64), nullable=False),
                    sa.Column('sender', sa.String(length=320), nullable=False),
                    sa.Column('recipient', sa.String(length=320), nullable=False),
                    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('passed_until', sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint('network', 'sender', 'recipient'))
    for table in WATCHED:
        watch(table)


def downgrade() -> None:
    for table in WATCHED:
        unwatch(table)
    op.drop_table('greylist_triplets')
    op.drop_table('greylist_filters')
    op.drop_index('ix_abuse_blocks_until', table_name='abuse_blocks')
    op.drop_table('abuse_blocks')
    op.drop_table('abuse_counters')
    op.drop_table('abuse_rules')
