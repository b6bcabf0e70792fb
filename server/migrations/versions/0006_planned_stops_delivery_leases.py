"""planned stops (node state reason) and delivery leases held by a replica

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01 21:55:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.db

revision: str = '0006'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state_reason', sa.String(length=32), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('lease_until', server.core.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
        batch_op.drop_column('claimed_by')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('state_reason')
