"""incoming_gateways: the servers this one is backup MX or incoming gateway for, watched by the directory generation

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 09:40:00.000000

Every change raises directory_generation (migration 0007's trigger function on PostgreSQL): SMTP
reads the gateways at RCPT and remote delivery reads their routes from a per-process snapshot kept
under that number (mailsrv.directory.incoming_gateways).
"""
import sqlalchemy as sa
from alembic import op

from mailsrv.store.directory_triggers import unwatch, watch

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

TABLE = 'incoming_gateways'


def upgrade() -> None:
    op.create_table(TABLE,
                    sa.Column('guid', sa.String(length=36), nullable=False),
                    sa.Column('mode', sa.String(length=16), nullable=False),
                    sa.Column('address', sa.String(length=300), nullable=False),
                    sa.Column('range_start', sa.String(length=45), nullable=False),
                    sa.Column('range_end', sa.String(length=45), nullable=False),
                    sa.Column('user_verify', sa.String(length=16), nullable=False),
                    sa.Column('domain_verify', sa.String(length=16), nullable=False),
                    sa.Column('domains', sa.JSON(), nullable=False),
                    sa.Column('webservice_url', sa.Text(), nullable=False),
                    sa.Column('smartermail_mode', sa.Boolean(), nullable=False),
                    sa.Column('smartermail_url', sa.Text(), nullable=False),
                    sa.Column('api_user', sa.String(length=320), nullable=False),
                    sa.Column('api_password', sa.Text(), nullable=False),
                    sa.Column('spam', sa.JSON(), nullable=False),
                    sa.Column('primary_domains', sa.JSON(), nullable=False),
                    sa.PrimaryKeyConstraint('guid'))
    watch(TABLE)


def downgrade() -> None:
    unwatch(TABLE)
    op.drop_table(TABLE)
