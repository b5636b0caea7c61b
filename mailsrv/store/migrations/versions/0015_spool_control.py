"""spool: each recipient's domain (per-destination claims) and held messages (svcSpoolAdmin)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 09:45:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('spool_recipients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('domain', sa.String(length=255), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('held', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_spool_recipients_domain', ['domain', 'status'], unique=False)
        batch_op.create_index('ix_spool_recipients_claimed', ['claimed_until'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE spool_recipients SET domain = lower(split_part(address, '@', 2))")
    else:
        op.execute("UPDATE spool_recipients SET domain = lower(substr(address, instr(address, '@') + 1))")


def downgrade() -> None:
    with op.batch_alter_table('spool_recipients', schema=None) as batch_op:
        batch_op.drop_index('ix_spool_recipients_claimed')
        batch_op.drop_index('ix_spool_recipients_domain')
        batch_op.drop_column('held')
        batch_op.drop_column('domain')
