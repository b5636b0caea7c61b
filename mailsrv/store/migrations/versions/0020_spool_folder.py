"""spool_messages.folder: the mailbox folder the filters filed a message into (Junk)

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 12:30:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('spool_messages') as batch:
        batch.add_column(sa.Column('folder', sa.String(length=255), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('spool_messages') as batch:
        batch.drop_column('folder')
