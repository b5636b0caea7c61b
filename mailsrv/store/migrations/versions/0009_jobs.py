"""jobs and autoclean_rules: background jobs run by one node at a time (propagation, folder auto-clean)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:20:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('jobs',
                    sa.Column('id', sa.String(length=36), nullable=False),
                    sa.Column('kind', sa.String(length=32), nullable=False),
                    sa.Column('active_kind', sa.String(length=32), nullable=True),
                    sa.Column('state', sa.String(length=16), nullable=False),
                    sa.Column('parameters', sa.JSON(), nullable=False),
                    sa.Column('cursor', sa.BigInteger(), nullable=False),
                    sa.Column('done', sa.Integer(), nullable=False),
                    sa.Column('total', sa.Integer(), nullable=False),
                    sa.Column('error', sa.Text(), nullable=False),
                    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
                    sa.Column('claimed_by', sa.String(length=128), nullable=True),
                    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('active_kind'))
    op.create_index('ix_jobs_kind', 'jobs', ['kind'])
    op.create_table('autoclean_rules',
                    sa.Column('id', sa.String(length=36), nullable=False),
                    sa.Column('folder', sa.String(length=255), nullable=False),
                    sa.Column('enabled', sa.Boolean(), nullable=False),
                    sa.Column('type', sa.String(length=8), nullable=False),
                    sa.Column('size_before_mb', sa.Integer(), nullable=False),
                    sa.Column('size_after_mb', sa.Integer(), nullable=False),
                    sa.Column('age_days', sa.Integer(), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('folder', 'type'))


def downgrade() -> None:
    op.drop_table('autoclean_rules')
    op.drop_index('ix_jobs_kind', table_name='jobs')
    op.drop_table('jobs')
