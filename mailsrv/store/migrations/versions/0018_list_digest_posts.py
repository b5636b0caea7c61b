"""list_digest_posts: the posts waiting for their list's next digest

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 10:30:00.000000

Not watched by the directory generation: nothing SMTP caches reads it.
"""
import sqlalchemy as sa
from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('list_digest_posts',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('list_id', sa.Integer(), nullable=False),
                    sa.Column('path', sa.String(length=512), nullable=False),
                    sa.Column('subject', sa.Text(), nullable=False),
                    sa.Column('author', sa.String(length=998), nullable=False),
                    sa.Column('size', sa.Integer(), nullable=False),
                    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
                    sa.ForeignKeyConstraint(['list_id'], ['mailing_lists.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_list_digest_posts_list_id', 'list_digest_posts', ['list_id'])


def downgrade() -> None:
    op.drop_index('ix_list_digest_posts_list_id', 'list_digest_posts')
    op.drop_table('list_digest_posts')
