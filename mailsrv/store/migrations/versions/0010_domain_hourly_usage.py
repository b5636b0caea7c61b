"""domain_hourly_usage: the hourly buckets of the billed domain limits (messages and bytes sent, bounces received)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 09:10:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('domain_hourly_usage',
    sa.Column('domain_id', sa.Integer(), nullable=False),
    sa.Column('hour', sa.Integer(), nullable=False),
    sa.Column('messages_sent', sa.BigInteger(), nullable=False),
    sa.Column('bytes_sent', sa.BigInteger(), nullable=False),
    sa.Column('bounces_received', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['domain_id'], ['domains.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('domain_id', 'hour')
    )


def downgrade() -> None:
    op.drop_table('domain_hourly_usage')
