"""signed models: the signer's document beside each stored model, and single-use download
tokens handed to nodes in model_update (the broker password no longer travels over HTTP)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:20:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.core.db import UTCDateTime

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add server_models.signature (models stored before it stay unsigned: the gate refuses
    them) and the model_download_tokens table."""
    with op.batch_alter_table('server_models') as batch:
        batch.add_column(sa.Column('signature', sa.Text(), nullable=True))
    op.create_table(
        'model_download_tokens',
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('node_id', sa.String(length=64), nullable=False),
        sa.Column('model_sha256', sa.String(length=64), nullable=False),
        sa.Column('expires_at', UTCDateTime(), nullable=False),
        sa.Column('used_at', UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('token_sha256'),
    )
    op.create_index('ix_model_download_tokens_expires_at', 'model_download_tokens',
                    ['expires_at'])


def downgrade() -> None:
    """Drop the tokens and the signature column."""
    op.drop_index('ix_model_download_tokens_expires_at', table_name='model_download_tokens')
    op.drop_table('model_download_tokens')
    with op.batch_alter_table('server_models') as batch:
        batch.drop_column('signature')
