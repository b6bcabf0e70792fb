"""heartbeat samples for the fleet page's health history

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-01 22:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.core.db import UTCDateTime

revision: str = '0008'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        'health_samples',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('node_id', sa.String(length=64), nullable=False),
        sa.Column('at', UTCDateTime(), nullable=False),
        sa.Column('fps', sa.Float(), nullable=True),
        sa.Column('temperature_c', sa.Float(), nullable=True),
        sa.Column('cpu_percent', sa.Float(), nullable=True),
        sa.Column('throttled', sa.Boolean(), nullable=True),
        sa.Column('outbox_depth', sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_health_samples_node_at', 'health_samples', ['node_id', 'at'])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index('ix_health_samples_node_at', table_name='health_samples')
    op.drop_table('health_samples')
