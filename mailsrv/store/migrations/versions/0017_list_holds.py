"""list_holds: list posts held for the moderator (mailsrv.mta.list_server)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 10:40:00.000000

The held message itself is a file under `<data_dir>/list-holds/`, named by `path`, written and fsynced
before its row is committed; the row's deletion (approval, rejection, expiry) comes before the file's.
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('list_holds',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('list_id', sa.Integer(), nullable=False),
                    sa.Column('sender', sa.String(length=320), nullable=False),
                    sa.Column('path', sa.String(length=255), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['list_id'], ['mailing_lists.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_list_holds_created_at', 'list_holds', ['created_at'])


def downgrade() -> None:
    op.drop_index('ix_list_holds_created_at', table_name='list_holds')
    op.drop_table('list_holds')
