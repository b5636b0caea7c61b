"""web_sessions of system administrators: admin_id beside user_id, one of the two set; traffic_daily
indexed by day (the dashboard's "today" figures)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 12:15:00.000000

Not watched by the directory generation: nothing SMTP caches reads it.
"""
import sqlalchemy as sa
from alembic import op

revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column('admin_id', sa.String(length=36), nullable=True))
        batch_op.create_foreign_key('fk_web_sessions_admin_id', 'system_admins', ['admin_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_index(batch_op.f('ix_web_sessions_admin_id'), ['admin_id'], unique=False)
    op.create_index('ix_traffic_daily_day', 'traffic_daily', ['day'])


def downgrade() -> None:
    op.drop_index('ix_traffic_daily_day', 'traffic_daily')
    op.execute("DELETE FROM web_sessions WHERE user_id IS NULL")
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sessions_admin_id'))
        batch_op.drop_constraint('fk_web_sessions_admin_id', type_='foreignkey')
        batch_op.drop_column('admin_id')
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=False)
