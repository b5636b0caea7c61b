"""spamassassin_servers: the spamd servers of svcServerAdmin AddSpamAssassinServer, with their counters

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 13:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Not watched by the directory generation: every scan updates its counters, and the filter
    # reads the table per message anyway.
    op.create_table(
        'spamassassin_servers',
        sa.Column('name', sa.String(length=128), nullable=False),
        sa.Column('address', sa.String(length=255), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('consecutive_failures', sa.Integer(), nullable=False),
        sa.Column('total_connections', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('spamassassin_servers')
