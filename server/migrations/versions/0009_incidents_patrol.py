"""incidents (one per pond: kind upgrades, who is involved, step base, last action),
delivery reasons, and the morning patrol list's runs

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-06 03:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.db

revision: str = '0009'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('child', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('people_seen', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('upgraded_from', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('upgraded_at', server.core.db.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('steps_from', server.core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('acted_at', server.core.db.UTCDateTime(), nullable=True))
    op.execute("UPDATE alerts SET steps_from = opened_at")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reason', sa.String(length=16), nullable=False,
                                      server_default='step'))
    op.create_table(
        'patrol_runs',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('day', sa.String(length=10), nullable=False),
        sa.Column('person_id', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=True),
        sa.Column('detail', sa.Text(), nullable=False),
        sa.Column('created_at', server.core.db.UTCDateTime(), nullable=False),
        sa.Column('sent_at', server.core.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_patrol_runs_day', 'patrol_runs', ['day'])
    op.create_index('ux_patrol_runs_day_person', 'patrol_runs', ['day', 'person_id'],
                    unique=True)


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index('ux_patrol_runs_day_person', table_name='patrol_runs')
    op.drop_index('ix_patrol_runs_day', table_name='patrol_runs')
    op.drop_table('patrol_runs')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('reason')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        for col in ('acted_at', 'steps_from', 'upgraded_at', 'upgraded_from', 'people_seen',
                    'child'):
            batch_op.drop_column(col)
