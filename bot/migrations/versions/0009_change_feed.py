"""change feed: a transactional outbox (change_feed) and consumers' claims (change_feed_claims)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 10:00:00.000000

Rows are written by an ``after_insert`` hook on ``audit_log`` (bot/support/models.py) in the
same transaction as the change; bot/live.py reads them without gaps (docs/agent-console.md,
"Live updates").
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('change_feed',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('txid', sa.BigInteger(), nullable=True),
    sa.Column('topic', sa.String(length=64), nullable=False),
    sa.Column('object_type', sa.String(length=32), nullable=False),
    sa.Column('object_id', sa.String(length=64), nullable=False),
    sa.Column('ticket', sa.String(length=48), nullable=True),
    sa.Column('conversation_id', sa.String(length=255), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_change_feed'))
    )
    with op.batch_alter_table('change_feed', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_feed_created_at'), ['created_at'], unique=False)
        batch_op.create_index('ix_change_feed_topic_created_at', ['topic', 'created_at'], unique=False)
        batch_op.create_index('ix_change_feed_txid_id', ['txid', 'id'], unique=False)

    op.create_table('change_feed_claims',
    sa.Column('consumer', sa.String(length=64), nullable=False),
    sa.Column('change_id', sa.Integer(), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('claimed_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('done_at', bot.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['change_id'], ['change_feed.id'], name=op.f('fk_change_feed_claims_change_id_change_feed'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('consumer', 'change_id', name=op.f('pk_change_feed_claims'))
    )
    with op.batch_alter_table('change_feed_claims', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_change_feed_claims_change_id'), ['change_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('change_feed_claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_change_feed_claims_change_id'))
    op.drop_table('change_feed_claims')
    with op.batch_alter_table('change_feed', schema=None) as batch_op:
        batch_op.drop_index('ix_change_feed_txid_id')
        batch_op.drop_index('ix_change_feed_topic_created_at')
        batch_op.drop_index(batch_op.f('ix_change_feed_created_at'))
    op.drop_table('change_feed')
