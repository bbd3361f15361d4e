"""push: agents' devices (push_subscriptions), their setting (push_preferences), push_outbox

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 18:00:00.000000

Outbox rows are written in the same transaction as the handoff or transfer they announce
(bot/push/outbox.py) and delivered by bot/push/sender.py (docs/agent-console.md "Push").
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('push_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('endpoint', sa.Text(), nullable=False),
    sa.Column('endpoint_hash', sa.String(length=64), nullable=False),
    sa.Column('p256dh', sa.String(length=128), nullable=False),
    sa.Column('auth', sa.String(length=64), nullable=False),
    sa.Column('user_agent', sa.String(length=255), nullable=True),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('last_success_at', bot.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_push_subscriptions_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_subscriptions')),
    sa.UniqueConstraint('endpoint_hash', name=op.f('uq_push_subscriptions_endpoint_hash'))
    )
    with op.batch_alter_table('push_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_subscriptions_agent_id'), ['agent_id'], unique=False)

    op.create_table('push_preferences',
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('updated_at', bot.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], name=op.f('fk_push_preferences_agent_id_agents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('agent_id', name=op.f('pk_push_preferences'))
    )

    op.create_table('push_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('dedupe_key', sa.String(length=128), nullable=True),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=True),
    sa.Column('ticket', sa.String(length=48), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('urgency', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', bot.db.UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('response_status', sa.Integer(), nullable=True),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('sent_at', bot.db.UTCDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('new_ticket', 'transfer', 'test')", name=op.f('ck_push_outbox_kind')),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed', 'gone', 'skipped')", name=op.f('ck_push_outbox_status')),
    sa.CheckConstraint("urgency IN ('very-low', 'low', 'normal', 'high')", name=op.f('ck_push_outbox_urgency')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_push_outbox')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_push_outbox_dedupe_key'))
    )
    with op.batch_alter_table('push_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_push_outbox_agent_id'), ['agent_id'], unique=False)
        batch_op.create_index('ix_push_outbox_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('push_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_push_outbox_status_next_attempt_at')
        batch_op.drop_index(batch_op.f('ix_push_outbox_agent_id'))
    op.drop_table('push_outbox')
    op.drop_table('push_preferences')
    with op.batch_alter_table('push_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_push_subscriptions_agent_id'))
    op.drop_table('push_subscriptions')
