"""outgoing_gateways: where remote mail leaves with `gatewayenabled`, watched by the directory generation

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 09:45:00.000000

Every change raises directory_generation (migration 0007's trigger function on PostgreSQL), like the
address lists: a node's router keeps the gateways it read under that number
(mailsrv.mta.outgoing_gateways), so a change through one node routes the next message on every node.
"""
import sqlalchemy as sa
from alembic import op

from mailsrv.store.directory_triggers import unwatch, watch

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

TABLE = 'outgoing_gateways'


def upgrade() -> None:
    op.create_table(TABLE,
                    sa.Column('guid', sa.String(length=36), nullable=False),
                    sa.Column('position', sa.Integer(), nullable=False),
                    sa.Column('address', sa.String(length=300), nullable=False),
                    sa.Column('enabled', sa.Boolean(), nullable=False),
                    sa.Column('is_smartermail', sa.Boolean(), nullable=False),
                    sa.Column('sm_url', sa.Text(), nullable=False),
                    sa.Column('sm_username', sa.String(length=320), nullable=False),
                    sa.Column('sm_password', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('guid'),
                    sa.UniqueConstraint('position'),
                    sa.UniqueConstraint('address'))
    watch(TABLE)


def downgrade() -> None:
    unwatch(TABLE)
    op.drop_table(TABLE)
