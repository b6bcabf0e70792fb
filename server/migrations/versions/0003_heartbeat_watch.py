"""node heartbeat watch

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 03:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import server.core.db

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('watch_deadline', server.core.db.UTCDateTime(),
                                      nullable=True))
        batch_op.create_index(batch_op.f('ix_nodes_watch_deadline'), ['watch_deadline'],
                              unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nodes_watch_deadline'))
        batch_op.drop_column('watch_deadline')
        batch_op.drop_column('heartbeat_s')
