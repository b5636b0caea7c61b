"""listeners: server ports and their IP assignments, per-IP greeting names, stopped services, and
what each node publishes with its heartbeat (open sessions, ports it could not bind)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 09:10:00.000000

`listener_generation` is raised by mailsrv.directory.listeners in the transaction of every change
to the four listener tables; every worker of every node polls it (mailsrv.serve) and rebinds.
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('server_ports',
                    sa.Column('id', sa.String(length=36), nullable=False),
                    sa.Column('protocol', sa.String(length=16), nullable=False),
                    sa.Column('encryption', sa.String(length=16), nullable=False),
                    sa.Column('certificate_path', sa.Text(), nullable=False),
                    sa.Column('name', sa.String(length=128), nullable=False),
                    sa.Column('port', sa.Integer(), nullable=False),
                    sa.Column('description', sa.String(length=1024), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.create_table('server_port_ips',
                    sa.Column('port_id', sa.String(length=36), nullable=False),
                    sa.Column('ip_address', sa.String(length=45), nullable=False),
                    sa.ForeignKeyConstraint(['port_id'], ['server_ports.id'], ondelete='CASCADE'),
                    sa.PrimaryKeyConstraint('port_id', 'ip_address'))
    op.create_table('server_hostnames',
                    sa.Column('ip_address', sa.String(length=45), nullable=False),
                    sa.Column('hostname', sa.String(length=253), nullable=False),
                    sa.PrimaryKeyConstraint('ip_address'))
    op.create_table('stopped_services',
                    sa.Column('name', sa.String(length=16), nullable=False),
                    sa.PrimaryKeyConstraint('name'))
    op.create_table('listener_generation',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('generation', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.execute("INSERT INTO listener_generation (id, generation) VALUES (1, 0)")
    with op.batch_alter_table('nodes') as batch:
        batch.add_column(sa.Column('smtp_sessions', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('pop_sessions', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('imap_sessions', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('listen_errors', sa.Text(), nullable=False, server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('nodes') as batch:
        for column in ('listen_errors', 'imap_sessions', 'pop_sessions', 'smtp_sessions'):
            batch.drop_column(column)
    for table in ('listener_generation', 'stopped_services', 'server_hostnames', 'server_port_ips', 'server_ports'):
        op.drop_table(table)
