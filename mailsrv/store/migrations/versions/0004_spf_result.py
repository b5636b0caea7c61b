"""spool: the sender's SPF result found at acceptance (bounce and auto-reply policy RequireSPF)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 11:00:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('spool_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('spf_result', sa.String(length=16), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('spool_messages', schema=None) as batch_op:
        batch_op.drop_column('spf_result')
