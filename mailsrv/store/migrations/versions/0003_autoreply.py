"""autoreply: when each user's auto-responder last answered each sender

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 10:05:00.000000
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('autoreply_sent',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'sender')
    )


def downgrade() -> None:
    op.drop_table('autoreply_sent')
