"""mail: the email outbox (mail_outbox) and unsubscribed addresses (mail_optouts)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 10:00:00.000000

Outbox rows are written in the same transaction as the ticket or reply they announce
(bot/mail/outbox.py) and delivered by bot/mail/sender.py (docs/email.md).
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import bot.db


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mail_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('dedupe_key', sa.String(length=128), nullable=True),
    sa.Column('to_address', sa.String(length=320), nullable=False),
    sa.Column('to_name', sa.String(length=200), nullable=True),
    sa.Column('conversation_id', sa.String(length=255), nullable=True),
    sa.Column('ticket', sa.String(length=48), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', bot.db.UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=255), nullable=True),
    sa.Column('smtp_message_id', sa.String(length=255), nullable=True),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('sent_at', bot.db.UTCDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('ticket_confirmation', 'agent_reply', 'transcript')", name=op.f('ck_mail_outbox_kind')),
    sa.CheckConstraint("status IN ('queued', 'sending', 'sent', 'failed', 'skipped', 'suppressed')", name=op.f('ck_mail_outbox_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_outbox')),
    sa.UniqueConstraint('dedupe_key', name=op.f('uq_mail_outbox_dedupe_key'))
    )
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_outbox_conversation_id'), ['conversation_id'], unique=False)
        batch_op.create_index('ix_mail_outbox_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)

    op.create_table('mail_optouts',
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('created_at', bot.db.UTCDateTime(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('address', name=op.f('pk_mail_optouts'))
    )


def downgrade() -> None:
    op.drop_table('mail_optouts')
    with op.batch_alter_table('mail_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_mail_outbox_status_next_attempt_at')
        batch_op.drop_index(batch_op.f('ix_mail_outbox_conversation_id'))
    op.drop_table('mail_outbox')
