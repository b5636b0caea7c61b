"""credential_epoch: a password change ends the user's sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 21:40:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credential_epoch', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credential_epoch', sa.Integer(), server_default='0', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_column('credential_epoch')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('credential_epoch')
