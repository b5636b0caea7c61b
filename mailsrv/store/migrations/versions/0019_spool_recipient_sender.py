"""spool_recipients: a copy's own envelope sender and header lines (a list post's VERP and one-click link)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 12:20:00.000000

Not watched by the directory generation: the spool is not the directory.
"""
import sqlalchemy as sa
from alembic import op

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('spool_recipients') as batch_op:
        batch_op.add_column(sa.Column('sender', sa.String(length=320), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('headers', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('spool_recipients') as batch_op:
        batch_op.drop_column('headers')
        batch_op.drop_column('sender')
