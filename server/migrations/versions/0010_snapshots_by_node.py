"""snapshots and event frames keyed by (node, event id): a node can never fill another
node's snapshot slot

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 04:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.core.db import UTCDateTime

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ('snapshots', 'event_frames')


def _rekey(table: str, key: list[str]) -> None:
    """Copy table into a new one with primary key `key`, then put it in its place."""
    new = f'{table}_rekeyed'
    op.create_table(
        new,
        sa.Column('event_id', sa.String(length=64), nullable=False),
        sa.Column('node_id', sa.String(length=64), nullable=False),
        sa.Column('received_at', UTCDateTime(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(*key),
    )
    op.execute(f'INSERT INTO {new} (event_id, node_id, received_at, data) '
               f'SELECT event_id, node_id, received_at, data FROM {table}')
    op.drop_index(f'ix_{table}_received_at', table_name=table)
    op.drop_table(table)
    op.rename_table(new, table)
    op.create_index(f'ix_{table}_received_at', table, ['received_at'])


def upgrade() -> None:
    """Apply this revision."""
    for table in _TABLES:
        _rekey(table, ['event_id', 'node_id'])


def downgrade() -> None:
    """Revert this revision (two nodes' rows under one event id cannot both stay)."""
    for table in _TABLES:
        op.execute(f'DELETE FROM {table} WHERE EXISTS (SELECT 1 FROM {table} o WHERE '
                   f'o.event_id = {table}.event_id AND o.node_id < {table}.node_id)')
        _rekey(table, ['event_id'])
