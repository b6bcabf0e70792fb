"""model files, per-pond model assignments and critical-event frames for the learning loop

Revision ID: 0007
Revises: 0008
Create Date: 2026-12-01 22:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.core.db import UTCDateTime

revision: str = '0007'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        'server_models',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('labels', sa.JSON(), nullable=False),
        sa.Column('eval', sa.JSON(), nullable=True),
        sa.Column('uploaded_by', sa.String(length=64), nullable=False),
        sa.Column('uploaded_at', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
        sa.UniqueConstraint('sha256'),
    )
    op.create_table(
        'model_assignments',
        sa.Column('target', sa.String(length=64), nullable=False),
        sa.Column('model', sa.String(length=64), nullable=False),
        sa.Column('assigned_by', sa.String(length=64), nullable=False),
        sa.Column('assigned_at', UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['model'], ['server_models.name']),
        sa.PrimaryKeyConstraint('target'),
    )
    op.create_table(
        'event_frames',
        sa.Column('event_id', sa.String(length=64), nullable=False),
        sa.Column('node_id', sa.String(length=64), nullable=False),
        sa.Column('received_at', UTCDateTime(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint('event_id'),
    )
    op.create_index('ix_event_frames_received_at', 'event_frames', ['received_at'])


def downgrade() -> None:
    """Revert this revision."""
    op.drop_index('ix_event_frames_received_at', table_name='event_frames')
    op.drop_table('event_frames')
    op.drop_table('model_assignments')
    op.drop_table('server_models')
